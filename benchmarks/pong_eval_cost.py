"""What evaluation during training costs in Pong training throughput, side by side in one run.

Both peers run the Atari preset on ALE/Pong-v5 (2 workers x 4 envs, processes backend) for
--seconds, alternating, --repeats times; the rate is agent steps/s over the steady part (after the
first 20% of the run), as benchmarks/pong_sb3.py takes it:

* no-eval: evaluation off (`eval.interval_s=null`);
* eval-busy: the evaluator playing all the time (`eval.interval_s=1`, 3 greedy games an evaluation,
  one after another): its cost while it plays, the worst case.

The preset evaluates every 450 s (10 games); its cost averaged over a run is the busy cost times
the share of the time the evaluator plays (10 x the seconds per game, from eval.csv's duration_s,
over 450 s), which the script reports too.

    .venv/bin/python benchmarks/pong_eval_cost.py \
        [--seconds 60] [--repeats 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median, run_child, write_results  # noqa: E402

PEERS = {
    "no-eval": {"eval.interval_s": None},
    "eval-busy": {"eval.interval_s": 1.0, "eval.episodes": 3},
}
PRESET_INTERVAL_S, PRESET_GAMES = 450.0, 10


def steady_rate(points: list[tuple[float, int]]) -> float:
    """Steps/s between the first point after 20% of the run and the last point."""
    t_end = points[-1][0]
    start = next(p for p in points if p[0] >= 0.2 * t_end)
    return (points[-1][1] - start[1]) / max(points[-1][0] - start[0], 1e-9)


def child(seconds: float, overrides: dict) -> dict:
    from a3c import A3C

    points: list[tuple[float, int]] = []
    t0 = time.monotonic()
    agent = A3C(
        "ALE/Pong-v5",
        workers=2,
        log_interval=2_000,
        target_return=None,
        max_time=seconds,
        **overrides,
    )
    with tempfile.TemporaryDirectory() as d:
        summary = agent.learn(
            run_dir=Path(d) / "run",
            progress="none",
            callback=lambda row: points.append((time.monotonic() - t0, row["steps"])),
        )
        evals = []
        if (Path(d) / "run" / "eval.csv").exists():
            with open(Path(d) / "run" / "eval.csv", newline="") as f:
                evals = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    games = sum(r["episodes"] for r in evals)
    return {
        "steps": summary["steps"],
        "wall_s": summary["wall_s"],
        "steady_steps_per_s": steady_rate(points),
        "evaluations": len(evals),
        "seconds_per_game": sum(r["duration_s"] for r in evals) / games if games else None,
        "eval_restarts": (summary["eval"] or {}).get("restarts"),
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--child", choices=list(PEERS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.seconds, PEERS[args.child])))
        return 0
    names = list(PEERS)
    report = {"machine": machine(), "seconds": args.seconds, "runs": []}
    for r in range(args.repeats):
        for peer in names[r % 2 :] + names[: r % 2]:
            res = run_child(
                [__file__, "--child", peer, "--seconds", str(args.seconds)],
                timeout=args.seconds * 3 + 120,
            )
            res.update(peer=peer, repeat=r)
            report["runs"].append(res)
            print(json.dumps(res), flush=True)
    rates = {
        peer: median([x.get("steady_steps_per_s") for x in report["runs"] if x["peer"] == peer])
        for peer in names
    }
    per_game = median(
        [x.get("seconds_per_game") for x in report["runs"] if x["peer"] == "eval-busy"]
    )
    busy = (
        1 - rates["eval-busy"] / rates["no-eval"]
        if rates["eval-busy"] and rates["no-eval"]
        else None
    )
    share = None if per_game is None else min(1.0, PRESET_GAMES * per_game / PRESET_INTERVAL_S)
    preset = None if busy is None or share is None else busy * share
    report.update(
        median_steps_per_s=rates,
        busy_cost=busy,
        seconds_per_game=per_game,
        preset_share=share,
        preset_cost=preset,
    )
    rows = [
        [
            peer,
            rates[peer],
            rates[peer] / rates["no-eval"] if rates[peer] and rates["no-eval"] else None,
        ]
        for peer in names
    ]
    lines = [
        f"### Pong: the evaluator's cost in training throughput ({args.repeats} x "
        f"{args.seconds:.0f} s each, medians)",
        f"`.venv/bin/python benchmarks/pong_eval_cost.py --seconds {args.seconds:.0f} --repeats "
        f"{args.repeats}` on {report['machine']['date']}, {report['machine']['cpus']} CPUs, "
        f"commit {report['machine'].get('commit')}",
        md_table(["peer", "agent steps/s", "/ no-eval"], rows),
    ]
    if busy is not None and per_game is not None and share is not None and preset is not None:
        lines.append(
            f"While it plays, the evaluator costs {100 * busy:.1f}% of the training steps/s; a "
            f"greedy game takes it {per_game:.1f} s, so the preset's {PRESET_GAMES} games every "
            f"{PRESET_INTERVAL_S:.0f} s keep it playing {100 * share:.1f}% of the time: about "
            f"{100 * preset:.1f}% of the steps/s over a run."
        )
    md = "\n\n".join(lines)
    write_results(args.out, "pong_eval_cost", report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
