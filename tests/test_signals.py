"""SIGTERM and SIGINT stop every backend the same way, during start-up and mid-run: workers
stopped, a final checkpoint, summary.json with the true stop reason, exit code 143 / 130, and no
process left behind. A second signal during the stop still leaves a resumable run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from waiting import default_sigint, wait_for

from a3c import run_checkpoints

A3C_CLI = [sys.executable, "-m", "a3c.cli"]
EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130}
REASON = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupted"}


def _processes_with(mark: str) -> list[int]:
    """Pids of live processes whose environment carries `mark` (the run and everything it
    started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if f"A3C_TEST_MARK={mark}".encode() in env and state != "Z":
            found.append(int(entry.name))
    return found


def _train(tmp_path: Path, backend: str, *extra: str) -> tuple[subprocess.Popen, Path, str]:
    run_dir, mark = tmp_path / "run", uuid.uuid4().hex
    args = [
        "train",
        "CartPole-v1",
        "--backend",
        backend,
        "--total-steps",
        "100000000",
        "--target-return",
        "null",
        "--run-dir",
        str(run_dir),
        "--progress",
        "lines",
        "--set",
        "log.log_interval=2000",
        *extra,
    ]
    env = {**os.environ, "A3C_TEST_MARK": mark}
    proc = subprocess.Popen(
        [*A3C_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    return proc, run_dir, mark


def _stop(proc: subprocess.Popen, mark: str, timeout: float = 120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        for pid in _processes_with(mark):  # never leave a run behind, whatever the test found
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _check_stopped(proc, run_dir: Path, mark: str, sig: signal.Signals, out: str, err: str) -> dict:
    assert proc.returncode == EXIT[sig], (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == REASON[sig]
    assert run_checkpoints.find(run_dir).steps == summary["steps"], (
        "the final checkpoint holds the run's last step"
    )
    assert wait_for(lambda: not _processes_with(mark), 20), (
        f"processes left behind: {_processes_with(mark)}"
    )
    return summary


# (backend, when, signal): every backend mid-run with both signals and at start-up with SIGTERM;
# SIGINT at start-up for the local backends (Ray's start-up is the slow part of these tests).
CASES = [
    ("processes", "mid-run", signal.SIGTERM),
    ("processes", "mid-run", signal.SIGINT),
    ("processes", "start-up", signal.SIGTERM),
    ("processes", "start-up", signal.SIGINT),
    ("serial", "mid-run", signal.SIGTERM),
    ("serial", "mid-run", signal.SIGINT),
    ("serial", "start-up", signal.SIGTERM),
    ("serial", "start-up", signal.SIGINT),
    ("ray", "mid-run", signal.SIGTERM),
    ("ray", "mid-run", signal.SIGINT),
    ("ray", "start-up", signal.SIGTERM),
]


@pytest.mark.parametrize(
    ("backend", "when", "sig"), CASES, ids=[f"{b}-{w}-{s.name}" for b, w, s in CASES]
)
def test_a_signal_stops_the_run_with_a_checkpoint_a_summary_and_nothing_left(
    tmp_path, backend, when, sig
):
    if backend == "ray":
        pytest.importorskip("ray")
    proc, run_dir, mark = _train(tmp_path, backend)
    try:
        if when == "mid-run":  # a few progress rows in
            assert wait_for(
                lambda: (
                    (run_dir / "progress.csv").exists()
                    and len((run_dir / "progress.csv").read_text().splitlines()) >= 3
                ),
                120,
            )
        else:  # the run directory exists: the session is starting its workers
            assert wait_for(lambda: (run_dir / "config.json").exists(), 120)
        proc.send_signal(sig)
    finally:
        out, err = _stop(proc, mark)
    summary = _check_stopped(proc, run_dir, mark, sig, out, err)
    if when == "mid-run":
        assert summary["steps"] >= 4_000


def test_a_second_sigterm_during_the_stop_leaves_a_resumable_run(tmp_path):
    proc, run_dir, mark = _train(
        tmp_path, "processes", "--set", "log.checkpoint_interval_steps=5000"
    )
    try:
        assert wait_for(
            lambda: bool(run_checkpoints.list_checkpoints(run_dir / "checkpoints")), 120
        )
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # the default handler again: the process ends at once
    finally:
        _stop(proc, mark)
    assert proc.returncode in (143, -signal.SIGTERM)
    assert wait_for(lambda: not _processes_with(mark), 20), "the workers die with their trainer"
    resumed = subprocess.run(
        [
            *A3C_CLI,
            "train",
            "--resume",
            str(run_dir),
            "--total-steps",
            "30000",
            "--progress",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (
        summary["stop_reason"] == "total_steps"
        and summary["steps"] >= 30_000
        and summary["resumes"] == 1
    )
