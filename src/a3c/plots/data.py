"""The plots' data: run directories and episode files read into arrays, and the transforms the
figures draw (seed groups, their aggregate, moving averages, greedy actions). No matplotlib here:
every transform is testable without a figure.

Runs whose configs differ only by seed (and by settings that do not change what is learned: time
budget, target, logging and checkpoint intervals) form one group (`group_runs`); `aggregate` gives
their mean and min-max band where every run has data.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from a3c.config import NOT_LEARNING as CONFIG_NOT_LEARNING
from a3c.config import from_recorded
from a3c.errors import A3CError, first_line

# Runs differing only in these (the config's settings that do not change what a run learns, and
# the seed) are seeds of one setup.
NOT_LEARNING = CONFIG_NOT_LEARNING | {"run.seed"}


# --- learning curves (progress.csv) ------------------------------------------------------------


@dataclass
class RunCurve:
    path: Path
    steps: np.ndarray
    wall_s: np.ndarray
    return_mean: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    target_return: float | None = None
    solved: bool = False  # stopped because it reached its target return
    evals: EvalCurve | None = None  # eval.csv's evaluations, if the run has any

    @property
    def env_id(self) -> str:
        return str(self.config.get("env.id", "?"))


@dataclass
class EvalCurve:
    """A run's evaluations during training (eval.csv): their mean return at steps and wall time."""

    steps: np.ndarray
    wall_s: np.ndarray
    mean: np.ndarray


def load_evals(path: str | Path) -> EvalCurve | None:
    """A run directory's eval.csv (rows that cannot be read skipped), or None if it has none."""
    path = Path(path)
    file = path / "eval.csv" if path.is_dir() else path
    try:
        with open(file, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    points = []
    for row in rows:
        try:
            points.append((int(row["steps"]), float(row["wall_s"]), float(row["mean"])))
        except (KeyError, TypeError, ValueError):
            continue  # a row cut by a kill
    if not points:
        return None
    steps, wall, mean = zip(*points, strict=True)
    return EvalCurve(
        np.asarray(steps, np.int64), np.asarray(wall, np.float64), np.asarray(mean, np.float64)
    )


@dataclass
class Group:
    label: str
    runs: list[RunCurve]


def load_run(path: str | Path) -> RunCurve:
    """Read a run directory's progress.csv (and config.json, summary.json, eval.csv when
    present)."""
    path = Path(path)
    progress = path / "progress.csv"
    if not progress.is_file():
        raise A3CError(f"{path} is not a run directory (it has no progress.csv)")
    steps, wall, ret = [], [], []
    for row in _progress_rows(progress):
        try:
            s, w, r = int(row["steps"]), float(row["wall_s"]), float(row["return_mean"])
        except (KeyError, TypeError, ValueError):
            continue  # no episode finished yet, or a row cut by a kill
        if math.isfinite(r):
            steps.append(s)
            wall.append(w)
            ret.append(r)
    config: dict[str, Any] = {}
    try:
        config = from_recorded(json.loads((path / "config.json").read_text())).to_flat()
    except (OSError, ValueError, AttributeError, A3CError):
        pass
    summary: dict[str, Any] = {}
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        pass
    target = summary.get("target_return") if isinstance(summary, dict) else None
    solved = isinstance(summary, dict) and summary.get("stop_reason") == "target_return"
    curve = np.asarray(steps, np.int64), np.asarray(wall, np.float64), np.asarray(ret, np.float64)
    return RunCurve(path, *curve, config, target, solved, load_evals(path))


def _progress_rows(path: Path) -> list[dict[str, Any]]:
    """progress.csv's rows; a file that is not UTF-8 CSV with the steps, wall_s and return_mean
    columns is an A3CError naming it (an empty one has no rows)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames
    except OSError as e:
        raise A3CError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise A3CError(
            f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}): not "
            "a progress.csv a3c wrote"
        ) from None
    except csv.Error as e:
        raise A3CError(f"malformed {path}: {first_line(e)}") from None
    missing = [
        c
        for c in ("steps", "wall_s", "return_mean")
        if c not in (columns or ["steps", "wall_s", "return_mean"])
    ]
    if missing:
        raise A3CError(
            f"malformed {path}: it has no {', '.join(missing)} column (not a progress.csv a3c "
            "wrote)"
        )
    return rows


def _key(run: RunCurve) -> str:
    return json.dumps(
        {k: v for k, v in sorted(run.config.items()) if k not in NOT_LEARNING},
        sort_keys=True,
        default=str,
    )


def group_runs(runs: Sequence[RunCurve]) -> list[Group]:
    """Group runs that differ only by seed; label each group by its env and what sets it apart."""
    by_key: dict[str, list[RunCurve]] = {}
    for run in runs:
        by_key.setdefault(_key(run) if run.config else str(run.path), []).append(run)
    groups = list(by_key.values())
    # The settings that differ between groups name them (n_steps=5 vs n_steps=8), up to three.
    configs = [g[0].config for g in groups]
    keys = sorted({k for c in configs for k in c} - NOT_LEARNING - {"env.id"})
    differing = [k for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1]
    out = []
    for g in groups:
        first = g[0]
        if not first.config:
            label = first.path.name
        elif len(differing) <= 3:
            parts = [first.env_id] + [
                f"{k.split('.')[-1]}={_short(first.config.get(k))}" for k in differing
            ]
            label = " ".join(parts)
        else:
            label = first.path.name
        if len(g) > 1:
            label += f" ({len(g)} seeds)"
        elif not differing and len(groups) > 1:
            label = first.path.name
        out.append(Group(label, g))
    return out


def _short(v: Any) -> str:
    return json.dumps(v, default=str).replace(" ", "") if isinstance(v, list | dict) else str(v)


def aggregate(
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    held: Sequence[bool] | None = None,
    points: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max of several curves, interpolated on a common grid. The grid ends where the
    first run that is not `held` ends; a held run (one that stopped because it solved the task)
    keeps its last value after its end, so early solvers do not cut the curve short."""
    held = [False] * len(xs) if held is None else list(held)
    keep = [i for i, x in enumerate(xs) if len(x)]
    xs, ys, held = [xs[i] for i in keep], [ys[i] for i in keep], [held[i] for i in keep]
    lo = max(float(x[0]) for x in xs)
    ends = [float(x[-1]) for x, h in zip(xs, held, strict=True) if not h]
    hi = min(ends) if ends else max(float(x[-1]) for x in xs)
    grid = np.linspace(lo, hi, points) if hi > lo else np.asarray([lo])
    # np.interp holds the ends
    stack = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])
    return grid, stack.mean(axis=0), stack.min(axis=0), stack.max(axis=0)


def steps_label(x: float, _pos: Any = None) -> str:
    """A step count as a tick label: 1500000 -> '1.5M' (a matplotlib FuncFormatter's signature)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


# --- episode returns (episodes.csv) and tabular policies ----------------------------------------


@dataclass(frozen=True)
class EpisodeData:
    """One row per finished episode, in the order the trainer received them (episodes.csv)."""

    worker: np.ndarray  # int, the worker that ran the episode
    steps: np.ndarray  # int, global env steps when the trainer received it
    wall_s: np.ndarray  # float, seconds since the run started
    returns: np.ndarray  # float, undiscounted episode return
    lengths: np.ndarray  # int, episode length in steps

    def __len__(self) -> int:
        return len(self.returns)

    @property
    def workers(self) -> list[int]:
        return sorted({int(w) for w in self.worker})


def load_episodes(path: str | Path) -> EpisodeData:
    """Read a run's episodes.csv (columns worker, steps, wall_s, return, length)."""
    path = Path(path)
    if path.is_dir():
        path = path / "episodes.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise A3CError(f"cannot read episodes file {path}: {e.strerror or e}") from None
    try:
        return EpisodeData(
            worker=np.array([int(r["worker"]) for r in rows], dtype=np.int64),
            steps=np.array([int(r["steps"]) for r in rows], dtype=np.int64),
            wall_s=np.array([float(r["wall_s"]) for r in rows], dtype=np.float64),
            returns=np.array([float(r["return"]) for r in rows], dtype=np.float64),
            lengths=np.array([int(r["length"]) for r in rows], dtype=np.int64),
        )
    except (KeyError, ValueError) as e:
        raise A3CError(f"malformed episodes file {path}: {e}") from None


def moving_average(x: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing mean: out[i] = mean(x[max(0, i - window + 1) : i + 1]) (no lag-free smoothing)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(1, x.size + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def aggregate_curve(data: EpisodeData, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The aggregate across workers: (episode number 1..N, wall_s, moving-average return)."""
    return np.arange(1, len(data) + 1), data.wall_s, moving_average(data.returns, window)


def greedy_actions(probs: np.ndarray) -> np.ndarray:
    """argmax_a pi(a|s) per state (ties to the lowest action index, as torch.argmax)."""
    return np.asarray(probs).argmax(axis=1)
