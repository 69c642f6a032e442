"""Does greedy play lose Pong points to the action pairs? A diagnosis of a trained Pong model.

Pong's six actions are three pairs that move the paddle alike (NOOP/FIRE stay, RIGHT/RIGHTFIRE go
up, LEFT/LEFTFIRE go down), and the entropy bonus can split a pair's probability between its two
actions. Greedy play takes the single most likely action, which is then not always the most likely
move. This script plays the same games twice with a run's model (its `checkpoints/best/`, else the
latest): once by the most likely action (what `a3c eval` does), once by the most likely move, and
reports how often the two differ and what each scores.

    .venv/bin/python benchmarks/pong_moves.py RUN_DIR [--games 20] [--seed 7] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from a3c import A3C
from a3c.errors import A3CError
from a3c.evaluation import eval_env_fn

# Pong's minimal action set, NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE, as moves: stay, up, down.
MOVE = np.array([0, 0, 1, 2, 1, 2])
MOVE_ACTION = np.array([0, 2, 3])  # one action for each move


def play(agent: A3C, seeds: list[int], by_move: bool) -> dict:
    """Greedy games on fresh seeds; by_move plays the most likely move where it differs."""
    env = eval_env_fn(agent.config, agent.env_fn)()
    scores, decisions, differ, entropy = [], 0, 0, 0.0
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                # as predict() prepares it (statistics too)
                batch, _ = agent.policy._obs_tensor(obs)
                with torch.inference_mode():
                    logits, _, _ = agent.model(batch, None)
                p = torch.softmax(logits[0], -1).numpy().astype(np.float64)
                action = int(p.argmax())
                move = int(np.bincount(MOVE, weights=p, minlength=3).argmax())
                decisions += 1
                entropy -= float((p * np.log(p + 1e-12)).sum())
                if MOVE[action] != move:
                    differ += 1
                    if by_move:
                        action = int(MOVE_ACTION[move])
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = bool(terminated or truncated)
            scores.append(total)
    finally:
        env.close()
    arr = np.asarray(scores)
    return {
        "play": "most likely move" if by_move else "most likely action",
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "returns": scores,
        "decisions": decisions,
        "differ_share": differ / decisions,
        "entropy_mean": entropy / decisions,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--games", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        agent = A3C.load(args.run_dir)
    except A3CError as e:
        print(f"pong_moves: {e}", file=sys.stderr)
        return 2
    if agent.config.env.id != "ALE/Pong-v5":
        print(
            f"pong_moves: {args.run_dir} is a run of {agent.config.env.id}, not ALE/Pong-v5",
            file=sys.stderr,
        )
        return 2
    seeds = [int(s) for s in np.random.default_rng(args.seed).integers(1 << 30, size=args.games)]
    result = {
        "run_dir": args.run_dir,
        "checkpoint": str(agent.checkpoint_path),
        "games": args.games,
        "seed": args.seed,
        "by_action": play(agent, seeds, by_move=False),
        "by_move": play(agent, seeds, by_move=True),
    }
    for r in (result["by_action"], result["by_move"]):
        print(
            f"{r['play']}: {r['mean']:+.2f} +/- {r['std']:.2f} over {args.games} games; the two "
            f"differ at {100 * r['differ_share']:.1f}% of {r['decisions']} decisions; entropy "
            f"{r['entropy_mean']:.2f}"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
