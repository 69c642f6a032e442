"""The `a3c` command line.

    a3c train ENV_ID [--workers N] [--backend B] [--total-steps N] [--target-return R] [--max-time S]
                     [--eval-interval N] [--target-eval-return R]
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
import json
import logging
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a3c.errors import A3CError, ConfigError, RunFailure, first_line

log = logging.getLogger("a3c")


def _config_epilog() -> str:
    from a3c.config import field_docs

    lines = ["config keys (--set KEY=VALUE; a bare name works where it is unique; docs/configuration.md):"]
    for key, default, doc in field_docs():
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        lines.append(f"  {key} = {shown}")
        lines += [f"      {w}" for w in textwrap.wrap(doc, 90)]
    lines += [
        "",
        "presets: the env family's preset (a3c/presets/*.yaml) is applied first, then --config",
        "files in order, then --set values, then the explicit flags above.",
        "",
        "resume: `a3c train --resume RUN_DIR` continues a stopped or killed run from its latest",
        "checkpoint (RUN_DIR/checkpoints/): counters, optimizer statistics, the learning-rate schedule",
        "and wall time carry on, and progress.csv / episodes.csv are appended to (rows past the",
        "checkpoint, the lost work, are cut off). Only run.*, log.*, eval.* and backend.* settings",
        "other than the seed may change (--total-steps, --max-time, --target-return, --workers,",
        "--backend, --eval-interval, --target-eval-return, --set run.KEY=VALUE, --set log.KEY=VALUE,",
        "--set eval.KEY=VALUE, --set backend.KEY=VALUE).",
        "",
        "evaluation during training (off by default; on in the Atari and MuJoCo presets): every",
        "eval.interval_steps global steps and/or eval.interval_s seconds an evaluator beside the",
        "workers plays eval.episodes greedy episodes with the current global parameters; the",
        "results go to eval.csv, TensorBoard eval/ and summary.json, and the best evaluation's state",
        "to checkpoints/best/ (docs/evaluation.md).",
        "",
        "examples:",
        "  a3c train CartPole-v1",
        "  a3c train CartPole-v1 --workers 2 --seed 3 --set n_steps=5 --set optim.learning_rate=7e-4",
        "  a3c train Acrobot-v1 --backend serial --total-steps 200000 --run-dir runs/acrobot",
        "  a3c train CartPole-v1 --run-dir runs/cp --set log.checkpoint_interval_steps=20000",
        "  a3c train CartPole-v1 --eval-interval 20000 --target-eval-return 500 --target-return null",
        "  a3c train --resume runs/cp",
    ]
    return "\n".join(lines)


EVAL_EPILOG = """\
RUN_DIR evaluates the run's best checkpoint (checkpoints/best/, kept by evaluations during
training) if it has one, else its newest complete checkpoint by step (an unreadable newest one
falls back to the one before, with a warning); --checkpoint picks one: best, latest, or a path (or
a name in RUN_DIR/checkpoints/). The output says which it used. CHECKPOINT is a checkpoint
directory (RUN_DIR/checkpoints/step_N, or one written by A3C.save). Returns are real: for Atari
whole games, unclipped, with the training preprocessing otherwise. Writes eval.json (mean, std,
min, max, every return and length) into RUN_DIR or CHECKPOINT unless --output says otherwise (its
folder must exist); where the results cannot be written is an error before any episode is played.

examples:
  a3c eval runs/cartpole
  a3c eval runs/cartpole --checkpoint latest --episodes 100
  a3c eval runs/cartpole/checkpoints/step_000000150016 --episodes 100 --stochastic
  a3c eval runs/cartpole --episodes 3 --video videos/   (needs: pip install 'a3c[video]')
"""

PLOT_EPILOG = """\
Draws mean return (the last return_window episodes) against global env steps and against wall
time, and each evaluation's mean (eval.csv, dashed with markers) where a run has them. Runs whose configs differ only by seed (and by budget, target or logging settings) are one
group: their mean with a min-max band. The default output is RUN_DIR/curves.png for one run and
./curves.png for several.

examples:
  a3c plot runs/cartpole
  a3c plot runs/cp-seed0 runs/cp-seed1 runs/cp-seed2 runs/cp-n5 --out cartpole.png
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a3c",
        description="Asynchronous Advantage Actor-Critic (A3C) for Gymnasium environments.",
        epilog="Run `a3c COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    train = sub.add_parser(
        "train",
        help="train an agent on an env and write a run directory (or --resume one)",
        description=(
            "Train A3C on ENV_ID. Writes config.json, progress.csv, episodes.csv, TensorBoard events, "
            "checkpoints/, summary.json and curves.png into the run directory."
        ),
        epilog=_config_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("env_id", metavar="ENV_ID", nargs="?", help="a Gymnasium env id (CartPole-v1), or module:Class / module:make_fn (optional with --resume)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest complete checkpoint")
    train.add_argument("--workers", type=int, help="number of asynchronous workers (backend.workers, default 2)")
    train.add_argument("--backend", choices=["processes", "serial", "ray"], help="where workers run (backend.name, default processes)")
    train.add_argument("--ray-address", metavar="ADDR", help="with --backend ray: the cluster to join, auto or HOST:PORT (backend.ray_address)")
    train.add_argument("--total-steps", type=int, help="global env-step budget (run.total_steps, default 1000000)")
    train.add_argument("--target-return", type=_target_return, metavar="R", help="stop once return_mean reaches R: a number, auto (the env's threshold) or null")
    train.add_argument("--max-time", type=float, help="stop after this many seconds of wall time (of the whole run, when resumed)")
    train.add_argument("--eval-interval", type=int, metavar="N", help="evaluate the global parameters every N global env steps (eval.interval_steps)")
    train.add_argument("--target-eval-return", type=float, metavar="R", help="stop once an evaluation's mean return reaches R (eval.target_mean)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--run-dir", help="where to write the run (default runs/ENV_ID-DATE-TIME)")
    train.add_argument("--config", action="append", default=[], metavar="FILE", help="a YAML config file (repeatable; later files win)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments", help="set any config key (repeatable)")
    train.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto", help="a progress bar on a terminal (auto), plain lines, or nothing")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval",
        help="evaluate a trained agent: mean and std of the return, eval.json, optional video",
        description="Play whole episodes with a trained agent and print the mean and std of the return.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("target", metavar="RUN_DIR|CHECKPOINT", help="a run directory (its best checkpoint, else its newest) or a checkpoint directory")
    ev.add_argument("--checkpoint", metavar="best|latest|PATH", help="which checkpoint of RUN_DIR: best, latest, or a path or name (default: best if there is one)")
    ev.add_argument("--episodes", type=int, default=10, help="episodes to play (default 10)")
    mode = ev.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="stochastic", action="store_false", help="take the most likely action (the default)")
    mode.add_argument("--stochastic", dest="stochastic", action="store_true", help="sample actions from the policy")
    ev.add_argument("--seed", type=int, help="seed of the evaluation envs (default: the run's seed)")
    ev.add_argument("--video", metavar="DIR", help="record every episode as an mp4 into DIR (Gymnasium's RecordVideo; needs the video extra)")
    ev.add_argument("--output", metavar="FILE", help="where to write the results (default: eval.json in RUN_DIR or CHECKPOINT)")
    ev.set_defaults(func=cmd_eval, stochastic=False)

    plot = sub.add_parser(
        "plot",
        help="draw learning curves (curves.png) of one or more runs",
        description="Draw the learning curves of one or more run directories into a PNG.",
        epilog=PLOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run directories (with progress.csv)")
    plot.add_argument("--out", metavar="FILE", help="the PNG to write (default RUN_DIR/curves.png for one run, ./curves.png for several)")
    plot.add_argument("--title", help="the figure's title (default: the env ids)")
    plot.set_defaults(func=cmd_plot)

    from a3c.demos import cliff

    cliff.add_parser(sub)
    return parser


def _target_return(text: str) -> float | str:
    """--target-return: a number, auto or null (kept as the string "null" until cmd_train)."""
    if text in ("auto", "null", "none"):
        return "auto" if text == "auto" else "null"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, auto or null, got {text!r}") from None


def _other_backend(argv: list[str]) -> bool:
    """Whether the command line asks for a backend other than processes (then no fork server):
    --backend serial|ray, or --set backend=serial / backend.name=ray (either --set form)."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
        if arg.startswith("--backend") and value in ("serial", "ray"):
            return True
        key, _, chosen = value.replace(" ", "").partition("=")
        if arg.startswith("--set") and key in ("backend", "backend.name") and chosen in ("serial", "ray"):
            return True
    return False


def _version() -> str:
    from a3c import __version__

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
            raise ConfigError("--resume continues a run as it was configured: it takes no --config, --seed or --run-dir (--set run.*, log.*, eval.* and backend.* keys other than run.seed, --total-steps, --max-time, --target-return, --eval-interval, --target-eval-return, --workers, --backend and --ray-address may change)")
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
    best = f", eval {evals['latest']['mean']:.1f} (best {evals['best_mean']:.1f})" if evals.get("latest") else ""
    print(
        f"{summary['stop_reason']}: steps {summary['steps']}, episodes {summary['episodes']}, "
        f"return_mean {summary['return_mean']:.1f}{_solved(summary)}{best}, "
        f"wall {summary['wall_s']:.1f}s -> {agent.run_dir}"
    )
    if summary.get("error"):  # e.g. a full disk while finishing: what could be written was
        print(f"a3c: error: {summary['error']}", file=sys.stderr)
        return 1
    return {"interrupted": 130, "terminated": 143}.get(summary["stop_reason"], 0)  # 128 + SIGINT / SIGTERM


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
    if args.output:  # before anything is loaded or played: no results are thrown away for want of a place
        check_output(Path(args.output), "--output")
    agent = A3C.load(args.target, checkpoint=args.checkpoint)
    out = Path(args.output) if args.output else (target if target.is_dir() else target.parent) / "eval.json"
    check_output(out, "eval.json", "; write the results elsewhere with --output FILE")
    result = agent.evaluate(episodes=args.episodes, deterministic=not args.stochastic, seed=args.seed, video_dir=args.video)
    kind = agent.checkpoint_kind
    result = {"checkpoint": str(agent.checkpoint_path), "checkpoint_kind": kind, "checkpoint_steps": agent.num_timesteps, **result}
    mode = "stochastic" if args.stochastic else "deterministic"
    line = (
        f"mean return {result['mean']:.2f} +/- {result['std']:.2f} over {result['episodes']} episodes ({mode}); "
        f"min {result['min']:.1f}, max {result['max']:.1f}; {'' if kind == 'given' else f'{kind} '}checkpoint {agent.checkpoint_path}"
    )
    try:
        write_json_atomic(out, result)
    except OSError as e:  # e.g. the disk filled up while the episodes played: the results still count
        print(line)
        print(f"a3c: error: cannot write {out}: {e.strerror or e} (the results are printed above)", file=sys.stderr)
        return 1
    print(f"{line} -> {out}")
    return 0


def _solved(summary: dict) -> str:
    """The summary line's word on the target: none when the run had none (`--target-return null`)."""
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
        raise ConfigError(f"{what} {out}: its folder {folder} {'is not a directory' if folder.exists() else 'does not exist'}")
    try:
        probe_writable(folder)
    except OSError as e:
        raise ConfigError(f"{what} {out}: cannot write into {folder} ({e.strerror or e}){hint}") from None


def cmd_plot(args: argparse.Namespace) -> int:
    from a3c.plots import plot_runs

    for run_dir in args.run_dirs:  # first: a mistyped RUN_DIR is not "a folder that does not exist"
        if not (Path(run_dir) / "progress.csv").is_file():
            raise ConfigError(f"{run_dir} is not a run directory (it has no progress.csv)")
    out = Path(args.out) if args.out else (Path(args.run_dirs[0]) / "curves.png" if len(args.run_dirs) == 1 else Path("curves.png"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # --out may name a new folder
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create its folder ({e.strerror or e})") from None
    check_output(out, "--out" if args.out else "curves.png", "" if args.out else "; draw it elsewhere with --out FILE")  # before the runs are read and drawn
    try:
        path = plot_runs(args.run_dirs, out, title=args.title)
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"curves of {len(args.run_dirs)} run(s) -> {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and not _other_backend(argv):
        from a3c import forkserver

        forkserver.warm_up()  # the workers' fork server imports torch while this process does
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except A3CError as e:
        print(f"a3c: error: {e}", file=sys.stderr)
        return 2
    except RunFailure as e:
        print(f"a3c: error: {e} (the run directory keeps what was written, and a checkpoint to --resume from)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("a3c: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the disk filled up, or a folder became read-only, while a command wrote
        where = f": {e.filename}" if e.filename else ""
        print(f"a3c: error: {e.strerror or first_line(e)}{where} (the run directory keeps what was complete)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
