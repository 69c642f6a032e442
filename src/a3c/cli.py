"""The `a3c` command line (also `python -m a3c`).

    a3c train ENV_ID [--workers N] [--backend B] [--total-steps N] [--target-return R]
                     [--max-time S] [--eval-interval N] [--target-eval-return R]
                     [--seed S] [--run-dir DIR] [--config FILE ...] [--set key=value ...]
    a3c train --resume RUN_DIR [--total-steps N] [--max-time S] [--set run.KEY=VALUE ...]
                   (run.*, log.*, eval.* and backend.* keys other than run.seed may change)
    a3c eval RUN_DIR|CHECKPOINT [--checkpoint best|latest|PATH] [--episodes N]
                                [--deterministic|--stochastic] [--video DIR]
    a3c plot RUN_DIR [RUN_DIR ...] [--out FILE]
    a3c tune ENV_ID --trials N [--budget-steps S] [--budget-s T] ... (a3c/tune_cli.py)
    a3c export RUN_DIR|CHECKPOINT [--checkpoint best|latest|PATH] [--format onnx|torchscript]
                                  [--output FILE] [--with-distribution]

Bad input (an unknown env id, an unsupported space, an invalid hyperparameter, an unknown --set key,
a malformed config file, an unusable checkpoint, a folder that cannot be written) prints one line,
`a3c: error: ...`, and exits with code 2. A storage fault during a run (a full disk) prints one line
and exits with code 1; the run directory keeps what was complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from a3c import commands, helptext
from a3c.errors import A3CError, RunFailure, first_line

log = logging.getLogger("a3c")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a3c",
        description="Asynchronous Advantage Actor-Critic (A3C) for Gymnasium environments: train "
        "an agent, evaluate it, plot its learning curves, export its policy, tune its "
        "hyperparameters.",
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
    _add_export(sub)
    from a3c import tune_cli
    from a3c.demos import cliff_cli

    tune_cli.add_parser(sub)

    cliff_cli.add_parser(sub)
    return parser


def _add_train(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train an agent on an env and write a run directory (or --resume one)",
        description=(
            "Train A3C on ENV_ID. Writes config.json, progress.csv, episodes.csv, TensorBoard "
            "events, checkpoints/, summary.json and curves.png into the run directory. Every "
            "setting is a config key (listed below with its default); the flags are shortcuts "
            "for the common ones."
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
    _budget_flags(train)
    _worker_flags(train)
    _eval_flags(train)
    _config_flags(train)
    _output_flags(train)
    train.set_defaults(func=commands.cmd_train)


def _budget_flags(train: argparse.ArgumentParser) -> None:
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


def _worker_flags(train: argparse.ArgumentParser) -> None:
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


def _eval_flags(train: argparse.ArgumentParser) -> None:
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


def _config_flags(train: argparse.ArgumentParser) -> None:
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


def _output_flags(train: argparse.ArgumentParser) -> None:
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


def _add_eval(sub: Any) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a trained agent: mean and std of the return, eval.json, optional video",
        description="Play whole episodes with a trained agent and print the mean and std of the "
        "return.",
        epilog=helptext.EVAL_EPILOG,
        formatter_class=helptext.HelpFormatter,
    )
    _checkpoint_args(ev)
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
    ev.set_defaults(func=commands.cmd_eval, stochastic=False)


def _checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR|CHECKPOINT and --checkpoint, as eval and export take them."""
    parser.add_argument(
        "target",
        metavar="RUN_DIR|CHECKPOINT",
        help="a run directory (its best checkpoint, else its newest) or a checkpoint directory",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="best|latest|PATH",
        help="which checkpoint of RUN_DIR: best, latest, or a path or name (default: best if "
        "there is one)",
    )


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
    plot.set_defaults(func=commands.cmd_plot)


def _add_export(sub: Any) -> None:
    ex = sub.add_parser(
        "export",
        help="export a trained policy to ONNX or TorchScript, to run without a3c",
        description="Write the greedy acting path of a trained agent (from the env's observation "
        "to the env's action) as an ONNX or TorchScript file, and FILE.json describing its inputs "
        "and outputs.",
        epilog=helptext.EXPORT_EPILOG,
        formatter_class=helptext.HelpFormatter,
    )
    _checkpoint_args(ex)
    ex.add_argument(
        "--format",
        choices=["onnx", "torchscript"],
        help="onnx (needs the export extra) or torchscript (default: from the --output suffix, "
        ".pt for torchscript, else onnx)",
    )
    ex.add_argument(
        "--output",
        metavar="FILE",
        help="the file to write (default: policy.onnx or policy.pt in RUN_DIR or CHECKPOINT)",
    )
    ex.add_argument(
        "--with-distribution",
        action="store_true",
        help="also output the distribution's parameters (logits, or mean and std) and the value",
    )
    ex.set_defaults(func=commands.cmd_export)


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # usage errors and --help answer before any process starts
    args = build_parser().parse_args(argv)
    # `module:Class` names a module in the folder the user stands in, as `python -m a3c` finds it
    # (the console script's sys.path starts at its own bin folder); before the fork server starts,
    # which takes this process's sys.path
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if args.command == "train" and not _other_backend(args):
        from a3c.backends import prepare

        prepare("processes", refuse_in_child=False)  # the fork server imports torch meanwhile
    try:
        return args.func(args)
    except A3CError as e:
        print(f"a3c: error: {e}", file=sys.stderr)
        return 2
    except RunFailure as e:
        print(f"a3c: error: {e} (the run directory keeps what was written)", file=sys.stderr)
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
