"""The serial backend: workers interleaved round-robin in one process, bit-for-bit reproducible.

The tutorial's emulation of asynchrony: each poll lets every worker make one update in turn against
the same global parameters, so worker k's pull sees the pushes of workers 0..k-1 (an update lag of
workers - 1, as in a real asynchronous run), and a seed fixes everything.
"""

from __future__ import annotations

from a3c.backends import WorkerFailure
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.optim import GlobalParams
from a3c.worker import Worker, WorkerReport


class SerialBackend:
    def __init__(self, cfg: Config, store: GlobalParams, env_fn: EnvFn | None = None) -> None:
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.workers: list[Worker] = []

    def start(self) -> None:
        self.workers = [Worker(self.cfg, i, self.store, self.env_fn) for i in range(self.cfg.run.workers)]

    def poll(self, timeout: float) -> list[WorkerReport]:
        reports = []
        for w in self.workers:
            if self.store.should_stop() or self.store.global_steps() >= self.cfg.run.total_steps:
                break
            try:
                w.update()
            except Exception as e:  # the same contract as the processes backend
                raise WorkerFailure(w.index, f"{type(e).__name__}: {e}") from e
            reports.append(w.take_report())
        return reports

    def stop(self) -> list[WorkerReport]:
        self.store.request_stop()
        reports = [w.take_report() for w in self.workers]
        for w in self.workers:
            w.close()
        return reports

    def alive(self) -> int:
        return 0 if self.store.should_stop() else len(self.workers)
