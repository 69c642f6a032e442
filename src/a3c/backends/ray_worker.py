"""What runs inside a Ray worker actor: the A3C `Worker` against `RemoteStore`, its
`ParameterStore` (a3c/store.py), a proxy to the parameter server (a3c/backends/ray_backend.py).

Gradients travel in round trips at most every `backend.ray_sync_interval` seconds (each still
applied as its own update, in order); the worker does not wait for a reply but takes it as soon as
it has arrived, and re-syncs its local weights then. Observation statistics travel as increments
(what the worker added to its row since the last round trip), so the server merges them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from a3c.backends.ray_runtime import _ray
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.metrics import WorkerReport
from a3c.normalize import ObservationStats
from a3c.optim import Schedules
from a3c.store import Progress, Pulled, Pushed
from a3c.worker import Worker

EARLY_CHECK_S = 0.002


class RemoteStore:
    """A Ray worker's `ParameterStore`: a proxy to the parameter server.

    `push` queues the update and starts a round trip once `interval` seconds have passed since the
    last one; `pull` re-syncs the local weights when a reply has brought a newer version (between
    round trips the local copy is the last one pulled, unchanged: gradients are never applied
    locally). The entropy coefficient and the learning rate reported before a reply comes are the
    schedules' at the last known global step."""

    def __init__(
        self,
        ps: Any,
        size: int,
        index: int,
        schedules: Schedules,
        obs_dim: int | None,
        workers: int,
        interval: float = 0.0,
    ) -> None:
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
        # applied updates whose (lag, lr) the worker has not had yet
        self._pushed: list[Pushed] = []
        self._sent = self._checked = time.monotonic()
        # Pipelining: a round trip's reply is taken when it has arrived (or at the next round trip),
        # so it overlaps the next rollouts; the server counts the staleness in the update lag.
        self._pending: Any = None
        self._take(_ray().get(ps.pull.remote(index)))

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
        return (
            self._pushed.pop(0)
            if self._pushed
            else Pushed(0, self.schedules.learning_rates(self.progress().steps)[0])
        )

    def send(self) -> None:
        """Start a round trip with everything queued (after collecting the previous one's reply)."""
        self.flush()
        if not self._grads and not self._skipped and not self._reports:
            return
        grads = (
            torch.stack(self._grads).numpy()
            if self._grads
            else np.zeros((0, self._size), dtype=np.float32)
        )
        pulled = [p for p, _ in self._meta]
        steps = [n for _, n in self._meta]
        delta = None
        if self._obs_stats is not None and self._sent_row is not None:
            row = self._obs_stats.table[self.index]
            delta = (row - self._sent_row).numpy().copy()
            self._sent_row = row.clone()
        self._pending = self.ps.push_batch.remote(
            self.index, grads, pulled, steps, self._skipped, delta, self._reports
        )
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

    def __init__(
        self,
        cfg: Config,
        index: int,
        ps: Any,
        size: int,
        obs_dim: int | None,
        env_fn: EnvFn | None,
        incarnation: int = 0,
    ) -> None:
        torch.set_num_threads(1)
        schedules = Schedules(cfg.optim, cfg.algo, cfg.run.total_steps)
        self.store = RemoteStore(
            ps, size, index, schedules, obs_dim, cfg.backend.workers, cfg.backend.ray_sync_interval
        )
        self.worker = Worker(cfg, index, self.store, env_fn, incarnation)
        self.cfg, self.ps = cfg, ps

    def run(self) -> int:
        """Update until the parameter server says stop or the step budget is spent."""
        last = time.monotonic()
        while (
            not (progress := self.store.progress()).stop
            and progress.steps < self.cfg.run.total_steps
        ):
            self.worker.update()
            now = time.monotonic()
            if now - last >= self.cfg.backend.report_interval:
                self.store.report(self.worker.take_report())
                last = now
        self.store.report(self.worker.take_report())
        self.store.finish()
        self.worker.close()
        return self.worker.index
