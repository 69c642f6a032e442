"""Run directories and checkpoints written by the previous config layout (five sections, Atari
settings in `env`, workers and logging in `run`) still load and resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch

from a3c import A3C, checkpoint
from a3c.metrics import PROGRESS_COLUMNS
from a3c.runlog import PREVIOUS_PROGRESS_COLUMNS

ATARI = ("frame_skip", "frame_stack", "screen_size", "noop_max", "episodic_life", "clip_rewards", "ale_vector")


def _previous_layout(config: dict) -> dict:
    """A config of today's layout written as the previous layout wrote it."""
    atari = {k: v for k, v in config["env"]["atari"].items() if k != "fire_reset"}  # keys added since
    env = {k: v for k, v in config["env"].items() if k != "atari"} | atari
    backend = {k: v for k, v in config["backend"].items() if k != "worker_timeout"}  # keys added since
    config = {**config, "run": {k: v for k, v in config["run"].items() if k != "max_nonfinite_updates"}}
    run = {
        "workers": backend.pop("workers"), "backend": backend.pop("name"), **backend, **config["log"],
        **{k: v for k, v in config["run"].items() if k != "target_return"},
        "target_return": None if config["run"]["target_return"] == "auto" else config["run"]["target_return"],
        "stop_at_target": config["run"]["target_return"] is not None, "train_while_starting": True,
    }  # fmt: skip
    model = {**config["model"], "keep_rollout_graph": False}
    return {"env": env, "algo": config["algo"], "optim": config["optim"], "model": model, "run": run}


def _rewrite_progress_in_previous_columns(path) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(PREVIOUS_PROGRESS_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({**row, "entropy": "" if row["entropy_loss"] == "" else repr(-float(row["entropy_loss"]))})


def test_a_run_of_the_previous_layout_loads_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    agent = A3C("CartPole-v1", backend="serial", workers=2, seed=1, total_steps=4_000, log_interval=1_000)
    agent.learn(run_dir=run_dir, progress="none")
    ckpt_dir = checkpoint.find(run_dir).path
    config = json.loads((run_dir / "config.json").read_text())
    old = _previous_layout(config)
    assert "atari" not in old["env"] and "workers" in old["run"] and "log" not in old
    (run_dir / "config.json").write_text(json.dumps(old))
    meta = json.loads((ckpt_dir / "meta.json").read_text())
    (ckpt_dir / "meta.json").write_text(json.dumps({**meta, "config": old}))  # the checksum covers the tensors only
    _rewrite_progress_in_previous_columns(run_dir / "progress.csv")

    loaded = A3C.load(run_dir)
    assert loaded.config.to_dict() == config, "the previous layout translates to the same config"
    obs = np.random.default_rng(0).uniform(-0.1, 0.1, (50, 4)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0])

    summary = A3C.resume(run_dir, total_steps=6_000).learn(progress="none")
    assert summary["resumes"] == 1 and summary["steps"] >= 6_000
    with open(run_dir / "progress.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == PROGRESS_COLUMNS, "progress.csv is rewritten in today's columns"
    before = [r for r in rows if int(r["steps"]) <= 4_000]
    assert before and all(r["entropy_loss"] == "" or float(r["entropy_loss"]) <= 0 for r in before)
    assert int(rows[-1]["steps"]) == summary["steps"]
    assert json.loads((run_dir / "config.json").read_text())["backend"]["workers"] == 2
    assert torch.equal(checkpoint.find(run_dir).tensors["counters.worker_steps"].sum(), torch.tensor(summary["steps"]))
