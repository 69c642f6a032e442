"""Evaluation during training (issue 21): eval.csv rows at the intervals, checkpoints/best/ holding
the state of the best evaluation, resume keeping it, a failing or hung evaluator restarted without
stopping or delaying the run, no evaluator process left behind, the eval target, and
`a3c eval --checkpoint best|latest|PATH`."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_signals import _processes_with, _stop
from waiting import default_sigint, wait_for

from a3c import A3C, checkpoint, run_checkpoints
from a3c.backends import WorkerFailure
from a3c.plots import load_run, plot_runs

A3C_CLI = [sys.executable, "-m", "a3c.cli"]
# 20 global steps a serial poll
SMALL = {"workers": 2, "envs_per_worker": 2, "n_steps": 5, "target_return": None}


def _evals(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "eval.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] == "Z"
    except FileNotFoundError:
        return True


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_serial_evaluations_come_at_the_intervals_with_the_known_return(tmp_path):
    # FixedLength pays 1 per step for 7 steps whatever the policy: every evaluation's return is 7.
    agent = A3C(
        "fake_envs:FixedLength",
        backend="serial",
        total_steps=3_000,
        log_interval=1_000,
        **SMALL,
        **{"eval.interval_steps": 500, "eval.episodes": 3},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    rows = _evals(tmp_path / "run")
    # Inline at the interval: right after the poll (20 steps) that crossed each multiple of 500.
    assert [int(r["steps"]) // 500 for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(500 * k <= r["steps"] < 500 * k + 20 for k, r in enumerate(rows, 1))
    assert all(
        r["mean"] == r["min"] == r["max"] == r["mean_length"] == 7.0
        and r["std"] == 0.0
        and r["episodes"] == 3
        for r in rows
    )
    assert (
        summary["eval"]["evaluations"] == 6
        and summary["eval"]["latest"]["mean"] == 7.0
        and summary["eval"]["restarts"] == 0
    )
    # A tie keeps the earlier: best/ is the first evaluation's state.
    best = checkpoint.read(tmp_path / "run" / "checkpoints" / "best")
    assert (
        best.steps == rows[0]["steps"]
        and best.meta["eval"]["mean"] == 7.0
        and best.meta["best"] is True
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run")).Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/mean_reward")] == [
        (int(r["steps"]), 7.0) for r in rows
    ]


def test_processes_evaluations_come_at_the_intervals_and_the_process_is_gone_after(tmp_path):
    pid_file = tmp_path / "eval_pids"
    agent = A3C(
        "fake_envs:FixedLength",
        backend="processes",
        total_steps=60_000,
        log_interval=5_000,
        **SMALL,
        **{
            "eval.interval_steps": 5_000,
            "eval.episodes": 3,
            "eval.env_kwargs": {"pid_file": str(pid_file)},
        },
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    rows = _evals(tmp_path / "run")
    assert len(rows) >= 3, rows
    # each row from a later interval than the one before
    slots = [int(r["steps"]) // 5_000 for r in rows]
    assert slots[0] >= 1 and slots == sorted(set(slots)), slots
    assert all(r["mean"] == 7.0 and r["std"] == 0.0 for r in rows)
    assert summary["eval"]["evaluations"] == len(rows) and summary["stop_reason"] == "total_steps"
    pids = set(_pids(pid_file))
    assert pids and os.getpid() not in pids, "the evaluation envs ran in a process of their own"
    assert wait_for(lambda: all(_gone(p) for p in pids), 5), (
        f"evaluator processes left behind: {pids}"
    )


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    """A serial CartPole run with evaluations every 4000 steps (greedy, 5 episodes each)."""
    run_dir = tmp_path_factory.mktemp("cartpole") / "run"
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=2,
        seed=1,
        total_steps=24_000,
        log_interval=2_000,
        target_return=None,
        checkpoint_interval_steps=2_000,
        checkpoint_keep=1,
        **{"eval.interval_steps": 4_000, "eval.episodes": 5},
    )
    agent.learn(run_dir=run_dir, progress="none")
    return run_dir


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_best_holds_the_state_that_produced_the_best_evaluation(backend, cartpole_run, tmp_path):
    run_dir = cartpole_run
    if backend == "processes":
        run_dir = tmp_path / "run"
        agent = A3C(
            "CartPole-v1",
            backend="processes",
            workers=2,
            seed=2,
            total_steps=40_000,
            log_interval=5_000,
            target_return=None,
            **{"eval.interval_steps": 5_000, "eval.episodes": 5},
        )
        agent.learn(run_dir=run_dir, progress="none")
    rows = _evals(run_dir)
    first_best = next(r for r in rows if r["mean"] == max(x["mean"] for x in rows))
    best = checkpoint.read(run_dir / "checkpoints" / "best")
    assert best.meta["eval"]["mean"] == first_best["mean"] and best.steps == first_best["steps"]
    # Re-evaluated with the same seed and episodes, the kept state scores what it scored in
    # training.
    agent = A3C.load(run_dir, checkpoint="best")
    assert (
        agent.checkpoint_kind == "best"
        and agent.checkpoint_path == run_dir / "checkpoints" / "best"
    )
    assert agent.evaluate(episodes=5)["mean"] == first_best["mean"]
    # Never rotated away, never taken for the newest checkpoint.
    assert (
        run_checkpoints.find(run_dir).path.name.startswith("step_")
        and (run_dir / "checkpoints" / "best").is_dir()
    )
    assert A3C.load(run_dir).checkpoint_kind == "best", (
        "the default is the best when the run has one"
    )
    latest = A3C.load(run_dir, checkpoint="latest")
    assert (
        latest.checkpoint_kind == "latest"
        and latest.num_timesteps == run_checkpoints.find(run_dir).steps
    )


def _set_best_mean(run_dir: Path, mean: float) -> bytes:
    """Rewrite checkpoints/best/ with another recorded mean (the same tensors); returns them."""
    path = run_dir / "checkpoints" / "best"
    best = checkpoint.read(path)
    meta = {
        k: v
        for k, v in best.meta.items()
        if k not in ("format", "format_version", "tensors_bytes", "tensors_sha256")
    }
    checkpoint.write(path, best.tensors, {**meta, "eval": {**meta["eval"], "mean": mean}})
    return (path / checkpoint.TENSORS).read_bytes()


def test_a_resumed_run_keeps_its_best_and_continues_eval_csv(tmp_path):
    run_dir = tmp_path / "run"
    A3C(
        "CartPole-v1",
        backend="serial",
        workers=2,
        seed=0,
        total_steps=8_000,
        log_interval=2_000,
        target_return=None,
        **{"eval.interval_steps": 2_000, "eval.episodes": 3},
    ).learn(run_dir=run_dir, progress="none")
    before = _evals(run_dir)
    tensors = _set_best_mean(run_dir, 1e9)  # no evaluation can beat it
    summary = A3C.resume(run_dir, total_steps=16_000).learn()
    rows = _evals(run_dir)
    assert rows[: len(before)] == before and len(rows) > len(before), "eval.csv continues"
    assert [r["steps"] for r in rows] == sorted(r["steps"] for r in rows) and rows[-1][
        "steps"
    ] > 8_000
    assert (run_dir / "checkpoints" / "best" / checkpoint.TENSORS).read_bytes() == tensors, (
        "the best so far was kept"
    )
    assert summary["eval"]["best_mean"] == 1e9 and summary["eval"]["evaluations"] == len(rows)
    _set_best_mean(run_dir, -1e9)  # now the resumed run's first evaluation beats it
    A3C.resume(run_dir, total_steps=20_000).learn()
    best = checkpoint.read(run_dir / "checkpoints" / "best")
    new = [r for r in _evals(run_dir) if r["steps"] > 16_000]
    assert best.meta["eval"]["mean"] == max(r["mean"] for r in new) and best.steps > 16_000


@pytest.mark.parametrize(
    ("backend", "fail"),
    [("processes", "raise"), ("processes", "hang"), ("serial", "raise"), ("serial", "hang")],
)
def test_a_failing_evaluator_is_restarted_and_training_goes_on(backend, fail, tmp_path, caplog):
    # the first evaluation env to reach its 20th step fails; no other
    marker, run_dir = (tmp_path / "failed", tmp_path / "run")
    agent = A3C(
        "fake_envs:CartPoleEvalFails",
        backend=backend,
        workers=2,
        seed=0,
        total_steps=10**8,
        max_time=90,
        log_interval=2_000,
        target_return=None,
        **{
            "eval.interval_steps": 5_000,
            "eval.episodes": 2,
            "eval.timeout": 1.5,
            "eval.env_kwargs": {"fail": fail, "marker": str(marker)},
        },
    )
    # Train until the restarted evaluator has evaluated (eval.csv has a row): the callback stops the
    # run.
    summary = agent.learn(
        run_dir=run_dir, progress="none", callback=lambda row: len(_evals(run_dir)) < 1
    )
    err = caplog.text  # warnings go through the "a3c" logger
    assert marker.exists(), "an evaluation did fail"
    assert summary["stop_reason"] == "callback" and summary["worker_restarts"] == 0
    assert summary["eval"]["restarts"] == 1 and summary["eval"]["evaluations"] >= 1, (
        "the restarted evaluator evaluates"
    )
    assert "a3c: warning: the evaluator failed" in err and (
        "crashed" in err if fail == "raise" else "no env step for 1.5 s" in err
    ), err


def test_a_hung_evaluator_never_delays_the_stop_nor_outlives_a_worker_failure(tmp_path):
    pid_file = tmp_path / "eval_pids"
    # Every evaluation hangs (no timeout: never restarted); the workers' envs raise at their 3000th
    # step, and with no restarts allowed the first of them stops the run.
    agent = A3C(
        "fake_envs:CartPoleEvalFails",
        backend="processes",
        workers=2,
        total_steps=10**8,
        target_return=None,
        max_restarts=0,
        **{
            "env.kwargs": {"fail": "raise", "after": 3_000},
            "eval.interval_steps": 1_000,
            "eval.timeout": None,
            "eval.env_kwargs": {"fail": "hang", "after": 5, "pid_file": str(pid_file)},
        },
    )
    start = time.monotonic()
    with pytest.raises(WorkerFailure):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    pids = _pids(pid_file)
    assert pids, "the evaluator had started (and hung)"
    assert time.monotonic() - start < 60
    assert wait_for(lambda: all(_gone(p) for p in pids), 5), (
        f"evaluator processes left behind: {pids}"
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "worker_failure" and summary["eval"]["latest"] is None


def test_sigterm_with_a_hung_evaluator_stops_the_run_and_leaves_nothing(tmp_path):
    run_dir, mark = tmp_path / "run", f"eval-{os.getpid()}-{time.monotonic_ns()}"
    args = [
        "train",
        "fake_envs:CartPoleEvalFails",
        "--total-steps",
        "100000000",
        "--target-return",
        "null",
        "--run-dir",
        str(run_dir),
        "--progress",
        "lines",
        "--eval-interval",
        "2000",
        "--set",
        "eval.timeout=null",
        "--set",
        "eval.env_kwargs={fail: hang, after: 5}",
    ]
    proc = subprocess.Popen(
        [*A3C_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "A3C_TEST_MARK": mark},
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        # The trainer, the fork server, two workers and the evaluator, a few rows in.
        assert wait_for(
            lambda: (
                (run_dir / "progress.csv").exists()
                and len((run_dir / "progress.csv").read_text().splitlines()) >= 4
            ),
            120,
        )
        assert wait_for(lambda: len(_processes_with(mark)) >= 5, 30), _processes_with(mark)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
    finally:
        out, err = _stop(proc, mark)
    assert proc.returncode == 143, err[-2000:]
    assert time.monotonic() - sent < 20
    assert json.loads((run_dir / "summary.json").read_text())["stop_reason"] == "terminated"
    assert wait_for(lambda: not _processes_with(mark), 20), (
        f"processes left behind: {_processes_with(mark)}"
    )


def test_target_eval_return_stops_the_run(tmp_path):
    agent = A3C(
        "fake_envs:FixedLength",
        backend="serial",
        total_steps=10**6,
        **SMALL,
        **{"eval.interval_steps": 500, "eval.target_mean": 7.0},
    )
    summary = agent.learn(run_dir=tmp_path / "api", progress="none")
    assert (
        summary["stop_reason"] == "target_eval_return"
        and summary["steps"] < 600
        and not summary["solved"]
    )
    assert summary["eval"]["latest"]["mean"] == 7.0 and summary["eval"]["target_mean"] == 7.0
    # The CLI flag; --target-return keeps its meaning (here: off).
    result = subprocess.run(
        [
            *A3C_CLI,
            "train",
            "fake_envs:FixedLength",
            "--backend",
            "serial",
            "--eval-interval",
            "500",
            "--target-eval-return",
            "7",
            "--target-return",
            "null",
            "--run-dir",
            str(tmp_path / "cli"),
            "--progress",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.startswith("target_eval_return: ") and "eval 7.0 (best 7.0)" in result.stdout
    ), result.stdout
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["stop_reason"] == "target_eval_return" and summary["target_return"] is None


def test_a3c_eval_picks_best_latest_or_a_path_and_says_which(cartpole_run, tmp_path):
    def run(*args):
        return subprocess.run(
            [
                *A3C_CLI,
                "eval",
                str(cartpole_run),
                "--episodes",
                "2",
                "--output",
                str(tmp_path / "e.json"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    default, latest = run(), run("--checkpoint", "latest")
    assert default.returncode == latest.returncode == 0, default.stderr + latest.stderr
    assert f"best checkpoint {cartpole_run / 'checkpoints' / 'best'}" in default.stdout, (
        default.stdout
    )
    newest = run_checkpoints.find(cartpole_run).path
    assert f"latest checkpoint {newest}" in latest.stdout, latest.stdout
    assert json.loads((tmp_path / "e.json").read_text())["checkpoint_kind"] == "latest"
    by_name = run("--checkpoint", newest.name)
    assert by_name.returncode == 0 and f"; checkpoint {newest}" in by_name.stdout, (
        by_name.stdout + by_name.stderr
    )
    assert json.loads((tmp_path / "e.json").read_text())["checkpoint_kind"] == "given"
    best = run("--checkpoint", "best")
    assert (
        best.returncode == 0
        and json.loads((tmp_path / "e.json").read_text())["checkpoint_steps"]
        == checkpoint.read(cartpole_run / "checkpoints" / "best").steps
    )


def test_an_unreadable_best_falls_back_to_the_latest_and_a_half_replaced_one_is_found(
    cartpole_run, tmp_path, caplog
):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(cartpole_run, run_dir)
    best = run_dir / "checkpoints" / "best"
    # a writer killed between moving best/ aside and renaming the new one in
    os.replace(best, best.with_name("best.old"))
    assert A3C.load(run_dir).checkpoint_kind == "best" and run_checkpoints.best_path(
        run_dir
    ) == best.with_name("best.old")
    # the next checkpoint's clean-up of killed writers' leftovers spares it
    newest = run_checkpoints.find(run_dir)
    meta = {
        k: v
        for k, v in newest.meta.items()
        if k not in ("format", "format_version", "tensors_bytes", "tensors_sha256")
    }
    run_checkpoints.save_in_run(run_dir, newest.tensors, meta, keep=1)
    assert run_checkpoints.best_path(run_dir) == best.with_name("best.old")
    os.replace(best.with_name("best.old"), best)
    (best / checkpoint.TENSORS).write_bytes(b"\x80\x04not a safetensors file")
    agent = A3C.load(run_dir)  # the default: the best if it reads, else the latest, with a warning
    assert (
        agent.checkpoint_kind == "latest" and "taking the latest checkpoint instead" in caplog.text
    )
    with pytest.raises(checkpoint.CheckpointError, match="looks like a pickle"):
        A3C.load(run_dir, checkpoint="best")  # asked for by name: an error


def test_plot_draws_the_evaluations_beside_the_training_curve(cartpole_run, tmp_path):
    curve = load_run(cartpole_run)
    rows = _evals(cartpole_run)
    assert curve.evals is not None and list(curve.evals.steps) == [int(r["steps"]) for r in rows]
    assert list(curve.evals.mean) == [r["mean"] for r in rows]
    out = plot_runs([cartpole_run], tmp_path / "curves.png")
    assert out.read_bytes().startswith(b"\x89PNG")


def test_policy_state_is_what_acting_needs_and_no_more():
    from a3c.config import Config
    from a3c.store import SharedStore

    store = SharedStore(
        torch.arange(6, dtype=torch.float32), 3, Config().replace({"optim.name": "adam"}), obs_dim=2
    )
    state = store.policy_state()
    assert set(state) == {
        "params",
        "obs_stats",
        "counters.worker_steps",
        "counters.worker_updates",
        "counters.worker_nonfinite",
    }
    assert (
        torch.equal(state["params"], store.flat)
        and state["params"].data_ptr() != store.flat.data_ptr()
    )


def test_ema_steps_averages_the_parameters_for_the_evaluator_and_resumes():
    from a3c.config import Config
    from a3c.store import Pulled, SharedStore

    cfg = Config().replace(
        {
            "optim.name": "sgd",
            "optim.learning_rate": 1.0,
            "lr_schedule": "constant",
            "eval.ema_steps": 40,
        }
    )
    store = SharedStore(torch.zeros(4), 2, cfg)
    expected = torch.zeros(4)
    for _ in range(3):  # each update of 10 env steps weighs 10 / 40 in the average
        store.push(0, 10, Pulled(0, 0.0), torch.full((4,), -1.0))
        expected += 0.25 * (store.flat - expected)
    assert torch.equal(store.flat, torch.full((4,), 3.0))
    assert torch.allclose(store.policy_state()["params"], expected) and not torch.allclose(
        expected, store.flat
    )
    state = store.state_dict()
    assert torch.equal(state["params"], store.flat) and torch.allclose(state["ema"], expected), (
        "checkpoints hold both"
    )
    resumed = SharedStore(torch.zeros(4), 2, cfg)
    resumed.load_state_dict(state)
    assert torch.allclose(resumed.policy_state()["params"], expected), (
        "a resume continues the average"
    )
    fresh = SharedStore(torch.zeros(4), 2, cfg)
    fresh.load_state_dict({k: v for k, v in state.items() if k != "ema"})
    assert torch.equal(fresh.policy_state()["params"], store.flat), (
        "a state without one starts it at its parameters"
    )
    off = SharedStore(torch.zeros(4), 2, Config())
    off.load_state_dict(state)
    assert "ema" not in off.state_dict() and torch.equal(off.policy_state()["params"], store.flat)


def test_with_ema_steps_best_holds_the_average_that_was_evaluated(tmp_path):
    run_dir = tmp_path / "run"
    agent = A3C(
        "CartPole-v1",
        backend="processes",
        workers=2,
        seed=1,
        total_steps=30_000,
        log_interval=5_000,
        target_return=None,
        **{"eval.interval_steps": 5_000, "eval.episodes": 5, "eval.ema_steps": 5_000},
    )
    agent.learn(run_dir=run_dir, progress="none")
    rows = _evals(run_dir)
    first_best = next(r for r in rows if r["mean"] == max(x["mean"] for x in rows))
    best = A3C.load(run_dir, checkpoint="best")
    assert best.evaluate(episodes=5)["mean"] == first_best["mean"]
    latest = checkpoint.read(run_checkpoints.find(run_dir).path)
    assert latest.tensors["ema"].shape == latest.tensors["params"].shape
    assert not torch.equal(latest.tensors["ema"], latest.tensors["params"]), (
        "the workers learn with the parameters, not the average"
    )
    meta = {
        k: v
        for k, v in latest.meta.items()
        if k not in ("format", "format_version", "tensors_bytes", "tensors_sha256")
    }
    bad = tmp_path / "bad"
    checkpoint.write(
        bad, {**latest.tensors, "ema": torch.full_like(latest.tensors["ema"], float("nan"))}, meta
    )
    with pytest.raises(checkpoint.CheckpointError, match="moving average"):
        checkpoint.read(bad)


def test_a_non_finite_evaluation_is_recorded_but_never_the_best(tmp_path, caplog):
    """The first evaluation's mean is NaN (a NaN reward in one episode): eval.csv records it, a
    later finite evaluation becomes best/, and the summary line prints (it crashed on a None)."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            *A3C_CLI,
            "train",
            "fake_envs:CartPoleEvalFails",
            "--backend",
            "serial",
            "--seed",
            "0",
            "--total-steps",
            "6000",
            "--target-return",
            "null",
            "--eval-interval",
            "2000",
            "--run-dir",
            str(run_dir),
            "--progress",
            "none",
            "--set",
            "eval.episodes=2",
            "--set",
            "log.log_interval=1000",
            "--set",
            f"eval.env_kwargs={{fail: nan, marker: {tmp_path / 'nan'}}}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _evals(run_dir)
    assert len(rows) >= 2 and math.isnan(rows[0]["mean"]), rows
    best = checkpoint.read(run_dir / "checkpoints" / "best").meta["eval"]["mean"]
    assert math.isfinite(best) and best == max(r["mean"] for r in rows[1:])
    assert "(best " in result.stdout and "never kept as the best" in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval"]["best_mean"] == best


def test_a_best_without_its_meta_json_is_replaced_by_the_next_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    settings = {"eval.interval_steps": 2_000, "eval.episodes": 2}
    A3C(
        "CartPole-v1",
        backend="serial",
        workers=2,
        seed=0,
        total_steps=4_000,
        target_return=None,
        **settings,
    ).learn(run_dir=run_dir, progress="none")
    (run_dir / "checkpoints" / "best" / checkpoint.META).unlink()
    summary = A3C.resume(run_dir, total_steps=8_000).learn(progress="none")
    best = checkpoint.read(run_dir / "checkpoints" / "best")
    assert best.steps > 4_000 and summary["error"] is None, summary["error"]
    assert summary["eval"]["best_steps"] == best.steps
