"""Where workers run and where the global parameters live, behind one small interface.

Every backend runs the same `Worker.update` (pull -> rollout -> loss -> clip -> push) and hands the
trainer `WorkerReport`s:

    backend.start()                  # build workers
    backend.poll(timeout) -> reports # what workers did since the last poll
    backend.stop() -> reports        # stop workers, return their last reports
    backend.alive() -> int           # workers still running
    backend.all_done() -> bool       # every worker finished (a dead worker's unreported steps
                                     # may keep the reported count short of the budget)
"""

from __future__ import annotations

import sys
from typing import Protocol

from a3c.worker import WorkerReport


class WorkerFailure(RuntimeError):
    """A worker raised or died; carries the worker index and the last line of its error."""

    def __init__(self, worker: int, message: str, traceback: str = "") -> None:
        super().__init__(f"worker {worker} failed: {message}")
        self.worker, self.message, self.traceback = worker, message, traceback


class RestartBudget:
    """The supervision rule every backend shares: a failed worker is restarted as a new incarnation
    (new random streams) until it has failed more than `max_restarts` times; then WorkerFailure."""

    def __init__(self, workers: int, max_restarts: int) -> None:
        self.failures = [0] * workers  # also each worker's incarnation number
        self.max_restarts = max_restarts
        self.restarts = 0

    def failed(self, worker: int, message: str, traceback: str = "") -> int:
        """Count a failure; returns the incarnation to restart, or raises once the budget is spent."""
        self.failures[worker] += 1
        n, budget = self.failures[worker], self.max_restarts
        if n > budget:
            raise WorkerFailure(worker, f"{message} (failed {n} times; restart budget of {budget} spent)", traceback)
        self.restarts += 1
        print(f"a3c: warning: worker {worker} failed ({message}); restarting it ({n} of {budget})", file=sys.stderr, flush=True)
        return n


class Backend(Protocol):
    budget: RestartBudget

    def start(self) -> None: ...
    def poll(self, timeout: float) -> list[WorkerReport]: ...
    def stop(self) -> list[WorkerReport]: ...
    def alive(self) -> int: ...
    def all_done(self) -> bool: ...


def make_backend(name: str, cfg, store, env_fn) -> Backend:  # noqa: ANN001
    if name == "serial":
        from a3c.backends.serial import SerialBackend

        return SerialBackend(cfg, store, env_fn)
    if name == "ray":
        from a3c.backends.ray_backend import RayBackend

        return RayBackend(cfg, store, env_fn)
    from a3c.backends.processes import ProcessesBackend

    return ProcessesBackend(cfg, store, env_fn)
