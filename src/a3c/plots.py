"""Plotting helpers for episode returns and tabular policies (the cliff demo's figures).

Split as Stable-Baselines3's results_plotter is: data transforms (`load_episodes`,
`moving_average`, `aggregate_curve`, `greedy_actions`) apart from drawing (`*_figure`), so the
transforms are testable without a figure. Drawing uses matplotlib's object API on the Agg canvas,
never pyplot: no display, no global backend switch, safe in a headless trainer process.

    data = load_episodes(run_dir / "episodes.csv")
    save_figure(returns_figure(data, optimal_return=-13), run_dir / "returns.png")
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from a3c.errors import A3CError

DPI = 120
# Returns of early random episodes run to the thousands (every fall costs -100); a symmetric-log
# axis keeps them on the figure while the last 100 units, where the learned policies sit, stay linear.
SYMLOG_LINTHRESH = 100.0


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


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Save a PNG atomically (temp file, then rename): a reader never sees half an image."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    FigureCanvasAgg(fig)  # attach an Agg canvas; no pyplot involved
    fig.savefig(tmp, dpi=dpi, format="png")
    os.replace(tmp, path)
    return path


_RETURN_TICKS = (-10000, -5000, -2000, -1000, -500, -200, -100, -50, -25, 0)


def _return_axis(ax, optimal_return: float | None, symlog: bool = True) -> None:  # noqa: ANN001
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    if symlog:
        ax.set_yscale("symlog", linthresh=SYMLOG_LINTHRESH)
        ax.yaxis.set_major_locator(FixedLocator(_RETURN_TICKS))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if optimal_return is not None:
        ax.axhline(optimal_return, color="black", linestyle="--", linewidth=1.2, label=f"optimal return ({optimal_return:g})")
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
            ax.plot(x_all[mask], moving_average(data.returns[mask], worker_window), color=f"C{(k + 1) % 10}", alpha=0.5, linewidth=1.0, label=f"worker {w} (moving avg. {worker_window})")
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
    grid = np.asarray(fig.subplots(2 if zoom else 1, 2, sharex="col", squeeze=False, height_ratios=[3, 2] if zoom else None))
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
    """One panel per action: pi(a|s) on the grid, hazards hatched, marked cells lettered, greedy path drawn.

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
        raise ValueError(f"probs must be [{rows * cols}, {len(action_names)}], got {list(probs.shape)}")
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
            r, c = divmod(s, cols)
            if s in hazards:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor="0.35", edgecolor="white", hatch="//", linewidth=0.5))
                continue
            if s in marks:  # a letter in the cell's corner; a terminal cell gets only its letter
                centred = s in terminal
                ax.text(c if centred else c - 0.42, r if centred else r - 0.38, marks[s][0], ha="center" if centred else "left", va="center" if centred else "top", fontsize=11 if centred else 7, fontweight="bold", color="white", bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.6})
                if centred:
                    continue
            p = grid[r, c]
            ax.text(c, r, f"{p:.2f}", ha="center", va="center", fontsize=6.5, color="black" if p > 0.6 else "white", fontweight="bold" if greedy[s] == a else "normal")
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
    cbar = fig.colorbar(image, ax=list(axes[:n]), shrink=0.9, pad=0.02)
    cbar.set_label("probability of the action")
    handles = [Patch(facecolor="0.35", hatch="//", edgecolor="white", label=hazard_label)]
    if path is not None and len(path) > 1:
        handles.append(_line_handle("greedy path"))
    labels = ", ".join(f"{letter} = {meaning}" for letter, meaning in dict.fromkeys(marks.values()))
    if labels:
        handles.append(Patch(facecolor="black", alpha=0.6, label=labels))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)
    fig.suptitle(title)
    return fig


def _line_handle(label: str):  # noqa: ANN202
    from matplotlib.lines import Line2D

    return Line2D([], [], color="#ff3b30", linewidth=2.2, marker="o", markersize=3, label=label)
