"""Where workers run and where the global parameters live, behind one small interface.

Every backend runs the same `Worker.update` (pull -> rollout -> loss -> clip -> push) against a
`ParameterStore` and hands the training session `WorkerReport`s through the `Backend` interface.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol

from torch import Tensor

from a3c.errors import RunFailure
from a3c.metrics import WorkerReport

if TYPE_CHECKING:
    from a3c.config import Config
    from a3c.envs import EnvFn
    from a3c.store import SharedStore


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
        """Count a failure; returns the incarnation to restart, or raises once the budget is spent."""
        self.failures[worker] += 1
        n, budget = self.failures[worker], self.max_restarts
        if n > budget:
            raise WorkerFailure(worker, f"{message} (failed {n} times; restart budget of {budget} spent)", traceback)
        self.restarts += 1
        print(f"a3c: warning: worker {worker} failed ({message}); restarting it ({n} of {budget})", file=sys.stderr, flush=True)
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
        """The global state as a checkpoint holds it (`SharedStore.state_dict`), current while running."""
        ...

    @property
    def restarts(self) -> int:
        """Workers restarted so far."""
        ...


def prepare(name: str) -> None:
    """Let a backend get ready before the run is set up (the processes backend starts its fork
    server, whose imports then overlap the agent's own set-up)."""
    if name == "processes":
        from a3c import forkserver

        forkserver.refuse_unguarded_main()  # not inside a worker that is importing the user's script
        forkserver.warm_up()


def make_backend(cfg: Config, store: SharedStore, env_fn: EnvFn) -> Backend:
    """The backend `cfg.backend.name` names, over `store`, building envs with `env_fn`."""
    name = cfg.backend.name
    if name == "serial":
        from a3c.backends.serial import SerialBackend

        return SerialBackend(cfg, store, env_fn)
    if name == "ray":
        from a3c.backends.ray_backend import RayBackend

        return RayBackend(cfg, store, env_fn)
    from a3c.backends.processes import ProcessesBackend

    return ProcessesBackend(cfg, store, env_fn)
