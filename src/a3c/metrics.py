"""The metrics, declared once: every column of progress.csv and eval.csv, its TensorBoard tag, its
meaning and how it is aggregated. The CSV headers, the TensorBoard scalars and the docs' tables
of columns (`markdown_table(file)`) all come from `METRICS`.

Tags follow Stable-Baselines3's names where it has the metric (`rollout/ep_rew_mean`,
`train/value_loss`, `time/fps`, `eval/mean_reward`, ...) and the same groups otherwise: rollout/,
train/, time/, eval/, plus workers/ for A3C's own. `steps` is the x axis of every tag.

Workers send `WorkerReport`s (sums, so reports add up); `Stats` folds them into running totals and
the current log interval's sums, and `Stats.row` turns those into one progress.csv row.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from a3c.algo import LossTerms

# How a column is aggregated (the `how` of a Metric), and what that means in the docs' table.
TOTAL = "total"  # a running total since the run started (a resumed run continues it)
WINDOW = "window"  # over the last run.return_window finished episodes
PER_UPDATE = "per_update"  # summed by the workers per update; the row has the mean per update
RATE = "rate"  # over the log interval since the previous row
NOW = "now"  # the value when the row is written
SNAPSHOT = "snapshot"  # eval.csv: when the evaluator read the global parameters
EVALUATION = "evaluation"  # eval.csv: over the evaluation's episodes
AGGREGATIONS = {
    TOTAL: "total since the run started",
    WINDOW: "over the last `run.return_window` episodes",
    PER_UPDATE: "mean per update since the previous row",
    RATE: "since the previous row",
    NOW: "when the row is written",
    SNAPSHOT: "when the evaluated parameters were read",
    EVALUATION: "over the evaluation's episodes",
}
PROGRESS, EVAL = "progress", "eval"  # the files: progress.csv, eval.csv


@dataclass(frozen=True)
class Metric:
    """One column of progress.csv (or of eval.csv)."""

    column: str
    tag: str | None  # its TensorBoard tag; None for the x axis
    doc: str  # one line, for the docs' table
    how: str  # a key of AGGREGATIONS
    file: str = PROGRESS  # PROGRESS or EVAL


# The per-update loss columns are the algorithm's loss terms (all but their total), in its order.
LOSS_COLUMNS = tuple(name for name in LossTerms._fields if name != "total")
_LOSS_DOCS = {
    "policy_loss": "policy-gradient loss, -mean(log pi(a_t|s_t) A_t) (eq. 2)",
    "value_loss": "value loss, mean(1/2 A_t^2) (eq. 3)",
    "entropy_loss": "entropy loss, -mean entropy of the policy (`algo.ent_coef` weighs it)",
}

METRICS: tuple[Metric, ...] = (
    Metric("steps", None, "global env steps, summed over workers", TOTAL),
    Metric(
        "wall_s", "time/wall_s", "wall time in seconds (a resumed run continues its clock)", NOW
    ),
    Metric("episodes", "rollout/episodes", "finished episodes", TOTAL),
    Metric("return_mean", "rollout/ep_rew_mean", "mean episode return", WINDOW),
    Metric("return_std", "rollout/ep_rew_std", "standard deviation of the episode return", WINDOW),
    Metric("length_mean", "rollout/ep_len_mean", "mean episode length", WINDOW),
    *(Metric(name, f"train/{name}", _LOSS_DOCS[name], PER_UPDATE) for name in LOSS_COLUMNS),
    Metric(
        "grad_norm", "train/grad_norm", "global norm of the gradient, before clipping", PER_UPDATE
    ),
    Metric("learning_rate", "train/learning_rate", "learning rate of the schedule", PER_UPDATE),
    Metric("steps_per_s", "time/fps", "global env steps per second", RATE),
    Metric(
        "update_lag",
        "train/update_lag",
        "updates the shared parameters got between a worker's pull and its push",
        PER_UPDATE,
    ),
    Metric("updates", "train/updates", "updates applied to the shared parameters", TOTAL),
    Metric(
        "nonfinite_updates",
        "train/nonfinite_updates",
        "updates skipped for a non-finite loss or gradient",
        TOTAL,
    ),
    Metric(
        "nonfinite_steps",
        "rollout/nonfinite_steps",
        "env steps with a non-finite observation or reward (that episode dropped, the env reset)",
        TOTAL,
    ),
    Metric("workers_alive", "workers/alive", "workers running", NOW),
    Metric("worker_restarts", "workers/restarts", "workers restarted after a failure", TOTAL),
    # eval.csv: one row per evaluation during training (a3c/eval_log.py)
    Metric("steps", None, "global env steps, summed over workers", SNAPSHOT, EVAL),
    Metric("wall_s", "eval/wall_s", "wall time of the run in seconds", SNAPSHOT, EVAL),
    Metric(
        "mean",
        "eval/mean_reward",
        "mean episode return (greedy unless eval.deterministic is false)",
        EVALUATION,
        EVAL,
    ),
    Metric("std", "eval/std_reward", "standard deviation of the episode return", EVALUATION, EVAL),
    Metric("min", "eval/min_reward", "lowest episode return", EVALUATION, EVAL),
    Metric("max", "eval/max_reward", "highest episode return", EVALUATION, EVAL),
    Metric("episodes", "eval/episodes", "episodes played (eval.episodes)", EVALUATION, EVAL),
    Metric("mean_length", "eval/mean_ep_length", "mean episode length", EVALUATION, EVAL),
    Metric(
        "duration_s",
        "eval/duration_s",
        "seconds the evaluator spent on it (building its env and model, playing the episodes)",
        EVALUATION,
        EVAL,
    ),
)

PROGRESS_COLUMNS: tuple[str, ...] = tuple(m.column for m in METRICS if m.file == PROGRESS)
TENSORBOARD_TAGS: dict[str, str] = {
    m.column: m.tag for m in METRICS if m.tag is not None and m.file == PROGRESS
}
EVAL_COLUMNS: tuple[str, ...] = tuple(m.column for m in METRICS if m.file == EVAL)
EVAL_TAGS: dict[str, str] = {
    m.column: m.tag for m in METRICS if m.tag is not None and m.file == EVAL
}
# What a worker sums per update: the loss terms, grad_norm, update_lag, learning_rate.
PER_UPDATE_METRICS: tuple[str, ...] = tuple(m.column for m in METRICS if m.how == PER_UPDATE)


def markdown_table(file: str = PROGRESS) -> str:
    """The docs' table of progress.csv (or eval.csv) columns: | column | TensorBoard tag | meaning
    |."""
    lines = ["| column | TensorBoard tag | meaning |", "|---|---|---|"]
    for m in (m for m in METRICS if m.file == file):
        tag = f"`{m.tag}`" if m.tag is not None else "(the x axis)"
        doc = m.doc.replace("|", "\\|")  # a pipe would end the cell
        lines.append(f"| `{m.column}` | {tag} | {doc}; {AGGREGATIONS[m.how]} |")
    return "\n".join(lines)


@dataclass
class WorkerReport:
    """What one worker did since its previous report; sums, so reports add up.

    `sums` holds the per-update metrics (PER_UPDATE_METRICS) summed over the report's updates.
    """

    worker: int
    steps: int = 0
    updates: int = 0
    nonfinite_updates: int = 0
    nonfinite_steps: int = 0
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        """Add one update's value of the per-update metric `name`."""
        if name not in PER_UPDATE_METRICS:
            raise ValueError(
                f"{name!r} is not a per-update metric (one of {', '.join(PER_UPDATE_METRICS)})"
            )
        self.sums[name] = self.sums.get(name, 0.0) + float(value)


class Stats:
    """Running totals and the current log interval's sums, fed by worker reports."""

    def __init__(self, window: int) -> None:
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.window = window
        self.steps = self.episodes = self.updates = self.nonfinite = self.nonfinite_steps = 0
        self._sums: dict[str, float] = {}
        self._n = 0
        self._last_steps, self._last_time = 0, time.monotonic()

    def add(self, rep: WorkerReport) -> None:
        self.steps += rep.steps
        self.updates += rep.updates
        self.nonfinite += rep.nonfinite_updates
        self.nonfinite_steps += rep.nonfinite_steps
        self.episodes += len(rep.episode_returns)
        self.returns.extend(rep.episode_returns)
        self.lengths.extend(rep.episode_lengths)
        for key in PER_UPDATE_METRICS:
            self._sums[key] = self._sums.get(key, 0.0) + rep.sums.get(key, 0.0)
        self._n += rep.updates

    def restore(
        self,
        steps: int,
        episodes: int,
        updates: int,
        nonfinite: int,
        recent: Iterable[tuple[float, int]],
        nonfinite_steps: int = 0,
    ) -> None:
        """Continue from a checkpoint's counters; `recent` (return, length) pairs refill the
        window."""
        self.steps, self.episodes, self.updates, self.nonfinite = (
            steps,
            episodes,
            updates,
            nonfinite,
        )
        self.nonfinite_steps = nonfinite_steps
        for ret, length in recent:
            self.returns.append(ret)
            self.lengths.append(length)
        self._last_steps, self._last_time = steps, time.monotonic()

    @property
    def return_mean(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else math.nan

    @property
    def window_full(self) -> bool:
        return len(self.returns) >= self.window

    def row(self, wall_s: float, workers_alive: int, worker_restarts: int) -> dict[str, Any]:
        """One progress.csv row (exactly PROGRESS_COLUMNS, in order); starts the next log
        interval."""
        now = time.monotonic()
        dt = now - self._last_time
        rate = (self.steps - self._last_steps) / dt if dt > 0 else math.nan
        self._last_steps, self._last_time = self.steps, now
        mean = self.return_mean
        std = (
            math.sqrt(sum((r - mean) ** 2 for r in self.returns) / len(self.returns))
            if self.returns
            else math.nan
        )
        values: dict[str, Any] = {
            "steps": self.steps,
            "wall_s": round(wall_s, 3),
            "episodes": self.episodes,
            "return_mean": mean,
            "return_std": std,
            "length_mean": sum(self.lengths) / len(self.lengths) if self.lengths else math.nan,
            "steps_per_s": round(rate, 1),
            "updates": self.updates,
            "nonfinite_updates": self.nonfinite,
            "nonfinite_steps": self.nonfinite_steps,
            "workers_alive": workers_alive,
            "worker_restarts": worker_restarts,
        }
        values.update(
            {
                k: self._sums.get(k, 0.0) / self._n if self._n else math.nan
                for k in PER_UPDATE_METRICS
            }
        )
        self._sums, self._n = {}, 0
        return {column: values[column] for column in PROGRESS_COLUMNS}
