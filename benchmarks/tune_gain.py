"""What tuning buys on an env whose preset was never tuned by hand: an `a3c tune` study of about an
hour with the default search space, then the tuned config against the default one, --seeds seeds
each, the same step budget.

Part "study": `a3c.tune.tune(ENV, ...)` with --trials, --trial-steps per trial, each valued by a
final evaluation of --final-episodes episodes, and --study-time seconds (its journal is in
--runs/ENV/study: run again, it resumes). Its cost: the wall time of every invocation, the trials
by state. --tag names a second study's results apart (tune_gain_ENV_TAG).

Part "compare": for each seed, alternating, the default config (the env's preset) and the study's
best.yaml (or --configs NAME=FILE ...), each trained for --budget-steps with a greedy evaluation
(--eval-episodes episodes) every budget/20 steps, then a final greedy evaluation of 20 episodes.
Reported per config: the final greedy mean (mean and std over seeds), how many seeds reached the
target (the env's reward threshold unless --target) in an evaluation, and the median wall time and
steps to reach it. Each finished run is saved at once and kept when the command runs again with the
same config file, seed and budget, so an interrupted comparison resumes.

Part "family": the per-env results of --envs side by side (the config a family preset would change
to against the current preset, before and after per env), into tune_family.{json,md} (with --tag:
each env's tagged results where there are some, into tune_family_TAG).

    .venv/bin/python benchmarks/tune_gain.py --env Acrobot-v1 --parts study compare \
        [--trials 200] [--trial-steps 100000] [--study-time 3600] [--seeds 5] \
        [--budget-steps 300000]
    .venv/bin/python benchmarks/tune_gain.py --parts family \
        --envs Acrobot-v1 MountainCar-v0 CartPole-v1 --configs NAME=FILE
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median, run_child, write_results  # noqa: E402


def child_study(args: argparse.Namespace) -> dict:
    from a3c.tune import tune

    t0 = time.monotonic()
    report = tune(
        args.env,
        args.trials,
        budget_steps=args.trial_steps,
        study_dir=str(_env_dir(args) / "study"),
        timeout_s=args.study_time,
        evaluations=10,
        eval_episodes=5,
        final_episodes=args.final_episodes,
        space=args.space,
        seed=0,
    )
    report["invocation_wall_s"] = round(time.monotonic() - t0, 1)
    return report


def child_train(args: argparse.Namespace, name: str, config: str | None, seed: int) -> dict:
    from a3c import A3C

    run_dir = _env_dir(args) / "compare" / f"{name}_s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again
    agent = A3C(
        args.env,
        config_files=[config] if config else [],
        seed=seed,
        total_steps=args.budget_steps,
        target_return=None,
        **{"eval.interval_steps": args.budget_steps // 20, "eval.episodes": args.eval_episodes},
    )
    target = args.target if args.target is not None else agent.reward_threshold
    summary = agent.learn(run_dir=run_dir, progress="none")
    final = agent.evaluate(episodes=20, seed=10_000 + seed)
    reached = None
    with open(run_dir / "eval.csv") as f:
        for row in csv.DictReader(f):
            if target is not None and float(row["mean"]) >= target:
                reached = {"steps": int(row["steps"]), "wall_s": float(row["wall_s"])}
                break
    return {
        "config": name,
        "seed": seed,
        "final_mean": final["mean"],
        "final_std": final["std"],
        "target": target,
        "reached": reached,
        "steps": summary["steps"],
        "wall_s": summary["wall_s"],
    }


def _mean_std(xs: list[float]) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    return mean, (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5


def markdown(report: dict, args: argparse.Namespace) -> str:
    out = [f"### Tuning {args.env}: the default config against the tuned one"]
    study = report.get("study")
    if study:
        best = "-" if not study["best"] else f"{study['best']['value']:.1f}"
        counts = ", ".join(f"{n} {k}" for k, n in sorted(study["trials"].items()))
        cost = sum(study.get("invocations_wall_s", []))
        out.append(
            f"The study: {counts}; {cost / 60:.0f} minutes of this machine in "
            f"{len(study.get('invocations_wall_s', []))} invocation(s), "
            f"{study.get('trial_steps', args.trial_steps):,} steps "
            f"per trial, each valued by a final greedy evaluation of "
            f"{study.get('final_episodes', 5)} episodes; best trial value {best}."
        )
    runs = report.get("compare") or []
    rows = []
    for name in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == name and "final_mean" in r]
        finals = [r["final_mean"] for r in mine]
        if not finals:
            continue
        hit = [r["reached"] for r in mine if r["reached"]]
        mean, std = _mean_std(finals)
        rows.append(
            [
                name,
                len(mine),
                f"{mean:.1f} +/- {std:.1f}",
                f"{len(hit)}/{len(mine)}",
                "-" if not hit else f"{median([h['wall_s'] for h in hit]):.1f} s",
                "-" if not hit else f"{median([h['steps'] for h in hit]):,.0f}",
            ]
        )
    if rows:
        target = runs[0]["target"]
        out.append(
            md_table(
                [
                    "config",
                    "seeds",
                    "final greedy mean (20 episodes)",
                    "reached (the env has no target)" if target is None else f"reached {target}",
                    "median wall to target",
                    "median steps to target",
                ],
                rows,
            )
        )
    return "\n\n".join(out)


def _file_key(config: str) -> str:
    return "-" if config == "-" else hashlib.sha256(Path(config).read_bytes()).hexdigest()[:12]


def _slug(env: str) -> str:
    return env.replace("/", "_").replace("-", "_").lower()


def _tagged(name: str, tag: str) -> str:
    return f"{name}_{tag}" if tag else name


def _env_dir(args: argparse.Namespace) -> Path:
    """--runs/ENV: the env's study and comparison runs."""
    return args.runs / args.env.replace("/", "_")


def family(args: argparse.Namespace) -> int:
    """The compare results of --envs side by side: per env, every config's final greedy mean."""
    files = {"default": "-", **dict(c.split("=", 1) for c in args.configs)}
    names = list(files)
    # a run belongs to a config by its name, or by the file's content under another name
    shas = {n: _file_key(f) for n, f in files.items()}
    rows, data = [], {}
    for env in args.envs:
        # an env's --tag report (its own study and budget) if there is one, else its first
        path = args.out / f"tune_gain_{_slug(env)}_{args.tag}.json"
        if not args.tag or not path.exists():
            path = args.out / f"tune_gain_{_slug(env)}.json"
        runs = json.loads(path.read_text()).get("compare", []) if path.exists() else []
        data[env] = {}
        for name in names:
            finals = [
                r["final_mean"]
                for r in runs
                if "final_mean" in r
                and (r["config"] == name or r.get("config_sha256_12") == shas[name] != "-")
            ]
            if not finals:
                continue
            mean, std = _mean_std(finals)
            data[env][name] = {"seeds": len(finals), "mean": mean, "std": std, "finals": finals}
        rows.append(
            [env]
            + [
                "-"
                if n not in data[env]
                else f"{data[env][n]['mean']:.1f} +/- "
                f"{data[env][n]['std']:.1f} ({data[env][n]['seeds']})"
                for n in names
            ]
        )
    md = "### A family preset: final greedy mean over seeds (seeds), per env\n\n" + md_table(
        ["env", *names], rows
    )
    out = _tagged("tune_family", args.tag)
    write_results(args.out, out, {"machine": machine(), "envs": data}, md)
    print(md)
    return 0


def compare(args: argparse.Namespace, report: dict, name: str, common: list[str]) -> None:
    best = _env_dir(args) / "study" / "best.yaml"
    configs = dict(c.split("=", 1) for c in args.configs) or {"tuned": str(best)}
    configs = {"default": "-", **configs}
    keys = {c: _file_key(f) for c, f in configs.items()}
    # the files' text, so that the record says what each config was
    texts = report.setdefault("config_texts", {})
    texts.update({c: Path(f).read_text() for c, f in configs.items() if f != "-"})
    done = {
        (r["config"], r["seed"], r.get("config_sha256_12"), r.get("budget_steps")): r
        for r in report.get("compare", [])
        if "final_mean" in r
    }
    # runs of configs this invocation does not name stay in the report
    others = [r for r in report.get("compare", []) if r.get("config") not in configs]
    runs: list[dict] = []
    for seed in range(args.seeds):
        order = list(configs) if seed % 2 == 0 else list(reversed(configs))
        for cname in order:
            res = done.get((cname, seed, keys[cname], args.budget_steps))
            if res is None:
                res = run_child(
                    [__file__, "--child", "train", cname, configs[cname], str(seed), *common]
                    + ["--budget-steps", str(args.budget_steps)]
                    + ["--eval-episodes", str(args.eval_episodes)]
                    + ([] if args.target is None else ["--target", str(args.target)]),
                    timeout=7200,
                )
                res.update(config=cname, seed=seed, budget_steps=args.budget_steps)
                res.update(config_sha256_12=keys[cname], config_file=configs[cname])
                print(json.dumps(res), flush=True)
            runs.append(res)
            report["compare"] = runs + others
            write_results(args.out, name, report, markdown(report, args))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--env", default="Acrobot-v1")
    p.add_argument("--envs", nargs="+", default=["Acrobot-v1", "MountainCar-v0", "CartPole-v1"])
    p.add_argument("--parts", nargs="+", default=["study", "compare"])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--trial-steps", type=int, default=100_000)
    p.add_argument("--study-time", type=float, default=3600.0)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget-steps", type=int, default=300_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--final-episodes", type=int, default=20, help="a trial's final evaluation: its value"
    )
    p.add_argument("--tag", default="", help="a suffix of the results' file names")
    p.add_argument("--space", help="the study's search space (default: the family's)")
    p.add_argument("--target", type=float)
    p.add_argument("--configs", nargs="*", default=[], help="NAME=FILE (default: tuned=best.yaml)")
    p.add_argument("--runs", type=Path, default=Path("runs/tune_gain"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child[0] == "study":
            res = child_study(args)
        else:
            name, config, seed = args.child[1], args.child[2], int(args.child[3])
            res = child_train(args, name, None if config == "-" else config, seed)
        print(json.dumps(res))
        return 0
    if "family" in args.parts:
        return family(args)
    name = _tagged(f"tune_gain_{_slug(args.env)}", args.tag)
    previous = args.out / f"{name}.json"
    report: dict = json.loads(previous.read_text()) if previous.exists() else {}
    report["machine"] = machine()
    common = ["--env", args.env, "--runs", str(args.runs), "--trial-steps", str(args.trial_steps)]
    common += ["--final-episodes", str(args.final_episodes)]
    common += [] if args.space is None else ["--space", args.space]
    if "study" in args.parts:
        res = run_child(
            [__file__, "--child", "study", *common, "--trials", str(args.trials)]
            + ["--study-time", str(args.study_time)],
            timeout=args.study_time + 3600,
        )
        walls = (report.get("study") or {}).get("invocations_wall_s", [])
        res["invocations_wall_s"] = walls + [res.get("invocation_wall_s", 0.0)]
        res["trial_steps"] = args.trial_steps
        res["final_episodes"] = args.final_episodes
        res["space"] = (_env_dir(args) / "study" / "space.yaml").read_text()
        report["study"] = res
        print(json.dumps(res), flush=True)
    if "compare" in args.parts:
        compare(args, report, name, common)
    md = markdown(report, args)
    write_results(args.out, name, report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
