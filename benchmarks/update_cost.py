"""The cost of one worker update, in ms: one worker in this process, one torch thread, no peers.

What the Pong speed-ups on the benchmarks page were measured with: the same update the trainer's
workers make (pull, rollout, loss, backward, clip, push to the shared optimizer), timed over
--updates after a warm-up, --repeats times, the median reported. Compare settings side by side in
one run:

    .venv/bin/python benchmarks/update_cost.py \
        ALE/Pong-v5 --envs 2 4 8 --modes gym_wrappers ale_vector

Modes: ale_vector (the default: ale-py's C++ AtariVectorEnv steps the envs, as the Atari preset
does), gym_wrappers (the same worker with its envs stepped through Gymnasium's wrappers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median  # noqa: E402

WRAPPERS = {"env.atari.ale_vector": False}
MODES = {"gym_wrappers": WRAPPERS, "ale_vector": {"env.atari.ale_vector": True}}


def update_ms(
    env_id: str, envs: int, mode: str, updates: int, extra: dict, warmup: int = 20
) -> tuple[float, int]:
    """(ms per update, env steps per update)."""
    from a3c import A3C, build_config
    from a3c.store import SharedStore
    from a3c.worker import Worker

    cfg = build_config(
        env_id,
        overrides={**extra, "env.envs_per_worker": envs, "backend.workers": 1, **MODES[mode]},
    )
    agent = A3C(env_id, config=cfg)
    worker = Worker(cfg, 0, SharedStore.for_model(agent.model, cfg))
    try:
        for _ in range(warmup):
            worker.update()
        t0 = time.perf_counter()
        for _ in range(updates):
            worker.update()
        return (time.perf_counter() - t0) / updates * 1e3, envs * cfg.algo.n_steps
    finally:
        worker.envs.close()


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("env_id", nargs="?", default="ALE/Pong-v5")
    p.add_argument("--envs", type=int, nargs="+", default=[4], help="envs per worker")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=["ale_vector"])
    p.add_argument("--updates", type=int, default=150)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="assignments",
        help="any config key, for every mode (repeatable)",
    )
    args = p.parse_args()
    from a3c.configfile import parse_assignments

    extra = parse_assignments(args.assignments)
    torch.set_num_threads(1)
    rows = []
    for envs in args.envs:
        times: dict[str, list[float]] = {m: [] for m in args.modes}
        steps = 0
        for _ in range(args.repeats):  # alternate the modes, so drift on a shared machine hits both
            for mode in args.modes:
                ms, steps = update_ms(args.env_id, envs, mode, args.updates, extra)
                times[mode].append(ms)
        for mode in args.modes:
            ms = median(times[mode])
            rows.append([envs, mode, ms, steps * 1e3 / ms])
    info = machine()
    settings = "".join(f" --set {a}" for a in args.assignments)
    print(
        f"{args.env_id}{settings}, one worker, medians of {args.repeats} x {args.updates} "
        f"updates; {info['date']}, commit {info.get('commit')}"
    )
    print(
        md_table(["envs per worker", "rollout", "ms per update", "env steps/s (one worker)"], rows)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
