"""Greedy actions per second at batch 1: `A3C.predict` against the exported TorchScript module and
the exported ONNX graph under onnxruntime, on CartPole-v1's MLP and ALE/Pong-v5's CNN (the presets'
models), side by side in one run.

Each way acts on the same 1,000 observations from the env (random play, as a3c builds the env), one
observation per call, as a program that acts step by step does; each call includes turning the
observation into the runtime's input and the action back into an array. One thread each
(torch.set_num_threads(1), onnxruntime's intra_op_num_threads=1): serving one env step does not
split across cores. --rounds rounds in alternating order; the median rate of each.

    .venv/bin/python benchmarks/export_speed.py [--rounds 5] [--observations 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median, write_results  # noqa: E402

MODELS = [
    ("CartPole-v1", "MLP 64x64 (the classic-control preset)"),
    ("ALE/Pong-v5", "the paper's CNN (the Atari preset)"),
]


def observations(agent, n: int) -> list[np.ndarray]:
    from a3c.envs import make_env_fn

    env = make_env_fn(agent.config.env)()
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    out = []
    for _ in range(n):
        out.append(np.asarray(obs))
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    return out


def ways(agent, folder: Path) -> dict:
    """name -> act(obs) for one observation, each returning the env's action."""
    import onnxruntime
    import torch

    onnx_path = agent.export(folder / "policy.onnx")
    ts_path = agent.export(folder / "policy.pt", format="torchscript")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(onnx_path), options)
    module = torch.jit.load(str(ts_path))
    dtype = np.dtype(agent.observation_space.dtype)

    def predict(obs):
        return agent.predict(obs, deterministic=True)[0]

    def torchscript(obs):
        with torch.inference_mode():
            return module(torch.as_tensor(np.asarray(obs, dtype)[None]))[0].numpy()[0]

    def ort(obs):
        return session.run(None, {"obs": np.asarray(obs, dtype)[None]})[0][0]

    return {"A3C.predict": predict, "TorchScript": torchscript, "onnxruntime": ort}


def measure(env_id: str, n: int, rounds: int) -> dict:
    import torch

    from a3c import A3C

    torch.set_num_threads(1)
    agent = A3C(env_id)
    obs = observations(agent, n)
    with tempfile.TemporaryDirectory() as d:
        acts = ways(agent, Path(d))
        want = [acts["A3C.predict"](o) for o in obs]
        for name, act in acts.items():  # the same greedy actions, or the rates mean nothing
            got = [act(o) for o in obs]
            assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)), name
        rates: dict[str, list[float]] = {name: [] for name in acts}
        for r in range(rounds):
            order = list(acts) if r % 2 == 0 else list(reversed(acts))
            for name in order:
                t0 = time.perf_counter()
                for o in obs:
                    acts[name](o)
                rates[name].append(n / (time.perf_counter() - t0))
    return {name: {"median": median(v), "rounds": v} for name, v in rates.items()}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--observations", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    report: dict = {"machine": machine(), "rounds": args.rounds, "observations": args.observations}
    rows = []
    for env_id, model in MODELS:
        res = measure(env_id, args.observations, args.rounds)
        report[env_id] = res
        base = res["A3C.predict"]["median"]
        for name, r in res.items():
            rows.append([env_id, model, name, f"{r['median']:,.0f}", f"{r['median'] / base:.2f}x"])
        print(rows[-3:], flush=True)
    md = "\n\n".join(
        [
            "### Export: greedy actions per second at batch 1",
            f"One observation per call, {args.observations} observations from the env, one thread "
            f"each, median of {args.rounds} rounds; every way gives A3C.predict's actions.",
            md_table(["env", "model", "way", "actions/s", "vs A3C.predict"], rows),
        ]
    )
    write_results(args.out, "export_speed", report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
