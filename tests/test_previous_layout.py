"""A run directory written by a development version before 0.1.0's config layout (five sections,
Atari settings in `env`, workers and logging in `run`) is not read: every command that opens it
says so in one line and exits 2, and the directory is left as it was."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from a3c import A3C, run_checkpoints

CLI = [sys.executable, "-m", "a3c.cli"]


def _earlier_layout(config: dict) -> dict:
    """Today's config written as the earlier layout wrote it."""
    atari = {k: v for k, v in config["env"]["atari"].items() if k != "fire_reset"}
    env = {k: v for k, v in config["env"].items() if k != "atari"} | atari
    backend = config["backend"]
    run = {
        "workers": backend["workers"],
        "backend": backend["name"],
        **config["log"],
        **config["run"],
    }
    return {
        "env": env,
        "algo": config["algo"],
        "optim": config["optim"],
        "model": config["model"],
        "run": run,
    }


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("earlier") / "run"
    A3C(
        "CartPole-v1", backend="serial", workers=2, seed=1, total_steps=2_000, log_interval=1_000
    ).learn(run_dir=run_dir, progress="none")
    old = _earlier_layout(json.loads((run_dir / "config.json").read_text()))
    (run_dir / "config.json").write_text(json.dumps(old))
    ckpt = run_checkpoints.find(run_dir).path
    meta = json.loads((ckpt / "meta.json").read_text())
    # the checksum covers the tensors
    (ckpt / "meta.json").write_text(json.dumps({**meta, "config": old}))
    return run_dir


@pytest.mark.parametrize(
    "args",
    [["train", "--resume", "{run}"], ["eval", "{run}", "--episodes", "1"], ["plot", "{run}"]],
)
def test_every_command_says_in_one_line_which_version_wrote_it(earlier_run, args):
    before = sorted(p.name for p in earlier_run.iterdir())
    progress = (earlier_run / "progress.csv").read_bytes()
    cmd = [a.replace("{run}", str(earlier_run)) for a in args]
    result = subprocess.run([*CLI, *cmd], capture_output=True, text=True, timeout=120)
    if args[0] == "plot":  # plotting reads progress.csv; the config only labels the curve
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "development version of a3c before 0.1.0" in lines[0], result.stderr
    assert sorted(p.name for p in earlier_run.iterdir()) == before
    assert (earlier_run / "progress.csv").read_bytes() == progress, "the run is left as it was"
