"""Waiting in tests, always with a bound: a regression fails instead of hanging the suite; and the
processes a test interrupts."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], seconds: float, every: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `seconds` have passed; its last value, as a bool."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def default_sigint() -> None:
    """`preexec_fn` of a process a test sends SIGINT: a background job of a non-interactive shell
    (a test suite started with `&`) starts with SIGINT ignored, its children inherit that, and
    Python then installs no KeyboardInterrupt handler. The default, as an interactive shell has
    it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
