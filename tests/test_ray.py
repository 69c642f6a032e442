"""The ray backend on a 2-node Ray cluster started on loopback (ray.cluster_utils.Cluster)."""

from __future__ import annotations

import os

import pytest

# Read by Ray at import: local clusters then bind to loopback only (never another address).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")

import torch  # noqa: E402

from a3c import A3C  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=2)
        ray.init(address=c.address, logging_level="ERROR")
        alive = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 2 and all(a.startswith("127.") for a in alive), alive  # loopback only
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def test_ray_backend_on_a_two_node_cluster_learns_cartpole(cluster, tmp_path):
    agent = A3C("CartPole-v1", backend="ray", workers=2, seed=0, total_steps=400_000, target_return=300.0, max_time=180, ray_address=cluster.address)
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["solved"] and summary["return_mean"] >= 300.0
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()
    loaded = A3C.load(tmp_path / "run")
    # The checkpoint holds the parameter server's final parameters, synced to the trainer ...
    for a, b in zip(loaded.model.parameters(), agent.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert loaded.evaluate(episodes=3)["mean"] >= 100.0  # ... and they are learned (random play: ~20)


def test_a_ray_worker_whose_process_dies_is_recreated(cluster, tmp_path):
    marker = tmp_path / "died"
    agent = A3C("fake_envs:CartPoleDiesOnce", backend="ray", workers=2, seed=1, total_steps=400_000, target_return=300.0,
                max_time=180, restart_delay=0.1, ray_address=cluster.address, **{"env.kwargs": {"marker": str(marker)}})  # fmt: skip
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert marker.exists(), "a worker's process did die"
    assert summary["worker_restarts"] == 1
    assert summary["solved"] and summary["return_mean"] >= 300.0
