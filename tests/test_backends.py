"""Backends: determinism of the serial emulation, sharing in the processes backend, learning."""

from __future__ import annotations

import copy
import csv
import os
import time

import pytest
import torch
import torch.multiprocessing as mp

from a3c import A3C, build_config
from a3c.backends.processes import ProcessesBackend
from a3c.optim import apply_update, new_state
from a3c.store import SharedStore
from a3c.worker import Worker

TIME_DEPENDENT = {"wall_s", "steps_per_s"}


def _rows(run_dir):
    with open(run_dir / "progress.csv") as f:
        return [
            {k: v for k, v in row.items() if k not in TIME_DEPENDENT} for row in csv.DictReader(f)
        ]


def _episodes(run_dir):
    with open(run_dir / "episodes.csv") as f:
        return [(r["worker"], r["steps"], r["return"], r["length"]) for r in csv.DictReader(f)]


def _serial_run(tmp_path, name, seed):
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=3,
        seed=seed,
        total_steps=12_000,
        log_interval=1_000,
    )
    agent.learn(run_dir=tmp_path / name, progress="none")
    return agent


def test_serial_backend_is_reproducible_for_a_seed(tmp_path):
    a = _serial_run(tmp_path, "a", seed=7)
    b = _serial_run(tmp_path, "b", seed=7)
    c = _serial_run(tmp_path, "c", seed=8)
    rows_a, rows_b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(rows_a) >= 10
    assert rows_a == rows_b
    assert _episodes(tmp_path / "a") == _episodes(tmp_path / "b")
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert _rows(tmp_path / "c") != rows_a, "another seed must give another run"
    assert any(
        not torch.equal(pa, pc)
        for pa, pc in zip(a.model.parameters(), c.model.parameters(), strict=True)
    )


def test_entropy_schedule_sets_the_coefficient_workers_use(tmp_path):
    """A schedule that is 0 from step 0 trains exactly like ent_coef 0; one that is not, does
    not."""

    def run(name, **kw):
        A3C(
            "CartPole-v1",
            backend="serial",
            workers=2,
            seed=3,
            total_steps=3_000,
            log_interval=1_000,
            **kw,
        ).learn(run_dir=tmp_path / name, progress="none")
        return _rows(tmp_path / name)

    zero = run("zero", ent_coef=0.0)
    assert run("scheduled_to_zero", ent_coef=0.5, ent_coef_schedule=[[0, 0.0]]) == zero
    assert run("constant", ent_coef=0.5) != zero
    assert run("later", ent_coef=0.0, ent_coef_schedule=[[1_500, 0.5]]) != zero


def _worker(cfg_overrides=None):
    cfg = build_config(
        "CartPole-v1", overrides={"backend": "serial", "workers": 1, **(cfg_overrides or {})}
    )
    agent = A3C("CartPole-v1", config=cfg)
    store = SharedStore.for_model(agent.model, cfg)
    return Worker(cfg, 0, store), store


def test_identical_updates_push_identical_gradients():
    """The ikostrikov/pytorch-a3c trap: on PyTorch >= 2 gradients accumulated across updates."""
    worker, store = _worker({"learning_rate": 0.0, "max_grad_norm": None})
    pushed = []
    push = store.push
    store.push = lambda worker, steps, pulled, grad: (
        pushed.append(grad.clone()) or push(worker, steps, pulled, grad)
    )
    snapshot = copy.deepcopy((worker.envs, worker.generator.get_state(), worker.obs_buf))
    worker.update()
    envs, gen_state, obs = snapshot
    worker.envs, worker.obs_buf = envs, obs
    worker.generator.set_state(gen_state)
    worker.update()
    assert len(pushed) == 2
    assert pushed[0].abs().sum() > 0
    assert torch.equal(pushed[0], pushed[1])


def test_serial_workers_see_each_others_updates():
    cfg = build_config("CartPole-v1", overrides={"backend": "serial", "workers": 2})
    agent = A3C("CartPole-v1", config=cfg)
    store = SharedStore.for_model(agent.model, cfg)
    w0, w1 = Worker(cfg, 0, store), Worker(cfg, 1, store)
    before = store.flat.clone()
    w0.update()
    w1.update()
    assert not torch.equal(before, store.flat)
    assert store.progress().updates == 2
    assert w1.take_report().sums["update_lag"] == 0  # w1 pulled after w0 pushed
    assert store.progress().steps == 2 * cfg.algo.n_steps * cfg.env.envs_per_worker


def _push_known_gradient(store: SharedStore, worker: int, value: float) -> None:
    grad = torch.full_like(store.flat, value)
    store.push(worker, 1, store.pull(torch.empty(store.size)), grad)


def _push_in_turn(store: SharedStore) -> None:
    """Workers 0 and 1 push gradients of 1.0 and 3.0, one after the other, each in its own
    process (bounded)."""
    ctx = mp.get_context("spawn")
    for worker, value in [(0, 1.0), (1, 3.0)]:
        p = ctx.Process(target=_push_known_gradient, args=(store, worker, value))
        p.start()
        p.join(timeout=300)
        assert p.exitcode == 0


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_shared_optimizer_statistics_are_one_copy_seen_by_every_worker(optimizer):
    cfg = build_config("CartPole-v1", overrides={"optim.name": optimizer})
    agent = A3C("CartPole-v1", config=cfg)
    store = SharedStore.for_model(agent.model, cfg.replace({"workers": 2})).share_memory_()
    _push_in_turn(store)
    assert store.counters["worker_updates"].tolist() == [1, 1]
    state = store.optimizer.state
    a = cfg.optim.alpha
    if optimizer == "rmsprop":
        # Worker 1's statistics include worker 0's push: one shared copy, not one per worker.
        expected = a * (1 - a) * 1.0**2 + (1 - a) * 3.0**2
        assert torch.allclose(state["square_avg"], torch.full_like(store.flat, expected))
    else:
        b1, b2 = cfg.optim.betas
        assert float(state["step"]) == 2.0
        assert torch.allclose(
            state["exp_avg"], torch.full_like(store.flat, b1 * (1 - b1) * 1.0 + (1 - b1) * 3.0)
        )
        assert torch.allclose(
            state["exp_avg_sq"], torch.full_like(store.flat, b2 * (1 - b2) * 1.0 + (1 - b2) * 9.0)
        )


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_per_worker_optimizer_statistics_are_each_workers_own(optimizer):
    overrides = {"optim.name": optimizer, "optim.shared_statistics": False}
    cfg = build_config("CartPole-v1", overrides={**overrides, "optim.lr_schedule": "constant"})
    agent = A3C("CartPole-v1", config=cfg)
    store = SharedStore.for_model(agent.model, cfg.replace({"workers": 2})).share_memory_()
    shared_before = {k: v.clone() for k, v in store.optimizer.state.items()}
    before = store.flat.clone()
    _push_in_turn(store)
    assert store.counters["worker_updates"].tolist() == [1, 1]
    for key, value in store.optimizer.state.items():  # the shared copy is not used
        assert torch.equal(value, shared_before[key])
    # each push is a first step with fresh statistics: worker 1's ignores worker 0's gradient
    expected = before.clone()
    for value in (1.0, 3.0):
        own = new_state(optimizer, store.size)
        grad = torch.full_like(expected, value)
        apply_update(optimizer, expected, grad, own, cfg.optim, *(2 * [cfg.optim.learning_rate]), 0)
    assert torch.allclose(store.flat, expected, atol=1e-7)


def test_processes_backend_learns_cartpole(tmp_path):
    agent = A3C(
        "CartPole-v1", workers=2, seed=1, total_steps=400_000, target_return=300.0, max_time=120
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["stop_reason"] == "target_return"
    assert summary["solved"] is True and summary["solved_return_mean"] >= 300.0
    assert summary["solved_steps"] <= summary["steps"]
    # the final window includes episodes that ended while stopping
    assert summary["return_mean"] >= 200.0
    rows = list(csv.DictReader(open(tmp_path / "run" / "progress.csv")))
    steps = [int(r["steps"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] == summary["steps"]
    assert max(float(r["update_lag"] or 0) for r in rows) >= 0
    assert all(int(r["nonfinite_updates"]) == 0 for r in rows)


def test_processes_backend_with_lock_and_adam(tmp_path):
    agent = A3C(
        "CartPole-v1", workers=2, seed=0, total_steps=30_000, lock=True, **{"optim.name": "adam"}
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["stop_reason"] == "total_steps"
    assert summary["steps"] >= 30_000
    assert summary["updates"] > 0


# --- starting: no env code in the trainer's process ---------------------------------------------


def _poll_until(backend, seconds, until=lambda reports: False):
    reports, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and not until(reports):
        reports += backend.poll(0.05)
    return reports


def test_worker_processes_start_without_running_env_code_in_the_trainer(tmp_path):
    """The processes backend builds every env in its worker processes: the trainer's process only
    supervises (an env that hangs or crashes can then never take the trainer with it)."""
    log = tmp_path / "pids"
    cfg = build_config(
        "fake_envs:PidLogging",
        overrides={"workers": 2, "total_steps": 10**6, "env.kwargs": {"path": str(log)}},
    )
    agent = A3C("CartPole-v1", workers=2)  # the same spaces; its env probe is not the backend's
    from a3c.envs import make_env_fn

    backend = ProcessesBackend(cfg, SharedStore.for_model(agent.model, cfg), make_env_fn(cfg.env))
    try:
        backend.start()
        reports = _poll_until(
            backend, 120, until=lambda reports: {r.worker for r in reports} == {0, 1}
        )
        assert {r.worker for r in reports} == {0, 1}, "both worker processes report"
    finally:
        backend.stop()
    assert backend.alive() == 0
    pids = {int(line) for line in log.read_text().split()}
    assert pids and os.getpid() not in pids, "every env was built in a worker process"


def test_an_env_factory_workers_cannot_receive_is_a_clear_error_before_the_run_starts(tmp_path):
    import gymnasium as gym

    from a3c.errors import ConfigError

    agent = A3C(lambda: gym.make("CartPole-v1"), workers=2, total_steps=10_000)
    with pytest.raises(
        ConfigError, match="cannot be pickled.*module-level function or class.*backend='serial'"
    ):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    assert not (tmp_path / "run").exists(), "nothing was started"
    agent.config = agent.config.replace({"backend": "serial"})
    # the same factory works in one process
    assert agent.learn(run_dir=tmp_path / "serial", progress="none")["steps"] >= 10_000


def test_workers_that_cannot_start_stop_the_run_with_the_reason(tmp_path, monkeypatch):
    def broken(self, i):
        raise OSError("the fork server is gone")

    monkeypatch.setattr(ProcessesBackend, "_spawn", broken)
    agent = A3C("CartPole-v1", workers=2, total_steps=10**6)
    from a3c.backends import WorkerFailure

    with pytest.raises(
        WorkerFailure,
        match=r"worker processes could not start \(OSError: the fork server is gone\)",
    ):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "worker_failure" and "fork server is gone" in summary["error"]


def test_an_unexpected_error_is_recorded_in_the_summary_and_raised(tmp_path, monkeypatch):
    from a3c.backends.serial import SerialBackend

    def poll(self, timeout):
        raise ValueError("something unexpected")

    monkeypatch.setattr(SerialBackend, "poll", poll)
    agent = A3C("CartPole-v1", backend="serial", workers=1, total_steps=10_000)
    with pytest.raises(ValueError, match="something unexpected"):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "error" and summary["error"] == "something unexpected"
    assert (tmp_path / "run" / "checkpoints").is_dir(), (
        "the end-of-run checkpoint is written all the same"
    )
