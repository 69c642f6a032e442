"""What each command of the `a3c` command line does, from its parsed arguments: train, eval, plot
and export (a3c/cli.py builds the parser and runs them). Each imports torch only when it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from a3c.errors import ConfigError, RunFailure

log = logging.getLogger("a3c")


def cmd_train(args: argparse.Namespace) -> int:
    from a3c.configfile import build_config, parse_assignments

    overrides: dict[str, Any] = parse_assignments(args.assignments)
    flags = {
        "backend.workers": args.workers,
        "backend.name": args.backend,
        "backend.ray_address": args.ray_address,
        "run.total_steps": args.total_steps,
        "run.target_return": args.target_return,
        "run.max_time": args.max_time,
        "run.seed": args.seed,
        "eval.interval_steps": args.eval_interval,
        "eval.target_mean": args.target_eval_return,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if args.target_return == "null":
        overrides["run.target_return"] = None  # never stop on the return
    if args.resume is not None:
        if args.config or args.seed is not None or args.run_dir is not None:
            raise ConfigError(
                "--resume continues a run as it was configured: it takes no --config, --seed or "
                "--run-dir (--set run.*, log.*, eval.* and backend.* keys other than run.seed, "
                "--total-steps, --max-time, --target-return, --eval-interval, "
                "--target-eval-return, --workers, --backend and --ray-address may change)"
            )
        from a3c.agent import A3C  # after the checks on the command line: torch takes a second

        agent = A3C.resume(args.resume, **overrides)
        if args.env_id is not None and args.env_id != agent.config.env.id:
            raise ConfigError(f"{args.resume} is a run on {agent.config.env.id}, not {args.env_id}")
    else:
        if args.env_id is None:
            raise ConfigError("train needs an ENV_ID (or --resume RUN_DIR)")
        # a bad value answers here, before torch loads (the agent builds it again, with the spaces)
        build_config(args.env_id, args.config, overrides)
        from a3c.agent import A3C

        agent = A3C(args.env_id, config_files=args.config, **overrides)
    try:
        summary = agent.learn(run_dir=None if args.resume else args.run_dir, progress=args.progress)
    except (RunFailure, OSError):  # the summary line first (summary.json has it), then the error
        _print_written_summary(agent.run_dir)
        raise
    evals = summary.get("eval") or {}
    best_mean = evals.get("best_mean")
    best = (
        f", eval {evals['latest']['mean']:.1f} "
        f"(best {'-' if best_mean is None else f'{best_mean:.1f}'})"
        if evals.get("latest")
        else ""
    )
    print(
        f"{summary['stop_reason']}: steps {summary['steps']}, episodes {summary['episodes']}, "
        f"return_mean {summary['return_mean']:.1f}{_solved(summary)}{best}, "
        f"wall {summary['wall_s']:.1f}s -> {agent.run_dir}"
    )
    if summary.get("error"):  # e.g. a full disk while finishing: what could be written was
        print(f"a3c: error: {summary['error']}", file=sys.stderr)
        return 1
    # 128 + SIGINT / SIGTERM
    return {"interrupted": 130, "terminated": 143}.get(summary["stop_reason"], 0)


def _print_written_summary(run_dir: Path | None) -> None:
    """The summary line of a run that failed, from its summary.json (if it could be written)."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text()) if run_dir else None
    except (OSError, ValueError):
        return
    if summary:
        print(
            f"{summary['stop_reason']}: steps {summary['steps']}, episodes {summary['episodes']}, "
            f"wall {summary['wall_s']:.1f}s -> {run_dir}"
        )


def cmd_eval(args: argparse.Namespace) -> int:
    from a3c.agent import A3C
    from a3c.io import write_json_atomic

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    target = Path(args.target)
    # before anything is loaded or played: no results are thrown away for want of a place
    if args.output:
        check_output(Path(args.output), "--output")
    agent = A3C.load(args.target, checkpoint=args.checkpoint)
    out = (
        Path(args.output)
        if args.output
        else (target if target.is_dir() else target.parent) / "eval.json"
    )
    check_output(out, "eval.json", "; write the results elsewhere with --output FILE")
    result = agent.evaluate(
        episodes=args.episodes,
        deterministic=not args.stochastic,
        seed=args.seed,
        video_dir=args.video,
    )
    kind = agent.checkpoint_kind
    result = {
        "checkpoint": str(agent.checkpoint_path),
        "checkpoint_kind": kind,
        "checkpoint_steps": agent.num_timesteps,
        **result,
    }
    mode = "stochastic" if args.stochastic else "deterministic"
    line = (
        f"mean return {result['mean']:.2f} +/- {result['std']:.2f} over {result['episodes']} "
        f"episodes ({mode}); "
        f"min {result['min']:.1f}, max {result['max']:.1f}; "
        f"{'' if kind == 'given' else f'{kind} '}checkpoint {agent.checkpoint_path}"
    )
    try:
        write_json_atomic(out, result)
    # e.g. the disk filled up while the episodes played: the results still count
    except OSError as e:
        print(line)
        print(
            f"a3c: error: cannot write {out}: {e.strerror or e} (the results are printed above)",
            file=sys.stderr,
        )
        return 1
    print(f"{line} -> {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from a3c.agent import A3C

    fmt = args.format or (
        "torchscript" if args.output and Path(args.output).suffix == ".pt" else "onnx"
    )
    target = Path(args.target)
    default = (target if target.is_dir() else target.parent) / (
        "policy.pt" if fmt == "torchscript" else "policy.onnx"
    )
    out = Path(args.output) if args.output else default
    if args.output or target.exists():  # a missing RUN_DIR is A3C.load's one line
        check_output(out, "--output" if args.output else str(out.name))
    agent = A3C.load(args.target, checkpoint=args.checkpoint)
    path = agent.export(out, format=fmt, with_distribution=args.with_distribution)
    kind = agent.checkpoint_kind
    print(
        f"{fmt} policy of the {'' if kind == 'given' else f'{kind} '}checkpoint "
        f"{agent.checkpoint_path} ({agent.num_timesteps} steps) -> {path} (inputs and outputs: "
        f"{path}.json)"
    )
    return 0


def _solved(summary: dict) -> str:
    """The summary line's word on the target: none when the run had none (`--target-return
    null`)."""
    if summary.get("target_return") is None:
        return ""
    return f", solved {summary['solved']} (target {summary['target_return']:g})"


def check_output(out: Path, what: str, hint: str = "") -> None:
    """A one-line ConfigError unless the file `out` can be written: its folder exists, is a
    directory and takes a new file (not read-only, not forbidden), and `out` is not a directory."""
    from a3c.io import probe_writable

    folder = out.parent
    if out.is_dir():
        raise ConfigError(f"{what} {out} is a directory; name a file")
    if not folder.is_dir():
        raise ConfigError(
            f"{what} {out}: its folder {folder} "
            f"{'is not a directory' if folder.exists() else 'does not exist'}"
        )
    try:
        probe_writable(folder)
    except OSError as e:
        raise ConfigError(
            f"{what} {out}: cannot write into {folder} ({e.strerror or e}){hint}"
        ) from None


def cmd_plot(args: argparse.Namespace) -> int:
    from a3c.plots import plot_runs

    for run_dir in args.run_dirs:  # first: a mistyped RUN_DIR is not "a folder that does not exist"
        if not (Path(run_dir) / "progress.csv").is_file():
            raise ConfigError(f"{run_dir} is not a run directory (it has no progress.csv)")
    out = (
        Path(args.out)
        if args.out
        else (
            Path(args.run_dirs[0]) / "curves.png" if len(args.run_dirs) == 1 else Path("curves.png")
        )
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # --out may name a new folder
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create its folder ({e.strerror or e})") from None
    # before the runs are read and drawn
    check_output(
        out,
        "--out" if args.out else "curves.png",
        "" if args.out else "; draw it elsewhere with --out FILE",
    )
    try:
        path = plot_runs(args.run_dirs, out, title=args.title)
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"curves of {len(args.run_dirs)} run(s) -> {path}")
    return 0
