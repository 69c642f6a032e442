"""The interface every backend implements, and the supervision rule they share."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from a3c.errors import RunFailure

if TYPE_CHECKING:  # imports no torch: `a3c train` starts the fork server before torch is imported
    from torch import Tensor

    from a3c.evaluation import EvalSpec, Evaluator
    from a3c.metrics import WorkerReport

log = logging.getLogger("a3c")


class WorkerFailure(RunFailure):
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
        """Count a failure; returns the incarnation to restart, or raises once the budget is
        spent."""
        self.failures[worker] += 1
        n, budget = self.failures[worker], self.max_restarts
        if n > budget:
            raise WorkerFailure(
                worker, f"{message} (failed {n} times; restart budget of {budget} spent)", traceback
            )
        self.restarts += 1
        log.warning(
            "a3c: warning: worker %d failed (%s); restarting it (%d of %d)",
            worker,
            message,
            n,
            budget,
        )
        return n


class Backend(Protocol):
    """Where workers run. Every backend supervises its workers (a failed one is restarted within
    a `RestartBudget`; past it `poll` raises WorkerFailure)."""

    def start(self) -> None:
        """Start the workers."""
        ...

    def poll(self, timeout: float) -> list[WorkerReport]:
        """What the workers did since the last poll (waiting up to about `timeout` seconds)."""
        ...

    def stop(self) -> list[WorkerReport]:
        """Stop the workers and return their last reports; the store then holds the final state."""
        ...

    def alive(self) -> int:
        """Workers still running."""
        ...

    def all_done(self) -> bool:
        """Every worker finished its share of the budget (a dead worker's unreported steps may keep
        the reported count short of it)."""
        ...

    def snapshot(self) -> dict[str, Tensor]:
        """The global state as a checkpoint holds it (`SharedStore.state_dict`), current while
        running."""
        ...

    @property
    def restarts(self) -> int:
        """Workers restarted so far."""
        ...

    def lost_steps(self) -> int:
        """Env steps reported since the last call that a restore lost (a Ray node group's since its
        last sync), once: the trainer takes them off its count; 0 when nothing was lost."""
        ...

    def evaluator(self, spec: EvalSpec) -> Evaluator:
        """The evaluator this backend hosts beside its workers (called after `start`), which it
        places and supervises: a crashed or hung one is restarted, and nothing it does stops the
        run."""
        ...
