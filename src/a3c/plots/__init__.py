"""Plots of runs: `a3c.plots.data` reads run directories and transforms them (no matplotlib),
`a3c.plots.figures` draws them (matplotlib's object API on Agg, never pyplot). Split as
Stable-Baselines3's results_plotter is, so the transforms are testable without a figure.

Every public name of both is here: `from a3c.plots import plot_runs, load_run`. The figures are
imported on first use, so reading data does not pay matplotlib's import (about a second).

    from a3c import plots
    data = plots.load_episodes(run_dir / "episodes.csv")
    plots.save_figure(plots.returns_figure(data, optimal_return=-13), run_dir / "returns.png")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a3c.errors import A3CError
from a3c.plots.data import (
    NOT_LEARNING,
    EpisodeData,
    EvalCurve,
    Group,
    RunCurve,
    aggregate,
    aggregate_curve,
    greedy_actions,
    group_runs,
    load_episodes,
    load_evals,
    load_run,
    moving_average,
    steps_label,
)

if TYPE_CHECKING:
    from a3c.plots.figures import (
        DPI,
        SYMLOG_LINTHRESH,
        compare_workers_figure,
        curves_figure,
        plot_runs,
        policy_heatmap_figure,
        returns_figure,
        save_figure,
    )

__all__ = [
    # a3c.plots.data
    "NOT_LEARNING",
    "EpisodeData",
    "EvalCurve",
    "Group",
    "RunCurve",
    "aggregate",
    "aggregate_curve",
    "greedy_actions",
    "group_runs",
    "load_episodes",
    "load_evals",
    "load_run",
    "moving_average",
    "steps_label",
    # a3c.plots.figures, imported on first use
    "DPI",
    "SYMLOG_LINTHRESH",
    "compare_workers_figure",
    "curves_figure",
    "plot_runs",
    "policy_heatmap_figure",
    "returns_figure",
    "save_figure",
]
_FIGURES = frozenset(__all__) - frozenset(globals())  # the names not imported above


def __getattr__(name: str) -> Any:
    if name in _FIGURES:
        from a3c.plots import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


log = logging.getLogger("a3c")


def draw_run_curves(run_dir: Path | None) -> None:
    """curves.png at the end of every run (the CLI's and learn()'s); a plotting problem never fails
    the run."""
    from a3c.plots.figures import plot_runs

    if run_dir is None:
        return
    try:
        plot_runs([run_dir], run_dir / "curves.png")
    except A3CError:
        pass  # no episode finished: nothing to draw
    except Exception as e:
        log.warning("a3c: warning: could not draw curves.png: %s", e)
