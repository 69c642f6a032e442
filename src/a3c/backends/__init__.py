"""Where workers run and where the global parameters live, behind one small interface.

Every backend runs the same `Worker.update` (pull -> rollout -> loss -> clip -> push) against a
`ParameterStore` and hands the training session `WorkerReport`s through the `Backend` interface.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from a3c.backends.base import Backend, RestartBudget, WorkerFailure

log = logging.getLogger("a3c")

if TYPE_CHECKING:
    from a3c.config import Config
    from a3c.envs import EnvFn
    from a3c.store import SharedStore


def prepare(name: str, refuse_in_child: bool = True) -> None:
    """Let a backend get ready before the run is set up: the processes backend starts its fork
    server (the one place that starts it), whose imports then overlap the trainer's own. Inside a
    worker importing the user's script, the agent refuses to train (`refuse_in_child`) and
    `from a3c import A3C` does nothing. Imports no torch."""
    if name != "processes":
        return
    from a3c import forkserver

    if refuse_in_child:
        # not inside a worker that is importing the user's script
        forkserver.refuse_unguarded_main()
    elif forkserver.in_child_process():
        return
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


def warn_if_oversubscribed(cfg: Config) -> None:
    """One warning when this machine's workers outnumber its cores (the run then starts slowly and
    runs no faster; each worker is a process with one torch thread)."""
    cores = os.cpu_count() or 1
    here = cfg.backend.name == "processes" or (
        cfg.backend.name == "ray" and not cfg.backend.ray_address
    )
    if here and cfg.backend.workers > cores:
        log.warning(
            "a3c: warning: %d workers on %d cores share them (one process and torch thread each); "
            "--workers %d is usually fastest",
            cfg.backend.workers,
            cores,
            cores,
        )


__all__ = [
    "Backend",
    "RestartBudget",
    "WorkerFailure",
    "make_backend",
    "prepare",
    "warn_if_oversubscribed",
]
