"""The plots' figures: learning curves of run directories (`plot_runs`, `curves_figure`), episode
returns across workers (`returns_figure`, `compare_workers_figure`) and a tabular policy
(`policy_heatmap_figure`); `save_figure` writes any of them as a PNG, atomically.

Drawing uses matplotlib's object API on the Agg canvas, never pyplot: no display, no global backend
switch, safe in a headless trainer process. The data they draw comes from `a3c.plots.data`.

    data = load_episodes(run_dir / "episodes.csv")
    save_figure(returns_figure(data, optimal_return=-13), run_dir / "returns.png")
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from a3c.errors import A3CError
from a3c.io import write_bytes_atomic
from a3c.plots.data import (
    EpisodeData,
    Group,
    RunCurve,
    aggregate,
    aggregate_curve,
    greedy_actions,
    group_runs,
    load_run,
    moving_average,
    steps_label,
)

DPI = 120
# Returns of early random episodes run to the thousands (every fall costs -100); a symmetric-log
# axis keeps them on the figure while the last 100 units, where the learned policies sit, stay
# linear.
SYMLOG_LINTHRESH = 100.0


def save_figure(fig: Figure, path: str | Path, dpi: float | None = DPI) -> Path:
    """Save a figure as a PNG atomically (rendered in memory, then `a3c.io.write_bytes_atomic`): a
    reader never sees half an image. `dpi=None` keeps the figure's own. Returns the path."""
    FigureCanvasAgg(fig)  # attach an Agg canvas; no pyplot involved
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    return write_bytes_atomic(path, buf.getvalue())


# --- learning curves ---------------------------------------------------------------------------


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Draw curves.png: mean return against global steps and against wall time, one line per run or
    seed group (mean with a min-max band), and the runs' evaluations (eval.csv). Returns the
    path."""
    fig = curves_figure([load_run(p) for p in run_dirs], title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out, dpi=None)


def curves_figure(runs: Sequence[RunCurve], title: str | None = None) -> Figure:
    """The learning-curves figure of `plot_runs`: return against steps (left) and wall time
    (right)."""
    plotted = [r for r in runs if len(r.steps)]
    if not plotted:
        raise A3CError("no run has a finite return_mean yet (no episode finished): nothing to plot")
    groups = group_runs(plotted)
    fig = Figure(figsize=(12, 4.6), dpi=110, layout="constrained")
    ax_steps, ax_wall = fig.subplots(1, 2, sharey=True)
    for k, group in enumerate(groups):
        for ax, attr in ((ax_steps, "steps"), (ax_wall, "wall_s")):
            _draw_group(ax, group, attr, f"C{k % 10}")
    targets = {r.target_return for r in plotted if r.target_return is not None}
    if len(targets) == 1:
        target = targets.pop()
        for ax in (ax_steps, ax_wall):
            ax.axhline(target, color="0.3", ls="--", lw=1, label=f"target {target:g}")
    ax_steps.xaxis.set_major_formatter(FuncFormatter(steps_label))
    ax_steps.set_xlabel("global env steps")
    ax_wall.set_xlabel("wall time (s)")
    window = {r.config.get("run.return_window") for r in plotted}
    window_text = (
        f"last {window.pop()} episodes"
        if len(window) == 1 and None not in window
        else "recent episodes"
    )
    evals = " and evaluations (dashed)" if any(r.evals is not None for r in plotted) else ""
    ax_steps.set_ylabel(f"mean return ({window_text}){evals}")
    ax_steps.set_title("return against steps")
    ax_wall.set_title("return against wall time")
    for ax in (ax_steps, ax_wall):
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    ax_steps.legend(loc="best", fontsize=8)
    envs = sorted({r.env_id for r in plotted})
    fig.suptitle(title or f"A3C learning curves: {', '.join(envs)}")
    return fig


def _draw_group(ax: Any, group: Group, attr: str, color: str) -> None:
    """One run as a line; a seed group as each run thin to its own end, their mean and min-max
    band."""
    xs = [getattr(r, attr).astype(np.float64) for r in group.runs]
    ys = [r.return_mean for r in group.runs]
    _draw_evals(ax, group, attr, color)
    if len(group.runs) == 1:
        ax.plot(xs[0], ys[0], color=color, lw=1.6, label=group.label)
        return
    for x, y in zip(xs, ys, strict=True):  # each seed, thin, to its own end
        ax.plot(x, y, color=color, lw=0.7, alpha=0.45)
    held = [r.solved for r in group.runs]
    grid, mean, lower, upper = aggregate(xs, ys, held)
    note = " (solved runs hold their last value)" if any(held) else ""
    ax.plot(grid, mean, color=color, lw=2.0, label=f"{group.label}: mean{note}")
    ax.fill_between(
        grid, lower, upper, color=color, alpha=0.2, lw=0, label=f"{group.label}: min-max"
    )


def _draw_evals(ax: Any, group: Group, attr: str, color: str) -> None:
    """Each run's evaluations during training (eval.csv's mean), dashed with markers."""
    runs = [r for r in group.runs if r.evals is not None]
    for k, run in enumerate(runs):
        assert run.evals is not None
        label = (
            f"{group.label}: evaluations ({run.config.get('eval.episodes', '?')} episodes each)"
            if k == 0
            else None
        )
        ax.plot(
            getattr(run.evals, attr),
            run.evals.mean,
            color=color,
            ls="--",
            lw=1.0,
            marker="o",
            ms=3,
            alpha=0.9,
            label=label,
        )


# --- episode returns and tabular policies (the cliff demo's figures) ---------------------------


_RETURN_TICKS = (-10000, -5000, -2000, -1000, -500, -200, -100, -50, -25, 0)


def _return_axis(ax: Any, optimal_return: float | None, symlog: bool = True) -> None:
    if symlog:
        ax.set_yscale("symlog", linthresh=SYMLOG_LINTHRESH)
        ax.yaxis.set_major_locator(FixedLocator(_RETURN_TICKS))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if optimal_return is not None:
        ax.axhline(
            optimal_return,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"optimal return ({optimal_return:g})",
        )
    ax.grid(True, which="major", alpha=0.3)


def returns_figure(
    data: EpisodeData,
    window: int = 50,
    worker_window: int | None = None,
    optimal_return: float | None = None,
    zoom: tuple[float, float] | None = None,
    title: str = "Episode returns across asynchronous workers",
) -> Figure:
    """Episode return against episodes: each worker's moving average faint, the aggregate bold.

    The x axis is the global episode number (the order episodes finished across all workers), so
    the workers' curves share one time axis with the aggregate. A worker's moving average spans
    `worker_window` of its own episodes (default: window / workers, the same stretch of time as
    the aggregate's). With `zoom=(low, high)` a second, linear panel shows that return range.
    """
    fig = Figure(figsize=(10, 7.5 if zoom else 5.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2]) if zoom else [fig.add_subplot()]
    x_all, _, agg = aggregate_curve(data, window)
    workers = data.workers
    worker_window = worker_window or max(1, round(window / max(1, len(workers))))
    for i, ax in enumerate(axes):
        for k, w in enumerate(workers):
            mask = data.worker == w
            ax.plot(
                x_all[mask],
                moving_average(data.returns[mask], worker_window),
                color=f"C{(k + 1) % 10}",
                alpha=0.5,
                linewidth=1.0,
                label=f"worker {w} (moving avg. {worker_window})",
            )
        ax.plot(x_all, agg, color="C0", linewidth=2.6, label=f"all workers (moving avg. {window})")
        _return_axis(ax, optimal_return, symlog=i == 0)
    axes[0].set_ylabel("episode return (symlog scale)")
    axes[0].set_title(title)
    axes[0].legend(loc="lower right", fontsize=9)
    if zoom:
        axes[1].set_ylim(*zoom)
        axes[1].set_ylabel("episode return (zoom)")
    axes[-1].set_xlabel("episode (finished, counted across all workers)")
    if len(data):
        axes[-1].set_xlim(1, max(2, len(data)))
    return fig


def compare_workers_figure(
    runs: Mapping[str, EpisodeData],
    window: int = 50,
    optimal_return: float | None = None,
    zoom: tuple[float, float] | None = None,
    title: str = "Aggregate return: 1 vs several asynchronous workers, same episode budget",
) -> Figure:
    """Aggregate moving-average return of several runs, against wall time (left) and episodes
    (right); with `zoom=(low, high)` a second row shows that return range on a linear axis."""
    fig = Figure(figsize=(13, 8 if zoom else 5), layout="constrained")
    grid = np.asarray(
        fig.subplots(
            2 if zoom else 1, 2, sharex="col", squeeze=False, height_ratios=[3, 2] if zoom else None
        )
    )
    for k, (label, data) in enumerate(runs.items()):
        x, wall, agg = aggregate_curve(data, window)
        for row in grid:
            row[0].plot(wall, agg, color=f"C{k}", linewidth=2.2, label=label)
            row[1].plot(x, agg, color=f"C{k}", linewidth=2.2, label=label)
    for i, row in enumerate(grid):
        for ax in row:
            _return_axis(ax, optimal_return, symlog=i == 0)
            if zoom and i == 1:
                ax.set_ylim(*zoom)
    grid[0, 0].legend(loc="lower right", fontsize=9)
    grid[-1, 0].set_xlabel("wall time since start (s, process start-up included)")
    grid[-1, 1].set_xlabel("episode (counted across all workers)")
    grid[0, 0].set_ylabel(f"aggregate return, moving avg. {window}\n(symlog scale)")
    if zoom:
        grid[1, 0].set_ylabel("aggregate return (zoom)")
    grid[0, 0].set_title("against wall time")
    grid[0, 1].set_title("against episodes")
    fig.suptitle(title)
    return fig


def policy_heatmap_figure(
    probs: np.ndarray,
    shape: tuple[int, int],
    action_names: Sequence[str],
    path: Sequence[int] | None = None,
    hazards: Sequence[int] = (),
    marks: Mapping[int, tuple[str, str]] | None = None,
    terminal: Sequence[int] = (),
    hazard_label: str = "cliff",
    title: str = "Policy: probability of each action per cell",
) -> Figure:
    """One panel per action: pi(a|s) on the grid, hazards hatched, marked cells lettered, greedy
    path drawn.

    Args:
      probs: `[n_states, n_actions]` action probabilities, states numbered row-major over `shape`.
      shape: (rows, cols) of the grid.
      action_names: a name per action (panel titles).
      path: states visited by the greedy policy, drawn as a line over every panel.
      hazards: states to hatch (e.g. the cliff); their probabilities are never trained.
      marks: state -> (letter, meaning), e.g. {36: ("S", "start"), 47: ("G", "goal")}.
      terminal: states where no action is ever taken (their letter replaces the probability).
    """
    probs = np.asarray(probs, dtype=np.float64)
    rows, cols = shape
    if probs.shape != (rows * cols, len(action_names)):
        raise ValueError(
            f"probs must be [{rows * cols}, {len(action_names)}], got {list(probs.shape)}"
        )
    marks = dict(marks or {})
    n = len(action_names)
    ncols = 2 if n == 4 else n
    nrows = -(-n // ncols)
    fig = Figure(figsize=(6.2 * ncols + 1.2, 2.6 * nrows + 1.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    greedy = greedy_actions(probs)
    image = None
    for a, ax in enumerate(axes[:n]):
        grid = probs[:, a].reshape(rows, cols)
        image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, origin="upper")
        for s in range(rows * cols):
            _draw_cell(ax, s, grid, cols, greedy[s] == a, s in hazards, marks.get(s), s in terminal)
        if path is not None and len(path) > 1:
            pr, pc = np.divmod(np.asarray(path), cols)
            ax.plot(pc, pr, color="#ff3b30", linewidth=2.0, marker="o", markersize=3, alpha=0.75)
        ax.set_title(f"P({action_names[a]} | cell)")
        ax.set_xticks(range(cols))
        ax.set_yticks(range(rows))
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    for ax in axes[n:]:
        ax.set_visible(False)
    assert image is not None  # there is at least one action
    cbar = fig.colorbar(image, ax=list(axes[:n]), shrink=0.9, pad=0.02)
    cbar.set_label("probability of the action")
    handles: list[Artist] = [
        Patch(facecolor="0.35", hatch="//", edgecolor="white", label=hazard_label)
    ]
    if path is not None and len(path) > 1:
        handles.append(_line_handle("greedy path"))
    labels = ", ".join(f"{letter} = {meaning}" for letter, meaning in dict.fromkeys(marks.values()))
    if labels:
        handles.append(Patch(facecolor="black", alpha=0.6, label=labels))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)
    fig.suptitle(title)
    return fig


def _draw_cell(
    ax: Any,
    s: int,
    grid: np.ndarray,
    cols: int,
    greedy: bool,
    hazard: bool,
    mark: tuple[str, str] | None,
    terminal: bool,
) -> None:
    """One cell of a policy panel: hatched if a hazard; else its probability (bold where the action
    is the greedy one), with the mark's letter in its corner, or alone in a terminal cell."""
    r, c = divmod(s, cols)
    if hazard:
        ax.add_patch(
            Rectangle(
                (c - 0.5, r - 0.5),
                1,
                1,
                facecolor="0.35",
                edgecolor="white",
                hatch="//",
                linewidth=0.5,
            )
        )
        return
    if mark is not None:  # a letter in the cell's corner; a terminal cell gets only its letter
        ax.text(
            c if terminal else c - 0.42,
            r if terminal else r - 0.38,
            mark[0],
            ha="center" if terminal else "left",
            va="center" if terminal else "top",
            fontsize=11 if terminal else 7,
            fontweight="bold",
            color="white",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.6},
        )
        if terminal:
            return
    p = grid[r, c]
    ax.text(
        c,
        r,
        f"{p:.2f}",
        ha="center",
        va="center",
        fontsize=6.5,
        color="black" if p > 0.6 else "white",
        fontweight="bold" if greedy else "normal",
    )


def _line_handle(label: str) -> Line2D:
    return Line2D([], [], color="#ff3b30", linewidth=2.2, marker="o", markersize=3, label=label)
