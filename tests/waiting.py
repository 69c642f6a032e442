"""Waiting in tests, always with a bound: a regression fails instead of hanging the suite."""

from __future__ import annotations

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
