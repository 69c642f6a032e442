"""Envs with the spaces users bring: MiniGrid's Dict observation, Taxi's action mask, Blackjack's
Tuple.

    python benchmarks/spaces_suite.py \
        [--suite minigrid,taxi,blackjack] [--seeds 3] [--out benchmarks/results]

- minigrid: `MiniGrid-DoorKey-5x5-v0` on its raw Dict observation with the mission dropped
  (`env.obs_keys=[image, direction]`), with the built-in encoders (the small CNN for the 7x7 view,
  a one-hot for the direction) and with a user encoder written as MiniGrid's own SB3 example
  (benchmarks/minigrid_encoder.py); each: the steps to a 100-episode training mean >= 0.9 within 1M.
- taxi: `Taxi-v4` (Gymnasium 1.4 deprecates v3; the same env) with and without its action mask
  (`env.action_masks`): the steps to a 100-episode training mean >= 0 and >= 7 (the optimum is
  about +8), or the best mean if 7 is not reached.
- blackjack: `Blackjack-v1` (Tuple observation): the greedy policy's mean return over 100,000 games
  after training, and random play's, by the same harness (`play`).

Every run uses the settings a3c picks for the env (no flags but the ones named above).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, md_table, write_results  # noqa: E402

from a3c import A3C  # noqa: E402

RUNS = Path("/tmp/a3c-bench-spaces")


def first_step(run_dir: Path, threshold: float, window: int = 100) -> tuple[int | None, float]:
    """(global steps when the mean of the last `window` training episodes first reached
    `threshold`, or None; the best such mean), from episodes.csv in the order episodes ended."""
    with open(run_dir / "episodes.csv") as f:
        rows = sorted(
            ((int(r["steps"]), float(r["return"])) for r in csv.DictReader(f)), key=lambda x: x[0]
        )
    returns = np.array([r for _, r in rows])
    if len(returns) < window:
        return None, -float("inf")
    # means[i]: episodes i..i+window-1
    means = np.convolve(returns, np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(means >= threshold)
    return (rows[hits[0] + window - 1][0] if hits.size else None), float(means.max())


def train(
    env_id: str, seed: int, name: str, steps: int, target: float | None, **settings: Any
) -> tuple[A3C, dict[str, Any], Path]:
    run_dir = RUNS / f"{name}_seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun replaces its own scratch run
    agent = A3C(env_id, seed=seed, target_return=target, checkpoint_interval_s=None, **settings)
    t0 = time.time()
    summary = agent.learn(total_steps=steps, run_dir=run_dir, progress="none")
    summary["wall_s"] = round(time.time() - t0, 1)
    return agent, summary, run_dir


def minigrid(seeds: int) -> dict[str, Any]:
    rows = []
    for label, extra in [
        ("built-in encoders", {}),
        (
            "user encoder",
            {
                "encoder": "minigrid_encoder:MinigridFeaturesExtractor",
                "encoder_kwargs": {"features_dim": 128},
            },
        ),
    ]:
        for seed in range(seeds):
            _, summary, run_dir = train(
                "minigrid:MiniGrid-DoorKey-5x5-v0",
                seed,
                f"doorkey_{'user' if extra else 'builtin'}",
                1_000_000,
                0.9,
                obs_keys=["image", "direction"],
                **extra,
            )
            hit, best = first_step(run_dir, 0.9)
            rows.append(
                {
                    "encoder": label,
                    "seed": seed,
                    "steps_to_0.9": hit,
                    "best_mean": best,
                    "wall_s": summary["wall_s"],
                }
            )
            print(rows[-1], flush=True)
    return {"rows": rows}


def taxi(seeds: int) -> dict[str, Any]:
    rows = []
    for masks in (True, False):
        for seed in range(seeds):
            _, summary, run_dir = train(
                "Taxi-v4",
                seed,
                f"taxi_{'masked' if masks else 'unmasked'}",
                3_000_000,
                7.0,
                action_masks=masks,
            )
            at0, best = first_step(run_dir, 0.0)
            at7, _ = first_step(run_dir, 7.0)
            rows.append(
                {
                    "masks": masks,
                    "seed": seed,
                    "steps_to_0": at0,
                    "steps_to_7": at7,
                    "best_mean": best,
                    "wall_s": summary["wall_s"],
                }
            )
            print(rows[-1], flush=True)
    return {"rows": rows}


def play(env: gym.Env, act: Any, games: int, seed: int) -> float:
    """Mean return of `games` whole games of `act(obs)` on `env`, seeded once."""
    total = 0.0
    obs, _ = env.reset(seed=seed)
    for _ in range(games):
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        obs, _ = env.reset()
    return total / games


def blackjack(seeds: int, games: int = 100_000) -> dict[str, Any]:
    rows = []
    env = gym.make("Blackjack-v1")
    env.action_space.seed(0)
    random_mean = play(env, lambda _: env.action_space.sample(), games, seed=12345)
    for seed in range(seeds):
        agent, summary, _ = train("Blackjack-v1", seed, "blackjack", 1_000_000, None)
        greedy = play(
            env,
            lambda o, agent=agent: int(agent.predict(o, deterministic=True)[0]),
            games,
            seed=12345,
        )
        rows.append(
            {
                "seed": seed,
                "greedy_mean": greedy,
                "random_mean": random_mean,
                "train_mean": summary["return_mean"],
                "wall_s": summary["wall_s"],
            }
        )
        print(rows[-1], flush=True)
    return {"rows": rows, "games": games}


def markdown(results: dict[str, Any]) -> str:
    parts = []
    for suite, data in results.items():
        if suite == "machine":
            continue
        rows = data["rows"]
        header = list(rows[0])
        parts.append(f"### {suite}\n\n" + md_table(header, [[r[h] for h in header] for r in rows]))
    m = results["machine"]
    return (
        f"# Spaces suite\n\nMachine: {m['cpus']} CPUs, torch {m['torch']}, gymnasium "
        f"{m['gymnasium']}, a3c {m['a3c']} ({m.get('commit')}), {m['date']}\n\n"
        + "\n\n".join(parts)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="taxi,blackjack,minigrid")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    for suite in args.suite.split(","):
        results: dict[str, Any] = {"machine": machine()}
        results[suite] = {"minigrid": minigrid, "taxi": taxi, "blackjack": blackjack}[suite](
            args.seeds
        )
        write_results(Path(args.out), f"spaces_{suite}", results, markdown(results))


if __name__ == "__main__":
    main()
