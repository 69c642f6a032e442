"""Ray itself, for the Ray backend's modules: importing it, starting or joining it, and reading
its errors.

Without an address the library starts a local Ray bound to 127.0.0.1 with no dashboard; with one
(`--ray-address auto|HOST:PORT` or RAY_ADDRESS) it connects to that cluster.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from a3c.errors import ConfigError, first_line, wrapped_stop

START_GRACE_S = 120.0  # more time for an actor's first answer (its process starts)


def _ray() -> Any:
    # Ray reads this at import: a local Ray then binds to loopback only
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'a3c[ray]'") from None
    return ray


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to `address`, or start a local Ray on loopback. Returns True if this call started
    it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    with _keep_sigterm_handler(ray):
        _init(ray, address, num_cpus)
    return True


@contextlib.contextmanager
def _keep_sigterm_handler(ray: Any) -> Iterator[None]:
    """ray.init replaces the caller's SIGTERM handler with one that calls sys.exit. A SIGTERM during
    the init then raises SystemExit wherever the main thread is, which can be inside a hook that
    swallows it (seen: logging's at-fork lock release), and the run never stops. The training
    session's handler stays in place instead; it raises Terminated and also records the signal."""
    utils: Any = getattr(getattr(ray, "_private", None), "utils", None)
    original = getattr(utils, "set_sigterm_handler", None)
    if utils is None or original is None:
        yield
        return
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


def _init(ray: Any, address: str | None, num_cpus: int | None) -> None:
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=True)
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Ray starts its worker processes at niceness 15 (below its own daemons and the driver);
        # a local Ray runs them, and the workers a node group forks, at the trainer's priority,
        # as the processes backend does: a busy machine then shares its cores fairly.
        os.environ.setdefault("RAY_worker_niceness", "0")
        # A local Ray keeps to itself: no usage statistics sent anywhere, no metrics agent work.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_enable_metrics_collection", "0")
        ray.init(
            address="local",
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            num_cpus=num_cpus,
            logging_level="ERROR",
            log_to_driver=True,
        )


def _raise_signal(e: Exception) -> None:
    """Raise the stop exception (a signal's, the run's time limit) that Ray's C code wrapped in a
    SystemError, rather than take it for a failure of the call."""
    stop = wrapped_stop(e)
    if stop is not None:
        raise stop from None


def _ray_error_line(e: Exception) -> str:
    """The last non-empty line of a Ray error (its own first lines are Ray's framing)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else first_line(e)
