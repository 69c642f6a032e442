"""Ray backend: throughput against the processes backend, and how far one parameter server scales.

Part 1, throughput: CartPole-v1 with the library's defaults, the same worker count on both backends,
a fixed step budget (no early stop), --repeats alternating runs. The rate is env steps/s of the
steady part (between the progress rows at 10% and 95% of the budget, so start-up is excluded:
several seconds for Ray). Target: ray >= 70% of processes.

Part 2, scaling: fake fast workers (Ray actors that push random gradients of the model's size in a
loop and pull the returned weights, no env, no model) against one `ParameterServer`, for 1, 2, 4, 8,
16 workers, for two model sizes (CartPole's MLP and Pong's CNN), with 1 and 8 gradients per round
trip (--batches; the batching that `backend.ray_sync_interval` gives real workers). Reported: the
updates/s the server sustains and the speed-up over 1 worker. The paper's thread-scaling table (1,
2, 4, 8, 16 threads:
1.0, 2.1, 3.7, 6.9, 12.5x) is the reference for what near-linear looks like. On a 2-core machine the
fake workers and the server share 2 cores, so the curve flattens where the CPU runs out.

    .venv/bin/python benchmarks/ray_scaling.py [--repeats 3] [--steps 200000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median, run_child, write_results  # noqa: E402

PAPER = {1: 1.0, 2: 2.1, 4: 3.7, 8: 6.9, 16: 12.5}
SIZES = {"CartPole MLP": "CartPole-v1", "Pong CNN": "ALE/Pong-v5"}


def steady_rate(points: list[tuple[float, int]], total: int) -> float:
    """Env steps/s between the progress rows at 10% and 95% of the step budget: the workers' steady
    state, without start-up (Ray's is several seconds: a local cluster, actor processes importing
    torch) or the last, partial interval."""
    a = next(p for p in points if p[1] >= 0.10 * total)
    b = [p for p in points if p[1] <= 0.95 * total][-1]
    return (b[1] - a[1]) / max(b[0] - a[0], 1e-9)


def child_throughput(backend: str, steps: int, workers: int) -> dict:
    from a3c import A3C

    points: list[tuple[float, int]] = []
    lags: list[float] = []

    def on_row(row: dict) -> None:
        points.append((time.monotonic() - t0, row["steps"]))
        lags.append(row["update_lag"])

    t0 = time.monotonic()
    agent = A3C(
        "CartPole-v1",
        backend=backend,
        workers=workers,
        total_steps=steps,
        target_return=None,
        log_interval=5_000,
    )
    with tempfile.TemporaryDirectory() as d:
        s = agent.learn(run_dir=Path(d) / "run", progress="none", callback=on_row)
    return {
        "steps": s["steps"],
        "wall_s": s["wall_s"],
        "steady_steps_per_s": steady_rate(points, steps),
        "update_lag_median": median([x for x in lags if x == x]),
        "return_mean": s["return_mean"],
    }


def child_scaling(env_id: str, workers_list: list[int], seconds: float, batches: list[int]) -> dict:
    import numpy as np
    import ray

    from a3c import A3C
    from a3c.backends.ray_backend import ParameterServer, init_ray
    from a3c.store import SharedStore

    agent = A3C(env_id)
    init_ray(None, num_cpus=max(workers_list) + 1)

    @ray.remote(num_cpus=1)
    class FakeWorker:
        def __init__(self, ps, size: int, index: int) -> None:
            self.ps, self.index = ps, index
            self.grad = np.random.default_rng(index).standard_normal(size).astype(np.float32) * 1e-3

        def run(self, seconds: float, batch: int) -> int:
            """Round trips of `batch` gradients each (backend.ray_sync_interval's batching); returns
            the number of gradients applied."""
            n, end = 0, time.monotonic() + seconds
            grads = np.stack([self.grad] * batch)
            reply = ray.get(self.ps.pull.remote())
            while time.monotonic() < end:
                ray.get(reply["weights"][0])  # the pull a real worker makes
                pulled = [(reply["progress"][1], 0.0)] * batch
                reply = ray.get(
                    self.ps.push_batch.remote(self.index, grads, pulled, [40] * batch, [], None)
                )
                n += batch
            return n

    out: dict[int, dict[int, float]] = {}
    for batch in batches:
        out[batch] = {}
        for w in workers_list:
            store = SharedStore.for_model(agent.model, agent.config.replace({"workers": w}))
            ps = ray.remote(num_cpus=0)(ParameterServer).remote(store)
            fakes = [FakeWorker.remote(ps, store.size, i) for i in range(w)]
            t0 = time.monotonic()
            counts = ray.get([f.run.remote(seconds, batch) for f in fakes])
            out[batch][w] = sum(counts) / (time.monotonic() - t0)
            for f in fakes:
                ray.kill(f)
            ray.kill(ps)
    ray.shutdown()
    return {"params": sum(p.numel() for p in agent.model.parameters()), "updates_per_s": out}


def _sync_interval() -> float:
    from a3c.config import Config

    return Config().backend.ray_sync_interval


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--scaling-workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=[1, 8],
        help="gradients per round trip in the scaling study",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child[0] == "throughput":
            res = child_throughput(args.child[1], args.steps, args.workers)
        else:
            res = child_scaling(args.child[1], args.scaling_workers, args.seconds, args.batches)
        print(json.dumps(res))
        return 0

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    report: dict = {"machine": machine(), "throughput": [], "scaling": {}}
    for r in range(args.repeats):
        for backend in ["processes", "ray"] if r % 2 == 0 else ["ray", "processes"]:
            res = run_child(
                [
                    __file__,
                    "--child",
                    "throughput",
                    backend,
                    "--steps",
                    str(args.steps),
                    "--workers",
                    str(args.workers),
                ],
                timeout=900,
            )
            res.update(backend=backend, repeat=r)
            report["throughput"].append(res)
            print(json.dumps(res), flush=True)
    rates = {
        b: median([x.get("steady_steps_per_s") for x in report["throughput"] if x["backend"] == b])
        for b in ("processes", "ray")
    }
    ratio = rates["ray"] / rates["processes"] if rates["ray"] and rates["processes"] else None
    report.update(median_steps_per_s=rates, ray_over_processes=ratio)

    for label, env_id in SIZES.items():
        res = run_child(
            [
                __file__,
                "--child",
                "scaling",
                env_id,
                "--seconds",
                str(args.seconds),
                "--scaling-workers",
                *map(str, args.scaling_workers),
                "--batches",
                *map(str, args.batches),
            ],
            timeout=1800,
        )
        report["scaling"][label] = res
        print(label, json.dumps(res), flush=True)

    lag = {
        b: median([x.get("update_lag_median") for x in report["throughput"] if x["backend"] == b])
        for b in ("processes", "ray")
    }
    rows = [[b, rates[b], lag[b]] for b in ("processes", "ray")]
    parts = [
        f"### Ray backend ({args.workers} workers, CartPole-v1, {args.repeats} runs of "
        f"{args.steps:,} steps each, medians; backend.ray_sync_interval {_sync_interval()} s)",
        f"`.venv/bin/python benchmarks/ray_scaling.py --repeats {args.repeats} --steps "
        f"{args.steps} --seconds {args.seconds:g}` on {report['machine']['date']}, "
        f"{report['machine']['cpus']} CPUs, commit {report['machine'].get('commit')}",
        md_table(["backend", "env steps/s (steady)", "update lag (median)"], rows),
        f"ray / processes = **{ratio:.2f}** (target >= 0.70: "
        f"{'met' if ratio and ratio >= 0.7 else 'NOT met'})"
        if ratio
        else "ratio: n/a",
        "#### One parameter server: updates/s against fake fast workers",
    ]
    header = ["workers", "paper speed-up"]
    table_rows = {w: [w, PAPER.get(w, "")] for w in args.scaling_workers}
    for label, res in report["scaling"].items():
        for batch, per_w in (res.get("updates_per_s") or {}).items():
            header += [
                f"{label} ({res.get('params', '?'):,} params), {batch}/trip: updates/s",
                "speed-up",
            ]
            ups = {int(k): v for k, v in per_w.items()}
            base = ups.get(args.scaling_workers[0])
            for w in args.scaling_workers:
                table_rows[w] += [ups.get(w), (ups[w] / base) if base and w in ups else None]
    parts.append(md_table(header, list(table_rows.values())))
    md = "\n\n".join(parts)
    write_results(args.out, "ray_scaling", report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
