"""The training session's signals: SIGTERM raises Terminated (like Ctrl-C's KeyboardInterrupt), and
`run.max_time` is backed by SIGALRM raising TimeUp when a backend call hangs."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Terminated(BaseException):
    """SIGTERM (`kill PID`) during a session: stop like Ctrl-C. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way (a supervisor's) swallows it."""


class TimeUp(BaseException):
    """`run.max_time` has passed while the trainer was busy (a backend call that hangs)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[Callable[[], None]]:
    """Inside, SIGTERM raises Terminated in the main thread (once: a second SIGTERM gets the
    previous handler, by default terminating at once). Yields a function that installs the handler
    again (over one a library installed meanwhile), and raises Terminated if a SIGTERM came whose
    Terminated did not get through. Off the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = signal.getsignal(signal.SIGTERM)
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, previous)
        received.append(signum)
        raise Terminated

    def reinstall() -> None:
        """Our handler again; and if a SIGTERM came but its Terminated was swallowed (raised inside
        code that ignores exceptions, such as an at-fork hook of a library starting processes),
        now."""
        if received:
            raise Terminated
        signal.signal(signal.SIGTERM, handler)

    hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:  # a swallowed Terminated is raised again by reinstall()
        if not isinstance(unraisable.exc_value, Terminated):
            hook(unraisable)

    sys.unraisablehook = quiet
    reinstall()
    try:
        yield reinstall
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = hook


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Inside, SIGALRM raises TimeUp in the main thread after `seconds` (None, or off the main
    thread: no limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise TimeUp

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
