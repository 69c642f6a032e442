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
    # The window met the target; episodes in flight when the workers stopped may lower the final mean.
    assert summary["solved"] and summary["solved_return_mean"] >= 300.0 and summary["return_mean"] >= 200.0
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
    # The window met the target; episodes in flight when the workers stopped may lower the final mean.
    assert summary["solved"] and summary["solved_return_mean"] >= 300.0 and summary["return_mean"] >= 200.0


class _Now:
    """A fake remote method: `.remote(...)` calls the server at once (no Ray)."""

    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class _LocalServer:
    """A ParameterServer called in-process, counting round trips."""

    def __init__(self, server):
        self.server, self.trips = server, 0
        self.pull = _Now(server.pull)
        self.push_batch = _Now(self._push_batch)

    def _push_batch(self, *args):
        self.trips += 1
        return self.server.push_batch(*args)


class _NoRay:
    """Stands in for the ray module: objects are themselves, no object store."""

    @staticmethod
    def get(x):
        return x

    @staticmethod
    def put(x):
        return x


def _store(workers=1):
    from a3c.optim import GlobalParams

    agent = A3C("CartPole-v1", workers=workers, seed=0)
    return agent, GlobalParams(agent.model, agent.config.optim, workers, agent.n_actor)


def test_a_batched_round_trip_applies_each_gradient_as_its_own_update(monkeypatch):
    """k gradients sent together give exactly the parameters and optimizer statistics of k pushes
    one by one (k RMSprop steps in order, not one step on their sum), and the same counters."""
    from a3c.backends import ray_backend

    monkeypatch.setattr(ray_backend, "_ray", _NoRay)
    _, one_by_one = _store()
    _, batched = _store()
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(one_by_one.size, generator=g) for _ in range(4)]
    lags = [one_by_one.push(gr, 1e-3, 1e-3, 0, 64, 0) for gr in grads]
    reply = ray_backend.ParameterServer(batched).push_batch(torch.stack(grads).numpy(), [1e-3] * 4, [1e-3] * 4, 0, [64] * 4, [0] * 4, [64], None)
    assert torch.equal(batched.flat, one_by_one.flat)
    assert torch.equal(batched.state["square_avg"], one_by_one.state["square_avg"])
    assert reply["lags"] == lags == [0, 1, 2, 3]
    assert batched.global_updates() == 4 and batched.global_steps() == 5 * 64  # the skipped update's steps count too
    assert int(batched.worker_nonfinite.sum()) == 1


def test_a_ray_worker_resyncs_once_per_round_trip(monkeypatch):
    """Between round trips the worker's gradients queue up and its local weights stay as pulled;
    a round trip sends them all at once and the next pull brings the new version."""
    from a3c.backends import ray_backend

    monkeypatch.setattr(ray_backend, "_ray", _NoRay)
    _, global_params = _store()
    server = _LocalServer(ray_backend.ParameterServer(global_params))
    remote = ray_backend.RemoteStore(server, global_params.size, 0, None, interval=3600.0)
    local = torch.empty(global_params.size)
    assert remote.pull(local) == 0 and torch.equal(local, global_params.flat)
    before = local.clone()
    for _ in range(3):
        remote.push(torch.ones(global_params.size), 1e-3, 1e-3, 0, 64, remote.pull(local))
    assert server.trips == 0 and global_params.global_updates() == 0 and torch.equal(local, before)
    remote.finish()
    assert server.trips == 1 and global_params.global_updates() == 3 and global_params.global_steps() == 192
    assert remote.pull(local) == 3 and torch.equal(local, global_params.flat) and not torch.equal(local, before)
