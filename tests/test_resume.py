"""Resume: kill -9 of a trainer mid-run, then `a3c train --resume`; counters, optimizer statistics,
the learning-rate schedule and the run's files carry on."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from waiting import default_sigint

from a3c import A3C, run_checkpoints
from a3c.cli import main
from a3c.errors import ConfigError
from a3c.runlog import EPISODE_COLUMNS, PROGRESS_COLUMNS, truncate_csv
from a3c.store import SharedStore

A3C_CLI = [sys.executable, "-m", "a3c.cli"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _latest_steps(run_dir: Path) -> int | None:
    try:
        name = (run_dir / "checkpoints" / "latest").read_text().strip()
    except OSError:
        return None
    return int(name.removeprefix("step_")) if name.startswith("step_") else None


def test_kill_9_mid_run_then_resume_finishes_and_solves(tmp_path):
    run_dir = tmp_path / "run"
    interval = 10_000
    args = [
        "train",
        "CartPole-v1",
        "--seed",
        "1",
        "--run-dir",
        str(run_dir),
        "--progress",
        "lines",
        "--set",
        f"log.checkpoint_interval_steps={interval}",
        "--set",
        "log.log_interval=5000",
        "--set",
        "run.target_return=null",  # however slow the test is to kill it, it cannot finish first
    ]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(
        [*A3C_CLI, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while (_latest_steps(run_dir) or 0) < 2 * interval:
            assert proc.poll() is None, (
                "the run ended before it could be killed: " + (tmp_path / "first.log").read_text()
            )
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # let it work past the checkpoint: that work is lost
        seen = _latest_steps(run_dir)
        assert proc.poll() is None, "the run must still be going when it is killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its worker processes
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists(), "a killed run writes no summary"
    killed_rows = _rows(run_dir / "progress.csv")
    ckpt = run_checkpoints.find(run_dir)
    ckpt_steps = ckpt.steps
    assert ckpt_steps >= seen >= 2 * interval, (
        "the resume point is the newest checkpoint written before the kill"
    )

    resume_args = [
        "train",
        "--resume",
        str(run_dir),
        "--progress",
        "lines",
        "--set",
        "run.target_return=auto",
    ]
    resumed = subprocess.Popen(
        [*A3C_CLI, *resume_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = resumed.communicate(timeout=300)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
            resumed.wait(timeout=30)
    assert resumed.returncode == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] is True and summary["stop_reason"] == "target_return"
    assert summary["resumes"] == 1 and summary["resumed_from_steps"] == ckpt_steps

    rows = _rows(run_dir / "progress.csv")
    steps = [int(r["steps"]) for r in rows]
    assert steps == sorted(set(steps)), "steps in progress.csv never go backwards"
    kept = [r for r in killed_rows if int(r["steps"]) <= ckpt_steps]
    assert rows[: len(kept)] == kept, (
        "rows up to the checkpoint are kept as they were (appended to, not overwritten)"
    )
    first_new = rows[len(kept)]
    assert int(first_new["steps"]) > ckpt_steps, "the resumed run starts from the checkpoint's step"
    next_log = (ckpt_steps // 5_000 + 1) * 5_000
    assert next_log <= int(first_new["steps"]) < next_log + 2 * 5_000, (
        "the first new row is at the next log interval"
    )
    assert float(first_new["wall_s"]) > ckpt.meta["wall_s"], "wall time carries on"
    assert (
        int(first_new["episodes"]) >= ckpt.meta["episodes"]
        and int(first_new["updates"]) > ckpt.meta["updates"]
    )
    assert int(rows[-1]["episodes"]) > ckpt.meta["episodes"], "episodes carry on"
    # The learning-rate schedule carries on from the absolute global step (linear to 0 at
    # total_steps).
    base, total = (
        ckpt.meta["config"]["optim"]["learning_rate"],
        ckpt.meta["config"]["run"]["total_steps"],
    )
    assert float(first_new["learning_rate"]) <= base * (1 - ckpt_steps / total) + 1e-9
    # A worker takes its rate from the shared step counter, which runs ahead of the steps the
    # trainer
    # has been told of (the other worker's last report_interval), so allow one log interval of
    # slack;
    # counting the checkpoint's steps twice would put the rate below base * (1 - 2 * ckpt_steps /
    # total).
    assert (
        float(first_new["learning_rate"])
        >= base * (1 - (int(first_new["steps"]) + 5_000) / total) - 1e-9
    )
    episode_steps = [int(r["steps"]) for r in _rows(run_dir / "episodes.csv")]
    assert episode_steps == sorted(episode_steps)
    assert (run_dir / "progress.csv").read_text().count("steps,wall_s") == 1, "one header"
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_checkpoints.find(run_dir).steps == summary["steps"], (
        "the end of the run is checkpointed"
    )


def test_ctrl_c_and_worker_failure_end_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "train",
        "CartPole-v1",
        "--backend",
        "serial",
        "--total-steps",
        "100000000",
        "--run-dir",
        str(run_dir),
        "--progress",
        "lines",
        "--set",
        "log_interval=1000",
    ]
    proc = subprocess.Popen(
        [*A3C_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "progress.csv").exists() or len(_rows(run_dir / "progress.csv")) < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130
    ckpt = run_checkpoints.find(run_dir)
    assert ckpt.meta["stop_reason"] == "interrupted"
    # The checkpoint counts the store's steps; the summary the reports that reached the trainer (a
    # serial poll interrupted by Ctrl-C may drop the reports it had taken: up to one round of
    # updates).
    reported = json.loads((run_dir / "summary.json").read_text())["steps"]
    assert reported >= 3_000 and 0 <= ckpt.steps - reported <= 2 * 8 * 8

    from a3c.backends import WorkerFailure

    agent = A3C("fake_envs:RaisesOnStep", backend="serial", workers=2, envs_per_worker=1, n_steps=5)
    with pytest.raises(WorkerFailure, match="boom from the env"):
        agent.learn(run_dir=tmp_path / "failed", progress="none")
    ckpt = run_checkpoints.find(tmp_path / "failed")
    assert ckpt.meta["stop_reason"] == "worker_failure" and ckpt.steps > 0


def _serial_run(run_dir: Path, stop_at: int, **overrides) -> A3C:
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=2,
        seed=3,
        total_steps=12_000,
        log_interval=1_000,
        checkpoint_interval_steps=2_000,
        **overrides,
    )
    agent.learn(run_dir=run_dir, progress="none", callback=lambda row: row["steps"] < stop_at)
    return agent


def test_resume_restores_parameters_optimizer_counters_and_schedule(tmp_path):
    run_dir = tmp_path / "run"
    first = _serial_run(run_dir, stop_at=6_000)
    ckpt = run_checkpoints.find(run_dir)
    assert ckpt.meta["stop_reason"] == "callback"
    agent = A3C.resume(run_dir)
    assert agent.num_timesteps == ckpt.steps
    for p, q in zip(agent.model.parameters(), first.model.parameters(), strict=True):
        assert torch.equal(p, q)
    store = SharedStore.for_model(agent.model, agent.config)
    store.load_state_dict(ckpt.tensors)  # as learn() restores it
    square_avg = store.optimizer.state["square_avg"]
    assert torch.equal(square_avg, ckpt.tensors["optim.square_avg"]) and square_avg.abs().sum() > 0
    assert store.progress().steps == ckpt.steps and store.progress().updates == ckpt.meta["updates"]

    summary = agent.learn(progress="none")
    assert summary["stop_reason"] == "total_steps" and summary["steps"] >= 12_000
    assert summary["updates"] > ckpt.meta["updates"] and summary["episodes"] > ckpt.meta["episodes"]
    rows = _rows(run_dir / "progress.csv")
    steps = [int(r["steps"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == summary["steps"]
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates == sorted(rates, reverse=True), "one linear schedule over the whole run"
    assert float(rows[-1]["learning_rate"]) < 1e-3 * (1 - 10_000 / 12_000), (
        "annealed by the absolute step"
    )
    assert run_checkpoints.find(run_dir).meta["resumes"] == 1


def test_a_resumed_run_draws_new_random_streams(tmp_path, monkeypatch):
    """Workers seed their envs and RNGs from (seed, worker); a resumed segment's seed derives from
    (seed, resume count), so the lost work is not replayed with the same random streams."""
    import a3c.session

    seen = []
    real = a3c.session.make_backend
    monkeypatch.setattr(
        a3c.session, "make_backend", lambda cfg, *a: seen.append(cfg.run.seed) or real(cfg, *a)
    )
    _serial_run(tmp_path / "run", stop_at=2_000)
    for extra in (1_000, 2_000):
        A3C.resume(
            tmp_path / "run", total_steps=run_checkpoints.find(tmp_path / "run").steps + extra
        ).learn(progress="none")
    assert seen[0] == 3 and len(set(seen)) == 3, seen
    assert json.loads((tmp_path / "run" / "config.json").read_text())["run"]["seed"] == 3
    assert run_checkpoints.find(tmp_path / "run").meta["resumes"] == 2


def test_resume_with_another_worker_count_keeps_the_global_counts(tmp_path):
    _serial_run(tmp_path / "run", stop_at=4_000)
    ckpt = run_checkpoints.find(tmp_path / "run")
    agent = A3C.resume(tmp_path / "run", workers=3, total_steps=ckpt.steps + 2_000)
    summary = agent.learn(progress="none")
    assert summary["workers"] == 3 and summary["steps"] >= ckpt.steps + 2_000
    assert run_checkpoints.find(tmp_path / "run").tensors["counters.worker_steps"].numel() == 3


def test_resume_refuses_changes_that_alter_the_run(tmp_path, capsys):
    _serial_run(tmp_path / "run", stop_at=2_000)
    for change in ({"n_steps": 5}, {"hidden": [32]}, {"learning_rate": 0.01}, {"seed": 9}):
        with pytest.raises(ConfigError, match="--resume cannot change"):
            A3C.resume(tmp_path / "run", **change)
    cases = [
        (
            ["train", "--resume", str(tmp_path / "run"), "--set", "gamma=0.9"],
            "--resume cannot change algo.gamma",
        ),
        (
            ["train", "--resume", str(tmp_path / "run"), "--seed", "4"],
            "takes no --config, --seed or --run-dir",
        ),
        (
            ["train", "Acrobot-v1", "--resume", str(tmp_path / "run")],
            "is a run on CartPole-v1, not Acrobot-v1",
        ),
        (["train", "--resume", str(tmp_path)], "is not a run directory"),
        (
            ["train", "--resume", str(tmp_path / "run"), "--total-steps", "1000"],
            "give a larger --total-steps to train further",
        ),
        (["train"], "train needs an ENV_ID"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("a3c: error: ") and message in err[0], (
            args,
            err,
        )


def test_a_run_that_is_still_going_cannot_be_resumed(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    _serial_run(tmp_path / "run", stop_at=2_000)
    before = (tmp_path / "run" / "progress.csv").read_bytes()
    with open(tmp_path / "run" / ".lock", "a+") as held:  # what a live trainer holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)
        held.write("12345\n")
        held.flush()
        with pytest.raises(ConfigError, match="is in use by another a3c process .pid 12345"):
            A3C.resume(tmp_path / "run").learn(progress="none")
    assert (tmp_path / "run" / "progress.csv").read_bytes() == before
    A3C.resume(tmp_path / "run", total_steps=4_000).learn(progress="none")  # free again


def test_truncate_csv_cuts_rows_past_the_checkpoint_and_a_partial_last_line(tmp_path):
    path = tmp_path / "progress.csv"
    header = ",".join(PROGRESS_COLUMNS)
    path.write_bytes(f"{header}\r\n100,1.0\r\n200,2.0\r\n300,3.0\r\n40".encode())
    truncate_csv(path, PROGRESS_COLUMNS, 250)
    assert path.read_text() == f"{header}\n100,1.0\n200,2.0\n"
    path.write_bytes(f"{header}\r\n100,1.0\r\n20".encode())
    truncate_csv(path, PROGRESS_COLUMNS, 10_000)
    assert path.read_text() == f"{header}\n100,1.0\n"
    missing = tmp_path / "episodes.csv"
    truncate_csv(missing, EPISODE_COLUMNS, 5)
    assert missing.read_text().strip() == ",".join(EPISODE_COLUMNS)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="does not have the columns"):
        truncate_csv(tmp_path / "other.csv", PROGRESS_COLUMNS, 5)


def test_sigterm_stops_a_run_like_ctrl_c_with_a_checkpoint_and_a_summary(tmp_path):
    """`kill PID` (what nohup'd and supervised runs get; a background job ignores SIGINT): the run
    stops gracefully, writes its final checkpoint and summary.json, and exits 143."""
    run_dir = tmp_path / "run"
    args = [
        "train",
        "CartPole-v1",
        "--run-dir",
        str(run_dir),
        "--progress",
        "lines",
        "--total-steps",
        "100000000",
        "--set",
        "run.target_return=null",
        "--set",
        "log.log_interval=5000",
    ]
    proc = subprocess.Popen(
        [*A3C_CLI, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "progress.csv").exists() or len(_rows(run_dir / "progress.csv")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # the trainer only
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "terminated" and summary["steps"] >= 10_000
    assert run_checkpoints.find(run_dir).steps == summary["steps"]
