"""`a3c tune`: the command line of the hyperparameter search (a3c/tune.py runs it).

a3c tune ENV_ID --trials N [--budget-steps S] [--budget-s T] [--sampler tpe|random]
            [--pruner median|halving|none] [--storage URL|FILE] [--study NAME] [--jobs J]
            [--space FILE] [--study-dir DIR] [--config FILE ...] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
Each trial trains with hyperparameters drawn from the search space (--space FILE, else the env
family's default: `a3c tune ENV --print-space` prints it, to copy and edit) for its budget, and
evaluates greedily --evaluations times as it goes: each evaluation goes to the pruner, which stops
trials below the others'. A trial that runs its budget is evaluated once more on its final
parameters, --final-episodes episodes: that mean is its value.

The study lives in STUDY_DIR/study.journal unless --storage says otherwise; the same command again
resumes it, up to --trials trials in all. Several processes, on one machine or many, share a study
through one --storage (an RDB URL such as sqlite:///study.db or postgresql://..., or a journal
file on a shared disk) and one --study name; --jobs J starts J processes here.

STUDY_DIR gets trials/NNNN/ (each trial's run directory), trials.csv, best.yaml (the best trial's
hyperparameters: a3c train ENV --config best.yaml), space.yaml, study.json, history.png and
importances.png. Ctrl-C stops the study: the running trial is marked failed (interrupted).

examples:
  a3c tune CartPole-v1 --trials 30 --budget-steps 200000
  a3c tune Acrobot-v1 --trials 50 --budget-s 120 --pruner halving --jobs 2 --set workers=1
  a3c tune CartPole-v1 --trials 100 --budget-steps 200000 --storage sqlite:///cartpole.db
  a3c train CartPole-v1 --config runs/tune-CartPole-v1/best.yaml
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `a3c tune` on an argparse sub-parsers object."""
    from a3c.helptext import HelpFormatter

    p = subparsers.add_parser(
        "tune",
        help="search hyperparameters with Optuna, pruning on the evaluations",
        description="Search an env's hyperparameters: an Optuna study of training runs, bad "
        "trials pruned on their evaluations, the best written as a config file.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("env_id", metavar="ENV_ID", help="a Gymnasium env id or module:Class")
    p.add_argument("--trials", type=int, metavar="N", help="trials in the study (required)")
    budget = p.add_argument_group("each trial's budget (one or both)")
    budget.add_argument("--budget-steps", type=int, metavar="S", help="global env steps")
    budget.add_argument("--budget-s", type=float, metavar="T", help="seconds of training")
    search = p.add_argument_group("search")
    search.add_argument("--sampler", choices=["tpe", "random"], default="tpe", help="(tpe)")
    search.add_argument(
        "--pruner", choices=["median", "halving", "none"], default="median", help="(median)"
    )
    search.add_argument("--space", metavar="FILE", help="a search space (YAML)")
    search.add_argument(
        "--print-space", action="store_true", help="print the default search space and exit"
    )
    search.add_argument(
        "--evaluations", type=int, default=10, metavar="K", help="per trial, for the pruner (10)"
    )
    search.add_argument(
        "--eval-episodes", type=int, default=5, metavar="E", help="episodes per evaluation (5)"
    )
    search.add_argument(
        "--final-episodes",
        type=int,
        default=20,
        metavar="E",
        help="episodes of the final evaluation, whose mean is the trial's value (20)",
    )
    search.add_argument(
        "--startup-trials",
        type=int,
        default=5,
        metavar="K",
        help="trials before TPE models and the median pruner prunes (5)",
    )
    search.add_argument("--seed", type=int, default=0, metavar="S", help="the sampler's seed (0)")
    study = p.add_argument_group("study")
    study.add_argument("--storage", metavar="URL|FILE", help="an RDB URL or a journal file")
    study.add_argument("--study", metavar="NAME", help="the study's name (a3c-ENV_ID)")
    study.add_argument(
        "--study-dir", metavar="DIR", help="the study's directory (runs/tune-ENV_ID)"
    )
    study.add_argument(
        "--study-time",
        type=float,
        metavar="T",
        help="seconds after which this process starts no new trial",
    )
    study.add_argument(
        "--jobs", type=int, default=1, metavar="J", help="trials at once on this machine (1)"
    )
    fixed = p.add_argument_group("settings of every trial")
    fixed.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML over the preset"
    )
    fixed.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config key fixed for every trial",
    )
    p.set_defaults(func=cmd_tune)
    return p


def cmd_tune(args: argparse.Namespace) -> int:
    from a3c.configfile import env_family, parse_assignments
    from a3c.errors import ConfigError
    from a3c.tune import tune
    from a3c.tune_space import default_text

    if args.print_space:
        print(default_text(env_family(args.env_id)), end="")
        return 0
    if args.trials is None:
        raise ConfigError("a3c tune needs --trials N (the study's total)")
    report = tune(
        args.env_id,
        args.trials,
        budget_steps=args.budget_steps,
        budget_s=args.budget_s,
        sampler=args.sampler,
        pruner=args.pruner,
        storage=args.storage,
        study=args.study,
        jobs=args.jobs,
        space=args.space,
        study_dir=args.study_dir,
        evaluations=args.evaluations,
        eval_episodes=args.eval_episodes,
        final_episodes=args.final_episodes,
        startup_trials=args.startup_trials,
        seed=args.seed,
        timeout_s=args.study_time,
        config_files=args.config,
        overrides=parse_assignments(args.assignments),
    )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(report["trials"].items()))
    best = report["best"]
    said = (
        f"best trial {best['number']}: {best['value']:.2f} -> {best['config']}"
        if best
        else "no trial completed"
    )
    print(f"study {report['study']}: {counts or 'no trials'}; {said} ({report['directory']})")
    return {"interrupted": 130, "terminated": 143}.get(report["stopped"] or "", 0)
