"""Event callbacks: hook into training, in Stable-Baselines3's shape where it fits an asynchronous
trainer.

    class PrintBest(Callback):
        def on_evaluation(self, result, is_new_best):
            if is_new_best:
                print(f"new best {result['mean']:.1f} at {result['steps']} steps")

    agent.learn(callback=[PrintBest(), StopOnNoImprovement(patience=5)])

A callback is an object with any of the methods of `Callback` (the rest do nothing); a list of
them is a `CallbackList`; a plain function is called with every progress row, as before. Any method
but `on_training_end` may stop training by returning False: the run stops as for any stop (a final
checkpoint, summary.json), with stop reason "callback". Callbacks run in the trainer's process,
between its polls of the workers: the workers go on while a callback runs (on the serial backend
the trainer is the worker). A callback that raises stops the run: a final checkpoint, the
summary, and `CallbackError` with one line naming the callback and the event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from a3c.errors import ConfigError, RunFailure, first_line


class Callback:
    """The events of a training run; override the ones you need. Return False to stop training
    (None or True goes on)."""

    def on_training_start(self, info: dict[str, Any]) -> bool | None:
        """The workers have started. `info`: run_dir, config (as a dict), steps (not 0 on a
        resumed run)."""
        return None

    def on_progress(self, row: dict[str, Any]) -> bool | None:
        """A progress row (progress.csv's columns: steps, return_mean, losses, ...)."""
        return None

    def on_evaluation(self, result: dict[str, Any], is_new_best: bool) -> bool | None:
        """An evaluation during training finished (eval.csv's row: steps, mean, std, ...);
        `is_new_best`: it beat every earlier one and is now checkpoints/best/."""
        return None

    def on_checkpoint(self, path: Path) -> bool | None:
        """A checkpoint was written (periodic, and the final one)."""
        return None

    def on_training_end(self, summary: dict[str, Any]) -> None:
        """Training stopped; `summary` is summary.json's content."""
        return None


class CallbackList(Callback):
    """Several callbacks, each called in order on every event; training stops if any returns
    False."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)


class FunctionCallback(Callback):
    """A function called with every progress row (`learn(callback=fn)`); False stops training."""

    def __init__(self, fn: Callable[[dict[str, Any]], bool | None]) -> None:
        self.fn = fn

    def on_progress(self, row: dict[str, Any]) -> bool | None:
        return self.fn(row)


class StopOnNoImprovement(Callback):
    """Stop once `patience` evaluations in a row bring no new best (Stable-Baselines3's
    StopTrainingOnNoModelImprovement), counting only after `min_evaluations` evaluations."""

    def __init__(self, patience: int, min_evaluations: int = 0) -> None:
        if patience < 1:
            raise ConfigError(f"StopOnNoImprovement: patience must be >= 1, got {patience}")
        self.patience, self.min_evaluations = patience, min_evaluations
        self.evaluations = self.without_improvement = 0

    def on_evaluation(self, result: dict[str, Any], is_new_best: bool) -> bool | None:
        self.evaluations += 1
        self.without_improvement = 0 if is_new_best else self.without_improvement + 1
        return not (
            self.evaluations > self.min_evaluations and self.without_improvement >= self.patience
        )


class StopAtThreshold(Callback):
    """Stop once an evaluation's mean return reaches `threshold` (Stable-Baselines3's
    StopTrainingOnRewardThreshold); with `on="return"`, once the training return's mean (the last
    return_window episodes) does."""

    def __init__(self, threshold: float, on: str = "evaluation") -> None:
        if on not in ("evaluation", "return"):
            raise ConfigError(f"StopAtThreshold: on is 'evaluation' or 'return', got {on!r}")
        self.threshold, self.on = float(threshold), on

    def on_evaluation(self, result: dict[str, Any], is_new_best: bool) -> bool | None:
        return not (self.on == "evaluation" and _reached(result.get("mean"), self.threshold))

    def on_progress(self, row: dict[str, Any]) -> bool | None:
        return not (self.on == "return" and _reached(row.get("return_mean"), self.threshold))


def _reached(value: Any, threshold: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= threshold


class CallbackError(RunFailure):
    """A user's callback raised: the run stopped with a final checkpoint and its summary."""


class CallbackStop(BaseException):
    """A callback returned False (how the session's loop learns it; not an error)."""


CallbackLike = Callback | Sequence[Callback] | Callable[[dict[str, Any]], bool | None]


def flatten(callback: CallbackLike | None) -> list[Callback]:
    """The callbacks to call, in order: lists (and CallbackLists) flattened, functions wrapped."""
    if callback is None:
        return []
    if isinstance(callback, CallbackList):
        return [c for child in callback.callbacks for c in flatten(child)]
    if isinstance(callback, Callback):
        return [callback]
    if isinstance(callback, list | tuple):
        return [c for child in callback for c in flatten(child)]
    if callable(callback):
        return [FunctionCallback(callback)]
    raise ConfigError(
        f"callback must be a Callback, a list of them or a function of the progress row, not "
        f"{type(callback).__name__}"
    )


def _name(callback: Callback) -> str:
    if isinstance(callback, FunctionCallback):
        return getattr(callback.fn, "__qualname__", type(callback.fn).__name__)
    return type(callback).__name__


class Hooks:
    """The session's side: each event to every callback in order. False from any stops training
    (CallbackStop, after all were called); an exception is a CallbackError naming the callback."""

    def __init__(self, callback: CallbackLike | None) -> None:
        self.callbacks = flatten(callback)
        self.failed = False  # once one raised, none is called again (the run is stopping)

    def _emit(self, event: str, *args: Any, may_stop: bool = True) -> None:
        stop = False
        for cb in self.callbacks if not self.failed else []:
            try:
                result = getattr(cb, event)(*args)
            except Exception as e:
                self.failed = True
                raise CallbackError(
                    f"the callback {_name(cb)}.{event} raised {type(e).__name__}: {first_line(e)}"
                ) from None
            stop = stop or result is False
        if stop and may_stop:
            raise CallbackStop

    def training_start(self, info: dict[str, Any]) -> None:
        self._emit("on_training_start", info)

    def progress(self, row: dict[str, Any]) -> None:
        self._emit("on_progress", row)

    def evaluation(self, result: dict[str, Any], is_new_best: bool) -> None:
        self._emit("on_evaluation", result, is_new_best)

    def checkpoint(self, path: Path, may_stop: bool = True) -> None:
        self._emit("on_checkpoint", path, may_stop=may_stop)

    def training_end(self, summary: dict[str, Any]) -> None:
        self._emit("on_training_end", summary, may_stop=False)
