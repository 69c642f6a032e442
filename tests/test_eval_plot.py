"""`a3c eval` (mean and std, eval.json, video), `a3c plot` (curves of runs and seed groups), and the
TensorBoard events of a run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a3c import A3C
from a3c.cli import main
from a3c.plots import aggregate, group_runs, load_run, plot_runs

A3C_CLI = [sys.executable, "-m", "a3c.cli"]
PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*A3C_CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three seeds of one setup and one run of another (n_steps=5): short serial CartPole runs."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, overrides in [
        ("s0", {"seed": 0}),
        ("s1", {"seed": 1}),
        ("s2", {"seed": 2}),
        ("n5", {"seed": 0, "n_steps": 5}),
    ]:
        agent = A3C(
            "CartPole-v1",
            backend="serial",
            workers=2,
            total_steps=4_000,
            log_interval=500,
            **overrides,
        )
        agent.learn(run_dir=root / name, progress="none")
        out[name] = root / name
    return out


def test_eval_prints_mean_and_std_and_writes_eval_json(runs, tmp_path):
    result = _run("eval", str(runs["s0"]), "--episodes", "3", "--stochastic", "--seed", "4")
    assert result.returncode == 0, result.stderr
    data = json.loads((runs["s0"] / "eval.json").read_text())
    assert (
        data["episodes"] == 3
        and len(data["returns"]) == 3
        and data["deterministic"] is False
        and data["seed"] == 4
    )
    assert data["mean"] == pytest.approx(np.mean(data["returns"])) and data["std"] == pytest.approx(
        np.std(data["returns"])
    )
    assert data["lengths"] == [int(r) for r in data["returns"]], "CartPole pays 1 per step"
    assert data["checkpoint"].endswith(f"step_{data['checkpoint_steps']:012d}")
    assert (
        f"mean return {data['mean']:.2f} +/- {data['std']:.2f} over 3 episodes (stochastic)"
        in result.stdout
    )
    # The same seed gives the same episodes; a checkpoint directory can be named directly.
    again = _run(
        "eval",
        data["checkpoint"],
        "--episodes",
        "3",
        "--stochastic",
        "--seed",
        "4",
        "--output",
        str(tmp_path / "e.json"),
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "e.json").read_text())["returns"] == data["returns"]


def test_eval_records_video(runs, tmp_path):
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    result = _run(
        "eval",
        str(runs["s1"]),
        "--episodes",
        "2",
        "--video",
        str(tmp_path / "video"),
        "--output",
        str(tmp_path / "e.json"),
    )
    assert result.returncode == 0, result.stderr
    videos = sorted((tmp_path / "video").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1_000 for v in videos)
    assert json.loads((tmp_path / "e.json").read_text())["video_dir"] == str(tmp_path / "video")


def test_runs_that_differ_only_by_seed_are_one_group(runs):
    groups = group_runs([load_run(runs[k]) for k in ("s0", "s1", "n5", "s2")])
    labels = sorted(g.label for g in groups)
    assert labels == ["CartPole-v1 n_steps=5", "CartPole-v1 n_steps=8 (3 seeds)"], labels
    seeds = next(g for g in groups if len(g.runs) == 3)
    assert sorted(r.path.name for r in seeds.runs) == ["s0", "s1", "s2"]


def test_aggregate_is_the_mean_and_range_over_the_steps_every_run_covers():
    xs = [np.array([0.0, 10.0]), np.array([0.0, 10.0]), np.array([0.0, 5.0])]
    ys = [np.array([0.0, 10.0]), np.array([2.0, 12.0]), np.array([4.0, 9.0])]
    grid, mean, lower, upper = aggregate(xs, ys, points=3)
    assert grid.tolist() == [0.0, 2.5, 5.0]  # the third run stopped at 5
    assert mean.tolist() == [2.0, 4.5, 7.0]  # (2.5 + 4.5 + 6.5) / 3, (5 + 7 + 9) / 3
    assert lower.tolist() == [0.0, 2.5, 5.0] and upper.tolist() == [4.0, 6.5, 9.0]
    # A run that stopped because it solved the task holds its last value: the grid goes on to 10.
    grid, mean, _, upper = aggregate(xs, ys, held=[False, False, True], points=3)
    assert (
        grid.tolist() == [0.0, 5.0, 10.0]
        and mean.tolist() == [2.0, 7.0, 31 / 3]
        and upper[-1] == 12.0
    )


def test_plot_draws_curves_of_several_runs(runs, tmp_path):
    out = tmp_path / "curves.png"
    result = _run("plot", *(str(p) for p in runs.values()), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000
    single = plot_runs([runs["n5"]], tmp_path / "one.png", title="one run")
    assert single.read_bytes()[:8] == PNG


def test_bad_eval_and_plot_input_exits_2_with_one_line(runs, tmp_path, capsys):
    for args, message in [
        (["eval", str(runs["s0"]), "--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["eval", str(tmp_path / "nothing")], "no such checkpoint or run directory"),
        (["eval", str(tmp_path)], "holds no checkpoint"),
        (["plot", str(tmp_path)], "is not a run directory (it has no progress.csv)"),
    ]:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("a3c: error: ") and message in err[0], (
            args,
            err,
        )


def test_tensorboard_events_mirror_progress_csv(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["s2"]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in [
        "rollout/ep_rew_mean",
        "rollout/episodes",
        "train/policy_loss",
        "train/value_loss",
        "train/entropy_loss",
        "train/grad_norm",
        "time/fps",
        "train/update_lag",
        "train/learning_rate",
        "workers/alive",
    ]:
        assert tag in tags, tag
    with open(runs["s2"] / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [e.step for e in events.Scalars("rollout/episodes")] == [int(r["steps"]) for r in rows]
    assert [e.value for e in events.Scalars("rollout/episodes")] == [
        float(r["episodes"]) for r in rows
    ]


def test_every_command_has_complete_help(capsys):
    for command, words in [
        ([], ["train", "eval", "plot"]),
        (
            ["train"],
            [
                "--resume",
                "--total-steps",
                "--set",
                "log.checkpoint_interval_steps",
                "log.checkpoint_keep",
                "a3c train --resume",
                "--eval-interval",
                "--target-eval-return",
                "eval.interval_s",
                "checkpoints/best/",
            ],
        ),
        (
            ["eval"],
            [
                "--episodes",
                "--deterministic",
                "--stochastic",
                "--video",
                "--output",
                "eval.json",
                "--checkpoint",
                "best",
                "latest",
            ],
        ),
        (["plot"], ["RUN_DIR", "--out", "seed"]),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for word in words:
            assert word in text, (command, word)
