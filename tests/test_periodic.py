"""The one interval helper: due by global env steps and/or seconds, resumable from a step count."""

from __future__ import annotations

import pytest

from a3c.periodic import Every


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_by_steps_at_each_multiple_even_when_reports_jump_past_it():
    every = Every(steps=1_000)
    assert not every.due(999) and every.due(1_000)
    every.done(2_500)  # a report that crossed two multiples: the next is the one after it
    assert not every.due(2_999) and every.due(3_000)


def test_a_resumed_schedule_continues_from_the_step_count():
    every = Every(steps=1_000, start_steps=4_200)
    assert not every.due(4_999) and every.due(5_000)


def test_by_seconds_and_both_whichever_comes_first():
    clock = Clock()
    every = Every(seconds=10.0, clock=clock)
    assert not every.due(10**9), "no step rule: steps never make it due"
    clock.t += 10.0
    assert every.due(0)
    every.done(0)
    assert not every.due(0)
    both = Every(steps=100, seconds=10.0, clock=clock)
    assert both.due(100) and not both.due(99)
    clock.t += 10.0
    assert both.due(0)


def test_work_that_could_not_run_stays_due_and_off_is_never_due():
    every = Every(steps=10)
    assert every.due(10) and every.due(15), "due until done"
    assert not Every().on and not Every().due(10**12)


@pytest.mark.parametrize(("steps", "seconds"), [(0, None), (None, 0.0), (-5, None)])
def test_bad_intervals_are_refused(steps, seconds):
    with pytest.raises(ValueError):
        Every(steps=steps, seconds=seconds)
