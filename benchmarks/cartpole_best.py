"""Benchmark: the best model kept by evaluation during training, against the final parameters, on
CartPole-v1 past the point where the final parameters sometimes collapse (issue 21).

    .venv/bin/python benchmarks/cartpole_best.py \
        [--seeds 5] [--total-steps 2000000] [--out benchmarks/results]

For every seed (0..N-1), in a fresh Python process, a3c with its defaults and 2 workers (processes
backend) trains the whole budget (`run.target_return=null`: it never stops on the training
window) with evaluation on: `eval.interval_steps` (50k) global steps apart, `eval.episodes` (20)
greedy episodes each, in the evaluator process beside the workers. Then, in the same process:

* `checkpoints/best/` (the state of the best evaluation) is re-evaluated over 100 greedy episodes
  (`A3C.load(run_dir, checkpoint="best").evaluate(100)`, the run's seed: other episodes than the
  evaluations' 20, whose first 20 they share);
* the final parameters (`A3C.load(run_dir, checkpoint="latest")`) likewise.

Target: the best >= 475 over 100 episodes in every seed. Outputs: a table on stdout,
`<out>/cartpole_best.json` (every run) and `<out>/cartpole_best.md`.

This module imports only the standard library at top level: the fork server that a3c's workers are
forked from imports it (as `__mp_main__`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, run_child, write_results  # noqa: E402

TARGET = 475.0
EPISODES = 100


def child(seed: int, total_steps: int, interval: int, episodes: int) -> dict:
    from a3c import A3C

    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d) / "run"
        t0 = time.monotonic()
        agent = A3C(
            "CartPole-v1",
            seed=seed,
            workers=2,
            total_steps=total_steps,
            target_return=None,
            **{"eval.interval_steps": interval, "eval.episodes": episodes},
        )
        summary = agent.learn(run_dir=run_dir, progress="none")
        wall = time.monotonic() - t0
        best, final = A3C.load(run_dir, checkpoint="best"), A3C.load(run_dir, checkpoint="latest")
        best_eval, final_eval = best.evaluate(EPISODES), final.evaluate(EPISODES)
        rows = (run_dir / "eval.csv").read_text().splitlines()[1:]
    evals = summary["eval"]
    return {
        "seed": seed,
        "steps": summary["steps"],
        "wall_s": round(wall, 1),
        "evaluations": evals["evaluations"],
        "eval_restarts": evals["restarts"],
        "best_steps": evals["best_steps"],
        "best_eval_mean": evals["best_mean"],
        "best_100": best_eval["mean"],
        "best_100_min": best_eval["min"],
        "final_100": final_eval["mean"],
        "final_100_min": final_eval["min"],
        "final_eval_mean": float(rows[-1].split(",")[2]) if rows else None,
        "train_return_mean": summary["return_mean"],
        "eval_durations_s": [float(r.split(",")[8]) for r in rows],
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--total-steps", type=int, default=2_000_000)
    p.add_argument("--interval", type=int, default=50_000, help="eval.interval_steps")
    p.add_argument("--episodes", type=int, default=20, help="eval.episodes")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.total_steps, args.interval, args.episodes)))
        return 0
    report = {
        "machine": machine(),
        "total_steps": args.total_steps,
        "interval": args.interval,
        "episodes": args.episodes,
        "runs": [],
    }
    for seed in range(args.seeds):
        extra = [
            "--total-steps",
            str(args.total_steps),
            "--interval",
            str(args.interval),
            "--episodes",
            str(args.episodes),
        ]
        res = run_child([__file__, "--child", str(seed), *extra], timeout=1800)
        res.setdefault("seed", seed)
        report["runs"].append(res)
        print(json.dumps(res), flush=True)
    ok = [r for r in report["runs"] if "error" not in r]
    met = sum(r["best_100"] >= TARGET for r in ok)
    report.update(
        best_at_target=met, final_at_target=sum(r["final_100"] >= TARGET for r in ok), target=TARGET
    )
    rows = [
        [
            r["seed"],
            r.get("evaluations"),
            r.get("best_steps"),
            r.get("best_eval_mean"),
            r.get("best_100"),
            r.get("final_eval_mean"),
            r.get("final_100"),
            r.get("wall_s"),
        ]
        if "error" not in r
        else [r["seed"], r["error"], "", "", "", "", "", ""]
        for r in report["runs"]
    ]
    cmd = (
        f"benchmarks/cartpole_best.py --seeds {args.seeds} --total-steps {args.total_steps} "
        f"--interval {args.interval} --episodes {args.episodes}"
    )
    md = "\n\n".join(
        [
            f"### CartPole-v1: the best checkpoint against the final parameters ({args.seeds} "
            f"seeds, {args.total_steps:,} steps, no stop on the target)",
            f"`.venv/bin/python {cmd}` on {report['machine']['date']}, "
            f"{report['machine']['cpus']} CPUs, commit {report['machine'].get('commit')}",
            md_table(
                [
                    "seed",
                    "evaluations",
                    "best at steps",
                    f"best eval ({args.episodes} ep.)",
                    "best/ over 100",
                    f"last eval ({args.episodes} ep.)",
                    "final over 100",
                    "wall s",
                ],
                rows,
            ),
            f"checkpoints/best/ >= {TARGET:g} over 100 greedy episodes: **{met} of {args.seeds}** "
            f"seeds; the final parameters: {report['final_at_target']} of {args.seeds}.",
        ]
    )
    write_results(args.out, "cartpole_best", report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
