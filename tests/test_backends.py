"""Backends: determinism of the serial emulation, sharing in the processes backend, learning."""

from __future__ import annotations

import copy
import csv
import threading
import time

import fake_envs  # tests/fake_envs.py
import pytest
import torch
import torch.multiprocessing as mp

from a3c import A3C, build_config
from a3c.backends.processes import ProcessesBackend
from a3c.optim import GlobalParams
from a3c.worker import Worker

TIME_DEPENDENT = {"wall_s", "steps_per_s"}


def _rows(run_dir):
    with open(run_dir / "progress.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIME_DEPENDENT} for row in csv.DictReader(f)]


def _episodes(run_dir):
    with open(run_dir / "episodes.csv") as f:
        return [(r["worker"], r["steps"], r["return"], r["length"]) for r in csv.DictReader(f)]


def _serial_run(tmp_path, name, seed):
    agent = A3C("CartPole-v1", backend="serial", workers=3, seed=seed, total_steps=12_000, log_interval=1_000)
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
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.model.parameters(), c.model.parameters(), strict=True))


def test_entropy_schedule_sets_the_coefficient_workers_use(tmp_path):
    """A schedule that is 0 from step 0 trains exactly like ent_coef 0; one that is not, does not."""

    def run(name, **kw):
        A3C("CartPole-v1", backend="serial", workers=2, seed=3, total_steps=3_000, log_interval=1_000, **kw).learn(run_dir=tmp_path / name, progress="none")
        return _rows(tmp_path / name)

    zero = run("zero", ent_coef=0.0)
    assert run("scheduled_to_zero", ent_coef=0.5, ent_coef_schedule=[[0, 0.0]]) == zero
    assert run("constant", ent_coef=0.5) != zero
    assert run("later", ent_coef=0.0, ent_coef_schedule=[[1_500, 0.5]]) != zero


def _worker(cfg_overrides=None):
    cfg = build_config("CartPole-v1", overrides={"backend": "serial", "workers": 1, **(cfg_overrides or {})})
    agent = A3C("CartPole-v1", config=cfg)
    store = GlobalParams(agent.model, cfg.optim, 1, agent.n_actor)
    return Worker(cfg, 0, store), store


def test_identical_updates_push_identical_gradients():
    """The ikostrikov/pytorch-a3c trap: on PyTorch >= 2 gradients accumulated across updates."""
    worker, store = _worker({"learning_rate": 0.0, "max_grad_norm": None})
    pushed = []
    store.push = lambda grad, *a, **k: pushed.append(grad.clone()) or 0
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
    store = GlobalParams(agent.model, cfg.optim, 2, agent.n_actor)
    w0, w1 = Worker(cfg, 0, store), Worker(cfg, 1, store)
    before = store.flat.clone()
    w0.update()
    w1.update()
    assert not torch.equal(before, store.flat)
    assert store.global_updates() == 2
    assert w1.take_report().update_lag == 0  # w1 pulled after w0 pushed
    assert store.global_steps() == 2 * cfg.algo.n_steps * cfg.env.envs_per_worker


def _push_known_gradient(store: GlobalParams, worker: int, value: float) -> None:
    grad = torch.full_like(store.flat, value)
    store.push(grad, 0.01, 0.01, worker, steps=1, pulled_at=store.global_updates())


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_shared_optimizer_statistics_are_one_copy_seen_by_every_worker(optimizer):
    cfg = build_config("CartPole-v1", overrides={"optim.name": optimizer})
    agent = A3C("CartPole-v1", config=cfg)
    store = GlobalParams(agent.model, cfg.optim, 2, agent.n_actor).share_memory_()
    ctx = mp.get_context("spawn")
    for worker, value in [(0, 1.0), (1, 3.0)]:  # one after the other, each in its own process
        p = ctx.Process(target=_push_known_gradient, args=(store, worker, value))
        p.start()
        p.join(timeout=300)
        assert p.exitcode == 0
    assert store.worker_updates.tolist() == [1, 1]
    a = cfg.optim.alpha
    if optimizer == "rmsprop":
        # Worker 1's statistics include worker 0's push: one shared copy, not one per worker.
        expected = a * (1 - a) * 1.0**2 + (1 - a) * 3.0**2
        assert torch.allclose(store.state["square_avg"], torch.full_like(store.flat, expected))
    else:
        b1, b2 = cfg.optim.betas
        assert float(store.state["step"]) == 2.0
        assert torch.allclose(store.state["exp_avg"], torch.full_like(store.flat, b1 * (1 - b1) * 1.0 + (1 - b1) * 3.0))
        assert torch.allclose(store.state["exp_avg_sq"], torch.full_like(store.flat, b2 * (1 - b2) * 1.0 + (1 - b2) * 9.0))


def test_processes_backend_learns_cartpole(tmp_path):
    agent = A3C("CartPole-v1", workers=2, seed=1, total_steps=400_000, target_return=300.0, max_time=120)
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["stop_reason"] == "target_return"
    assert summary["solved"] is True and summary["solved_return_mean"] >= 300.0
    assert summary["solved_steps"] <= summary["steps"]
    assert summary["return_mean"] >= 200.0  # the final window includes episodes that ended while stopping
    rows = list(csv.DictReader(open(tmp_path / "run" / "progress.csv")))
    steps = [int(r["steps"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] == summary["steps"]
    assert max(float(r["update_lag"] or 0) for r in rows) >= 0
    assert all(int(r["nonfinite_updates"]) == 0 for r in rows)


def test_processes_backend_with_lock_and_adam(tmp_path):
    agent = A3C("CartPole-v1", workers=2, seed=0, total_steps=30_000, lock=True, **{"optim.name": "adam"})
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["stop_reason"] == "total_steps"
    assert summary["steps"] >= 30_000
    assert summary["updates"] > 0


# --- the stand-in: the trainer trains while the worker processes start ---------------------------


def _slow_start_backend(monkeypatch, env_id="CartPole-v1", **overrides):
    """A processes backend whose workers start only when the test sets the returned event (as on a
    cold fork server, without depending on how fast the machine is)."""
    cfg = build_config(env_id, overrides={"workers": 2, "total_steps": 10**6, **overrides})
    agent = A3C(env_id, config=cfg)
    store = GlobalParams(agent.model, cfg.optim, 2, agent.n_actor)
    release = threading.Event()
    spawn_all = ProcessesBackend._spawn_all

    def slow(self):
        release.wait(timeout=120)
        spawn_all(self)

    monkeypatch.setattr(ProcessesBackend, "_spawn_all", slow)
    return ProcessesBackend(cfg, store, None if env_id == "CartPole-v1" else fake_envs.RaisesOnStep), store, release


def _poll_until(backend, seconds, until=lambda reports: False):
    reports, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and not until(reports):
        reports += backend.poll(0.05)
    return reports


def test_the_trainer_trains_as_a_stand_in_while_the_workers_start(monkeypatch):
    backend, store, release = _slow_start_backend(monkeypatch)
    closed = []
    close = Worker.close
    monkeypatch.setattr(Worker, "close", lambda self: closed.append(self.index) or close(self))
    try:
        backend.start()
        early = _poll_until(backend, 0.5)
        assert not backend.procs, "no worker process has started yet"
        assert backend.alive() == 1
        assert early and {r.worker for r in early} == {0}
        assert sum(r.steps for r in early) == store.global_steps() > 0, "the stand-in's updates reached the global parameters"
        assert not closed
        release.set()
        later = _poll_until(backend, 120, until=lambda reports: {r.worker for r in reports} == {0, 1} and backend.stand_in is None)
        assert backend.stand_in is None and len(backend.procs) == 2
        assert closed == [0], "the stand-in's envs are closed once the workers run"
        assert {r.worker for r in later} == {0, 1}, "both worker processes report"
    finally:
        release.set()
        backend.stop()
    assert backend.alive() == 0


def test_the_stand_in_can_be_turned_off(monkeypatch):
    backend, store, release = _slow_start_backend(monkeypatch, train_while_starting=False)
    threading.Timer(0.5, release.set).start()
    t0 = time.monotonic()
    try:
        backend.start()  # blocks while the workers start
        assert time.monotonic() - t0 >= 0.5 and len(backend.procs) == 2
        assert backend.stand_in is None
    finally:
        release.set()
        backend.stop()


def test_a_stand_in_that_raises_is_a_failure_of_worker_0(monkeypatch, capfd):
    backend, _, release = _slow_start_backend(monkeypatch, env_id="fake_envs:RaisesOnStep", max_restarts=5)
    try:
        backend.start()
        _poll_until(backend, 60, until=lambda _: backend.budget.failures[0] > 0)
        assert not backend.procs, "the workers have not started: the failure is the stand-in's"
        assert backend.stand_in is None and backend.budget.failures[0] == 1
        assert "worker 0 failed (RuntimeError: boom from the env)" in capfd.readouterr().err
    finally:
        release.set()
        backend.stop()


def test_an_env_factory_workers_cannot_receive_is_a_clear_error_before_the_run_starts(tmp_path):
    import gymnasium as gym

    from a3c.errors import ConfigError

    agent = A3C(lambda: gym.make("CartPole-v1"), workers=2, total_steps=10_000)
    with pytest.raises(ConfigError, match="cannot be pickled.*module-level function or class.*backend='serial'"):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    assert not (tmp_path / "run").exists(), "nothing was started"
    agent.config = agent.config.replace({"backend.name": "serial"})
    assert agent.learn(run_dir=tmp_path / "serial", progress="none")["steps"] >= 10_000  # the same factory works in one process


def test_workers_that_cannot_start_stop_the_run_with_the_reason(tmp_path, monkeypatch):
    def broken(self, i):
        raise OSError("the fork server is gone")

    monkeypatch.setattr(ProcessesBackend, "_spawn", broken)
    agent = A3C("CartPole-v1", workers=2, total_steps=10**6)
    from a3c.backends import WorkerFailure

    with pytest.raises(WorkerFailure, match=r"worker processes could not start \(OSError: the fork server is gone\)"):
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
    assert (tmp_path / "run" / "checkpoints").is_dir(), "the end-of-run checkpoint is written all the same"
