"""The command line, run as a user runs it: through a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

A3C = [sys.executable, "-m", "a3c.cli"]


# fake_envs:... from here; the a3c under test from PYTHONPATH when set (a checkout's src/)
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
    ),
}


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*A3C, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


BAD_INPUTS = [
    (["train", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    (
        ["train", "space_envs:TextObs"],
        "observation key 'mission' is a Text space, which a3c cannot encode: drop it with --set "
        "env.obs_keys",
    ),
    (["train", "space_envs:UnboundedActions"], "unsupported action space"),
    (["train", "CartPole-v1", "--workers", "0"], "backend.workers: 0 must be an integer >= 1"),
    (["train", "CartPole-v1", "--set", "gamma=1.5"], "algo.gamma: 1.5 must be in (0, 1]"),
    (["train", "CartPole-v1", "--set", "gamma=0"], "algo.gamma: 0.0 must be in (0, 1]"),
    (
        ["train", "CartPole-v1", "--set", "learning_rate=-0.001"],
        "optim.learning_rate: -0.001 must be a number >= 0",
    ),
    (["train", "CartPole-v1", "--set", "n_steps=0"], "algo.n_steps: 0 must be an integer >= 1"),
    (["train", "CartPole-v1", "--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
    (["train", "CartPole-v1", "--set", "algo"], "--set expects key=value"),
    (
        ["train", "CartPole-v1", "--total-steps", "-5"],
        "run.total_steps: -5 must be an integer >= 1",
    ),
    (["train", "CartPole-v1", "--set", "n_steps=1e30"], "must be an integer in [1, 100000]"),
    (["train", "CartPole-v1", "--set", "run.workers=2"], "unknown config key 'run.workers'"),
    (
        ["train", "CartPole-v1", "--set", "backend=threads"],
        "backend.name: 'threads' must be one of processes, serial, ray",
    ),
    (["train", "my_missing_module:Env"], "cannot import the module 'my_missing_module'"),
    (["train", "fake_envs:NoSuchEnv"], "module 'fake_envs' has no 'NoSuchEnv'"),
]


def test_worker_failure_exits_1_with_one_line_and_keeps_the_run(tmp_path):
    result = run(
        "train", "fake_envs:RaisesOnStep", "--workers", "2", "--run-dir", str(tmp_path / "run")
    )
    assert result.returncode == 1
    assert "boom from the env" in result.stderr and "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "worker_failure" and "boom from the env" in summary["error"]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    result = run(*args, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("a3c: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "progress.csv").exists(), "bad input must not start a run"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("algo: {n_steps: [1, 2\n", "malformed config file"),
        ("- just\n- a list\n", "expected a mapping"),
        ("algo:\n  n_step: 5\n", "unknown config key 'algo.n_step'"),
        ("optim:\n  learning_rate: fast\n", "optim.learning_rate: 'fast' must be a number >= 0"),
        ("run:\n  log_interval: 5\n", "unknown config key 'run.log_interval'"),
    ],
)
def test_malformed_config_file_exits_2(content, message, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = run("train", "CartPole-v1", "--config", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_existing_run_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "progress.csv").write_text("steps\n1\n")
    result = run("train", "CartPole-v1", "--run-dir", str(run_dir))
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (run_dir / "progress.csv").read_text() == "steps\n1\n"


def test_train_writes_a_run_directory(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("algo:\n  n_steps: 5\nlog:\n  log_interval: 1000\n")
    run_dir = tmp_path / "run"
    result = run(
        "train",
        "CartPole-v1",
        "--backend",
        "serial",
        "--total-steps",
        "6000",
        "--seed",
        "3",
        "--config",
        str(cfg),
        "--set",
        "optim.learning_rate=7e-4",
        "--run-dir",
        str(run_dir),
        "--progress",
        "lines",
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"]["n_steps"] == 5
    assert config["optim"]["learning_rate"] == 7e-4
    assert config["run"]["seed"] == 3 and config["backend"]["name"] == "serial"
    header = (run_dir / "progress.csv").read_text().splitlines()[0].split(",")
    for column in [
        "steps",
        "wall_s",
        "episodes",
        "return_mean",
        "entropy_loss",
        "grad_norm",
        "policy_loss",
        "value_loss",
        "steps_per_s",
        "update_lag",
    ]:
        assert column in header
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"steps", "wall_s", "episodes", "return_mean", "solved", "stop_reason"} <= summary.keys()
    assert summary["stop_reason"] == "total_steps" and summary["steps"] >= 6000
    assert "steps" in result.stdout  # plain progress lines when not on a terminal


def test_help_lists_every_config_key():
    from a3c.config import field_docs

    result = run("train", "--help")
    assert result.returncode == 0
    for key, _, _ in field_docs():
        assert key in result.stdout


@pytest.mark.parametrize(
    ("argv", "other"),
    [
        (["train", "X", "--backend", "serial"], True),
        (["train", "X", "--backend=ray"], True),
        (["train", "X", "--set", "backend=serial"], True),
        (["train", "X", "--set", "backend.name=ray"], True),
        (["train", "X", "--set=backend.name=serial"], True),
        (["train", "X", "--set", "backend=processes"], False),
        (["train", "X", "--set", "backend.workers=4"], False),
        (["train", "X"], False),
    ],
)
def test_other_backend_skips_the_fork_server(argv, other):
    from a3c.cli import _other_backend, build_parser

    assert _other_backend(build_parser().parse_args(argv)) is other


def test_target_return_flag_takes_auto_and_null():
    from a3c.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["train", "X", "--target-return", "195"]).target_return == 195.0
    assert parse(["train", "X", "--target-return", "auto"]).target_return == "auto"
    assert parse(["train", "X", "--target-return", "null"]).target_return == "null"
