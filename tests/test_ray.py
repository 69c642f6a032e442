"""The ray backend on a 2-node Ray cluster started on loopback (ray.cluster_utils.Cluster)."""

from __future__ import annotations

import csv
import os

import pytest

# Read by Ray at import: local clusters then bind to loopback only (never another address).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")

import torch  # noqa: E402

from a3c import A3C, checkpoint, run_checkpoints  # noqa: E402


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
    agent = A3C(
        "CartPole-v1",
        backend="ray",
        workers=2,
        seed=0,
        total_steps=600_000,
        target_return=300.0,
        max_time=240,
        ray_address=cluster.address,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    # The window met the target; episodes in flight when the workers stopped may lower the final
    # mean.
    assert (
        summary["solved"]
        and summary["solved_return_mean"] >= 300.0
        and summary["return_mean"] >= 200.0
    ), summary
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()
    loaded = A3C.load(tmp_path / "run")
    # The checkpoint holds the parameter server's final parameters, synced to the trainer ...
    for a, b in zip(loaded.model.parameters(), agent.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # ... and they are learned (random play: ~20)
    assert loaded.evaluate(episodes=3)["mean"] >= 100.0


def test_a_ray_worker_whose_process_dies_is_recreated(cluster, tmp_path):
    marker = tmp_path / "died"
    agent = A3C(
        "fake_envs:CartPoleDiesOnce",
        backend="ray",
        workers=2,
        seed=1,
        total_steps=400_000,
        target_return=300.0,
        max_time=180,
        restart_delay=0.1,
        ray_address=cluster.address,
        **{"env.kwargs": {"marker": str(marker)}},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert marker.exists(), "a worker's process did die"
    assert summary["worker_restarts"] == 1
    # The window met the target; episodes in flight when the workers stopped may lower the final
    # mean.
    assert (
        summary["solved"]
        and summary["solved_return_mean"] >= 300.0
        and summary["return_mean"] >= 200.0
    )


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


def _store(workers=1, normalize_obs=False):
    from a3c.store import SharedStore

    agent = A3C("CartPole-v1", workers=workers, seed=0, normalize_obs=normalize_obs)
    return agent, SharedStore.for_model(agent.model, agent.config, 4 if normalize_obs else None)


def _no_ray(monkeypatch):
    from a3c.backends import ray_backend, ray_worker

    monkeypatch.setattr(ray_backend, "_ray", _NoRay)
    monkeypatch.setattr(ray_worker, "_ray", _NoRay)


def _remote(server, store, index=0, interval=3600.0):
    from a3c.backends import ray_worker
    from a3c.optim import Schedules

    cfg = A3C("CartPole-v1", workers=store.counters["worker_steps"].numel()).config
    schedules = Schedules(cfg.optim, cfg.algo, cfg.run.total_steps)
    dim = None if store.obs_stats is None else store.obs_stats.dim
    return ray_worker.RemoteStore(
        server,
        store.size,
        index,
        schedules,
        dim,
        store.counters["worker_steps"].numel(),
        interval=interval,
    )


def test_a_batched_round_trip_applies_each_gradient_as_its_own_update(monkeypatch):
    """k gradients sent together give exactly the parameters and optimizer statistics of k pushes
    one by one (k RMSprop steps in order, not one step on their sum), and the same counters."""
    from a3c.backends import ray_backend
    from a3c.store import Pulled

    _no_ray(monkeypatch)
    _, one_by_one = _store()
    _, batched = _store()
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(one_by_one.size, generator=g) for _ in range(4)]
    pulled = Pulled(0, 0.0)
    # the batch's skipped update is counted first, as the server does
    one_by_one.push(0, 64, pulled, None)
    pushed = [tuple(one_by_one.push(0, 64, pulled, gr)) for gr in grads]
    reply = ray_backend.ParameterServer(batched).push_batch(
        0, torch.stack(grads).numpy(), [tuple(pulled)] * 4, [64] * 4, [64], None
    )
    assert torch.equal(batched.flat, one_by_one.flat)
    assert torch.equal(
        batched.optimizer.state["square_avg"], one_by_one.optimizer.state["square_avg"]
    )
    assert reply["pushed"] == pushed and [lag for lag, _ in pushed] == [0, 1, 2, 3]
    assert batched.progress()[:2] == (5 * 64, 4)  # the skipped update's steps count too
    assert int(batched.counters["worker_nonfinite"].sum()) == 1


def test_a_ray_worker_resyncs_once_per_round_trip(monkeypatch):
    """Between round trips the worker's gradients queue up and its local weights stay as pulled;
    a round trip sends them all at once and the next pull brings the new version."""
    from a3c.backends import ray_backend

    _no_ray(monkeypatch)
    _, store = _store()
    server = _LocalServer(ray_backend.ParameterServer(store))
    remote = _remote(server, store)
    local = torch.empty(store.size)
    assert remote.pull(local).version == 0 and torch.equal(local, store.flat)
    before = local.clone()
    for _ in range(3):
        remote.push(0, 64, remote.pull(local), torch.ones(store.size))
    assert server.trips == 0 and store.progress().updates == 0 and torch.equal(local, before)
    remote.finish()
    assert server.trips == 1 and store.progress()[:2] == (192, 3)
    assert (
        remote.pull(local).version == 3
        and torch.equal(local, store.flat)
        and not torch.equal(local, before)
    )


def test_observation_statistics_are_merged_at_the_server_never_overwritten(monkeypatch):
    """A worker sends what it added to its row since its last round trip; the server adds it. A
    restarted (or resumed) worker starts from the server's rows, so nothing is lost."""
    from a3c.backends import ray_backend

    _no_ray(monkeypatch)
    _, store = _store(workers=2, normalize_obs=True)
    store.obs_stats.update(0, torch.ones(10, 4))  # restored statistics, e.g. from a checkpoint
    server = _LocalServer(ray_backend.ParameterServer(store))
    remote = _remote(server, store, index=0)
    assert torch.equal(remote.obs_stats.table, store.obs_stats.table), (
        "a new worker starts from the server's statistics"
    )
    remote.obs_stats.update(0, torch.full((5, 4), 2.0))
    remote.push(0, 5, remote.pull(torch.empty(store.size)), torch.zeros(store.size))
    remote.finish()
    # sums of 1s and 2s
    assert store.obs_stats.table[0, 0] == 15 and store.obs_stats.table[0, 1] == 10 + 10
    again = _remote(server, store, index=0)  # the restarted worker 0
    again.obs_stats.update(0, torch.full((1, 4), 3.0))
    again.push(0, 1, again.pull(torch.empty(store.size)), torch.zeros(store.size))
    again.finish()
    assert store.obs_stats.table[0, 0] == 16 and store.obs_stats.table[0, 1] == 23
    assert torch.equal(again.obs_stats.table, store.obs_stats.table)


def test_a_ray_worker_whose_env_hangs_is_recreated(cluster, tmp_path, capfd):
    marker = tmp_path / "hung"
    # A fixed budget, not a target: a run that solved CartPole in the seconds before the watchdog's
    # 5 s had passed would end before the restart this test is about (seen once: solved at 9 s).
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
    # It learns after the restart. The best window after it, not the last: CartPole's final window
    # sometimes collapses after solving (seen once in CI: 500 after the restart, 88 at the end).
    with open(tmp_path / "run" / "progress.csv", newline="") as f:
        after = [
            float(r["return_mean"])
            for r in csv.DictReader(f)
            if int(r["worker_restarts"]) == 1 and r["return_mean"]
        ]
    assert after and max(after) >= 200.0, after  # random play: ~20
    assert "no progress for 5 s" in capfd.readouterr().err


def test_the_parameter_server_killed_mid_run_is_restarted_from_its_last_state(
    cluster, tmp_path, capfd, monkeypatch
):
    """The run goes on after the server's death, from the trainer's copy of its state (at most
    ray_backend.STATE_COPY_S old): the steps made before the copy are not lost."""
    from a3c.backends import ray_backend

    real, seen = ray_backend.RayBackend.poll, {"polls": 0, "copied": None}

    def poll(self, timeout):
        seen["polls"] += 1
        if seen["polls"] == 10:  # a few seconds in, mid-run
            seen["copied"] = int(self.snapshot()["counters.worker_steps"].sum())
            ray.kill(self.ps)
        return real(self, timeout)

    monkeypatch.setattr(ray_backend.RayBackend, "poll", poll)
    agent = A3C(
        "CartPole-v1",
        backend="ray",
        workers=2,
        seed=0,
        total_steps=10**8,
        target_return=None,
        max_time=25,
        ray_address=cluster.address,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert seen["copied"] is not None and seen["copied"] > 0, "the server was killed mid-run"
    assert "the parameter server failed" in capfd.readouterr().err
    assert summary["worker_restarts"] >= 1 and summary["stop_reason"] == "max_time"
    assert run_checkpoints.find(tmp_path / "run").steps > seen["copied"], (
        "it went on from the copy, not from scratch"
    )


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
    cluster, tmp_path, capfd
):
    """The evaluator actor beside the workers: its first evaluation's env raises (once in the run),
    the actor is recreated at the next one, eval.csv gets rows, and best/ holds the state that
    scored its recorded mean."""
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
        return (
            not (run_dir / "eval.csv").exists()
            or len((run_dir / "eval.csv").read_text().splitlines()) < 3
        )

    summary = agent.learn(run_dir=run_dir, progress="none", callback=two_rows)
    assert marker.exists() and "the evaluator failed" in capfd.readouterr().err
    assert (
        summary["stop_reason"] == "callback"
        and summary["eval"]["restarts"] == 1
        and summary["eval"]["evaluations"] >= 2
    )
    best = A3C.load(run_dir, checkpoint="best", ray_address=None, backend="serial")
    assert best.checkpoint_kind == "best"
    assert (
        best.evaluate(episodes=3)["mean"]
        == checkpoint.read(run_dir / "checkpoints" / "best").meta["eval"]["mean"]
    )
