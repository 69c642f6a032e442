"""a3c: Asynchronous Advantage Actor-Critic for Gymnasium, on CPUs, from a laptop to a cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from a3c.callbacks import (
    Callback,
    CallbackError,
    CallbackList,
    StopAtThreshold,
    StopOnNoImprovement,
)
from a3c.config import Config
from a3c.configfile import build_config
from a3c.errors import A3CError, ConfigError, EnvError
from a3c.version import __version__

if TYPE_CHECKING:
    from a3c.agent import A3C

__all__ = [
    "A3C",
    "A3CError",
    "Callback",
    "CallbackError",
    "CallbackList",
    "Config",
    "ConfigError",
    "EnvError",
    "StopAtThreshold",
    "StopOnNoImprovement",
    "build_config",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # `a3c.A3C` imports torch on first use, so that `import a3c.cli` (and the worker fork server
    # it starts) does not wait for torch. The default backend forks its workers from a server that
    # imports torch once: started here, its imports overlap this process's own instead of following
    # them (a CartPole run's first progress row 0.26 s after learn() starts instead of 1.7 s).
    if name == "A3C":
        from a3c.backends import prepare

        prepare("processes", refuse_in_child=False)
        from a3c.agent import A3C

        return A3C
    raise AttributeError(f"module 'a3c' has no attribute {name!r}")
