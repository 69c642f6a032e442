"""The Ray backend past one machine: node groups synced through a sharded store, measured here.

Part 1, one machine: CartPole-v1 with the library's defaults and the same worker count on the
processes backend and on `--backend ray` (a local Ray: one node group), a fixed step budget (no
early stop), --repeats alternating runs. The rate is env steps/s of the steady part (between the
progress rows at 10% and 95% of the budget: start-up excluded, several seconds for Ray).
Target: ray >= 0.95 of processes.

Part 2, the store: fake node groups (actors that send Pong-sized parameter changes to the K store
shards and take the replies, as fast as the shards answer; no env, no model) for K = 1, 2, 4.
Reported: the syncs/s the store sustains, and each shard's CPU time per sync (the per-operation
cost of the scaling model). On a 2-core machine the fake groups and the shards share 2 cores.

Part 3, the wire: ALE/Pong-v5 with the Atari preset on a simulated cluster (`ray.cluster_utils`,
2 nodes of 1 CPU on 127.0.0.1, one worker per node) for --pong-seconds, the default sync interval.
Reported: the bytes of parameter changes crossing between actors per agent step (both ways), and
each worker's agent steps/s. Target: at most 1/20 of the earlier design's 136 kB per agent step.

Part 4, the scaling model: from those costs, nodes x 16 Pong workers -> agent steps/s, bytes/s per
node, store load and update lag, for 1, 4, 16 and 64 nodes, and where the store saturates.

    .venv/bin/python benchmarks/ray_scaling.py [--repeats 3] [--steps 300000] [--seconds 10] \
        [--pong-seconds 90]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, median, run_child, write_results  # noqa: E402

EARLIER_BYTES_PER_STEP = 136_000  # the actor-per-worker design (docs/cluster.md's history)
CORES_PER_NODE = 16
NODES = [1, 4, 16, 64]


def steady_rate(points: list[tuple[float, int]], total: int) -> float:
    """Env steps/s between the progress rows at 10% and 95% of the step budget."""
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


def child_store(shard_counts: list[int], groups: int, seconds: float, dtype: str) -> dict:
    """Fake groups against K shards of Pong's size, the changes in `dtype` on the wire."""
    import numpy as np
    import ray
    import torch

    from a3c import A3C
    from a3c.backends.ray_runtime import init_ray
    from a3c.backends.ray_store import Slots, StoreShard, encode, slices

    size = sum(p.numel() for p in A3C("ALE/Pong-v5").model.parameters())
    init_ray(None, num_cpus=groups + max(shard_counts))

    @ray.remote(num_cpus=1)
    class FakeGroup:
        def __init__(self, index: int, shards: list, bounds: list) -> None:
            self.index, self.shards, self.bounds = index, shards, bounds
            rng = np.random.default_rng(index)
            delta = torch.from_numpy(rng.standard_normal(size).astype(np.float32) * 1e-4)
            self.wires = [encode(delta[a:b].contiguous(), dtype)[0] for a, b in bounds]
            ray.get([s.join.remote(index) for s in shards])

        def run(self, seconds: float) -> int:
            n, end = 0, time.monotonic() + seconds
            counts = {"worker_steps": np.array([1000 * (n + 1)])}
            while time.monotonic() < end:
                refs = [
                    s.sync.remote(
                        self.index,
                        wire,
                        800,
                        Slots(self.index, 1) if k == 0 else None,
                        counts if k == 0 else None,
                    )
                    for k, (s, wire) in enumerate(zip(self.shards, self.wires, strict=True))
                ]
                ray.get(refs)
                n += 1
            return n

    out = {}
    for k in shard_counts:
        bounds = slices(size, k)
        zeros = np.zeros(size, np.float32)
        shards = [
            ray.remote(num_cpus=0)(StoreShard).remote(
                i,
                zeros[a:b],
                None,
                None,
                dtype,
                {"worker_steps": np.zeros(groups, np.int64)} if i == 0 else None,
            )
            for i, (a, b) in enumerate(bounds)
        ]
        fakes = [FakeGroup.remote(g, shards, bounds) for g in range(groups)]
        ray.get([f.run.remote(0.5) for f in fakes])  # warm-up
        before = ray.get([s.traffic.remote() for s in shards])
        t0 = time.monotonic()
        done = sum(ray.get([f.run.remote(seconds) for f in fakes]))
        wall = time.monotonic() - t0
        after = ray.get([s.traffic.remote() for s in shards])
        pairs = list(zip(after, before, strict=True))
        syncs = [a["syncs"] - b["syncs"] for a, b in pairs]
        busy = [a["busy_s"] - b["busy_s"] for a, b in pairs]
        process = [a["process_cpu_s"] - b["process_cpu_s"] for a, b in pairs]
        out[k] = {
            "syncs_per_s": done / wall,
            # the sync's own arithmetic, and the shard process's CPU in all (Ray's call handling,
            # its (de)serialisation and object store reads included): the model uses the latter
            "shard_cpu_ms_per_sync": [
                1e3 * b / max(n, 1) for b, n in zip(busy, syncs, strict=True)
            ],
            "shard_process_ms_per_sync": [
                1e3 * c / max(n, 1) for c, n in zip(process, syncs, strict=True)
            ],
        }
        for actor in [*fakes, *shards]:
            ray.kill(actor)
    ray.shutdown()
    return {"params": size, "groups": groups, "dtype": dtype, "shards": out}


def child_wire(seconds: float, dtype: str) -> dict:
    """Pong on a simulated 2-node cluster, one worker per node, the changes in `dtype` on the
    wire at its default sync interval."""
    import ray
    from ray.cluster_utils import Cluster

    from a3c import A3C
    from a3c.backends.ray_backend import RayBackend
    from a3c.store import SharedStore

    loop = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **loop})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, logging_level="ERROR")
        agent = A3C(
            "ALE/Pong-v5",
            backend="ray",
            workers=2,
            ray_address=cluster.address,
            **{"eval.interval_s": None, "eval.interval_steps": None},
            **{"backend.ray_sync_dtype": dtype},
        )
        store = SharedStore.for_model(agent.model, agent.config)
        backend = RayBackend(agent.config, store)
        backend.start()
        try:
            t0, first = time.monotonic(), None
            while time.monotonic() - t0 < seconds:
                backend.poll(0.2)
                traffic = backend.traffic()
                if (
                    first is None
                    and len(traffic) == 2
                    and all(t.get("syncs", 0) >= 2 for t in traffic.values())
                ):
                    first, t_first = traffic, time.monotonic()  # steady: both groups syncing
            last, t_last = backend.traffic(), time.monotonic()
        finally:
            backend.stop()
    finally:
        ray.shutdown()
        cluster.shutdown()
    if first is None:
        return {"error": "the groups never synced twice"}

    def total(key: str, t: dict) -> int:
        return sum(int(g.get(key, 0)) for g in t.values())

    steps = total("steps", last) - total("steps", first)
    sent = sum(total(k, last) - total(k, first) for k in ("bytes_out", "bytes_in"))
    syncs = total("syncs", last) - total("syncs", first)
    return {
        "params": store.size,
        "dtype": dtype,
        "sync_interval_s": backend.interval,
        "seconds": t_last - t_first,
        "agent_steps": steps,
        "steps_per_s_per_worker": steps / (t_last - t_first) / 2,
        "bytes": sent,
        "syncs": syncs,
        "bytes_per_agent_step": sent / max(steps, 1),
    }


# the label of the ray backend's runs with their own sync interval: ray_sync0.3 syncs every 0.3 s
SYNC_LABEL = "ray_sync"
ONE_NODE = "ray_1node"  # the ray backend on one node of 2 CPUs: one group of 2 workers
# ray_beta1_0.81: 2 nodes x 1 worker with Adam's beta1 configured at 0.81 (each node then scales it
# by its share, a3c/backends/ray_nodes.py; the run recorded was made before it did)
BETA1_LABEL = "ray_beta1_"
OWN_STATS = "processes_own_stats"  # the processes backend, each worker its own optimizer statistics
PONG_PARTS = (
    "pong",
    "pong_sync",
    "pong_bf16",
    "pong_f32",
    "pong_1node",
    "pong_own_stats",
    "pong_beta1",
    "pong_own_beta1",
)
# ray_bf16_sync0.68: bfloat16 on the wire (half the bytes of a sync) syncing every 0.68 s
BF16_SYNC_LABEL = "ray_bf16_sync"
OWN_BETA1 = f"{OWN_STATS}_beta1_"  # processes_own_stats_beta1_0.81: and Adam's beta1 at 0.81
# the parts measuring the store and the wire, and the wire format of each
WIRE_PARTS = {"store": "float32", "store_int8": "int8", "wire": "float32", "wire_int8": "int8"}
# the ray backend with another format on the wire than the default (int8), at its default interval
WIRE_LABELS = {"ray_f32": "float32", "ray_bf16": "bfloat16"}
# the runs of the controls made when float32 was the default keep it
FLOAT32 = {"backend.ray_sync_dtype": "float32"}


def child_learn(
    backend: str, env_id: str, seed: int, total_steps: int, max_time: float, run_dir: str
) -> dict:
    """One run of `env_id` with its preset: the processes backend with 2 workers, or the ray
    backend on a simulated cluster of 2 nodes x 1 CPU (one worker per node). With `run_dir`
    ("-": a temporary one) a run stopped with SIGTERM is resumed where it stopped."""
    import contextlib

    from a3c import A3C

    cluster = None
    extra: dict = {}
    label = backend
    if backend.startswith(OWN_STATS):  # a control: statistics per worker, as per node on 2 x 1
        extra = {"optim.shared_statistics": False}
        if backend.startswith(OWN_BETA1):
            extra["optim.betas"] = [float(backend[len(OWN_BETA1) :]), 0.999]
        backend = "processes"
    elif backend in WIRE_LABELS:  # the ray backend with this format on the wire
        extra = {"backend.ray_sync_dtype": WIRE_LABELS[backend]}
        backend = "ray"
    elif backend.startswith(BF16_SYNC_LABEL):
        interval = float(backend[len(BF16_SYNC_LABEL) :])
        backend = "ray"
        extra = {"backend.ray_sync_dtype": "bfloat16", "backend.ray_sync_interval_s": interval}
    elif backend.startswith(BETA1_LABEL):
        beta1 = float(backend[len(BETA1_LABEL) :])
        backend, extra = "ray", {"optim.betas": [beta1, 0.999], **FLOAT32}
    elif backend.startswith(SYNC_LABEL):  # ray_sync0.3: the ray backend syncing every 0.3 s
        interval = float(backend[len(SYNC_LABEL) :])
        backend, extra = "ray", {"backend.ray_sync_interval_s": interval, **FLOAT32}
    one_node = backend == ONE_NODE  # shared statistics, no cross-node sync: a control
    if one_node:
        backend = "ray"
    if backend == "ray":
        import ray
        from ray.cluster_utils import Cluster

        loop = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
        head = {"num_cpus": 2 if one_node else 1, **loop}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        if not one_node:
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, logging_level="ERROR")
        extra["ray_address"] = cluster.address
    try:
        with tempfile.TemporaryDirectory() as d:
            where = Path(d) / "run" if run_dir == "-" else Path(run_dir)
            resumed = (where / "config.json").exists()
            if resumed:
                agent = A3C.resume(where, **extra)
            else:
                target = {} if env_id == "CartPole-v1" else {"target_return": None}
                agent = A3C(
                    env_id,
                    backend=backend,
                    workers=2,
                    seed=seed,
                    total_steps=total_steps,
                    max_time=max_time,
                    **target,
                    **extra,
                )
            s = agent.learn(run_dir=None if resumed else where, progress="none")
    finally:
        if cluster is not None:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
            cluster.shutdown()
    return {
        "backend": label,
        "env_id": env_id,
        "seed": seed,
        "solved": s["solved"],
        "solved_steps": s["solved_steps"],
        "steps": s["steps"],
        "wall_s": s["wall_s"],
        "return_mean": s["return_mean"],
        "stop_reason": s["stop_reason"],
    }


def model_table(
    params: int,
    interval: float,
    worker_rate: float,
    updates_per_s: float,
    shard_ms: float,
    value_bytes: float,
    k: int,
) -> tuple[list[list], int]:
    """The scaling model: N nodes of CORES_PER_NODE Pong workers each, K store shards (see
    docs/cluster.md); `value_bytes` a parameter's bytes on the wire, `shard_ms` a shard's CPU
    per sync of its slice."""
    per_sync_bytes = 2 * value_bytes * params  # a change out and a change back
    capacity = k * 1e3 / max(shard_ms, 1e-9)  # syncs/s the K shards take, each on its own core
    rows = []
    for n in NODES:
        syncs = n / interval
        load = syncs / capacity
        steps = n * CORES_PER_NODE * worker_rate * min(1.0, 1 / max(load, 1e-9))
        # updates a worker's pull misses: the node's own (Hogwild, about W - 1) plus, on average,
        # half a sync interval of every other node's
        lag = (CORES_PER_NODE - 1) + (n - 1) * CORES_PER_NODE * updates_per_s * interval / 2
        rows.append([n, n * CORES_PER_NODE, steps, per_sync_bytes / interval / 1e6, load, lag])
    saturation = math.floor(capacity * interval)
    return rows, saturation


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0, help="per store measurement")
    p.add_argument("--groups", type=int, default=4, help="fake groups in the store measurement")
    p.add_argument("--pong-seconds", type=float, default=90.0)
    p.add_argument(
        "--pong-updates-per-s",
        type=float,
        default=40.0,
        help="a Pong worker's updates/s (docs/benchmarks.md), for the lag estimate",
    )
    p.add_argument(
        "--parts",
        nargs="+",
        default=["throughput", "store", "wire", "store_int8", "wire_int8", "learning"],
        help="throughput, store and wire (float32 on the wire), store_int8 and wire_int8 (int8, "
        "the default), learning (CartPole, the default), learning_f32 and learning_bf16 (CartPole, "
        "float32 or bfloat16 on the wire), pong (long), pong_f32 (long: ray only, float32 on the "
        "wire), pong_sync (long: ray only, float32 every --pong-sync-interval), pong_bf16 "
        "(long: ray only, bfloat16 on the wire, --pong-bf16-interval), "
        "pong_1node (long: ray on one node of 2 CPUs, one group of 2 workers), pong_own_stats "
        "(long: processes, each worker its own optimizer statistics), pong_beta1 (long: ray, "
        "--pong-beta1), pong_own_beta1 (long: pong_own_stats with --pong-beta1)",
    )
    p.add_argument("--learn-seeds", type=int, default=5)
    p.add_argument("--pong-seeds", type=int, default=2)
    p.add_argument("--pong-steps", type=int, default=3_000_000)
    p.add_argument(
        "--pong-sync-interval",
        type=float,
        default=0.3,
        help="pong_sync: the ray backend's runs with this backend.ray_sync_interval_s",
    )
    p.add_argument(
        "--pong-bf16-interval",
        type=float,
        default=0.68,
        help="pong_bf16: the interval of the runs with bfloat16 on the wire (0.68 s: half the "
        "default's for the Atari CNN, at the default's bytes per second)",
    )
    p.add_argument(
        "--pong-beta1",
        type=float,
        default=0.81,
        help="pong_beta1, pong_own_beta1: the runs with Adam's beta1 at this value",
    )
    p.add_argument(
        "--pong-runs",
        type=Path,
        default=Path("runs/ray_pong"),
        help="run directories of the Pong comparison (resumed if there)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind = args.child[0]
        if kind == "throughput":
            res = child_throughput(args.child[1], args.steps, args.workers)
        elif kind == "store":
            res = child_store([1, 2, 4], args.groups, args.seconds, args.child[1])
        elif kind == "learn":
            res = child_learn(
                *args.child[1:3],
                int(args.child[3]),
                int(args.child[4]),
                float(args.child[5]),
                args.child[6],
            )
        else:
            res = child_wire(args.pong_seconds, args.child[1])
        print(json.dumps(res))
        return 0

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    previous = args.out / "ray_scaling.json"
    report: dict = json.loads(previous.read_text()) if previous.exists() else {}
    report["machine"] = machine()
    if "throughput" in args.parts:
        runs = []
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
                runs.append(res)
                print(json.dumps(res), flush=True)
        rates = {
            b: median([x.get("steady_steps_per_s") for x in runs if x["backend"] == b])
            for b in ("processes", "ray")
        }
        lags = {
            b: median([x.get("update_lag_median") for x in runs if x["backend"] == b])
            for b in ("processes", "ray")
        }
        report["throughput"] = {
            "runs": runs,
            "steps_per_s": rates,
            "update_lag": lags,
            "repeats": args.repeats,
            "steps": args.steps,
            "workers": args.workers,
        }
    for part, dtype in WIRE_PARTS.items():
        if part.startswith("store") and part in args.parts:
            report[part] = run_child(
                [__file__, "--child", "store", dtype, "--seconds", str(args.seconds)]
                + ["--groups", str(args.groups)],
                timeout=900,
            )
            print(json.dumps(report[part]), flush=True)
        if part.startswith("wire") and part in args.parts:
            report[part] = run_child(
                [__file__, "--child", "wire", dtype, "--pong-seconds", str(args.pong_seconds)],
                timeout=args.pong_seconds + 600,
            )
            print(json.dumps(report[part]), flush=True)
    for part, env_id, seeds, steps, max_time in [
        ("learning", "CartPole-v1", args.learn_seeds, 1_000_000, 600.0),
        ("learning_bf16", "CartPole-v1", args.learn_seeds, 1_000_000, 600.0),
        ("learning_f32", "CartPole-v1", args.learn_seeds, 1_000_000, 600.0),
        *[
            (part, "ALE/Pong-v5", args.pong_seeds, args.pong_steps, 4 * 3600.0)
            for part in PONG_PARTS
        ],
    ]:
        if part not in args.parts:
            continue
        # Pong's runs keep their run directories, so that a run stopped with SIGTERM (to free the
        # machine) resumes where it stopped when this is run again; finished runs are kept.
        kept = [r for r in report.get(part) or [] if r.get("stop_reason") == "total_steps"]
        pong = part.startswith("pong")
        runs = list(kept) if pong else []
        for seed in range(seeds):
            pair = {
                "learning_bf16": ["ray_bf16"],
                "learning_f32": ["ray_f32"],
                "pong_sync": [f"{SYNC_LABEL}{args.pong_sync_interval:g}"],
                "pong_bf16": [f"{BF16_SYNC_LABEL}{args.pong_bf16_interval:g}"],
                "pong_f32": ["ray_f32"],
                "pong_1node": [ONE_NODE],
                "pong_own_stats": [OWN_STATS],
                "pong_beta1": [f"{BETA1_LABEL}{args.pong_beta1:g}"],
                "pong_own_beta1": [f"{OWN_BETA1}{args.pong_beta1:g}"],
            }.get(part, ["processes", "ray"])
            for backend in pair if seed % 2 == 0 else list(reversed(pair)):
                if any(r.get("backend") == backend and r.get("seed") == seed for r in runs):
                    continue
                run_dir = str(args.pong_runs / f"{backend}_s{seed}") if pong else "-"
                res = run_child(
                    [
                        __file__,
                        "--child",
                        "learn",
                        backend,
                        env_id,
                        str(seed),
                        str(steps),
                        str(max_time),
                        run_dir,
                    ],
                    timeout=max_time + 600,
                )
                runs.append(res)
                print(json.dumps(res), flush=True)
                write_results(args.out, "ray_scaling", {**report, part: runs}, "")
        report[part] = runs
    md = markdown(report, args)
    write_results(args.out, "ray_scaling", report, md)
    print(md)
    return 0


def learning_markdown(report: dict) -> list[str]:
    out = []
    runs = [r for r in report.get("learning") or [] if "backend" in r]
    if runs:
        rows, med = [], {}
        for b in ("processes", "ray"):
            mine = sorted((r for r in runs if r["backend"] == b), key=lambda r: r["seed"])
            solved = [r["solved_steps"] for r in mine if r["solved"]]
            med[b] = median(solved)
            rows.append(
                [
                    b,
                    f"{len(solved)}/{len(mine)}",
                    med[b],
                    ", ".join(f"{r['solved_steps']:,}" if r["solved"] else "-" for r in mine),
                ]
            )
        ratio = med["ray"] / med["processes"] if med["ray"] and med["processes"] else None
        out += [
            "#### Learning: CartPole-v1, 2 workers on the processes backend against 2 nodes x 1 "
            "worker on the simulated cluster, the same seeds",
            md_table(
                ["backend", "solved", "median steps to solve", "steps to solve by seed"], rows
            ),
            f"ray / processes median steps = **{ratio:.2f}** (target: 5 of 5 solved within 1.5x)"
            if ratio
            else "ratio: n/a",
        ]
    for dtype, part in (("float32", "learning_f32"), ("bfloat16", "learning_bf16")):
        small = [r for r in report.get(part) or [] if "backend" in r]
        if not (small and runs):
            continue
        solved = [r["solved_steps"] for r in small if r["solved"]]
        int8 = median([r["solved_steps"] for r in runs if r["backend"] == "ray" and r["solved"]])
        ratio = median(solved) / int8 if solved and int8 else None
        out += [
            f"#### Learning with {dtype} on the wire (`backend.ray_sync_dtype: {dtype}`), the "
            "same seeds: solved "
            f"{len(solved)}/{len(small)}, median {median(solved) or '-'} steps "
            f"({'n/a' if ratio is None else f'{ratio:.2f}x'} the default's, int8): "
            + ", ".join(f"{r['solved_steps']:,}" if r["solved"] else "-" for r in small)
        ]
    pong = [r for r in report.get("pong") or [] if "backend" in r]
    if pong:
        rows = [
            [r["backend"], r["seed"], r["steps"], r["return_mean"], r["wall_s"]]
            for r in sorted(pong, key=lambda r: (r["backend"], r["seed"]))
        ]
        out += [
            "#### Learning: ALE/Pong-v5, the Atari preset, 2 workers against 2 nodes x 1 worker",
            md_table(["backend", "seed", "agent steps", "100-game training mean", "wall s"], rows),
        ]
        means = {
            b: [r["return_mean"] for r in pong if r["backend"] == b] for b in ("processes", "ray")
        }
        ray_seeds = {r["seed"] for r in pong if r["backend"] == "ray"}
        same = [  # the target's range: the processes backend's runs of the seeds ray ran
            r["return_mean"] for r in pong if r["backend"] == "processes" and r["seed"] in ray_seeds
        ]
        if len(same) >= 2 and means["ray"]:
            low, high = min(same), max(same)
            where = [
                "below" if m < low else "above" if m > high else "inside" for m in means["ray"]
            ]
            everyone = means["processes"]
            out.append(
                f"The processes backend's range over the same {len(same)} seeds: "
                f"{low:.1f} to {high:.1f} (over its {len(everyone)} seeds: {min(everyone):.1f} "
                f"to {max(everyone):.1f}); ray's training means "
                f"{', '.join(f'{m:.1f} ({w})' for m, w in zip(means['ray'], where, strict=True))}: "
                + (
                    "none below it (target met: the cluster learns as well)"
                    if "below" not in where
                    else "NOT within it (target not met)"
                )
            )
        for part in PONG_VARIANTS:
            out += pong_variant_markdown(report, part, means["processes"])
    return out


# the variants of the Pong comparison, each beside the cluster's default runs of the same seeds;
# {v} is the value in the runs' label (an interval, a beta1)
PONG_VARIANTS = {
    "pong_unscaled": "Pong on 2 nodes x 1 worker, float32 on the wire every 1.36 s, before the "
    "nodes scaled their momentum (each node's Adam beta1 0.9, as configured)",
    "pong_sync_unscaled": "Pong on 2 nodes x 1 worker, float32 on the wire every {v} s, before "
    "the nodes scaled their momentum (beta1 0.9)",
    "pong_sync": "Pong with float32 on the wire and `backend.ray_sync_interval_s={v}` (2 nodes x "
    "1 worker)",
    "pong_bf16": "Pong with bfloat16 on the wire and `backend.ray_sync_interval_s={v}` (2 nodes "
    "x 1 worker)",
    "pong_f32": "Pong with float32 on the wire (`backend.ray_sync_dtype: float32`) at its "
    "default interval, {v} s (2 nodes x 1 worker; the default before int8)",
    "pong_1node": "Pong on one node of 2 CPUs: one group of 2 workers sharing their optimizer "
    "statistics, no cross-node sync (a control)",
    "pong_own_stats": "Pong on the processes backend, 2 workers each with its own optimizer "
    "statistics (`optim.shared_statistics: false`, as each node's on 2 nodes x 1 worker, "
    "beta1 0.9; a control)",
    "pong_beta1": "Pong on 2 nodes x 1 worker, float32 on the wire, with Adam's beta1 at {v} "
    "(`optim.betas`; the runs "
    "recorded here set each node's by hand, before the backend scaled it by the node's share)",
    "pong_own_beta1": "Pong on the processes backend, 2 workers each with its own optimizer "
    "statistics and Adam's beta1 at {v}, as each node's on 2 nodes x 1 worker (a control)",
}


def pong_variant_markdown(report: dict, part: str, processes: list[float]) -> list[str]:
    """A variant of the Pong comparison (PONG_VARIANTS) beside the cluster's runs of the same
    seeds on 2 nodes x 1 worker with the default config."""

    runs = sorted((r for r in report.get(part) or [] if "backend" in r), key=lambda r: r["seed"])
    if not runs:
        return []
    default = {
        r["seed"]: r["return_mean"] for r in report.get("pong") or [] if r["backend"] == "ray"
    }
    rows = [
        [r["seed"], r["steps"], r["return_mean"], default.get(r["seed"], "-"), r["wall_s"]]
        for r in runs
    ]
    value = runs[0]["backend"].rsplit("_", 1)[-1].removeprefix("sync")
    interval = float(value) if part.startswith(("pong_sync", "pong_bf16")) else 0.0
    wire = report.get("wire") or {}  # float32 at its default interval
    # the bytes of a value on the wire, against float32's
    shrink = {"pong_bf16": 2.0}.get(part, 1.0)
    if part == "pong_f32" and wire.get("sync_interval_s"):
        interval = wire["sync_interval_s"]
        value = f"{interval:.2f}"
    out = [
        f"#### {PONG_VARIANTS[part].format(v=value)}",
        md_table(
            [
                "seed",
                "agent steps",
                "100-game training mean",
                "the same seed on 2 nodes x 1 worker, the default config (int8)",
                "wall s",
            ],
            rows,
        ),
    ]
    if interval and wire.get("bytes_per_agent_step") and wire.get("sync_interval_s"):
        scaled = wire["bytes_per_agent_step"] * wire["sync_interval_s"] / interval / shrink
        out.append(
            f"Bytes between actors per agent step at this interval: about {scaled / 1e3:.1f} kB "
            f"(the wire measurement at {wire['sync_interval_s']:.2f} s, scaled by the interval"
            f"{f' and by {shrink:.2f} for the smaller values' if shrink > 1 else ''})."
        )
    if len(processes) >= 2:
        low, high = min(processes), max(processes)
        inside = all(low <= r["return_mean"] <= high for r in runs)
        out.append(
            f"Against the processes backend's range over its {len(processes)} seeds, {low:.1f} to "
            f"{high:.1f}: "
            f"{'within it' if inside else 'NOT within it'}."
        )
    return out


def markdown(report: dict, args: argparse.Namespace) -> str:
    m = report["machine"]
    parts = [
        "### The Ray backend: node groups and a sharded store",
        f"`.venv/bin/python benchmarks/ray_scaling.py` on {m['date']}, {m['cpus']} CPUs, "
        f"commit {m.get('commit')}",
    ]
    t = report.get("throughput")
    if t:
        rates, lags = t["steps_per_s"], t["update_lag"]
        ratio = rates["ray"] / rates["processes"] if rates["ray"] and rates["processes"] else None
        parts += [
            f"#### One machine: CartPole-v1, {t['workers']} workers, {t['repeats']} alternating "
            f"runs of {t['steps']:,} steps each (medians)",
            md_table(
                ["backend", "env steps/s (steady)", "update lag (median)"],
                [[b, rates[b], lags[b]] for b in ("processes", "ray")],
            ),
            f"ray / processes = **{ratio:.3f}** (target >= 0.95: "
            f"{'met' if ratio >= 0.95 else 'NOT met'})"
            if ratio
            else "ratio: n/a",
        ]
    for suffix in ("", "_int8"):
        parts += store_markdown(report.get(f"store{suffix}"))
        parts += wire_markdown(report.get(f"wire{suffix}"))
    parts += learning_markdown(report)
    for suffix in ("", "_int8"):
        parts += model_markdown(report.get(f"store{suffix}"), report.get(f"wire{suffix}"), args)
    return "\n\n".join(parts)


def store_markdown(s: dict | None) -> list[str]:
    if not s or "shards" not in s:
        return []
    rows = [
        [
            k,
            v["syncs_per_s"],
            median(v["shard_cpu_ms_per_sync"]),
            median(v["shard_process_ms_per_sync"]),
        ]
        for k, v in sorted(s["shards"].items(), key=lambda kv: int(kv[0]))
    ]
    return [
        f"#### The store: {s['groups']} fake groups sending Pong-sized changes "
        f"({s['params']:,} parameters, {s.get('dtype', 'float32')} on the wire) as fast as the "
        "shards answer",
        md_table(
            [
                "shards K",
                "syncs/s sustained",
                "shard CPU ms per sync: the arithmetic",
                "shard CPU ms per sync: the whole process",
            ],
            rows,
        ),
    ]


def wire_markdown(w: dict | None) -> list[str]:
    if not w or "bytes_per_agent_step" not in w:
        return []
    b = w["bytes_per_agent_step"]
    return [
        "#### The wire: ALE/Pong-v5, 2 nodes x 1 worker, "
        f"{w.get('dtype', 'float32')} on the wire, sync every {w['sync_interval_s']:.2f} s (that "
        "format's default for its size)",
        md_table(
            [
                "measured over",
                "agent steps",
                "syncs",
                "bytes (both ways)",
                "bytes per agent step",
                "agent steps/s per worker",
            ],
            [
                [
                    f"{w['seconds']:.0f} s",
                    w["agent_steps"],
                    w["syncs"],
                    w["bytes"],
                    b,
                    w["steps_per_s_per_worker"],
                ]
            ],
        ),
        f"{b / 1e3:.1f} kB per agent step = **1/{EARLIER_BYTES_PER_STEP / b:.0f}** of the "
        f"earlier design's 136 kB (target <= 1/20: "
        f"{'met' if b <= EARLIER_BYTES_PER_STEP / 20 else 'NOT met'})",
    ]


def model_markdown(s: dict | None, w: dict | None, args: argparse.Namespace) -> list[str]:
    """The scaling model's table from a store measurement and a wire measurement."""
    from a3c.backends.ray_store import shard_count, wire_bytes

    if not (s and w and "shards" in s and "steps_per_s_per_worker" in w):
        return []
    dtype = w.get("dtype", "float32")
    k = shard_count(w["params"], None, dtype)  # the default for Pong's size and the format
    measured = s["shards"].get(str(k))
    if not measured:
        return []
    rows, sat = model_table(
        w["params"],
        w["sync_interval_s"],
        w["steps_per_s_per_worker"],
        args.pong_updates_per_s,
        median(measured["shard_process_ms_per_sync"]),
        wire_bytes(dtype),
        k,
    )
    return [
        f"#### Scaling model (projected): Pong, nodes of {CORES_PER_NODE} workers, {dtype} on the "
        f"wire, sync every {w['sync_interval_s']:.2f} s, K = {k} store shard{'s' * (k > 1)} (the "
        "default)",
        md_table(
            [
                "nodes",
                "workers",
                "agent steps/s",
                "MB/s per node (both ways)",
                "store load",
                "update lag",
            ],
            rows,
        ),
        f"The store saturates (load 1) at **{sat} nodes** with K = {k}, each shard on a core of "
        f"its own at its CPU per sync as measured with K = {k} above.",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
