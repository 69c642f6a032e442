"""A bound on code that runs in the trainer's own thread and may hang (a user's env).

The serial backend steps its workers' envs in the main thread, and an agent builds one env there
to read its spaces. `Watchdog.bound()` arms a watcher thread for a block; if the block runs longer
than the timeout, the watcher sends SIGUSR1 to the main thread, whose handler raises
`UpdateTimeout` in it (a hung `time.sleep` or blocking read is interrupted; code that holds the
GIL in C for ever cannot be). Off the main thread, where signals cannot be handled, it does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any


class UpdateTimeout(Exception):
    """A bounded block (a worker's update, building an env) ran longer than its timeout."""


class Watchdog:
    """Interrupts a block of the main thread once it has run `timeout` seconds (None: never)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.started: float | None = None  # when the running update started
        self._stop = threading.Event()
        self._previous: Any = None
        self._entered = False
        self.active = timeout is not None and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> Watchdog:
        if self.active and not self._entered:
            self._entered = True
            self._previous = signal.signal(signal.SIGUSR1, self._interrupt)
            threading.Thread(target=self._watch, name="a3c-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._entered:
            self._entered = False
            signal.signal(signal.SIGUSR1, self._previous)

    def _watch(self) -> None:
        main = threading.main_thread().ident
        assert self.timeout is not None and main is not None
        while not self._stop.wait(0.2):
            started = self.started
            if started is not None and time.monotonic() - started > self.timeout:
                signal.pthread_kill(main, signal.SIGUSR1)
                self._stop.wait(1.0)  # one interrupt per stuck update

    @contextlib.contextmanager
    def bound(self) -> Iterator[None]:
        """Arm the watchdog for the block."""
        self.started = time.monotonic()
        try:
            yield
        finally:
            self.started = None

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self.started is not None:  # not between updates
            self.started = None
            raise UpdateTimeout(f"no progress for {self.timeout:g} s (stuck, e.g. in its env)")


@contextlib.contextmanager
def bounded(timeout: float | None) -> Iterator[None]:
    """Run the block under a watchdog of its own."""
    with Watchdog(timeout) as dog, dog.bound():
        yield
