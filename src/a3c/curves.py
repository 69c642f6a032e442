"""Learning curves from run directories: mean return against global steps and against wall time.

Split as Stable-Baselines3's results_plotter is: data transforms (`load_run`, `group_runs`,
`aggregate`) apart from drawing (`plot_runs`). Runs whose configs differ only by seed (and by
settings that do not change what is learned: time budget, target, logging and checkpoint intervals)
form one group, drawn as the mean over its runs with a min-max band where every run has data, and
each run as a thin line to its own end; a single run is a plain line.
Matplotlib's Agg backend, no pyplot state: safe in a headless trainer process.
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
from a3c.errors import A3CError

# Runs differing only in these (the config's settings that do not change what a run learns, and
# the seed) are seeds of one setup.
NOT_LEARNING = CONFIG_NOT_LEARNING | {"run.seed"}


@dataclass
class RunCurve:
    path: Path
    steps: np.ndarray
    wall_s: np.ndarray
    return_mean: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    target_return: float | None = None
    solved: bool = False  # stopped because it reached its target return

    @property
    def env_id(self) -> str:
        return str(self.config.get("env.id", "?"))


@dataclass
class Group:
    label: str
    runs: list[RunCurve]


def load_run(path: str | Path) -> RunCurve:
    """Read a run directory's progress.csv (and config.json, summary.json when present)."""
    path = Path(path)
    progress = path / "progress.csv"
    if not progress.is_file():
        raise A3CError(f"{path} is not a run directory (it has no progress.csv)")
    steps, wall, ret = [], [], []
    with open(progress, newline="") as f:
        for row in csv.DictReader(f):
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
    return RunCurve(path, np.asarray(steps, np.int64), np.asarray(wall, np.float64), np.asarray(ret, np.float64), config, target, solved)


def _key(run: RunCurve) -> str:
    return json.dumps({k: v for k, v in sorted(run.config.items()) if k not in NOT_LEARNING}, sort_keys=True, default=str)


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
            parts = [first.env_id] + [f"{k.split('.')[-1]}={_short(first.config.get(k))}" for k in differing]
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
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], held: Sequence[bool] | None = None, points: int = 200
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
    stack = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])  # np.interp holds the ends
    return grid, stack.mean(axis=0), stack.min(axis=0), stack.max(axis=0)


def _steps_label(x: float, _pos: Any = None) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Draw curves.png: mean return against global steps and against wall time, one line per run or
    seed group (mean with a min-max band). Returns the path written."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    runs = [load_run(p) for p in run_dirs]
    plotted = [r for r in runs if len(r.steps)]
    if not plotted:
        raise A3CError("no run has a finite return_mean yet (no episode finished): nothing to plot")
    groups = group_runs(plotted)
    fig = Figure(figsize=(12, 4.6), dpi=110, layout="constrained")
    ax_steps, ax_wall = fig.subplots(1, 2, sharey=True)
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for group, color in zip(groups, colors, strict=True):
        for ax, attr in ((ax_steps, "steps"), (ax_wall, "wall_s")):
            xs = [getattr(r, attr).astype(np.float64) for r in group.runs]
            ys = [r.return_mean for r in group.runs]
            if len(group.runs) == 1:
                ax.plot(xs[0], ys[0], color=color, lw=1.6, label=group.label)
                continue
            for x, y in zip(xs, ys, strict=True):  # each seed, thin, to its own end
                ax.plot(x, y, color=color, lw=0.7, alpha=0.45)
            held = [r.solved for r in group.runs]
            grid, mean, lower, upper = aggregate(xs, ys, held)
            note = " (solved runs hold their last value)" if any(held) else ""
            ax.plot(grid, mean, color=color, lw=2.0, label=f"{group.label}: mean{note}")
            ax.fill_between(grid, lower, upper, color=color, alpha=0.2, lw=0, label=f"{group.label}: min-max")
    targets = {r.target_return for r in plotted if r.target_return is not None}
    if len(targets) == 1:
        target = targets.pop()
        for ax in (ax_steps, ax_wall):
            ax.axhline(target, color="0.3", ls="--", lw=1, label=f"target {target:g}")
    ax_steps.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    ax_steps.set_xlabel("global env steps")
    ax_wall.set_xlabel("wall time (s)")
    window = {r.config.get("run.return_window") for r in plotted}
    window_text = f"last {window.pop()} episodes" if len(window) == 1 and None not in window else "recent episodes"
    ax_steps.set_ylabel(f"mean return ({window_text})")
    ax_steps.set_title("return against steps")
    ax_wall.set_title("return against wall time")
    for ax in (ax_steps, ax_wall):
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    ax_steps.legend(loc="best", fontsize=8)
    envs = sorted({r.env_id for r in plotted})
    fig.suptitle(title or f"A3C learning curves: {', '.join(envs)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp)
    tmp.replace(out)
    return out
