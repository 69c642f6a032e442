"""Nothing hangs, nothing is lost: stuck workers, a run out of time, non-finite data, a lock held by
a dead worker, storage faults while finishing, a run that never completed a checkpoint."""

from __future__ import annotations

import csv
import errno
import json
import math
import time

import pytest
import torch
import torch.multiprocessing as mp

from a3c import A3C, run_checkpoints
from a3c.store import Pulled, SharedStore


def _rows(run_dir):
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("backend", ["processes", "serial"])
def test_a_worker_whose_env_hangs_once_is_restarted_and_the_run_solves(
    tmp_path, capfd, caplog, backend
):
    marker = tmp_path / "hung"
    # A fixed budget, not a target: the healthy worker alone can solve CartPole before the
    # watchdog's 2 s have passed, which ended a run before the restart this test is about (seen in
    # CI: solved at 3.6 s with no restart).
    agent = A3C(
        "fake_envs:CartPoleHangs",
        backend=backend,
        workers=2,
        seed=1,
        total_steps=300_000,
        target_return=None,
        max_time=150,
        worker_timeout=2,
        restart_delay=0.1,
        **{"env.kwargs": {"after": 100, "marker": str(marker)}},
    )
    t0 = time.monotonic()
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert marker.exists(), "an env did hang"
    assert summary["worker_restarts"] == 1 and summary["steps"] >= 300_000, summary
    # It solves after the restart: the best window after it, not the last (CartPole's final window
    # sometimes collapses after solving).
    after = [
        float(r["return_mean"])
        for r in _rows(tmp_path / "run")
        if int(r["worker_restarts"]) == 1 and r["return_mean"]
    ]
    assert after and max(after) >= 400.0, after  # random play: ~20
    assert "no progress for 2 s" in capfd.readouterr().err + caplog.text
    assert time.monotonic() - t0 < 150


@pytest.mark.parametrize("backend", ["processes", "serial"])
def test_max_time_holds_when_every_env_hangs_and_nothing_restarts_them(
    tmp_path, capfd, caplog, backend
):
    """With no watchdog (worker_timeout null) the stop still comes at max_time, within seconds,
    and a stop that must kill its workers says so."""
    agent = A3C(
        "fake_envs:CartPoleHangs",
        backend=backend,
        workers=2,
        seed=0,
        total_steps=10**8,
        target_return=None,
        max_time=4,
        worker_timeout=None,
        **{"env.kwargs": {"after": 600}},
    )
    t0 = time.monotonic()
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    took = time.monotonic() - t0
    assert summary["stop_reason"] == "max_time" and took < 4 + 4, (summary, took)
    if backend == "processes":
        assert "did not stop within" in capfd.readouterr().err + caplog.text
    assert run_checkpoints.find(tmp_path / "run").steps == summary["steps"] > 0


@pytest.mark.parametrize("normalize_obs", [False, True])
def test_non_finite_observations_never_reach_the_statistics_or_the_returns(
    tmp_path, capfd, caplog, normalize_obs
):
    agent = A3C(
        "fake_envs:CartPoleNonFinite",
        backend="serial",
        workers=2,
        seed=0,
        total_steps=8_000,
        log_interval=2_000,
        target_return=None,
        normalize_obs=normalize_obs,
        **{"env.kwargs": {"every": 150}},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["nonfinite_steps"] > 0 and math.isfinite(summary["return_mean"])
    assert summary["nonfinite_updates"] == 0, "the dropped steps never reach a loss"
    rows = _rows(tmp_path / "run")
    assert int(rows[-1]["nonfinite_steps"]) == summary["nonfinite_steps"]
    err = capfd.readouterr().err + caplog.text  # warnings go through the "a3c" logger
    assert err.count("returned a non-finite observation or reward") == 2, "warned once per worker"
    if normalize_obs:
        assert (
            bool(torch.isfinite(agent.obs_stats.table).all())
            and agent.obs_stats.table[:, 0].sum() > 0
        )
    ckpt = run_checkpoints.find(tmp_path / "run")
    assert all(
        bool(torch.isfinite(t).all()) for t in ckpt.tensors.values() if t.is_floating_point()
    )
    assert A3C.load(tmp_path / "run").evaluate(episodes=1)["episodes"] == 1


def test_non_finite_rewards_never_reach_the_return_window(tmp_path):
    agent = A3C(
        "fake_envs:CartPoleNonFinite",
        backend="serial",
        workers=1,
        seed=0,
        total_steps=4_000,
        target_return=None,
        **{"env.kwargs": {"every": 100, "what": "reward"}},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["nonfinite_steps"] > 0 and math.isfinite(summary["return_mean"])
    assert all(
        math.isfinite(float(r["return_mean"])) for r in _rows(tmp_path / "run") if r["return_mean"]
    )


def test_a_run_of_only_non_finite_updates_stops_with_its_last_good_checkpoint(
    tmp_path, monkeypatch
):
    from a3c import worker as worker_module
    from a3c.stopping import NonFinite

    real = worker_module.Worker._loss
    calls = {"n": 0}

    def poisoned(self, *args):
        calls["n"] += 1
        loss = real(self, *args)
        return loss._replace(total=loss.total * float("nan")) if calls["n"] > 40 else loss

    monkeypatch.setattr(worker_module.Worker, "_loss", poisoned)
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=1,
        seed=0,
        total_steps=10**6,
        target_return=None,
        max_nonfinite_updates=20,
        checkpoint_interval_steps=1_000,
    )
    with pytest.raises(
        NonFinite, match="20 non-finite updates in a row.*; the last checkpoint is .*step_"
    ):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "nonfinite" and summary["nonfinite_updates"] >= 20
    assert run_checkpoints.find(tmp_path / "run").steps > 0  # loadable, finite (read() checks)


def test_a_state_that_is_no_longer_finite_is_never_checkpointed(tmp_path, monkeypatch):
    from a3c.session import TrainingSession
    from a3c.stopping import NonFinite

    real = TrainingSession.step
    seen = {"n": 0}

    def step(self):
        seen["n"] += 1
        if seen["n"] == 30:
            self.store.flat[0] = float("nan")  # as a corrupting update would
        return real(self)

    monkeypatch.setattr(TrainingSession, "step", step)
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=1,
        seed=0,
        total_steps=10**6,
        target_return=None,
        checkpoint_interval_steps=256,
    )
    with pytest.raises(NonFinite, match="no longer finite.*params"):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    ckpt = run_checkpoints.find(tmp_path / "run")  # the last good one
    assert bool(torch.isfinite(ckpt.tensors["params"]).all())


def _hold_the_lock(store: SharedStore) -> None:
    with store._locked(0):
        time.sleep(3600)


def test_a_lock_held_by_a_killed_worker_is_released():
    agent = A3C("CartPole-v1", workers=1)
    ctx = mp.get_context("spawn")
    store = SharedStore.for_model(agent.model, agent.config).share_memory_()
    store.lock = ctx.Lock()
    p = ctx.Process(target=_hold_the_lock, args=(store,), daemon=True)
    p.start()
    try:
        deadline = time.monotonic() + 60
        while int(store.lock_owner[0]) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int(store.lock_owner[0]) == 1, "the child holds the lock"
    finally:
        p.kill()
        p.join(timeout=30)
    assert store.release_lock_of(0) and int(store.lock_owner[0]) == 0
    t0 = time.monotonic()
    store.push(0, 1, Pulled(0, 0.0), torch.zeros(store.size))
    assert time.monotonic() - t0 < 1.0, "no push waits for the dead worker's lock"
    assert not store.release_lock_of(0), "released once"


def test_a_worker_killed_in_the_lock_does_not_stall_the_run(tmp_path):
    """The processes backend releases the lock of a worker it finds dead (here: killed while
    holding it, as `kill -9` mid-update would)."""
    from a3c.backends import processes

    agent = A3C(
        "CartPole-v1",
        workers=2,
        seed=0,
        total_steps=60_000,
        target_return=None,
        lock=True,
        restart_delay=0.1,
    )
    backend = processes.ProcessesBackend(
        agent.config, SharedStore.for_model(agent.model, agent.config)
    )
    try:
        backend.start()
        deadline = time.monotonic() + 60
        while backend.store.progress().updates < 20 and time.monotonic() < deadline:
            backend.poll(0.05)
        backend.store.lock.acquire()  # stand in for worker 1 dying inside the lock
        backend.store.lock_owner[0] = 2
        backend.procs[1].kill()
        before = backend.store.progress().updates
        t_end = time.monotonic() + 30
        while backend.store.progress().updates < before + 50 and time.monotonic() < t_end:
            backend.poll(0.05)
        assert backend.store.progress().updates >= before + 50, "updates go on"
        assert backend.budget.failures[1] == 1
    finally:
        backend.stop()


def test_a_full_disk_while_finishing_is_a_warning_and_the_summary_says_so(
    tmp_path, monkeypatch, caplog
):
    from a3c import session

    real = run_checkpoints.save_in_run

    def full(run_dir, state, meta, keep):
        if "stop_reason" in meta:  # the final checkpoint
            raise OSError(errno.ENOSPC, "No space left on device", str(run_dir))
        return real(run_dir, state, meta, keep)

    monkeypatch.setattr(session.run_checkpoints, "save_in_run", full)
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=1,
        seed=0,
        total_steps=3_000,
        target_return=None,
        checkpoint_interval_steps=1_000,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert (
        "could not write the final checkpoint" in summary["error"]
        and "No space left" in summary["error"]
    )
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["error"] == summary["error"]
    assert run_checkpoints.find(tmp_path / "run").steps >= 2_000, (
        "the complete checkpoints before the fault stay loadable"
    )
    assert "warning: could not write the final checkpoint" in caplog.text


def test_a_full_disk_for_the_summary_still_gives_the_summary(tmp_path, monkeypatch):
    from a3c.runlog import RunDir

    def full(self, summary):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "summary.json"))

    monkeypatch.setattr(RunDir, "write_summary", full)
    summary = A3C(
        "CartPole-v1", backend="serial", workers=1, total_steps=2_000, target_return=None
    ).learn(run_dir=tmp_path / "run", progress="none")
    assert summary["steps"] >= 2_000 and "could not write summary.json" in summary["error"]
    assert not (tmp_path / "run" / "summary.json").exists()
    assert run_checkpoints.find(tmp_path / "run").steps == summary["steps"]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(tmp_path):
    run_dir = tmp_path / "run"
    A3C(
        "CartPole-v1",
        backend="serial",
        workers=1,
        total_steps=2_000,
        target_return=None,
        log_interval=500,
    ).learn(run_dir=run_dir, progress="none")
    # as if killed during the first one
    for ckpt in run_checkpoints.list_checkpoints(run_dir / "checkpoints"):
        (ckpt / "meta.json").unlink()
        ckpt.rename(ckpt.with_name(ckpt.name + ".tmp"))
    (run_dir / "summary.json").unlink()
    (run_dir / "checkpoints" / "latest").unlink()
    summary = A3C.resume(run_dir, total_steps=3_000).learn(progress="none")
    assert summary["resumed_from_steps"] is None and summary["steps"] >= 3_000
    steps = [int(r["steps"]) for r in _rows(run_dir)]
    assert steps == sorted(steps) and steps[0] <= 1_000 and steps[-1] == summary["steps"], (
        "progress.csv starts again from scratch"
    )
    assert not list((run_dir / "checkpoints").glob("*.tmp")), (
        "the killed writer's leftovers are cleaned"
    )
