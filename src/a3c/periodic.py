"""When periodic work is due: every N global env steps and/or every T seconds.

    rows = Every(steps=10_000)                      # progress rows
    checkpoints = Every(steps=None, seconds=600.0)  # checkpoints by the clock
    if checkpoints.due(stats.steps):
        save()
        checkpoints.done(stats.steps)

Every frequency counts global env steps as reported (not calls per worker: an SB3 pitfall), and a
resumed run's next due point follows from its step count (`start_steps`), so a resume keeps the
schedule. Work that is due but cannot run yet (an evaluation while the previous one plays) stays
due until `done` is called. One helper for progress rows, checkpoints and evaluations.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Every:
    """Due when the global step count reaches the next multiple of `steps` or `seconds` have passed
    since the last `done` (or the start); never due with both None."""

    def __init__(
        self,
        steps: int | None = None,
        seconds: float | None = None,
        start_steps: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {steps}")
        if seconds is not None and seconds <= 0:
            raise ValueError(f"seconds must be > 0 or None, got {seconds}")
        self.steps, self.seconds, self.clock = steps, seconds, clock
        self.next_steps = None if steps is None else self._after(start_steps)
        self.last_time = clock()

    @property
    def on(self) -> bool:
        return self.steps is not None or self.seconds is not None

    def _after(self, steps: int) -> int:
        assert self.steps is not None
        return (steps // self.steps + 1) * self.steps

    def due(self, steps: int) -> bool:
        by_steps = self.next_steps is not None and steps >= self.next_steps
        by_time = self.seconds is not None and self.clock() - self.last_time >= self.seconds
        return by_steps or by_time

    def done(self, steps: int) -> None:
        """The work ran at `steps`: the next is due at the following multiple, or `seconds` on."""
        if self.steps is not None:
            self.next_steps = self._after(steps)
        self.last_time = self.clock()
