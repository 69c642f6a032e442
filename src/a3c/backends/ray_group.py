"""A node group: the processes backend's workers on one Ray node, synced with the global store.

The group actor holds the node's `SharedStore` in shared memory and runs a `ProcessesBackend`
over it: forked worker processes, Hogwild on the node's parameters and optimizer statistics, the
same `Worker` loop and the same supervision (a crashed, dead or hung worker is restarted within
its budget). Within the node nothing crosses a process boundary that does not cross it on the
processes backend. The group is the only thing on the node that talks to the rest of the cluster:

- a sync thread, every `backend.ray_sync_interval_s`: the change of the node's parameters since
  its last sync goes to the K store shards in parallel (a3c/backends/ray_store.py), each shard adds
  its slice, and the group adds what came back (the other nodes' updates) to its parameters in
  place, keeping the updates its workers made during the round trip. The node's counters and
  statistics rows go to shard 0, which answers with the other nodes' totals: the node's schedules
  and step budget run on the cluster's global step;
- `poll`, which the trainer calls in turn: the workers' reports (worker indices made global) and
  the group's health (workers alive, restarts, shards it could not reach).

A shard that fails a sync is left out until the trainer hands over its replacement
(`set_shards`); the group then joins it, keeping its own updates since its last sync with it. A
lone group (one machine) holds the store itself, in its own process: there is nothing to merge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from a3c.backends.processes import ProcessesBackend
from a3c.backends.ray_runtime import _ray
from a3c.backends.ray_store import Slots, StoreShard, decode, encode
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.metrics import WorkerReport
from a3c.store import COUNTERS, SharedStore

SYNC_TIMEOUT_S = 30.0  # a shard that has not answered a sync by then is taken for dead


class Portable:
    """An env factory as Ray delivered it, made picklable for the forked workers (a function of the
    user's script arrives by value, which the standard pickle cannot send on)."""

    def __init__(self, env_fn: EnvFn) -> None:
        import cloudpickle  # Gymnasium's dependency, so present wherever a3c is

        self.blob = cloudpickle.dumps(env_fn)
        self._fn: EnvFn | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"blob": self.blob}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.blob, self._fn = state["blob"], None

    def __call__(self) -> Any:
        if self._fn is None:
            import cloudpickle

            self._fn = cloudpickle.loads(self.blob)
        return self._fn()


class _InProcess:
    """A store shard held in the group's own process, called as Ray calls its actors (a lone group
    on one machine: nothing to merge, so no store actor to pay for)."""

    def __init__(self, shard: StoreShard) -> None:
        self.shard = shard

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.shard, name)
        return SimpleNamespace(remote=lambda *args: _Done(method(*args)))


class _Done:
    """The result of a call already made."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _result(ref: Any, timeout: float) -> Any:
    return ref.value if isinstance(ref, _Done) else _ray().get(ref, timeout=timeout)


class GroupCore:
    """One node's workers, their store in shared memory, and its sync with the global store (or,
    given `shards=None`, with a store shard of its own: a lone group)."""

    def __init__(
        self,
        cfg: Config,
        index: int,
        slots: Slots,
        shards: Sequence[Any] | None,
        bounds: Sequence[tuple[int, int]],
        n_actor: int,
        obs_dim: int | None,
        init: dict[str, np.ndarray],
        env_fn: EnvFn | None,
    ) -> None:
        torch.set_num_threads(1)
        self.cfg, self.index, self.slots = cfg, index, slots
        self.bounds, self.dtype = list(bounds), cfg.backend.ray_sync_dtype
        self.interval = cfg.backend.ray_sync_interval_s or 0.05
        self.own_shard = None
        if shards is None:  # the global state arrives in `init`; the store lives here
            self.dtype = "float32"  # nothing crosses the network, so nothing is rounded
            self.own_shard = StoreShard(
                0,
                init["store.params"],
                init.get("store.ema"),
                cfg.eval.ema_steps,
                "float32",
                {k: init[f"store.counters.{k}"] for k in COUNTERS},
                init.get("store.obs_stats"),
            )
            shards = [_InProcess(self.own_shard)]
        self.shards = list(shards)
        base = np.concatenate([_result(s.join.remote(index), SYNC_TIMEOUT_S) for s in self.shards])
        self.base = torch.from_numpy(base)  # the global parameters as this node last took them
        self.store = SharedStore(self.base.clone(), n_actor, cfg, obs_dim, other_nodes=True)
        self._load(init)
        self.backend = ProcessesBackend(
            cfg, self.store, None if env_fn is None else Portable(env_fn), in_ray_actor=True
        )
        self.lock = threading.Lock()  # the backend is driven from one call at a time
        self.joined = [True] * len(self.shards)
        self.failed_shards: set[int] = set()
        self.last_sync = time.monotonic()
        self.synced_steps = self._own_steps()
        self.syncs, self.bytes_out, self.bytes_in = 0, 0, 0
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def _load(self, init: dict[str, np.ndarray]) -> None:
        """The node's starting state: its workers' counters and statistics rows, the other nodes'
        totals, and optimizer statistics (a recreated node takes the run's)."""
        for key in COUNTERS:
            if f"counters.{key}" in init:
                self.store.counters[key].copy_(torch.from_numpy(np.array(init[f"counters.{key}"])))
        if "elsewhere" in init:
            self.store.elsewhere.copy_(torch.from_numpy(np.array(init["elsewhere"])))
        for key, value in self.store.optimizer.state.items():
            if f"optim.{key}" in init:
                value.copy_(torch.from_numpy(np.array(init[f"optim.{key}"])))
        stats = self.store.obs_stats
        if stats is not None and "obs_stats" in init:  # this node's rows, then the others' total
            stats.table.copy_(torch.from_numpy(np.array(init["obs_stats"])))

    def _own_steps(self) -> int:
        return int(self.store.counters["worker_steps"].sum())

    def start(self) -> None:
        self.backend.start()
        self.thread = threading.Thread(target=self._sync_loop, name="a3c-sync", daemon=True)
        self.thread.start()

    def _sync_loop(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sync()

    def sync(self) -> None:
        """One round trip with every shard, in parallel (see the module's docstring)."""
        self._join_new_shards()
        snap = self.store.flat.clone()
        steps = self._own_steps()
        delta = snap - self.base
        stats = self.store.obs_stats
        counts = {k: v.numpy().copy() for k, v in self.store.counters.items()}
        obs_rows = None if stats is None else stats.table[: self.slots.count].numpy().copy()
        sent, refs = [], {}
        for k, (a, b) in enumerate(self.bounds):
            wire, rounded = encode(delta[a:b].contiguous(), self.dtype)
            sent.append(rounded)
            if not self.joined[k]:
                continue
            first = k == 0
            refs[k] = self.shards[k].sync.remote(
                self.index,
                wire,
                steps - self.synced_steps,
                self.slots if first else None,
                counts if first else None,
                obs_rows if first else None,
            )
            self.bytes_out += wire.nbytes
        for k, ref in refs.items():
            try:
                reply = _result(ref, SYNC_TIMEOUT_S)
            except Exception:  # the shard died (or hangs): the trainer restores it
                self.joined[k] = False
                self.failed_shards.add(k)
                continue
            self._take(k, reply, sent[k])
        self.synced_steps, self.last_sync = steps, time.monotonic()
        self.syncs += 1

    def _take(self, k: int, reply: dict[str, Any], sent: Tensor) -> None:
        a, b = self.bounds[k]
        change = decode(reply["change"])
        self.bytes_in += np.asarray(reply["change"]).nbytes
        # local += (base + change) - base - sent: the other nodes' updates arrive; this node's
        # updates since the snapshot stay, and so does what rounding left out of `sent`
        self.store.flat[a:b] += change - sent
        self.base[a:b] += change
        if "others" in reply:
            others = reply["others"]
            self.store.elsewhere[0] = others["worker_steps"]
            self.store.elsewhere[1] = others["worker_updates"]
        stats = self.store.obs_stats
        if stats is not None and reply.get("obs_others") is not None:
            stats.table[self.slots.count] = torch.from_numpy(np.array(reply["obs_others"]))

    def _join_new_shards(self) -> None:
        """Join a shard handed over by `set_shards`: take its slice as the new base, keeping this
        node's own updates since its last sync."""
        for k, joined in enumerate(self.joined):
            if joined or k in self.failed_shards:
                continue
            try:
                reply = _result(self.shards[k].join.remote(self.index), SYNC_TIMEOUT_S)
                fresh = torch.from_numpy(np.array(reply))
            except Exception:
                self.failed_shards.add(k)
                continue
            a, b = self.bounds[k]
            self.store.flat[a:b] += fresh - self.base[a:b]
            self.base[a:b] = fresh
            self.joined[k] = True

    def set_shards(self, shards: Sequence[Any], replaced: Sequence[int]) -> None:
        """The trainer restored shards `replaced`: sync with the new ones from now on."""
        self.shards = list(shards)
        for k in replaced:
            self.joined[k] = False
            self.failed_shards.discard(k)

    def poll(self, timeout: float) -> dict[str, Any]:
        """The workers' reports over the next `timeout` seconds and the group's health (one Ray
        call gathers several reports). A WorkerFailure (a worker past its restart budget) raises
        here, and reaches the trainer."""
        # Wait first, then drain every pipe at once: two wake-ups a second rather than one per
        # report (the pipes hold far more than half a second of reports).
        self.stopping.wait(timeout)
        with self.lock:
            reports = self.backend.poll(0.0)
            for rep in reports:
                rep.worker += self.slots.start
            return {
                "reports": reports,
                "node": _ray().get_runtime_context().get_node_id(),
                "alive": self.backend.alive(),
                "done": self.backend.all_done(),
                "restarts": self.backend.restarts,
                "failed_shards": sorted(self.failed_shards),
                "traffic": {
                    "syncs": self.syncs,
                    "bytes_out": self.bytes_out,
                    "bytes_in": self.bytes_in,
                    "steps": self._own_steps(),
                },
            }

    def state(self) -> dict[str, np.ndarray]:
        """A lone group's store: the global state (as a store shard answers)."""
        assert self.own_shard is not None, "only a lone group holds the store"
        return self.own_shard.state()

    def base_slice(self, k: int) -> tuple[float, np.ndarray]:
        """When this node last synced, and shard k's slice as it took it then (to restore the
        shard from the newest copy any node holds)."""
        a, b = self.bounds[k]
        return self.last_sync, self.base[a:b].numpy().copy()

    def counts(self) -> dict[str, np.ndarray]:
        """This node's absolute counters and statistics rows (to rebuild shard 0)."""
        out = {f"counters.{k}": v.numpy().copy() for k, v in self.store.counters.items()}
        stats = self.store.obs_stats
        if stats is not None:
            out["obs_stats"] = stats.table[: self.slots.count].numpy().copy()
        return out

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The node's optimizer statistics (a checkpoint keeps the first group's)."""
        return {f"optim.{k}": v.numpy().copy() for k, v in self.store.optimizer.state.items()}

    def stop(self) -> list[WorkerReport]:
        """Stop the workers (their last reports), then one last sync: nothing they did is lost."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=SYNC_TIMEOUT_S)
        with self.lock:
            reports = self.backend.stop()
        for rep in reports:
            rep.worker += self.slots.start
        self.sync()
        return reports

    def request_stop(self) -> None:
        """Let the workers finish their updates and stop (the trainer then calls `stop`)."""
        self.store.request_stop()
