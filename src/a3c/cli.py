"""The `a3c` command line (also `python -m a3c`).

    a3c train ENV_ID [--workers N] [--backend B] [--total-steps N] [--target-return R]
                     [--max-time S] [--eval-interval N] [--target-eval-return R]
                     [--seed S] [--run-dir DIR] [--config FILE ...] [--set key=value ...]
    a3c train --resume RUN_DIR [--total-steps N] [--max-time S] [--set run.KEY=VALUE ...]
                   (run.*, log.*, eval.* and backend.* keys other than run.seed may change)
    a3c eval RUN_DIR|CHECKPOINT [--checkpoint best|latest|PATH] [--episodes N]
                                [--deterministic|--stochastic] [--video DIR]
    a3c plot RUN_DIR [RUN_DIR ...] [--out FILE]

Bad input (an unknown env id, an unsupported space, an invalid hyperparameter, an unknown --set key,
a malformed config file, an unusable checkpoint, a folder that cannot be written) prints one line,
`a3c: error: ...`, and exits with code 2. A storage fault during a run (a full disk) prints one line
and exits with code 1; the run directory keeps what was complete.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a3c import helptext
from a3c.errors import A3CError, ConfigError, RunFailure, first_line

log = logging.getLogger("a3c")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a3c",
        description="Asynchronous Advantage Actor-Critic (A3C) for Gymnasium environments: train "
        "an agent, evaluate it, plot its learning curves.",
        epilog=helptext.TOP_EPILOG,
        formatter_class=helptext.HelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {_version()}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    _add_train(sub)
    _add_eval(sub)
    _add_plot(sub)
    from a3c.demos import cliff

    cliff.add_parser(sub)
    return parser


def _add_train(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train an agent on an env and write a run directory (or --resume one)",
        description=(
            "Train A3C on ENV_ID. Writes config.json, progress.csv, episodes.csv, TensorBoard "
            "events, "
            "checkpoints/, summary.json and curves.png into the run directory. Every setting is a "
            "config "
            "key (listed below with its default); the flags are shortcuts for the common ones."
        ),
        epilog=helptext.config_epilog(),
        formatter_class=helptext.HelpFormatter,
    )
    train.add_argument(
        "env_id",
        metavar="ENV_ID",
        nargs="?",
        help="a Gymnasium env id (CartPole-v1), or module:Class / module:make_fn (optional with "
        "--resume)",
    )
    budget = train.add_argument_group("budget and stopping (the first reached ends the run)")
    budget.add_argument(
        "--total-steps",
        type=int,
        metavar="N",
        help="global env-step budget (run.total_steps, default 1000000)",
    )
    budget.add_argument(
        "--target-return",
        type=_target_return,
        metavar="R",
        help="stop once return_mean reaches R: a number, auto (the env's reward threshold; the "
        "default) or null (never)",
    )
    budget.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="stop after this much wall time (of the whole run, when resumed; run.max_time)",
    )
    workers = train.add_argument_group("workers")
    workers.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="number of asynchronous workers (backend.workers, default 2)",
    )
    workers.add_argument(
        "--backend",
        choices=["processes", "serial", "ray"],
        help="where workers run: processes (the default), serial (one process, reproducible) or "
        "ray (backend.name)",
    )
    workers.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --backend ray: the cluster to join, auto or HOST:PORT (backend.ray_address; "
        "default: a local Ray)",
    )
    evaluation = train.add_argument_group("evaluation during training (off by default)")
    evaluation.add_argument(
        "--eval-interval",
        type=int,
        metavar="N",
        help="evaluate the global parameters greedily every N global env steps and keep the best "
        "as checkpoints/best/ (eval.interval_steps)",
    )
    evaluation.add_argument(
        "--target-eval-return",
        type=float,
        metavar="R",
        help="stop once an evaluation's mean return reaches R (eval.target_mean)",
    )
    config = train.add_argument_group("configuration")
    config.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML config file (repeatable; later files win)",
    )
    config.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="assignments",
        help="set a config key listed below, e.g. algo.n_steps=5 (repeatable; wins over --config)",
    )
    config.add_argument("--seed", type=int, metavar="S", help="random seed (run.seed, default 0)")
    output = train.add_argument_group("output")
    output.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where to write the run (default runs/ENV_ID-DATE-TIME); must not hold a run already",
    )
    output.add_argument(
        "--progress",
        choices=["auto", "bar", "lines", "none"],
        default="auto",
        help="progress on the console: a bar on a terminal, plain lines otherwise (auto, the "
        "default), or always a bar, lines, or nothing",
    )
    resume = train.add_argument_group("resume")
    resume.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest complete checkpoint (no ENV_ID, "
        "--config, --seed or --run-dir; see resume below)",
    )
    train.set_defaults(func=cmd_train)


def _add_eval(sub: Any) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a trained agent: mean and std of the return, eval.json, optional video",
        description="Play whole episodes with a trained agent and print the mean and std of the "
        "return.",
        epilog=helptext.EVAL_EPILOG,
        formatter_class=helptext.HelpFormatter,
    )
    ev.add_argument(
        "target",
        metavar="RUN_DIR|CHECKPOINT",
        help="a run directory (its best checkpoint, else its newest) or a checkpoint directory",
    )
    ev.add_argument(
        "--checkpoint",
        metavar="best|latest|PATH",
        help="which checkpoint of RUN_DIR: best, latest, or a path or name (default: best if "
        "there is one)",
    )
    play = ev.add_argument_group("episodes")
    play.add_argument(
        "--episodes", type=int, default=10, metavar="N", help="episodes to play (default 10)"
    )
    mode = play.add_mutually_exclusive_group()
    mode.add_argument(
        "--deterministic",
        dest="stochastic",
        action="store_false",
        help="take the most likely action (the default)",
    )
    mode.add_argument(
        "--stochastic",
        dest="stochastic",
        action="store_true",
        help="sample actions from the policy",
    )
    play.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="seed of the evaluation envs (default: the run's seed)",
    )
    output = ev.add_argument_group("output")
    output.add_argument(
        "--output",
        metavar="FILE",
        help="where to write the results (default: eval.json in RUN_DIR or CHECKPOINT)",
    )
    output.add_argument(
        "--video",
        metavar="DIR",
        help="record every episode as an mp4 into DIR (Gymnasium's RecordVideo; needs the video "
        "extra)",
    )
    ev.set_defaults(func=cmd_eval, stochastic=False)


def _add_plot(sub: Any) -> None:
    plot = sub.add_parser(
        "plot",
        help="draw learning curves (curves.png) of one or more runs",
        description="Draw the learning curves of one or more run directories into a PNG.",
        epilog=helptext.PLOT_EPILOG,
        formatter_class=helptext.HelpFormatter,
    )
    plot.add_argument(
        "run_dirs", metavar="RUN_DIR", nargs="+", help="run directories (with progress.csv)"
    )
    plot.add_argument(
        "--out",
        metavar="FILE",
        help="the PNG to write (default RUN_DIR/curves.png for one run, ./curves.png for several)",
    )
    plot.add_argument("--title", metavar="TEXT", help="the figure's title (default: the env ids)")
    plot.set_defaults(func=cmd_plot)


def _target_return(text: str) -> float | str:
    """--target-return: a number, auto or null (kept as the string "null" until cmd_train)."""
    if text in ("auto", "null", "none"):
        return "auto" if text == "auto" else "null"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, auto or null, got {text!r}") from None


def _other_backend(args: argparse.Namespace) -> bool:
    """Whether `train` asks for a backend other than processes (then no fork server):
    --backend serial|ray, or --set backend=serial / backend.name=ray."""
    if args.backend in ("serial", "ray"):
        return True
    for assignment in args.assignments:
        key, _, chosen = assignment.replace(" ", "").partition("=")
        if key in ("backend", "backend.name") and chosen in ("serial", "ray"):
            return True
    return False


def _version() -> str:
    from a3c.version import __version__

    return __version__


def cmd_train(args: argparse.Namespace) -> int:
    from a3c.agent import A3C
    from a3c.configfile import parse_assignments

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
        agent = A3C.resume(args.resume, **overrides)
        if args.env_id is not None and args.env_id != agent.config.env.id:
            raise ConfigError(f"{args.resume} is a run on {agent.config.env.id}, not {args.env_id}")
    else:
        if args.env_id is None:
            raise ConfigError("train needs an ENV_ID (or --resume RUN_DIR)")
        agent = A3C(args.env_id, config_files=args.config, **overrides)
    try:
        summary = agent.learn(run_dir=None if args.resume else args.run_dir, progress=args.progress)
    except RunFailure:
        _draw_curves(agent.run_dir)
        raise
    _draw_curves(agent.run_dir)
    evals = summary.get("eval") or {}
    best = (
        f", eval {evals['latest']['mean']:.1f} (best {evals['best_mean']:.1f})"
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


def _draw_curves(run_dir: Path | None) -> None:
    """curves.png at the end of every run; a plotting problem never fails the run."""
    from a3c.plots import plot_runs

    if run_dir is None:
        return
    try:
        plot_runs([run_dir], run_dir / "curves.png")
    except A3CError:
        pass  # no episode finished: nothing to draw
    except Exception as e:
        log.warning("a3c: warning: could not draw curves.png: %s", e)


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
    except (
        OSError
    ) as e:  # e.g. the disk filled up while the episodes played: the results still count
        print(line)
        print(
            f"a3c: error: cannot write {out}: {e.strerror or e} (the results are printed above)",
            file=sys.stderr,
        )
        return 1
    print(f"{line} -> {out}")
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # usage errors and --help answer before any process starts
    args = build_parser().parse_args(argv)
    if args.command == "train" and not _other_backend(args):
        from a3c.backends import prepare

        prepare("processes", refuse_in_child=False)  # the fork server imports torch meanwhile
    try:
        return args.func(args)
    except A3CError as e:
        print(f"a3c: error: {e}", file=sys.stderr)
        return 2
    except RunFailure as e:
        print(
            f"a3c: error: {e} (the run directory keeps what was written, and a checkpoint to "
            "--resume from)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("a3c: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the disk filled up, or a folder became read-only, while a command wrote
        where = f": {e.filename}" if e.filename else ""
        print(
            f"a3c: error: {e.strerror or first_line(e)}{where} (the run directory keeps what was "
            "complete)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
