"""Continuous control: a3c's presets on InvertedPendulum-v5 and Pendulum-v1, several seeds.

Each run uses the env's preset (src/a3c/presets/), 2 worker processes, stops when the mean return of
the last 100 episodes reaches the target or the step budget is spent. Targets (issue 4):
InvertedPendulum-v5 >= 950 within 500k steps; Pendulum-v1 >= -250 within 2M steps; 3 of 3 seeds.

    .venv/bin/python benchmarks/continuous.py [--seeds 3] [--envs InvertedPendulum-v5 Pendulum-v1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median, run_child, write_results  # noqa: E402

TARGETS = {"InvertedPendulum-v5": (950.0, 500_000), "Pendulum-v1": (-250.0, 2_000_000)}


def child(env_id: str, seed: int) -> dict:
    from a3c import A3C

    target, budget = TARGETS[env_id]
    agent = A3C(env_id, workers=2, seed=seed, total_steps=budget, target_return=target)
    with tempfile.TemporaryDirectory() as d:
        s = agent.learn(run_dir=Path(d) / "run", progress="none")
    return {k: s[k] for k in ("steps", "wall_s", "return_mean", "solved", "stop_reason")}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--envs", nargs="+", default=list(TARGETS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--child", nargs=2, metavar=("ENV", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    report = {"machine": machine(), "runs": []}
    for env_id in args.envs:
        for seed in range(args.seeds):
            res = run_child([__file__, "--child", env_id, str(seed)], timeout=3600)
            res.update(env=env_id, seed=seed)
            report["runs"].append(res)
            print(json.dumps(res), flush=True)
    rows = []
    for env_id in args.envs:
        runs = [r for r in report["runs"] if r["env"] == env_id]
        target, budget = TARGETS[env_id]
        solved = sum(bool(r.get("solved")) for r in runs)
        rows.append(
            [
                env_id,
                f">= {target:g} in {budget:,}",
                f"{solved}/{len(runs)}",
                median([r.get("steps") for r in runs if r.get("solved")]),
                median([r.get("return_mean") for r in runs]),
                median([r.get("wall_s") for r in runs]),
            ]
        )
    md = "\n\n".join(
        [
            f"### Continuous control ({args.seeds} seeds, 2 workers, presets)",
            f"`.venv/bin/python benchmarks/continuous.py --seeds {args.seeds}` on "
            f"{report['machine']['date']}, commit {report['machine'].get('commit')}",
            md_table(
                [
                    "env",
                    "target",
                    "solved",
                    "median steps to solve",
                    "median final return",
                    "median wall (s)",
                ],
                rows,
            ),
        ]
    )
    write_results(args.out, "continuous", report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
