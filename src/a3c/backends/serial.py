"""The serial backend: workers interleaved round-robin in one process, bit-for-bit reproducible.

The tutorial's emulation of asynchrony: each poll lets every worker make one update in turn against
the same global parameters, so worker k's pull sees the pushes of workers 0..k-1 (an update lag of
workers - 1, as in a real asynchronous run), and a seed fixes everything.

The envs run in the trainer's own thread, so a hung env would hang the trainer: a watchdog thread
interrupts an update that has run for `backend.worker_timeout` seconds (SIGUSR1 to the main thread,
whose handler raises `UpdateTimeout` there), and the worker is restarted like one that raised.
"""

from __future__ import annotations

from torch import Tensor

from a3c.backends import RestartBudget, WorkerFailure
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.metrics import WorkerReport
from a3c.store import SharedStore
from a3c.watchdog import UpdateTimeout, Watchdog
from a3c.worker import Worker


class SerialBackend:
    def __init__(self, cfg: Config, store: SharedStore, env_fn: EnvFn | None = None) -> None:
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.workers: list[Worker] = []
        self.budget = RestartBudget(cfg.backend.workers, cfg.backend.max_restarts)
        self.watchdog = Watchdog(cfg.backend.worker_timeout)

    def start(self) -> None:
        self.watchdog.__enter__()
        self.workers = [self._build(i, 0) for i in range(self.cfg.backend.workers)]

    def _build(self, i: int, incarnation: int) -> Worker:
        with self.watchdog.bound():  # building a worker resets its envs: env code, bounded too
            return Worker(self.cfg, i, self.store, self.env_fn, incarnation)

    def poll(self, timeout: float) -> list[WorkerReport]:
        reports = []
        for w in self.workers:
            steps, _, stop = self.store.progress()
            if stop or steps >= self.cfg.run.total_steps:
                break
            try:
                with self.watchdog.bound():
                    w.update()
            except Exception as e:  # the same supervision as the processes backend
                self._restart(w, str(e) if isinstance(e, UpdateTimeout) else f"{type(e).__name__}: {e}", e)
                continue
            reports.append(w.take_report())
        return reports

    def _restart(self, w: Worker, message: str, cause: Exception) -> None:
        i = w.index
        try:
            incarnation = self.budget.failed(i, message)
        except WorkerFailure as e:
            raise e from cause
        try:
            w.close()
        except Exception:  # a broken env may fail to close too
            pass
        self.workers[i] = self._build(i, incarnation)

    def stop(self) -> list[WorkerReport]:
        self.watchdog.__exit__()
        self.store.request_stop()
        reports = [w.take_report() for w in self.workers]
        for w in self.workers:
            w.close()
        return reports

    def all_done(self) -> bool:
        return self.store.progress().steps >= self.cfg.run.total_steps

    def alive(self) -> int:
        return 0 if self.store.progress().stop else len(self.workers)

    def snapshot(self) -> dict[str, Tensor]:
        return self.store.state_dict()

    @property
    def restarts(self) -> int:
        return self.budget.restarts
