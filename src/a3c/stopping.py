"""Why a run stops: the stop rule (a pure function of the statistics, the config, the clock and
the latest evaluation), and what each exception that ends the training loop means (a stop reason,
and whether it is an error).

Stops are, in order: the target return (mean of the last `return_window` episodes), an
evaluation's target (`eval.target_mean`), the step budget, the wall-time budget; and, as
exceptions, a callback returning False, Ctrl-C, SIGTERM, the time limit's alarm, a worker failure,
non-finite training.
"""

from __future__ import annotations

from a3c.backends.base import WorkerFailure
from a3c.callbacks import CallbackError, CallbackStop
from a3c.config import RunConfig
from a3c.errors import RunFailure, wrapped_stop
from a3c.metrics import Stats
from a3c.signals import Terminated, TimeUp


class NonFinite(RunFailure):
    """The run produces only non-finite updates, or its global state is no longer finite."""


def stop_rule(
    stats: Stats,
    run: RunConfig,
    target: float | None,
    elapsed_s: float,
    eval_mean: float | None = None,
    eval_target: float | None = None,
) -> str | None:
    """Why a run should stop now, or None: a pure function of the stats, the config, the clock and
    the latest evaluation's mean."""
    if target is not None and stats.window_full and stats.return_mean >= target:
        return "target_return"
    if eval_target is not None and eval_mean is not None and eval_mean >= eval_target:
        return "target_eval_return"
    if stats.steps >= run.total_steps:
        return "total_steps"
    if run.max_time is not None and elapsed_s >= run.max_time:
        return "max_time"
    return None


# Exceptions that stop a run without being errors, and the stop reasons they give.
STOPS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (CallbackStop, "callback"),
    (KeyboardInterrupt, "interrupted"),
    (TimeUp, "max_time"),
    # SystemExit: Ray's own SIGTERM handler, if it ran before ours
    ((Terminated, SystemExit), "terminated"),
)
FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (WorkerFailure, "worker_failure"),
    (NonFinite, "nonfinite"),
    (CallbackError, "callback_error"),
    (RunFailure, "failure"),
)


def stopped_by(e: BaseException) -> tuple[str, BaseException | None]:
    """(stop reason, the error to record and raise, or None) for what ended the loop."""
    e = wrapped_stop(e) or e
    for kind, reason in STOPS:
        if isinstance(e, kind):
            return reason, None
    for failure, reason in FAILURES:
        if isinstance(e, failure):
            return reason, e
    return "error", e
