"""The edges a new user walks into: each case is what a user did, and what they should see.
Every run here is a few thousand steps on the serial backend, or a subprocess with a timeout."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from a3c import A3C, ConfigError

CONSOLE_SCRIPT = Path(sys.executable).parent / "a3c"
TINY = {"backend": "serial", "workers": 2, "seed": 0, "log_interval": 1_000}


def test_the_console_script_imports_a_module_from_the_current_folder(tmp_path):
    """`a3c train mymodule:MyEnv` as `python -m a3c` does: the folder the user stands in."""
    (tmp_path / "mymodule.py").write_text(
        "import gymnasium as gym\n\n\n"
        "class MyEnv(gym.Wrapper):\n"
        "    def __init__(self):\n"
        "        super().__init__(gym.make('CartPole-v1'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            str(CONSOLE_SCRIPT),
            "train",
            "mymodule:MyEnv",
            "--backend",
            "processes",
            "--total-steps",
            "3000",
            "--target-return",
            "null",
            "--run-dir",
            "run",
            "--progress",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] >= 3000


def test_learn_draws_curves_and_a_second_run_into_the_same_folder_says_what_to_do(tmp_path):
    agent = A3C("CartPole-v1", total_steps=3_000, target_return=None, **TINY)
    agent.learn(run_dir=tmp_path / "run", progress="none")
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError) as e:
        A3C("CartPole-v1", **TINY).learn(run_dir=tmp_path / "run", progress="none")
    assert "already holds a run" in str(e.value) and "--run-dir" not in str(e.value)
    assert "A3C.resume" in str(e.value)


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        ({"target_return": 30.0}, {}, "reached its target (target_return"),
        ({"target_return": None}, {}, "give a larger --total-steps"),
    ],
)
def test_resuming_a_finished_run_says_it_is_finished_and_how_to_continue(
    tmp_path, first, then, message
):
    run_dir = tmp_path / "run"
    summary = A3C("CartPole-v1", total_steps=20_000, **{**TINY, **first}).learn(
        run_dir=run_dir, progress="none"
    )
    assert summary["stop_reason"] in ("target_return", "total_steps")
    with pytest.raises(ConfigError, match="the run is finished") as e:
        A3C.resume(run_dir, **then).learn(progress="none")
    assert message in str(e.value)
    # and continuing as the message says works
    more = {"target_return": None, "total_steps": summary["steps"] + 2_000}
    assert A3C.resume(run_dir, **more).learn(progress="none")["resumes"] == 1


def test_more_workers_than_cores_warns_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="a3c"):
        A3C(
            "CartPole-v1",
            backend="processes",
            workers=3,
            seed=0,
            total_steps=2_000,
            target_return=None,
        ).learn(run_dir=tmp_path / "run", progress="none")
    assert caplog.text.count("3 workers on 2 cores") == 1


def test_eval_of_a_run_before_its_first_checkpoint_says_so(tmp_path):
    run_dir = tmp_path / "run"
    A3C("CartPole-v1", total_steps=2_000, target_return=None, **TINY).learn(
        run_dir=run_dir, progress="none"
    )
    for ckpt in (run_dir / "checkpoints").iterdir():  # as if it were still in its first minutes
        if ckpt.is_dir():
            for f in ckpt.iterdir():
                f.unlink()
            ckpt.rmdir()
        else:
            ckpt.unlink()
    result = subprocess.run(
        [sys.executable, "-m", "a3c.cli", "eval", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "is a run with no checkpoint yet" in result.stderr


def test_a_nan_at_the_first_reset_never_reaches_the_statistics(tmp_path):
    agent = A3C(
        "space_envs:NaNAtFirstReset",
        normalize_obs=True,
        total_steps=3_000,
        target_return=None,
        **TINY,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["nonfinite_steps"] >= 1 and summary["nonfinite_updates"] == 0
    table = agent.obs_stats.table
    assert bool(torch.isfinite(table).all()) and float(table[:, 0].sum()) > 0


def test_an_env_instance_is_rebuilt_from_its_spec_and_a_vector_env_says_what_to_pass(tmp_path):
    import gymnasium as gym

    agent = A3C(gym.make("CartPole-v1"), total_steps=2_000, target_return=None, **TINY)
    assert agent.config.env.id == "CartPole-v1"
    assert agent.learn(run_dir=tmp_path / "run", progress="none")["steps"] >= 2_000
    vec = gym.make_vec("CartPole-v1", num_envs=2)
    with pytest.raises(ConfigError, match="instead of a vector env"):
        A3C(vec)
    vec.close()
    bare = gym.make("CartPole-v1")
    bare.unwrapped.spec = None
    no_spec = bare.unwrapped
    with pytest.raises(ConfigError, match="has no spec to rebuild it from"):
        A3C(no_spec)


def test_a_failed_run_prints_its_summary_line_and_where_to_resume(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "a3c.cli",
            "train",
            "fake_envs:RaisesOnStep",
            "--backend",
            "serial",
            "--set",
            "backend.max_restarts=0",
            "--run-dir",
            str(tmp_path / "run"),
            "--progress",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1
    assert result.stdout.startswith("worker_failure: steps "), result.stdout
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "boom from the env" in lines[0] and "the last checkpoint is" in lines[0]
    )


def test_a_serial_evaluation_env_that_hangs_in_its_constructor_is_interrupted(tmp_path, caplog):
    run_dir = tmp_path / "run"
    agent = A3C(
        "fake_envs:CartPoleEvalFails",
        total_steps=10**8,
        target_return=None,
        max_time=60,
        **{
            **TINY,
            "eval.interval_steps": 1_000,
            "eval.episodes": 1,
            "eval.timeout": 1.5,
            "eval.env_kwargs": {"fail": "hang_init", "marker": str(tmp_path / "hung")},
        },
    )

    def one_evaluation(row):
        path = run_dir / "eval.csv"
        return not path.exists() or len(path.read_text().splitlines()) < 2

    summary = agent.learn(run_dir=run_dir, progress="none", callback=one_evaluation)
    assert (tmp_path / "hung").exists(), "an evaluation env's constructor did hang"
    assert summary["stop_reason"] == "callback" and summary["eval"]["restarts"] == 1
    assert "the evaluator failed" in caplog.text and "no progress for 1.5 s" in caplog.text


def test_a_full_disk_at_a_periodic_checkpoint_prints_the_summary_line_then_one_error(
    tmp_path, monkeypatch, capsys
):
    import errno

    from a3c import run_checkpoints
    from a3c.cli import main

    real = run_checkpoints.save_in_run

    def full(run_dir, state, meta, keep):
        if "stop_reason" not in meta and int(meta["steps"]) >= 2_000:  # a periodic one, mid-run
            raise OSError(errno.ENOSPC, "No space left on device", str(run_dir))
        return real(run_dir, state, meta, keep)

    monkeypatch.setattr(run_checkpoints, "save_in_run", full)
    code = main(
        [
            "train",
            "CartPole-v1",
            "--backend",
            "serial",
            "--total-steps",
            "100000",
            "--target-return",
            "null",
            "--run-dir",
            str(tmp_path / "run"),
            "--progress",
            "none",
            "--set",
            "log.checkpoint_interval_steps=1000",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and out.startswith("error: steps "), (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], err
