"""Pong training throughput: a3c against Stable-Baselines3 A2C, side by side in one run.

a3c: its Atari preset (2 workers x 4 envs stepped by ale-py's C++ AtariVectorEnv, the paper's
network), the same with 8 envs per worker (a3c-8envs: bigger batches, fewer updates per sample, more
steps/s), and the preset with its envs stepped through Gymnasium's wrappers (a3c-gym-wrappers:
`env.atari.ale_vector=false`, the same frames). SB3: A2C in its Atari setup (make_atari_env with
AtariWrapper, 4 stacked frames, 16 envs, CnnPolicy), torch's default threads. Both run on
ALE/Pong-v5 with the base env at frameskip=1 and a frame skip of 4 in the wrappers (so 1 agent step
= 4 frames), sticky actions as v5 defines them. Each peer runs --seconds of training, in rotating
order, --repeats times; the rate is taken over the steady part (after the first 20%% of the run, so
start-up is excluded). Reported: agent steps/s, frames/s, and the ratios to SB3.

    .venv/bin/python benchmarks/pong_sb3.py [--seconds 90] [--repeats 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median, run_child, write_results  # noqa: E402

FRAMES_PER_STEP = 4
PEERS = ["a3c", "a3c-8envs", "a3c-gym-wrappers", "sb3"]
CHILD_OVERRIDES = {
    "a3c": {},
    "a3c-8envs": {"env.envs_per_worker": 8},
    "a3c-gym-wrappers": {"env.atari.ale_vector": False},
}


def steady_rate(points: list[tuple[float, int]]) -> float:
    """Steps/s between the first point after 20% of the run and the last point."""
    t_end = points[-1][0]
    start = next(p for p in points if p[0] >= 0.2 * t_end)
    return (points[-1][1] - start[1]) / max(points[-1][0] - start[0], 1e-9)


def child_a3c(seconds: float, overrides: dict) -> dict:
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
    return {
        "steps": summary["steps"],
        "wall_s": summary["wall_s"],
        "steady_steps_per_s": steady_rate(points),
    }


def child_sb3(seconds: float) -> dict:
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(
        make_atari_env("ALE/Pong-v5", n_envs=16, seed=0, env_kwargs={"frameskip": 1}), n_stack=4
    )
    model = A2C("CnnPolicy", env, ent_coef=0.01, vf_coef=0.25, seed=0, device="cpu", verbose=0)
    points: list[tuple[float, int]] = []

    class Clock(BaseCallback):
        def _on_rollout_end(self) -> None:
            points.append((time.monotonic() - t0, self.model.num_timesteps))

        def _on_step(self) -> bool:
            return time.monotonic() - t0 < seconds

    t0 = time.monotonic()
    model.learn(total_timesteps=10**9, callback=Clock())
    return {
        "steps": model.num_timesteps,
        "wall_s": time.monotonic() - t0,
        "steady_steps_per_s": steady_rate(points),
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=90.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--child", choices=PEERS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = (
            child_sb3(args.seconds)
            if args.child == "sb3"
            else child_a3c(args.seconds, CHILD_OVERRIDES[args.child])
        )
        print(json.dumps(result))
        return 0
    report = {"machine": machine(), "seconds": args.seconds, "runs": []}
    for r in range(args.repeats):
        for peer in PEERS[r % len(PEERS) :] + PEERS[: r % len(PEERS)]:
            res = run_child(
                [__file__, "--child", peer, "--seconds", str(args.seconds)],
                timeout=args.seconds * 3 + 120,
            )
            res.update(peer=peer, repeat=r)
            report["runs"].append(res)
            print(json.dumps(res), flush=True)
    rates = {
        peer: median([x.get("steady_steps_per_s") for x in report["runs"] if x["peer"] == peer])
        for peer in PEERS
    }
    ratios = {
        peer: rates[peer] / rates["sb3"] if rates[peer] and rates["sb3"] else None for peer in PEERS
    }
    ratio = ratios["a3c"]
    report.update(
        median_steps_per_s=rates,
        ratio=ratio,
        ratios=ratios,
        target=2.0,
        met=bool(ratio and ratio >= 2.0),
    )
    rows = [
        [peer, rates[peer], rates[peer] * FRAMES_PER_STEP if rates[peer] else None, ratios[peer]]
        for peer in PEERS
    ]
    md = "\n\n".join(
        [
            f"### Pong throughput: a3c vs SB3 A2C ({args.repeats} x {args.seconds:.0f} s each, "
            "medians)",
            f"`.venv/bin/python benchmarks/pong_sb3.py --seconds {args.seconds:.0f} --repeats "
            f"{args.repeats}` on {report['machine']['date']}, {report['machine']['cpus']} CPUs, "
            f"commit {report['machine'].get('commit')}",
            md_table(["peer", "agent steps/s", "frames/s", "/ SB3"], rows),
            f"a3c (preset) / SB3 = **{ratio:.2f}x** (target >= 2x: "
            f"{'met' if report['met'] else 'NOT met'})"
            if ratio
            else "ratio: n/a (a run failed)",
        ]
    )
    write_results(args.out, "pong_sb3", report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
