"""The Ray backend: A3C per node in shared memory, nodes synced through a sharded global store.

- On each Ray node a node group (a3c/backends/ray_group.py) runs the processes backend's workers:
  forked processes, Hogwild on the node's parameters and optimizer statistics in shared memory,
  the same `Worker` loop and supervision. One group per node (workers split by the nodes' CPUs), or
  one per `backend.ray_workers_per_node` workers; on one machine, one group.
- The global parameters live in K store shards (a3c/backends/ray_store.py), each a contiguous
  slice; shard 0 also holds the per-worker counters (the global step) and the observation
  statistics. Every `backend.ray_sync_interval_s` each group pushes the change of its node's
  parameters to the shards, which add it, and takes back the merged parameters (keeping the
  updates its workers made meanwhile).
- The trainer (this module) places the shards and groups, collects the groups' reports, and
  supervises: a group that dies, raises or stops answering is recreated from the global state
  (its unsynced updates are lost, nothing else); a shard that dies is restored from the newest
  copy of its slice any group took (at most one sync interval of the other nodes' updates lost),
  or from the trainer's own copy (at most STATE_COPY_S old).
- The evaluator is an actor beside the groups that reads the shards (ray_evaluator.py); Ray
  itself (import, loopback, errors) is ray_runtime.py.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from a3c.backends.base import RestartBudget, WorkerFailure
from a3c.backends.ray_evaluator import RayEvaluator
from a3c.backends.ray_nodes import (
    Group,
    alive_nodes,
    counts_from_groups,
    group_config,
    group_init,
    plan,
)
from a3c.backends.ray_runtime import START_GRACE_S, _raise_signal, _ray, _ray_error_line, init_ray
from a3c.backends.ray_shell import NodeGroup
from a3c.backends.ray_store import (
    StoreShard,
    gather,
    shard_count,
    slices,
    sync_interval,
)
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.errors import first_line
from a3c.evaluation import EvalSpec, Evaluator
from a3c.metrics import WorkerReport
from a3c.store import COUNTERS, SharedStore

POLL_S = 0.2
# A group gathers its workers' reports this long per answer: fewer Ray calls (each costs both sides
# a millisecond or two of CPU), reports at most this late.
GROUP_POLL_S = 0.5
# The trainer keeps a copy of the global state at most this old (and at every checkpoint): the
# last resort of a shard restore, when no group can give a newer copy of its slice.
STATE_COPY_S = 10.0
STOP_TIMEOUT_S = 10.0
SOLO_SYNC_S = 1.0  # the sync interval of a lone group, unless backend.ray_sync_interval_s says
log = logging.getLogger("a3c")


class RayBackend:
    """Node groups and store shards, supervised (see the module's docstring). The trainer's store
    is the global state's first value; `snapshot` reads the shards (and a group's optimizer
    statistics), and `stop` copies the final state back into the trainer's store."""

    def __init__(self, cfg: Config, store: SharedStore, env_fn: EnvFn | None = None) -> None:
        # imported now, before the run directory exists: a signal cannot cut its import short
        _ray()
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.started_ray = False
        self.k = shard_count(store.size, cfg.backend.ray_store_shards, cfg.backend.ray_sync_dtype)
        self.bounds = slices(store.size, self.k)
        self.interval = sync_interval(
            store.size, cfg.backend.ray_sync_interval_s, cfg.backend.ray_sync_dtype
        )
        self.shards: list[Any] = []
        self.groups: list[Group] = []
        self.budget: RestartBudget | None = None
        self.shard_restarts = 0
        self.obs_dim = None if store.obs_stats is None else store.obs_stats.dim
        self._copy: dict[str, Tensor] = store.state_dict()  # the global state as last seen
        # each worker slot's steps as the trainer has them (the store's at the start, plus what
        # was reported since): a group recreated from the store loses its reported steps past the
        # store's, which the trainer takes off its count (`lost_steps`)
        self._reported = store.counters["worker_steps"].clone()
        self._lost = 0
        self._copied_at = time.monotonic()

    @property
    def restarts(self) -> int:
        groups = 0 if self.budget is None else self.budget.restarts
        workers = sum(g.worker_restarts + g.current_restarts for g in self.groups)
        return groups + workers + self.shard_restarts

    def start(self) -> None:
        ray = _ray()
        # ours to shut down, even if a signal interrupts init
        self.started_ray = not ray.is_initialized()
        init_ray(
            self.cfg.backend.ray_address,
            num_cpus=max(os.cpu_count() or 1, self.cfg.backend.workers),
        )
        self.groups = plan(
            self.cfg.backend.workers, alive_nodes(), self.cfg.backend.ray_workers_per_node
        )
        self.budget = RestartBudget(len(self.groups), self.cfg.backend.max_restarts)
        # One group (one machine): there is nothing to merge, and the store only serves the
        # evaluator and the checkpoints, so the group holds it and syncs once a second.
        self.lone = len(self.groups) == 1 and self.cfg.backend.ray_store_shards is None
        if self.lone:
            self.k, self.bounds = 1, slices(self.store.size, 1)
            if self.cfg.backend.ray_sync_interval_s is None:
                self.interval = max(self.interval, SOLO_SYNC_S)
        state = self.store.state_dict()
        if not self.lone:
            self.shards = [self._new_shard(k, state) for k in range(self.k)]
        for g in self.groups:
            self._spawn(g, state)

    # --- the store shards ------------------------------------------------------------------

    def _new_shard(self, k: int, state: dict[str, Tensor]) -> Any:
        a, b = self.bounds[k]
        ema = state.get("ema")
        counters = obs = None
        if k == 0:
            counters = {key: state[f"counters.{key}"].numpy() for key in COUNTERS}
            obs = None if state.get("obs_stats") is None else state["obs_stats"].numpy()
        options: dict[str, Any] = {"num_cpus": 0}
        if self.k > 1:
            options["scheduling_strategy"] = "SPREAD"
        return (
            _ray()
            .remote(**options)(StoreShard)
            .remote(
                k,
                state["params"][a:b].numpy(),
                None if ema is None else ema[a:b].numpy(),
                self.cfg.eval.ema_steps,
                self.cfg.backend.ray_sync_dtype,
                counters,
                obs,
            )
        )

    def _restore_shard(self, k: int, why: str) -> None:
        """A new shard k from the newest copy of its slice any group took (or the trainer's copy);
        shard 0's counters and statistics from the groups' own (absolute) ones."""
        self.shard_restarts += 1
        if self.shard_restarts > self.cfg.backend.max_restarts * max(1, self.k):
            raise WorkerFailure(0, f"store shard {k} failed ({why}); restart budget spent")
        ray = _ray()
        state = dict(self._copy)
        a, b = self.bounds[k]
        newest = (self._copied_at, state["params"][a:b].numpy())
        for g in self.groups:
            try:
                when, part = ray.get(g.actor.base_slice.remote(k), timeout=STOP_TIMEOUT_S)
            except Exception as e:  # a group that cannot answer gives nothing
                _raise_signal(e)
                continue
            if when > newest[0]:
                newest = (when, part)
        params = state["params"].clone()
        params[a:b] = torch.from_numpy(np.array(newest[1]))
        state["params"] = params
        if k == 0:
            state.update(counts_from_groups(self.groups, state, STOP_TIMEOUT_S))
        lost = time.monotonic() - newest[0]
        log.warning(
            "a3c: warning: store shard %d failed (%s); restored from a copy of %.1f s ago",
            k,
            why,
            lost,
        )
        try:
            ray.kill(self.shards[k])
        except Exception:  # already gone
            pass
        self.shards[k] = self._new_shard(k, state)
        for g in self.groups:
            g.actor.set_shards.remote(self.shards, [k])

    # --- the node groups -------------------------------------------------------------------

    def _spawn(self, g: Group, state: dict[str, Tensor]) -> None:
        ray = _ray()
        options: dict[str, Any] = {"num_cpus": g.cpus, "max_concurrency": 4}
        if g.node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(g.node, soft=True)
        else:
            options["scheduling_strategy"] = "SPREAD"
        init = group_init(g, state)
        if self.lone:  # the global state itself goes to the group, which holds the store
            init.update(
                {f"store.{k}": v.numpy() for k, v in state.items() if not k.startswith("optim.")}
            )
        packed = NodeGroup.pack(
            cfg=group_config(self.cfg, g, self.interval),
            index=g.index,
            slots=g.slots,
            bounds=self.bounds,
            n_actor=self.store.n_actor,
            obs_dim=self.obs_dim,
            init=init,
            env_fn=self.env_fn,
        )
        g.actor = ray.remote(**options)(NodeGroup).remote(
            None if self.lone else self.shards, packed
        )
        if self.lone:  # the trainer and the evaluator read the store from the group
            self.shards = [g.actor]
        g.actor.start.remote()
        g.answered, g.done, g.alive = False, False, 0
        self._ask(g)

    def _ask(self, g: Group) -> None:
        g.pending, g.asked = g.actor.poll.remote(GROUP_POLL_S), time.monotonic()

    def _restart_group(self, g: Group, message: str) -> None:
        """Recreate group g from the global state; past the restart budget the run stops."""
        assert self.budget is not None
        try:
            _ray().kill(g.actor)
        except Exception:  # already gone
            pass
        g.worker_restarts += g.current_restarts
        g.current_restarts = 0
        self.budget.failed(g.index, f"node group {g.index}: {message}")
        time.sleep(self.cfg.backend.restart_delay)
        state = self.snapshot()
        # the dead group's steps since its last sync are lost, reported or not
        s = slice(g.slots.start, g.slots.end)
        synced = state["counters.worker_steps"][s]
        self._lost += max(0, int(self._reported[s].sum() - synced.sum()))
        self._reported[s] = synced
        self._spawn(g, state)

    def poll(self, timeout: float) -> list[WorkerReport]:
        ray = _ray()
        pending = {g.pending: g for g in self.groups if g.pending is not None}
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=max(timeout, POLL_S))
        reports: list[WorkerReport] = []
        failed_shards: set[int] = set()
        for ref in ready:
            g = pending[ref]
            g.pending = None
            try:
                answer = ray.get(ref)
            except Exception as e:  # RayActorError (it died), RayTaskError (it raised)
                _raise_signal(e)
                self._group_failed(g, e)
                continue
            g.answered, g.alive, g.done = True, answer["alive"], answer["done"]
            g.current_restarts, g.traffic = answer["restarts"], answer["traffic"]
            g.ran_on = answer["node"]
            reports.extend(answer["reports"])
            for rep in answer["reports"]:
                self._reported[rep.worker] += rep.steps
            failed_shards.update(answer["failed_shards"])
            if not g.done:
                self._ask(g)
        self._restart_silent()
        for k in sorted(failed_shards):
            self._restore_shard(k, "a node group could not sync with it")
        if time.monotonic() - self._copied_at >= STATE_COPY_S:
            self.snapshot()
        return reports

    def _group_failed(self, g: Group, e: Exception) -> None:
        cause = getattr(e, "cause", None)
        if isinstance(cause, WorkerFailure):  # a worker past its budget: the run's failure
            raise WorkerFailure(cause.worker + g.slots.start, cause.message, cause.traceback)
        self._restart_group(g, _ray_error_line(e))

    def _restart_silent(self) -> None:
        """Recreate a group whose poll has not returned for `backend.worker_timeout` seconds (a
        new group's process gets START_GRACE_S more to start)."""
        timeout = self.cfg.backend.worker_timeout
        if timeout is None:
            return
        now = time.monotonic()
        for g in self.groups:
            if g.pending is None:
                continue
            limit = timeout + (0.0 if g.answered else START_GRACE_S)
            if now - g.asked > limit:
                g.pending = None
                self._restart_group(g, f"no answer for {timeout:g} s (stuck); killed")

    def snapshot(self) -> dict[str, Tensor]:
        """The global state: the shards' slices, counters and statistics, and the first group's
        optimizer statistics; if a shard does not answer, the last copy (and it is restored)."""
        if not self.shards:  # not started, or stopped: the trainer's store holds the state
            return self.store.state_dict()
        ray = _ray()
        try:
            states = ray.get([s.state.remote() for s in self.shards], timeout=STOP_TIMEOUT_S)
        except Exception as e:  # a shard died: the next sync's failure restores it
            _raise_signal(e)
            log.warning(
                "a3c: warning: a store shard did not answer (%s); using the state of %.0f s ago",
                _ray_error_line(e),
                time.monotonic() - self._copied_at,
            )
            return self._copy
        state = gather(states)
        optim = self._optimizer_state()
        state.update(
            optim if optim else {k: v for k, v in self._copy.items() if k.startswith("optim.")}
        )
        self._copy, self._copied_at = state, time.monotonic()
        return state

    def _optimizer_state(self) -> dict[str, Tensor]:
        ray = _ray()
        for g in self.groups:
            try:
                out = ray.get(g.actor.optimizer_state.remote(), timeout=STOP_TIMEOUT_S)
            except Exception as e:
                _raise_signal(e)
                continue
            return {k: torch.from_numpy(np.array(v)) for k, v in out.items()}
        return {}

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[WorkerReport]:
        ray = _ray()
        if not self.shards:  # never started (or interrupted while Ray started)
            if self.started_ray and ray.is_initialized():
                ray.shutdown()
            return []
        reports: list[WorkerReport] = []
        try:
            for g in self.groups:
                g.actor.request_stop.remote()
            calls = {g.actor.stop.remote(): g for g in self.groups}
            done, stuck = ray.wait(list(calls), num_returns=len(calls), timeout=timeout)
            for ref in done:
                try:
                    reports.extend(ray.get(ref))
                except Exception as e:  # a group that died while stopping: its last reports
                    _raise_signal(e)
            for ref in stuck:
                log.warning(
                    "a3c: warning: node group %d did not stop within %g s; killed it",
                    calls[ref].index,
                    timeout,
                )
        except Exception as e:  # stopping must not fail
            _raise_signal(e)
            log.warning("a3c: warning: the ray backend did not stop cleanly (%s)", first_line(e))
        finally:
            # the global state (its final value, or the last copy of it)
            self.store.load_state_dict(self.snapshot())
            for actor in [*(g.actor for g in self.groups), *self.shards]:
                try:
                    ray.kill(actor)
                except Exception:  # already gone
                    pass
            self.shards = []
            for g in self.groups:
                g.pending = None
            if self.started_ray:
                ray.shutdown()
        return reports

    def traffic(self) -> dict[int, dict[str, int]]:
        """Syncs and bytes sent and received by each group so far, and its env steps (for the
        benchmarks: bytes per agent step)."""
        return {g.index: dict(g.traffic) for g in self.groups}

    def lost_steps(self) -> int:
        out, self._lost = self._lost, 0
        return out

    def evaluator(self, spec: EvalSpec) -> Evaluator:
        return RayEvaluator(self.cfg, lambda: list(self.shards), spec)

    def all_done(self) -> bool:
        return all(g.done for g in self.groups)

    def alive(self) -> int:
        return sum(g.alive for g in self.groups)
