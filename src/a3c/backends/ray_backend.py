"""The Ray backend: the same workers as Ray actors, the global parameters in a parameter server.

- `ParameterServer` (an actor) owns a `GlobalParams`: the flat parameters, the shared optimizer's
  statistics, the counters and the observation statistics. Actor calls run one at a time, so
  updates are applied in arrival order (the lock of the processes backend is implicit).
- `WorkerActor` runs `Worker.update` in a loop against a `RemoteStore`, a proxy with the interface
  of `GlobalParams` that the worker already uses. Gradients are sent in round trips at most every
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
- A weights version goes through the object store once (`ray.put` when first asked for), not once
  per worker.
- Without an address the library starts a local Ray bound to 127.0.0.1 with no dashboard; with one
  (`--ray-address auto|HOST:PORT` or RAY_ADDRESS) it connects to that cluster.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import torch

from a3c import normalize
from a3c.backends import RestartBudget
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.optim import GlobalParams
from a3c.worker import Worker, WorkerReport

POLL_S = 0.2
EARLY_CHECK_S = 0.002


def _ray() -> Any:
    if "ray" not in sys.modules:  # Ray reads this at import: a local Ray then binds to loopback only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        from a3c.errors import ConfigError

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

    def __init__(self, store: GlobalParams) -> None:
        torch.set_num_threads(1)
        self.store = store
        self.reports: list[WorkerReport] = []
        self._ref: Any = None
        self._ref_updates = -1

    def _weights(self) -> Any:
        ray = _ray()
        updates = self.store.global_updates()
        if self._ref is None or self._ref_updates != updates:
            self._ref = ray.put(self.store.flat.numpy().copy())
            self._ref_updates = updates
        return self._ref

    def _reply(self, lag: int) -> dict[str, Any]:
        s = self.store
        return {
            "lag": lag,
            "weights": [self._weights()],  # in a list, so Ray hands over the reference, not the array
            "updates": s.global_updates(),
            "steps": s.global_steps(),
            "stop": s.should_stop(),
            "obs_stats": None if s.obs_stats is None else s.obs_stats.numpy().copy(),
        }

    def pull(self) -> dict[str, Any]:
        return self._reply(0)

    def push(self, grad: np.ndarray, lr: float, critic_lr: float, worker: int, steps: int, pulled_at: int, obs_row: np.ndarray | None) -> dict[str, Any]:
        """Apply one gradient (a round trip of one update)."""
        return self.push_batch(np.asarray(grad)[None], [lr], [critic_lr], worker, [steps], [pulled_at], [], obs_row)

    def push_batch(self, grads: np.ndarray, lrs: list[float], critic_lrs: list[float], worker: int, steps: list[int], pulled_at: list[int], skipped: list[int], obs_row: np.ndarray | None, reports: list[WorkerReport] = ()) -> dict[str, Any]:
        """Apply a worker's gradients [k, size] one by one, in order (k optimizer steps), and count
        its skipped (non-finite) updates' env steps; the reply's `lags` has one lag per gradient.
        `reports` are the worker's reports since its last round trip (for the trainer)."""
        self.reports.extend(reports)
        self._obs_row(worker, obs_row)
        for n in skipped:
            self.store.count_skipped(worker, n)
        grads_t = torch.from_numpy(np.array(grads))  # Ray's arrays are read-only
        lags = [self.store.push(g, lr, clr, worker, n, at) for g, lr, clr, n, at in zip(grads_t, lrs, critic_lrs, steps, pulled_at, strict=True)]
        reply = self._reply(0)
        reply["lags"] = lags
        return reply

    def _obs_row(self, worker: int, row: np.ndarray | None) -> None:
        if row is not None and self.store.obs_stats is not None:
            self.store.obs_stats[worker] = torch.from_numpy(row)

    def take_reports(self) -> list[WorkerReport]:
        out, self.reports = self.reports, []
        return out

    def request_stop(self) -> None:
        self.store.request_stop()

    def state(self) -> GlobalParams:
        """The whole global state (for checkpoints and the end of a run)."""
        return self.store


class RemoteStore:
    """What a Worker sees of the global state when it runs as a Ray actor (the GlobalParams API).

    `push` buffers the gradient and starts a round trip once `interval` seconds have passed since
    the last one; `pull` re-syncs the local weights when a reply has brought a newer version (between
    round trips the local copy is the last one pulled, unchanged: gradients are never applied
    locally)."""

    def __init__(self, ps: Any, size: int, index: int, obs_stats: torch.Tensor | None, interval: float = 0.0) -> None:
        self.ps, self.size, self.index, self.interval = ps, size, index, interval
        self.obs_stats = obs_stats  # all rows; this worker's row is its own, the others as last seen
        self._reply: dict[str, Any] = {}
        self._pulled = -1  # the weights version (global update count) in the local copy
        self._grads: list[torch.Tensor] = []
        self._meta: list[tuple[float, float, int, int]] = []  # (lr, critic_lr, steps, pulled_at)
        self._skipped: list[int] = []
        self._reports: list[WorkerReport] = []  # travel with the next round trip
        self._lags: list[int] = []  # lags of applied gradients, not yet handed to the worker
        self._sent = self._checked = time.monotonic()
        # Pipelining: a round trip's reply is taken when it has arrived (or at the next round trip),
        # so it overlaps the next rollouts; the server counts the staleness in the update lag.
        self._pending: Any = None
        self._take(_ray().get(ps.pull.remote()))

    def _take(self, reply: dict[str, Any]) -> None:
        self._reply = reply
        self._lags.extend(reply.get("lags", ()))
        if reply["obs_stats"] is not None and self.obs_stats is not None:
            own = self.obs_stats[self.index].clone()
            self.obs_stats.copy_(torch.from_numpy(reply["obs_stats"]))
            self.obs_stats[self.index] = own

    def _own_row(self) -> np.ndarray | None:
        return None if self.obs_stats is None else self.obs_stats[self.index].numpy().copy()

    def pull(self, out: torch.Tensor) -> int:
        # The reply of the round trip in flight usually arrives a few ms after it was sent: take it
        # as soon as it is there (a non-blocking check, at most every EARLY_CHECK_S), so the local
        # copy re-syncs about one update after a round trip rather than one round trip later.
        if self._pending is not None and time.monotonic() - self._checked >= EARLY_CHECK_S:
            self._checked = time.monotonic()
            if _ray().wait([self._pending], timeout=0)[0]:
                self.flush()
        if self._reply["updates"] != self._pulled:
            np.copyto(out.numpy(), _ray().get(self._reply["weights"][0]))
            self._pulled = self._reply["updates"]
        return self._pulled

    def push(self, grad: torch.Tensor, lr: float, critic_lr: float, worker: int, steps: int, pulled_at: int) -> int:
        """Queue this gradient (sent with the next round trip); returns the update lag of an earlier
        gradient whose reply has arrived (0 before the first reply)."""
        self._grads.append(grad.clone())
        self._meta.append((lr, critic_lr, steps, pulled_at))
        self._maybe_send()
        return self._lags.pop(0) if self._lags else 0

    def count_skipped(self, worker: int, steps: int) -> None:
        """A non-finite update: its env steps are counted at the server with the next round trip."""
        self._skipped.append(steps)
        self._maybe_send()

    def _maybe_send(self) -> None:
        if time.monotonic() - self._sent >= self.interval:
            self.send()

    def send(self) -> None:
        """Start a round trip with everything queued (after collecting the previous one's reply)."""
        self.flush()
        if not self._grads and not self._skipped and not self._reports:
            return
        grads = torch.stack(self._grads).numpy() if self._grads else np.zeros((0, self.size), dtype=np.float32)
        lrs, critic_lrs, steps, pulled_at = (list(x) for x in zip(*self._meta, strict=True)) if self._meta else ([], [], [], [])
        self._pending = self.ps.push_batch.remote(grads, lrs, critic_lrs, self.index, steps, pulled_at, self._skipped, self._own_row(), self._reports)
        self._grads, self._meta, self._skipped, self._reports = [], [], [], []
        self._sent = self._checked = time.monotonic()

    def flush(self) -> int:
        """Wait for the reply of the round trip in flight, if any; returns the sum of its lags."""
        if self._pending is None:
            return 0
        reply, self._pending = _ray().get(self._pending), None
        self._take(reply)
        return sum(reply.get("lags", ()))

    def report(self, rep: WorkerReport) -> None:
        """Queue a report for the trainer; it travels with the next round trip."""
        self._reports.append(rep)

    def finish(self) -> None:
        """Send what is queued and wait for it (the end of a worker's run)."""
        self.send()
        self.flush()

    def global_steps(self) -> int:
        return self._reply["steps"]

    def global_updates(self) -> int:
        return self._reply["updates"]

    def should_stop(self) -> bool:
        return self._reply["stop"]


class WorkerActor:
    """One A3C worker in a Ray actor. A restarted actor re-runs this constructor: it pulls the
    current global parameters before its first update, as every update does."""

    def __init__(self, cfg: Config, index: int, ps: Any, size: int, obs_dim: int | None, env_fn: EnvFn | None, incarnation: int = 0) -> None:
        torch.set_num_threads(1)
        obs_stats = None if obs_dim is None else normalize.new_stats(cfg.backend.workers, obs_dim)
        self.store = RemoteStore(ps, size, index, obs_stats, cfg.backend.ray_sync_interval)
        self.worker = Worker(cfg, index, self.store, env_fn, incarnation)
        self.cfg, self.ps = cfg, ps

    def run(self) -> int:
        """Update until the parameter server says stop or the step budget is spent."""
        last = time.monotonic()
        while not self.store.should_stop() and self.store.global_steps() < self.cfg.run.total_steps:
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
    def __init__(self, cfg: Config, store: GlobalParams, env_fn: EnvFn | None = None) -> None:
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.started_ray = False
        self.runs: dict[Any, int] = {}
        self.actors: dict[int, Any] = {}
        self.budget = RestartBudget(cfg.backend.workers, cfg.backend.max_restarts)

    def start(self) -> None:
        ray = _ray()
        self.started_ray = init_ray(self.cfg.backend.ray_address, num_cpus=max(os.cpu_count() or 1, self.cfg.backend.workers))
        self.ps = ray.remote(num_cpus=0)(ParameterServer).remote(self.store)
        self.actor_cls = ray.remote(num_cpus=1)(WorkerActor)
        self.obs_dim = None if self.store.obs_stats is None else (self.store.obs_stats.shape[1] - 1) // 2
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

    def sync(self) -> None:
        """Copy the parameter server's state into the trainer's store (checkpoints, the end)."""
        remote = _ray().get(self.ps.state.remote())
        for mine, theirs in [(self.store.flat, remote.flat), (self.store.worker_steps, remote.worker_steps),
                             (self.store.worker_updates, remote.worker_updates), (self.store.worker_nonfinite, remote.worker_nonfinite)]:  # fmt: skip
            mine.copy_(theirs)
        for k, v in remote.state.items():
            self.store.state[k].copy_(v)
        if self.store.obs_stats is not None:
            self.store.obs_stats.copy_(remote.obs_stats)

    def stop(self, timeout: float = 30.0) -> list[WorkerReport]:
        ray = _ray()
        reports: list[WorkerReport] = []
        try:
            ray.get(self.ps.request_stop.remote())
            ray.wait(list(self.runs), num_returns=len(self.runs), timeout=timeout)
            reports = ray.get(self.ps.take_reports.remote())
            self.sync()
        except Exception as e:  # noqa: BLE001 - stopping must not fail; the state is as last synced
            print(f"a3c: warning: the ray backend did not stop cleanly ({_ray_error_line(e)}); the parameters are as last synced", file=sys.stderr, flush=True)
        finally:
            for actor in self.actors.values():
                ray.kill(actor)
            ray.kill(self.ps)
            self.runs.clear()
            if self.started_ray:
                ray.shutdown()
        return reports

    def all_done(self) -> bool:
        return not self.runs

    def alive(self) -> int:
        return len(self.runs)


def _ray_error_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    lines = [ln.strip() for ln in text if ln.strip()]
    return lines[-1] if lines else type(e).__name__
