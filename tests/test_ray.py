"""The ray backend on a simulated cluster: `ray.cluster_utils.Cluster` on 127.0.0.1, two nodes of
one CPU each. Each node runs a node group (the processes backend's workers in the node's shared
memory); the nodes sync through the sharded global store. Every run here is bounded in time."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Read by Ray at import: local clusters then bind to loopback only (never another address).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Inherited by every Ray process these tests start (and no one else's): what they may kill or count
os.environ["A3C_TEST_RAY"] = str(os.getpid())
MARK = f"A3C_TEST_RAY={os.environ['A3C_TEST_RAY']}"
ray = pytest.importorskip("ray")

from waiting import wait_for  # noqa: E402

from a3c import A3C, build_config, checkpoint, run_checkpoints  # noqa: E402
from a3c.backends.ray_backend import RayBackend  # noqa: E402
from a3c.backends.ray_nodes import group_config, plan  # noqa: E402
from a3c.backends.ray_store import (  # noqa: E402
    Slots,
    StoreShard,
    gather,
    shard_count,
    slices,
    sync_interval,
)
from a3c.store import SharedStore  # noqa: E402

LOOPBACK = {"node_ip_address": "127.0.0.1", "include_dashboard": False}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **LOOPBACK})
    try:
        c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=c.address, logging_level="ERROR")
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 2, alive
        assert all(n["NodeManagerAddress"].startswith("127.") for n in alive), "loopback only"
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _processes(*titles: str) -> list[int]:
    """Live processes of these tests whose command line holds one of `titles` (Ray titles an
    actor's process `ray::ClassName...`); another Ray's on the machine are not these tests'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().split(") ")[-1][:1]
            ours = b"\0" + MARK.encode() + b"\0" in b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and ours and any(t in cmd for t in titles):
            found.append(int(entry.name))
    return found


def _polled(backend: RayBackend) -> bool:
    backend.poll(0.2)
    return True


def _solved(summary: dict) -> bool:
    # The window met the target; episodes in flight when the workers stopped may lower the end.
    return bool(summary["solved"]) and summary["solved_return_mean"] >= 475.0


# --- the store and the plan, without Ray -----------------------------------------------------


def test_a_shard_applies_every_groups_change_and_answers_with_the_others():
    shard = StoreShard(
        0,
        np.zeros(4, np.float32),
        None,
        None,
        "float32",
        {"worker_steps": np.zeros(3, np.int64)},
        None,
    )
    base_a, base_b = shard.join(0), shard.join(1)
    assert np.array_equal(base_a, np.zeros(4)) and np.array_equal(base_b, np.zeros(4))
    # group 0 (worker slot 0) moved by +1, group 1 (slots 1, 2) by +2 on every parameter
    reply_a = shard.sync(
        0, np.ones(4, np.float32), 10, Slots(0, 1), {"worker_steps": np.array([10])}
    )
    reply_b = shard.sync(
        1, np.full(4, 2, np.float32), 30, Slots(1, 2), {"worker_steps": np.array([20, 10])}
    )
    assert np.array_equal(shard.params.numpy(), np.full(4, 3.0)), "each node's updates applied"
    # each gets the change since what it last received: its own and the others' updates
    assert np.array_equal(reply_a["change"], np.ones(4)) and reply_a["others"]["worker_steps"] == 0
    assert np.array_equal(reply_b["change"], np.full(4, 3.0))
    assert reply_b["others"]["worker_steps"] == 10
    again = shard.sync(0, np.zeros(4, np.float32), 0, Slots(0, 1), {"worker_steps": np.array([10])})
    assert np.array_equal(again["change"], np.full(4, 2.0)), "group 1's update reaches group 0"
    assert again["others"]["worker_steps"] == 30, "counters are absolute: a repeat changes nothing"


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_rounding_on_the_wire_loses_nothing_over_syncs(dtype):
    """What rounding drops is carried (error feedback both ways): after many small changes the
    shard and the group agree with the exact float32 sum to the precision of one step."""
    from a3c.backends.ray_store import decode, encode

    rng = np.random.default_rng(0)
    shard = StoreShard(0, np.zeros(600, np.float32), None, None, dtype)
    local = torch.from_numpy(shard.join(0))
    base = local.clone()
    exact = torch.zeros(600)
    for _ in range(200):
        step = torch.from_numpy(rng.normal(0, 1e-3, 600).astype(np.float32))
        local += step
        exact += step
        wire, sent = encode(local - base, dtype)
        assert wire.nbytes <= 600 * (2 if dtype == "bfloat16" else 1.05), "fewer bytes"
        change = decode(shard.sync(0, wire, 1)["change"])
        local += change - sent
        base += change
    assert torch.allclose(local, exact, atol=1e-5), "the group's parameters are the exact sum"
    assert torch.allclose(shard.params, exact, atol=2e-3), "the store's lag behind by one rounding"


def test_shards_and_plans():
    assert shard_count(4_600, None) == 1 and shard_count(680_000 * 25, None) == 9
    assert shard_count(10, 4) == 4 and shard_count(3, 8) == 3
    # a smaller wire format syncs more often by default: more shards share the work
    assert shard_count(680_000, None) == 1 and shard_count(680_000, None, "int8") == 2
    assert shard_count(680_000 * 25, None, "bfloat16") == 16
    assert slices(10, 3) == [(0, 3), (3, 7), (7, 10)]
    # without an interval, a node sends about the same bytes per second in every wire format
    assert sync_interval(680_000, None) == pytest.approx(1.36)
    assert sync_interval(680_000, None, "int8") == pytest.approx(1.36 * 1.015625 / 4)
    assert sync_interval(680_000, 0.3, "int8") == 0.3 and sync_interval(10, None) == 0.05
    states = [
        {"params": np.arange(3.0), "counters.worker_steps": np.array([5])},
        {"params": np.arange(3.0, 5.0)},
    ]
    assert torch.equal(gather(states)["params"], torch.arange(5.0, dtype=torch.float64))
    one = plan(2, [("a", 2)], None)
    assert [(g.node, g.slots.start, g.slots.count) for g in one] == [("a", 0, 2)]
    two = plan(5, [("a", 1), ("b", 3)], None)
    assert [(g.node, g.slots.start, g.slots.count) for g in two] == [("a", 0, 1), ("b", 1, 4)]
    each = plan(5, [("a", 1), ("b", 1)], 2)
    assert [(g.node, g.slots.count) for g in each] == [(None, 2), (None, 2), (None, 1)]


def test_a_nodes_momentum_fades_over_the_clusters_updates():
    cfg = build_config("CartPole-v1", overrides={"optim.name": "adam", "workers": 4})
    halves = plan(4, [("a", 2), ("b", 2)], None)
    assert group_config(cfg, halves[1], 0.05).optim.betas == pytest.approx((0.81, 0.999))
    assert group_config(cfg, halves[1], 0.05).backend.workers == 2
    quarter = plan(4, [("a", 1), ("b", 3)], None)[0]
    assert group_config(cfg, quarter, 0.05).optim.betas[0] == pytest.approx(0.9**4)
    lone = plan(4, [("a", 4)], None)[0]  # one machine: the processes backend's statistics
    assert group_config(cfg, lone, 0.05).optim.betas == cfg.optim.betas


# --- on the simulated cluster ----------------------------------------------------------------


def test_each_node_runs_its_own_group(cluster):
    agent = A3C("CartPole-v1", backend="ray", workers=2, seed=0, ray_address=cluster.address)
    store = SharedStore.for_model(agent.model, agent.config)
    backend = RayBackend(agent.config, store)
    try:
        backend.start()
        assert wait_for(lambda: _polled(backend) and all(g.ran_on for g in backend.groups), 120)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(backend.groups) == 2 and {g.ran_on for g in backend.groups} == nodes
        assert [g.slots.count for g in backend.groups] == [1, 1]
        assert wait_for(lambda: _polled(backend) and backend.alive() == 2, 60)

        def both_counted() -> bool:
            backend.poll(0.2)
            return bool((backend.snapshot()["counters.worker_steps"] > 0).all())

        assert wait_for(both_counted, 60), "both nodes' steps reach the store"
    finally:
        backend.stop()
    assert int(store.counters["worker_steps"].sum()) > 0, "the final state is the trainer's"


def test_cartpole_is_solved_on_two_nodes(cluster, tmp_path):
    agent = A3C(
        "CartPole-v1",
        backend="ray",
        workers=2,
        seed=0,
        total_steps=1_000_000,
        max_time=240,
        ray_address=cluster.address,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert _solved(summary), summary
    loaded = A3C.load(tmp_path / "run")
    # The checkpoint holds the global parameters, copied back into the trainer's store at the end
    for a, b in zip(loaded.model.parameters(), agent.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert loaded.evaluate(episodes=3)["mean"] >= 100.0  # random play: ~20


def _kill_one(title: str, after_rows: int, done: dict):
    """A callback that kills one process titled `title` (kill -9) at the `after_rows`-th row."""

    def callback(row):
        done["rows"] = done.get("rows", 0) + 1
        if done["rows"] == after_rows and "killed" not in done:
            pids = _processes(title)
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                done["killed"] = pids[0]
        return None

    return callback


@pytest.mark.parametrize(
    ("title", "warning"),
    [("ray::NodeGroup", "node group"), ("ray::StoreShard", "store shard 0 failed")],
)
def test_a_killed_group_or_store_shard_is_replaced_and_the_run_still_solves(
    cluster, tmp_path, caplog, title, warning
):
    done: dict = {}
    agent = A3C(
        "CartPole-v1",
        backend="ray",
        workers=2,
        seed=1,
        total_steps=1_500_000,
        max_time=240,
        log_interval=5_000,
        restart_delay=0.1,
        ray_address=cluster.address,
    )
    summary = agent.learn(
        run_dir=tmp_path / "run", progress="none", callback=_kill_one(title, 2, done)
    )
    assert "killed" in done, f"no {title} process was found to kill: {done}"
    assert summary["worker_restarts"] >= 1 and warning in caplog.text, (
        summary,
        caplog.text[-2000:],
    )
    assert _solved(summary), summary
    with open(tmp_path / "run" / "progress.csv", newline="") as f:
        steps = [int(r["steps"]) for r in csv.DictReader(f)]
    assert steps == sorted(steps), "the global step never goes backwards"
    # steps lost with a recreated group are not counted: the summary is the final checkpoint's
    assert run_checkpoints.find(tmp_path / "run").steps == summary["steps"]


def test_a_worker_that_dies_inside_a_group_is_restarted_there(cluster, tmp_path):
    marker = tmp_path / "died"
    agent = A3C(
        "fake_envs:CartPoleDiesOnce",
        backend="ray",
        workers=2,
        seed=1,
        total_steps=1_500_000,
        max_time=240,
        restart_delay=0.1,
        ray_address=cluster.address,
        **{"env.kwargs": {"marker": str(marker)}},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert marker.exists(), "a worker's process did die"
    assert summary["worker_restarts"] == 1 and _solved(summary), summary


def test_a_worker_whose_env_hangs_is_restarted_by_its_group(cluster, tmp_path):
    marker = tmp_path / "hung"
    # A fixed budget, not a target: a run solved before the watchdog's 5 s would end first.
    agent = A3C(
        "fake_envs:CartPoleHangs",
        backend="ray",
        workers=2,
        seed=1,
        total_steps=250_000,
        target_return=None,
        max_time=180,
        worker_timeout=5,
        restart_delay=0.1,
        ray_address=cluster.address,
        **{"env.kwargs": {"after": 100, "marker": str(marker)}},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert marker.exists(), "an env did hang"
    assert summary["worker_restarts"] == 1 and summary["steps"] >= 250_000, summary


def test_sigterm_leaves_a_final_checkpoint_and_no_process(cluster, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "a3c.cli",
            "train",
            "CartPole-v1",
            "--backend",
            "ray",
            "--ray-address",
            cluster.address,
            "--total-steps",
            "100000000",
            "--target-return",
            "null",
            "--run-dir",
            str(run_dir),
            "--progress",
            "lines",
            "--set",
            "log.log_interval=5000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(
            lambda: (
                (run_dir / "progress.csv").exists()
                and len((run_dir / "progress.csv").read_text().splitlines()) > 3
            ),
            120,
        )
        assert _processes("ray::NodeGroup"), "the groups run"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "terminated"
    ckpt = run_checkpoints.find(run_dir)
    assert ckpt.steps == summary["steps"] > 0, "the final checkpoint holds the end of the run"
    gone = ("ray::NodeGroup", "ray::StoreShard", "ray::EvaluatorActor")
    assert wait_for(lambda: not _processes(*gone), 30), _processes(*gone)


def test_resume_continues_the_global_step(cluster, tmp_path):
    run_dir = tmp_path / "run"
    common = {"backend": "ray", "workers": 2, "ray_address": cluster.address, "log_interval": 5_000}
    first = A3C("CartPole-v1", seed=2, total_steps=30_000, target_return=None, **common)
    s1 = first.learn(run_dir=run_dir, progress="none")
    assert s1["steps"] >= 30_000
    s2 = A3C.resume(run_dir, total_steps=60_000).learn(progress="none")
    assert s2["resumes"] == 1 and s2["resumed_from_steps"] == s1["steps"]
    assert s2["steps"] >= 60_000
    ckpt = run_checkpoints.find(run_dir)
    assert int(ckpt.tensors["counters.worker_steps"].sum()) == s2["steps"]
    with open(run_dir / "progress.csv", newline="") as f:
        steps = [int(r["steps"]) for r in csv.DictReader(f)]
    assert steps == sorted(steps) and steps[-1] == s2["steps"]


def test_a_user_encoder_with_a_dict_observation_learns_on_ray(cluster, tmp_path):
    agent = A3C(
        "space_envs:DictCue",
        encoder="space_envs:CueEncoder",
        backend="ray",
        workers=2,
        seed=0,
        total_steps=30_000,
        target_return=None,
        max_time=120,
        ray_address=cluster.address,
        checkpoint_interval_s=None,
    )
    agent.learn(run_dir=tmp_path / "run", progress="none")
    assert agent.evaluate(episodes=20)["mean"] >= 7.0  # of 8; random play: 2.7


def test_ray_evaluations_run_in_an_actor_keep_the_best_and_survive_a_crash(
    cluster, tmp_path, caplog
):
    """The evaluator actor beside the groups reads the store shards: its first evaluation's env
    raises (once in the run), the actor is recreated at the next one, eval.csv gets rows, and
    best/ holds the state that scored its recorded mean."""
    marker, run_dir = tmp_path / "failed", tmp_path / "run"
    agent = A3C(
        "fake_envs:CartPoleEvalFails",
        backend="ray",
        workers=2,
        seed=0,
        total_steps=10**8,
        target_return=None,
        max_time=120,
        ray_address=cluster.address,
        **{
            "eval.interval_steps": 5_000,
            "eval.episodes": 3,
            "eval.env_kwargs": {"fail": "raise", "marker": str(marker)},
        },
    )

    def two_rows(row):
        path = run_dir / "eval.csv"
        return not path.exists() or len(path.read_text().splitlines()) < 3

    summary = agent.learn(run_dir=run_dir, progress="none", callback=two_rows)
    assert marker.exists() and "the evaluator failed" in caplog.text
    assert summary["stop_reason"] == "callback" and summary["eval"]["restarts"] == 1
    assert summary["eval"]["evaluations"] >= 2
    best = A3C.load(run_dir, checkpoint="best", ray_address=None, backend="serial")
    assert best.checkpoint_kind == "best"
    recorded = checkpoint.read(run_dir / "checkpoints" / "best").meta["eval"]["mean"]
    assert best.evaluate(episodes=3)["mean"] == recorded
