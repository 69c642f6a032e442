"""The `a3c` command line.

    a3c train ENV_ID [--workers N] [--backend B] [--total-steps N] [--target-return R] [--max-time S]
                     [--seed S] [--run-dir DIR] [--config FILE ...] [--set key=value ...]

Bad input (an unknown env id, an unsupported space, an invalid hyperparameter, an unknown --set key,
a malformed config file) prints one line, `a3c: error: ...`, and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from a3c.errors import A3CError


def _config_epilog() -> str:
    from a3c.config import field_docs

    lines = ["config keys (--set KEY=VALUE; a bare name works where it is unique):"]
    for key, default, doc in field_docs():
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        lines.append(f"  {key} = {shown}")
        lines += [f"      {w}" for w in textwrap.wrap(doc, 90)]
    lines += [
        "",
        "presets: the env family's preset (a3c/presets/*.yaml) is applied first, then --config",
        "files in order, then --set values, then the explicit flags above.",
        "",
        "examples:",
        "  a3c train CartPole-v1",
        "  a3c train CartPole-v1 --workers 2 --seed 3 --set n_steps=5 --set optim.learning_rate=7e-4",
        "  a3c train Acrobot-v1 --backend serial --total-steps 200000 --run-dir runs/acrobot",
    ]
    return "\n".join(lines)


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
        help="train an agent on an env and write a run directory",
        description="Train A3C on ENV_ID. Writes config.json, progress.csv, episodes.csv and summary.json into the run directory.",
        epilog=_config_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("env_id", metavar="ENV_ID", help="a Gymnasium env id (CartPole-v1), or module:Class / module:make_fn")
    train.add_argument("--workers", type=int, help="number of asynchronous workers (default 2)")
    train.add_argument("--backend", choices=["processes", "serial"], help="where workers run (default processes)")
    train.add_argument("--total-steps", type=int, help="global env-step budget (default 1000000)")
    train.add_argument("--target-return", type=float, help="stop once the mean return of the last 100 episodes reaches this (default: the env's reward threshold)")
    train.add_argument("--max-time", type=float, help="stop after this many seconds of wall time")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--run-dir", help="where to write the run (default runs/ENV_ID-DATE-TIME)")
    train.add_argument("--config", action="append", default=[], metavar="FILE", help="a YAML config file (repeatable; later files win)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments", help="set any config key (repeatable)")
    train.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto", help="a progress bar on a terminal (auto), plain lines, or nothing")
    train.set_defaults(func=cmd_train)

    try:
        from a3c.demos import cliff
    except ImportError:
        cliff = None
    if cliff is not None:
        cliff.add_parser(sub)
    return parser


def _version() -> str:
    from a3c import __version__

    return __version__


def cmd_train(args: argparse.Namespace) -> int:
    from a3c.config import build_config, parse_assignments
    from a3c.trainer import A3C

    overrides: dict[str, Any] = parse_assignments(args.assignments)
    flags = {
        "run.workers": args.workers,
        "run.backend": args.backend,
        "run.total_steps": args.total_steps,
        "run.target_return": args.target_return,
        "run.max_time": args.max_time,
        "run.seed": args.seed,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    config = build_config(args.env_id, args.config, overrides)
    agent = A3C(args.env_id, config=config)
    summary = agent.learn(run_dir=args.run_dir, progress=args.progress)
    print(
        f"{summary['stop_reason']}: steps {summary['steps']}, episodes {summary['episodes']}, "
        f"return_mean {summary['return_mean']:.1f}, solved {summary['solved']}, "
        f"wall {summary['wall_s']:.1f}s -> {agent.run_dir}"
    )
    return 130 if summary["stop_reason"] == "interrupted" else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from a3c.backends import WorkerFailure

    try:
        return args.func(args)
    except A3CError as e:
        print(f"a3c: error: {e}", file=sys.stderr)
        return 2
    except WorkerFailure as e:
        print(f"a3c: error: {e} (the run directory keeps what was written)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("a3c: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
