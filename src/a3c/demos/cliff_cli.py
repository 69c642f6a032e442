"""`a3c cliff`: the command line of the tutorial's demo (a3c/demos/cliff.py runs it).

a3c cliff [--workers 3] [--backend processes|serial] [--episodes N] [--seed S]
          [--compare-workers 1,3] [--set KEY=VALUE ...] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
from typing import Any

from a3c.demos.cliff import (
    DEFAULT_EPISODES,
    DEFAULT_SEED,
    DEFAULT_WORKERS,
    DEMO_CONFIG,
    OPTIMAL_RETURN,
    SAFE_RETURN,
    run,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `a3c cliff` on an argparse sub-parsers object; dispatches to `main(args)`."""
    from a3c.helptext import HelpFormatter

    p = subparsers.add_parser(
        "cliff",
        help="the tutorial's demo: asynchronous workers solve CliffWalking with shared tables",
        description=(
            "The tutorial's practice script on the a3c engine: WORKERS asynchronous workers "
            "train a tabular actor-critic (a softmax policy table theta[s, a] and a value table "
            "V[s], shared by all workers) on Gymnasium's CliffWalking with n-step advantages and "
            "plain SGD (theta += actor_lr * grad_theta, V += critic_lr * grad_V). Writes "
            "returns.png (episode returns per worker and aggregated), policy_heatmap.png (the "
            "final policy's action probabilities with the greedy path), summary.json "
            "(greedy_return, reaches_goal, episodes, wall_s, workers, action_probs), "
            "config.json, progress.csv and episodes.csv into the run directory."
        ),
        epilog="\n".join(
            [
                "defaults (over the tabular preset; see docs/cliff.md for why):",
                *(f"  {k} = {_show(v)}" for k, v in DEMO_CONFIG.items()),
                "  run.total_steps = episodes * max_episode_steps + 1000",
                "      (a cap; the episode budget stops first)",
                "",
                "examples:",
                "  a3c cliff",
                "  a3c cliff --workers 3 --seed 4 --run-dir runs/cliff-seed4",
                "  a3c cliff --backend serial --episodes 300   (reproducible for a seed)",
                "  a3c cliff --compare-workers 1,3   (the same budget with 1 and 3 workers)",
                "  a3c cliff --set algo.n_steps=10 --set optim.learning_rate=0.1",
            ]
        ),
        formatter_class=HelpFormatter,
    )
    _add_flags(p)
    p.set_defaults(func=main)
    return p


def _add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=DEFAULT_WORKERS,
        help=f"number of asynchronous workers (default {DEFAULT_WORKERS})",
    )
    p.add_argument(
        "--backend",
        choices=["processes", "serial"],
        default="processes",
        help="processes: one process per worker, tables in shared memory (default); serial: "
        "workers interleaved in one process, reproducible for a seed",
    )
    p.add_argument(
        "--episodes",
        type=int,
        metavar="N",
        default=DEFAULT_EPISODES,
        help="training budget: stop once this many episodes have finished, counted across "
        f"workers (default {DEFAULT_EPISODES})",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="S",
        default=DEFAULT_SEED,
        help=f"random seed (default {DEFAULT_SEED})",
    )
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where to write the run (default runs/cliff-DATE-TIME); must not hold a run already",
    )
    p.add_argument(
        "--compare-workers",
        metavar="K1,K2,...",
        help="also run the same episode budget with each of these worker counts (e.g. 1,3) and "
        "draw their aggregate curves against wall time in compare_workers.png",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="assignments",
        help="override any config key over the demo's defaults (repeatable), e.g. --set "
        "algo.n_steps=10",
    )
    p.add_argument(
        "--progress",
        choices=["auto", "bar", "lines", "none"],
        default="none",
        help="training progress on the console: none (default), plain lines, a bar, or auto (a "
        "bar on a terminal)",
    )


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, bool):
        return str(v).lower()
    return "null" if v is None else str(v)


def main(args: argparse.Namespace) -> int:
    """Run `a3c cliff` from parsed arguments; prints the result; 0 on a finished run, 130 on
    Ctrl-C."""
    from a3c.configfile import parse_assignments

    overrides = parse_assignments(getattr(args, "assignments", []) or [])
    result = run(
        args.workers,
        args.backend,
        args.episodes,
        args.seed,
        args.run_dir,
        args.compare_workers,
        overrides,
        getattr(args, "progress", "none"),
    )
    s = result.summary
    verdict = (
        "reaches the goal without falling"
        if s["reaches_goal"]
        else "does NOT reach the goal safely"
    )
    print(
        f"cliff: greedy return {s['greedy_return']:g} (optimal {OPTIMAL_RETURN:g}, safe >= "
        f"{SAFE_RETURN:g}); the greedy policy {verdict}; {s['episodes']} episodes, {s['workers']} "
        f"workers ({s['backend']}), {s['wall_s']:.1f} s -> {result.run_dir}"
    )
    if result.compare:
        print(f"cliff: worker comparison -> {result.files.get('compare_workers', result.run_dir)}")
    return 130 if s.get("stop_reason") == "interrupted" else 0
