"""The Ray backend: the same workers as Ray actors, the global parameters in a parameter server.

- `ParameterServer` (an actor) owns a `SharedStore`: the flat parameters, the shared optimizer's
  statistics, the counters and the observation statistics. Actor calls run one at a time, so
  updates are applied in arrival order (the lock of the processes backend is implicit).
- `WorkerActor` runs `Worker.update` in a loop against a `RemoteStore`, the `ParameterStore`
  (a3c/store.py) of a Ray worker. Gradients are sent in round trips at most every
  `backend.ray_sync_interval` seconds: the clipped gradients computed since the last one travel as
  one float32 array [k, size] and the server applies them one by one, in order, each as its own
  optimizer step (asynchronous updates, as in A3C; not A2C's synchronous average). The reply carries
  each gradient's update lag and a reference to the newest weights; the worker fetches that object
  and its local copy re-syncs (the tutorial's periodic sync). The worker does not wait for the
  reply: it goes on with its next rollouts and takes the reply as soon as it has arrived (checked
  without blocking before each update). On a small model (CartPole: about 1.3 ms per update) one
  call per update would spend more CPU in Ray's per-call overhead than in learning; on a large one
  (Atari: tens of ms per update) a round trip per update is what you get. Worker reports for the
  trainer travel with the round trips.
- Observation statistics travel as increments: each round trip carries what the worker added to its
  row since the last one, and the server adds it to its own table; a reply brings the whole table
  back. A started, restarted or resumed worker therefore never overwrites the server's statistics.
- A weights version goes through the object store once (`ray.put` when first asked for), not once
  per worker.
- Without an address the library starts a local Ray bound to 127.0.0.1 with no dashboard; with one
  (`--ray-address auto|HOST:PORT` or RAY_ADDRESS) it connects to that cluster (ray_runtime.py).
- The evaluator is an actor beside the workers that asks the server for the state
  (ray_evaluator.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from a3c.backends.base import RestartBudget
from a3c.backends.ray_evaluator import RayEvaluator
from a3c.backends.ray_runtime import START_GRACE_S, _raise_signal, _ray, _ray_error_line, init_ray
from a3c.backends.ray_worker import WorkerActor
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.errors import RunFailure
from a3c.evaluation import EvalSpec, Evaluator
from a3c.metrics import WorkerReport
from a3c.store import Pulled, SharedStore

POLL_S = 0.2
# The trainer keeps a copy of the parameter server's state at most this old (and at every
# checkpoint): if the server dies, it restarts from that copy, losing at most this much work.
STATE_COPY_S = 10.0
STOP_TIMEOUT_S = 2.0
log = logging.getLogger("a3c")


class ParameterServer:
    """Holds the global state; applies pushes; hands out weights (one object per version)."""

    def __init__(self, store: SharedStore) -> None:
        torch.set_num_threads(1)
        self.store = store
        self.reports: list[WorkerReport] = []
        self.contact: dict[int, float] = {}  # worker -> when its last round trip arrived
        self._ref: Any = None
        self._ref_updates = -1

    def _weights(self) -> Any:
        updates = self.store.progress().updates
        if self._ref is None or self._ref_updates != updates:
            self._ref = _ray().put(self.store.flat.numpy().copy())
            self._ref_updates = updates
        return self._ref

    def pull(self, worker: int | None = None) -> dict[str, Any]:
        if worker is not None:  # a worker's first call, as its actor starts
            self.contact[worker] = time.monotonic()
        s = self.store
        return {
            # in a list, so Ray hands over the reference, not the array
            "weights": [self._weights()],
            "progress": tuple(s.progress()),
            "obs_stats": None if s.obs_stats is None else s.obs_stats.table.numpy().copy(),
        }

    def push_batch(
        self,
        worker: int,
        grads: np.ndarray,
        pulled: list[tuple[int, float]],
        steps: list[int],
        skipped: list[int],
        obs_delta: np.ndarray | None,
        reports: Sequence[WorkerReport] = (),
    ) -> dict[str, Any]:
        """Apply a worker's gradients [k, size] one by one, in order (k optimizer steps), and count
        its skipped (non-finite) updates' env steps; the reply's `pushed` has one (lag, lr) per
        gradient. `obs_delta` is what the worker added to its row of the observation statistics
        since its last round trip; `reports` are its reports since then (for the trainer)."""
        self.reports.extend(reports)
        self.contact[worker] = time.monotonic()
        stats = self.store.obs_stats
        if obs_delta is not None and stats is not None:
            stats.table[worker] += torch.from_numpy(obs_delta)
        for n in skipped:
            self.store.push(worker, n, Pulled(0, 0.0), None)
        grads_t = torch.from_numpy(np.array(grads))  # Ray's arrays are read-only
        pushed = [
            tuple(self.store.push(worker, n, Pulled(*p), g))
            for g, p, n in zip(grads_t, pulled, steps, strict=True)
        ]
        return {**self.pull(), "pushed": pushed}

    def take_reports(self) -> tuple[list[WorkerReport], dict[int, float]]:
        """The reports since the last call, and each worker's seconds since its last round trip."""
        out, self.reports = self.reports, []
        now = time.monotonic()
        return out, {w: now - t for w, t in self.contact.items()}

    def request_stop(self) -> None:
        self.store.request_stop()

    def policy_state(self) -> dict[str, Tensor]:
        """What the evaluator plays with: the parameters, counters and observation statistics."""
        return self.store.policy_state()

    def state_dict(self) -> dict[str, Tensor]:
        """The whole global state (for checkpoints and the end of a run)."""
        return self.store.state_dict()


class RayBackend:
    """Worker actors and a parameter-server actor, supervised: a worker actor that dies, raises or
    makes no round trip for `backend.worker_timeout` seconds is recreated; a parameter server that
    dies is recreated from the trainer's copy of its state (at most STATE_COPY_S old, or the last
    checkpoint's), and the workers with it. The trainer's store is the server's initial state;
    `snapshot` reads the server's, and `stop` copies it back into the trainer's store."""

    def __init__(self, cfg: Config, store: SharedStore, env_fn: EnvFn | None = None) -> None:
        # imported now, before the run directory exists: a signal cannot cut its import short
        _ray()
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.started_ray = False
        self.ps: Any = None
        self.runs: dict[Any, int] = {}
        self.actors: dict[int, Any] = {}
        self.spawned: dict[int, float] = {}
        self.budget = RestartBudget(cfg.backend.workers, cfg.backend.max_restarts)
        self.server_restarts = 0
        self._copy: dict[str, Tensor] = store.state_dict()  # the server's state as last seen
        self._copied_at = time.monotonic()

    @property
    def restarts(self) -> int:
        return self.budget.restarts + self.server_restarts

    def start(self) -> None:
        ray = _ray()
        # ours to shut down, even if a signal interrupts init
        self.started_ray = not ray.is_initialized()
        init_ray(
            self.cfg.backend.ray_address,
            num_cpus=max(os.cpu_count() or 1, self.cfg.backend.workers),
        )
        self.actor_cls = ray.remote(num_cpus=1)(WorkerActor)
        self.obs_dim = None if self.store.obs_stats is None else self.store.obs_stats.dim
        self._start_server()

    def _start_server(self) -> None:
        self.ps = _ray().remote(num_cpus=0)(ParameterServer).remote(self.store)
        for i in range(self.cfg.backend.workers):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        actor = self.actor_cls.remote(
            self.cfg,
            i,
            self.ps,
            self.store.size,
            self.obs_dim,
            self.env_fn,
            self.budget.failures[i],
        )
        self.actors[i], self.spawned[i] = actor, time.monotonic()
        self.runs[actor.run.remote()] = i

    def poll(self, timeout: float) -> list[WorkerReport]:
        ray = _ray()
        # At most one call to the server every POLL_S: on a busy machine the trainer's calls take
        # CPU from the workers (the reports arrive every backend.report_interval anyway).
        ready, _ = ray.wait(
            list(self.runs), num_returns=len(self.runs), timeout=max(timeout, POLL_S)
        )
        try:
            reports, silent = ray.get(self.ps.take_reports.remote())
            if time.monotonic() - self._copied_at >= STATE_COPY_S:
                self.snapshot()
        except Exception as e:  # RayActorError: the parameter server died
            _raise_signal(e)
            self._restart_server(_ray_error_line(e))
            return []
        for ref in ready:
            index = self.runs.pop(ref)
            try:
                ray.get(ref)
            except Exception as e:  # RayActorError (actor died), RayTaskError (it raised)
                _raise_signal(e)
                self._restart(index, _ray_error_line(e))
        self._restart_silent(silent)
        return reports

    def _restart_silent(self, silent: dict[int, float]) -> None:
        """Recreate a worker actor that has made no round trip for `backend.worker_timeout` seconds
        (alive but stuck, e.g. in its env: only its silence tells)."""
        timeout = self.cfg.backend.worker_timeout
        if timeout is None:
            return
        now = time.monotonic()
        for ref, i in list(self.runs.items()):
            since_spawn, heard = now - self.spawned[i], silent.get(i)
            if heard is not None and heard < since_spawn:  # this incarnation has been heard from
                stuck = heard > timeout
            else:  # not yet: a Ray worker process starts (imports torch) before its actor runs
                stuck = since_spawn > timeout + START_GRACE_S
            if stuck:
                del self.runs[ref]
                self._restart(i, f"no progress for {timeout:g} s (stuck, e.g. in its env); killed")

    def _restart(self, i: int, message: str) -> None:
        """Recreate a failed worker actor: its constructor pulls the current weights (a restarted
        actor keeps no state). Past the restart budget the run stops with a WorkerFailure."""
        ray = _ray()
        ray.kill(self.actors.pop(i))
        self.budget.failed(i, message)
        time.sleep(self.cfg.backend.restart_delay)
        self._spawn(i)

    def _restart_server(self, message: str) -> None:
        """The parameter server died: a new one from the copy of its state, and new workers for
        it."""
        self.server_restarts += 1
        if self.server_restarts > self.cfg.backend.max_restarts:
            raise RunFailure(
                f"the parameter server failed {self.server_restarts} times ({message}); restart "
                f"budget of {self.cfg.backend.max_restarts} spent"
            )
        lost = time.monotonic() - self._copied_at
        log.warning(
            f"a3c: warning: the parameter server failed ({message}); restarting it from its state "
            f"of {lost:.0f} s ago, with its workers"
        )
        ray = _ray()
        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()
        self.runs.clear()
        self.store.load_state_dict(self._copy)
        time.sleep(self.cfg.backend.restart_delay)
        self._start_server()

    def snapshot(self) -> dict[str, Tensor]:
        """The server's state (and the trainer's copy of it); if the server is gone, the copy."""
        if self.ps is None:  # not started, or stopped: the trainer's store holds the state
            return self.store.state_dict()
        try:
            self._copy = _ray().get(self.ps.state_dict.remote())
            self._copied_at = time.monotonic()
        except Exception as e:  # RayActorError: the server died; the next poll restarts it
            _raise_signal(e)
            log.warning(
                f"a3c: warning: the parameter server did not answer ({_ray_error_line(e)}); using "
                f"its state of {time.monotonic() - self._copied_at:.0f} s ago"
            )
        return self._copy

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[WorkerReport]:
        ray = _ray()
        if self.ps is None:  # never started (or interrupted while Ray started)
            if self.started_ray and ray.is_initialized():
                ray.shutdown()
            return []
        reports: list[WorkerReport] = []
        try:
            ray.get(self.ps.request_stop.remote())
            _, stuck = ray.wait(list(self.runs), num_returns=len(self.runs), timeout=timeout)
            for ref in stuck:
                log.warning(
                    f"a3c: warning: worker {self.runs[ref]} did not stop within {timeout:g} s "
                    "(stuck, e.g. in its env); killed it"
                )
            reports = ray.get(self.ps.take_reports.remote())[0]
        except Exception as e:  # stopping must not fail
            log.warning(
                f"a3c: warning: the ray backend did not stop cleanly ({_ray_error_line(e)})"
            )
        finally:
            # the server's final state, or the last copy of it
            self.store.load_state_dict(self.snapshot())
            for actor in self.actors.values():
                ray.kill(actor)
            ray.kill(self.ps)
            self.ps = None
            self.runs.clear()
            if self.started_ray:
                ray.shutdown()
        return reports

    def evaluator(self, spec: EvalSpec) -> Evaluator:
        return RayEvaluator(self.cfg, lambda: self.ps, spec)

    def all_done(self) -> bool:
        return not self.runs

    def alive(self) -> int:
        return len(self.runs)
