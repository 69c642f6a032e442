"""The Ray backend: the same workers as Ray actors, the global parameters in a parameter server.

- `ParameterServer` (an actor) owns a `SharedStore`: the flat parameters, the shared optimizer's
  statistics, the counters and the observation statistics. Actor calls run one at a time, so
  updates are applied in arrival order (the lock of the processes backend is implicit).
- `WorkerActor` runs `Worker.update` in a loop against a `RemoteStore`, the `ParameterStore`
  (a3c/store.py) of a Ray worker. Gradients are sent in round trips at most every
  `backend.ray_sync_interval` seconds: the clipped gradients computed since the last one travel as one
  float32 array [k, size] and the server applies them one by one, in order, each as its own
  optimizer step (asynchronous updates, as in A3C; not A2C's synchronous average). The reply carries
  each gradient's update lag and a reference to the newest weights; the worker fetches that object
  and its local copy re-syncs (the tutorial's periodic sync). The worker does not wait for the
  reply: it goes on with its next rollouts and takes the reply as soon as it has arrived (checked
  without blocking before each update). On a small model (CartPole: about 1.3 ms per update) one
  call per update would spend more CPU in Ray's per-call overhead than in learning; on a large
  one (Atari: tens of ms per update) a round trip per update is what you get. Worker reports for
  the trainer travel with the round trips.
- Observation statistics travel as increments: each round trip carries what the worker added to its
  row since the last one, and the server adds it to its own table; a reply brings the whole table
  back. A started, restarted or resumed worker therefore never overwrites the server's statistics.
- A weights version goes through the object store once (`ray.put` when first asked for), not once
  per worker.
- Without an address the library starts a local Ray bound to 127.0.0.1 with no dashboard; with one
  (`--ray-address auto|HOST:PORT` or RAY_ADDRESS) it connects to that cluster.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from a3c.backends import RestartBudget
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.errors import ConfigError, first_line
from a3c.metrics import WorkerReport
from a3c.normalize import ObservationStats
from a3c.optim import Schedules
from a3c.store import Progress, Pulled, Pushed, SharedStore
from a3c.worker import Worker

POLL_S = 0.2
EARLY_CHECK_S = 0.002


def _ray() -> Any:
    if "ray" not in sys.modules:  # Ray reads this at import: a local Ray then binds to loopback only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'a3c[ray]'") from None
    return ray


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to `address`, or start a local Ray on loopback. Returns True if this call started it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=True)
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(
            address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
            num_cpus=num_cpus, logging_level="ERROR", log_to_driver=True,
        )  # fmt: skip
    return True


class ParameterServer:
    """Holds the global state; applies pushes; hands out weights (one object per version)."""

    def __init__(self, store: SharedStore) -> None:
        torch.set_num_threads(1)
        self.store = store
        self.reports: list[WorkerReport] = []
        self._ref: Any = None
        self._ref_updates = -1

    def _weights(self) -> Any:
        updates = self.store.progress().updates
        if self._ref is None or self._ref_updates != updates:
            self._ref = _ray().put(self.store.flat.numpy().copy())
            self._ref_updates = updates
        return self._ref

    def pull(self) -> dict[str, Any]:
        s = self.store
        return {
            "weights": [self._weights()],  # in a list, so Ray hands over the reference, not the array
            "progress": tuple(s.progress()),
            "obs_stats": None if s.obs_stats is None else s.obs_stats.table.numpy().copy(),
        }

    def push_batch(self, worker: int, grads: np.ndarray, pulled: list[tuple[int, float]], steps: list[int], skipped: list[int], obs_delta: np.ndarray | None, reports: Sequence[WorkerReport] = ()) -> dict[str, Any]:
        """Apply a worker's gradients [k, size] one by one, in order (k optimizer steps), and count
        its skipped (non-finite) updates' env steps; the reply's `pushed` has one (lag, lr) per
        gradient. `obs_delta` is what the worker added to its row of the observation statistics
        since its last round trip; `reports` are its reports since then (for the trainer)."""
        self.reports.extend(reports)
        stats = self.store.obs_stats
        if obs_delta is not None and stats is not None:
            stats.table[worker] += torch.from_numpy(obs_delta)
        for n in skipped:
            self.store.push(worker, n, Pulled(0, 0.0), None)
        grads_t = torch.from_numpy(np.array(grads))  # Ray's arrays are read-only
        pushed = [tuple(self.store.push(worker, n, Pulled(*p), g)) for g, p, n in zip(grads_t, pulled, steps, strict=True)]
        return {**self.pull(), "pushed": pushed}

    def take_reports(self) -> list[WorkerReport]:
        out, self.reports = self.reports, []
        return out

    def request_stop(self) -> None:
        self.store.request_stop()

    def state_dict(self) -> dict[str, Tensor]:
        """The whole global state (for checkpoints and the end of a run)."""
        return self.store.state_dict()


class RemoteStore:
    """A Ray worker's `ParameterStore`: a proxy to the parameter server.

    `push` queues the update and starts a round trip once `interval` seconds have passed since the
    last one; `pull` re-syncs the local weights when a reply has brought a newer version (between
    round trips the local copy is the last one pulled, unchanged: gradients are never applied
    locally). The entropy coefficient and the learning rate reported before a reply comes are the
    schedules' at the last known global step."""

    def __init__(self, ps: Any, size: int, index: int, schedules: Schedules, obs_dim: int | None, workers: int, interval: float = 0.0) -> None:
        self.ps, self._size, self.index, self.interval = ps, size, index, interval
        self.schedules = schedules
        # All rows as last seen at the server, plus this worker's additions not yet acknowledged.
        self._obs_stats = None if obs_dim is None else ObservationStats(workers, obs_dim)
        self._sent_row: Tensor | None = None  # this worker's row as the server has it (once sent)
        self._reply: dict[str, Any] = {}
        self._pulled = -1  # the weights version (global update count) in the local copy
        self._grads: list[Tensor] = []
        self._meta: list[tuple[tuple[int, float], int]] = []  # (pulled, steps) per queued gradient
        self._skipped: list[int] = []
        self._reports: list[WorkerReport] = []  # travel with the next round trip
        self._pushed: list[Pushed] = []  # applied updates whose (lag, lr) the worker has not had yet
        self._sent = self._checked = time.monotonic()
        # Pipelining: a round trip's reply is taken when it has arrived (or at the next round trip),
        # so it overlaps the next rollouts; the server counts the staleness in the update lag.
        self._pending: Any = None
        self._take(_ray().get(ps.pull.remote()))

    @property
    def size(self) -> int:
        return self._size

    @property
    def obs_stats(self) -> ObservationStats | None:
        return self._obs_stats

    def _take(self, reply: dict[str, Any]) -> None:
        """Take a reply. It confirms every increment sent so far (a round trip is sent only after
        the previous one's reply is taken), so this worker's row is the server's plus what was
        added since the last send."""
        self._reply = reply
        self._pushed.extend(Pushed(*p) for p in reply.get("pushed", ()))
        stats, table = self._obs_stats, reply["obs_stats"]
        if stats is None or table is None:
            return
        server = torch.from_numpy(table).clone()
        unsent = None if self._sent_row is None else stats.table[self.index] - self._sent_row
        stats.table.copy_(server)
        if unsent is not None:
            stats.table[self.index] += unsent
        self._sent_row = server[self.index].clone()

    def progress(self) -> Progress:
        return Progress(*self._reply["progress"])

    def pull(self, out: Tensor) -> Pulled:
        # The reply of the round trip in flight usually arrives a few ms after it was sent: take it
        # as soon as it is there (a non-blocking check, at most every EARLY_CHECK_S), so the local
        # copy re-syncs about one update after a round trip rather than one round trip later.
        if self._pending is not None and time.monotonic() - self._checked >= EARLY_CHECK_S:
            self._checked = time.monotonic()
            if _ray().wait([self._pending], timeout=0)[0]:
                self.flush()
        updates = self.progress().updates
        if updates != self._pulled:
            np.copyto(out.numpy(), _ray().get(self._reply["weights"][0]))
            self._pulled = updates
        return Pulled(self._pulled, self.schedules.ent_coef(self.progress().steps))

    def push(self, worker: int, steps: int, pulled: Pulled, grad: Tensor | None) -> Pushed:
        """Queue this update (sent with the next round trip); returns the (lag, lr) of an earlier
        update whose reply has arrived, or (0, the current schedule's lr) before the first reply."""
        if grad is None:
            self._skipped.append(steps)
        else:
            self._grads.append(grad.clone())
            self._meta.append(((pulled.version, pulled.ent_coef), steps))
        if time.monotonic() - self._sent >= self.interval:
            self.send()
        if grad is None:
            return Pushed(0, 0.0)
        return self._pushed.pop(0) if self._pushed else Pushed(0, self.schedules.learning_rates(self.progress().steps)[0])

    def send(self) -> None:
        """Start a round trip with everything queued (after collecting the previous one's reply)."""
        self.flush()
        if not self._grads and not self._skipped and not self._reports:
            return
        grads = torch.stack(self._grads).numpy() if self._grads else np.zeros((0, self._size), dtype=np.float32)
        pulled = [p for p, _ in self._meta]
        steps = [n for _, n in self._meta]
        delta = None
        if self._obs_stats is not None and self._sent_row is not None:
            row = self._obs_stats.table[self.index]
            delta = (row - self._sent_row).numpy().copy()
            self._sent_row = row.clone()
        self._pending = self.ps.push_batch.remote(self.index, grads, pulled, steps, self._skipped, delta, self._reports)
        self._grads, self._meta, self._skipped, self._reports = [], [], [], []
        self._sent = self._checked = time.monotonic()

    def flush(self) -> None:
        """Wait for the reply of the round trip in flight, if any."""
        if self._pending is None:
            return
        reply, self._pending = _ray().get(self._pending), None
        self._take(reply)

    def report(self, rep: WorkerReport) -> None:
        """Queue a report for the trainer; it travels with the next round trip."""
        self._reports.append(rep)

    def finish(self) -> None:
        """Send what is queued and wait for it (the end of a worker's run)."""
        self.send()
        self.flush()


class WorkerActor:
    """One A3C worker in a Ray actor. A restarted actor re-runs this constructor: it pulls the
    current global parameters (and observation statistics) before its first update."""

    def __init__(self, cfg: Config, index: int, ps: Any, size: int, obs_dim: int | None, env_fn: EnvFn | None, incarnation: int = 0) -> None:
        torch.set_num_threads(1)
        schedules = Schedules(cfg.optim, cfg.algo, cfg.run.total_steps)
        self.store = RemoteStore(ps, size, index, schedules, obs_dim, cfg.backend.workers, cfg.backend.ray_sync_interval)
        self.worker = Worker(cfg, index, self.store, env_fn, incarnation)
        self.cfg, self.ps = cfg, ps

    def run(self) -> int:
        """Update until the parameter server says stop or the step budget is spent."""
        last = time.monotonic()
        while not (progress := self.store.progress()).stop and progress.steps < self.cfg.run.total_steps:
            self.worker.update()
            now = time.monotonic()
            if now - last >= self.cfg.backend.report_interval:
                self.store.report(self.worker.take_report())
                last = now
        self.store.report(self.worker.take_report())
        self.store.finish()
        self.worker.close()
        return self.worker.index


class RayBackend:
    """Worker actors and a parameter-server actor. The trainer's store is the server's initial
    state; `snapshot` reads the server's, and `stop` copies it back into the trainer's store."""

    def __init__(self, cfg: Config, store: SharedStore, env_fn: EnvFn | None = None) -> None:
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.started_ray = False
        self.ps: Any = None
        self.runs: dict[Any, int] = {}
        self.actors: dict[int, Any] = {}
        self.budget = RestartBudget(cfg.backend.workers, cfg.backend.max_restarts)

    @property
    def restarts(self) -> int:
        return self.budget.restarts

    def start(self) -> None:
        ray = _ray()
        self.started_ray = init_ray(self.cfg.backend.ray_address, num_cpus=max(os.cpu_count() or 1, self.cfg.backend.workers))
        self.ps = ray.remote(num_cpus=0)(ParameterServer).remote(self.store)
        self.actor_cls = ray.remote(num_cpus=1)(WorkerActor)
        self.obs_dim = None if self.store.obs_stats is None else self.store.obs_stats.dim
        for i in range(self.cfg.backend.workers):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        actor = self.actor_cls.remote(self.cfg, i, self.ps, self.store.size, self.obs_dim, self.env_fn, self.budget.failures[i])
        self.actors[i] = actor
        self.runs[actor.run.remote()] = i

    def poll(self, timeout: float) -> list[WorkerReport]:
        ray = _ray()
        # At most one call to the server every POLL_S: on a busy machine the trainer's calls take
        # CPU from the workers (the reports arrive every backend.report_interval anyway).
        ready, _ = ray.wait(list(self.runs), num_returns=len(self.runs), timeout=max(timeout, POLL_S))
        reports = ray.get(self.ps.take_reports.remote())
        for ref in ready:
            index = self.runs.pop(ref)
            try:
                ray.get(ref)
            except Exception as e:  # RayActorError (actor died), RayTaskError (it raised)
                self._restart(index, _ray_error_line(e))
        return reports

    def _restart(self, i: int, message: str) -> None:
        """Recreate a failed worker actor: its constructor pulls the current weights (a restarted
        actor keeps no state). Past the restart budget the run stops with a WorkerFailure."""
        ray = _ray()
        ray.kill(self.actors.pop(i))
        self.budget.failed(i, message)
        time.sleep(self.cfg.backend.restart_delay)
        self._spawn(i)

    def snapshot(self) -> dict[str, Tensor]:
        if self.ps is None:  # not started, or stopped: the trainer's store holds the state
            return self.store.state_dict()
        return _ray().get(self.ps.state_dict.remote())

    def stop(self, timeout: float = 30.0) -> list[WorkerReport]:
        if self.ps is None:
            return []
        ray = _ray()
        reports: list[WorkerReport] = []
        try:
            ray.get(self.ps.request_stop.remote())
            ray.wait(list(self.runs), num_returns=len(self.runs), timeout=timeout)
            reports = ray.get(self.ps.take_reports.remote())
            self.store.load_state_dict(self.snapshot())
        except Exception as e:  # stopping must not fail; the state is as last synced
            print(f"a3c: warning: the ray backend did not stop cleanly ({_ray_error_line(e)}); the parameters are as last synced", file=sys.stderr, flush=True)
        finally:
            for actor in self.actors.values():
                ray.kill(actor)
            ray.kill(self.ps)
            self.ps = None
            self.runs.clear()
            if self.started_ray:
                ray.shutdown()
        return reports

    def all_done(self) -> bool:
        return not self.runs

    def alive(self) -> int:
        return len(self.runs)


def _ray_error_line(e: Exception) -> str:
    """The last non-empty line of a Ray error (its own first lines are Ray's framing)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else first_line(e)
