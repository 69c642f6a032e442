"""benchmarks/suite.py's machinery on its `smoke` suite (CartPole-v1, 20,000 steps): each job in a
subprocess, SIGTERM stopping the current job cleanly (exit 143), --resume skipping finished jobs and
continuing the stopped one, one harness evaluating a3c, SB3 and random play, the tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "suite.py"


def _suite(out: Path, *args: str, term_at: int | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("A3C_SUITE_TERM_AT_STEPS", None)
    if term_at is not None:
        # the job's first segment SIGTERMs itself there
        env["A3C_SUITE_TERM_AT_STEPS"] = str(term_at)
    return subprocess.run(
        [sys.executable, str(SUITE), "smoke", "--out", str(out), "--episodes", "2", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,
    )


def _job(out: Path, lib: str) -> Path:
    return out / "jobs" / f"{lib}__CartPole-v1__s0"


def _stopped_then_resumed(tmp_path: Path, libs: list[str], stopped: str) -> dict:
    out = tmp_path / "suite"
    first = _suite(out, "--libs", *libs, term_at=1_000)
    assert first.returncode == 143, first.stdout + first.stderr
    assert f"suite: {stopped}__CartPole-v1__s0: exit 143" in first.stdout
    assert not (_job(out, stopped) / "result.json").exists(), "a stopped job is not finished"
    again = _suite(out, "--libs", *libs)
    assert again.returncode == 2 and "--resume" in again.stderr, (
        "a second run without --resume refuses"
    )
    done_before = {
        lib: (_job(out, lib) / "result.json").stat().st_mtime_ns
        for lib in libs
        if (_job(out, lib) / "result.json").exists()
    }
    resumed = _suite(out, "--libs", *libs, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    for lib, mtime in done_before.items():
        assert f"suite: {lib}__CartPole-v1__s0: done, skipped" in resumed.stdout
        assert (_job(out, lib) / "result.json").stat().st_mtime_ns == mtime
    result = json.loads((_job(out, stopped) / "result.json").read_text())
    assert result["train"]["resumes"] == 1 and result["train"]["steps"] >= 20_000
    assert result["eval"]["episodes"] == 2 and result["eval"]["deterministic"]
    refs = result["train"]["speed_ref_s"]
    assert len(refs) == 2 and all(r > 0 for r in refs), (
        "the machine's speed is taken at each segment's start"
    )
    report = json.loads((out / "suite_smoke.json").read_text())
    assert sorted(report["jobs"]) == sorted(f"{lib}__CartPole-v1__s0" for lib in libs)
    table = (out / "suite_smoke.md").read_text()
    assert "| CartPole-v1 |" in table and "random" in table and "speed_ref" in table
    return result


def test_sb3_job_stops_on_sigterm_and_resumes_with_its_steps_and_clock(tmp_path):
    result = _stopped_then_resumed(tmp_path, ["random", "sb3"], "sb3")
    train = result["train"]
    assert train["hyperparams"]["zoo_key"] == "CartPole-v1" and train["hyperparams"]["n_envs"] == 8
    assert train["hyperparams"]["a2c_kwargs"] == {"ent_coef": 0.0}
    assert train["steps"] < 20_000 + 8 * 5, "the budget counts the steps of both segments"
    episodes = (_job(tmp_path / "suite", "sb3") / "episodes.csv").read_text().splitlines()
    assert len(episodes) - 1 == train["episodes"] > 100 and train["train_last100"] > 0


@pytest.mark.slow
def test_a3c_job_stops_on_sigterm_and_resumes_from_its_checkpoint(tmp_path):
    result = _stopped_then_resumed(tmp_path, ["a3c"], "a3c")
    assert result["train"]["stop_reason"] == "total_steps" and result["train"]["train_last100"] > 0


@pytest.mark.slow
def test_a3c_variant_runs_with_its_set_keys_over_the_preset_and_the_table_says_so(tmp_path):
    out = tmp_path / "suite"
    done = _suite(out, "--libs", "a3c", "--set", "algo.n_steps=7", "--set", "env.envs_per_worker=2")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((_job(out, "a3c") / "result.json").read_text())
    assert result["spec"]["a3c_set"] == {"algo.n_steps": 7, "env.envs_per_worker": 2}
    assert (
        result["train"]["config"]["algo"]["n_steps"] == 7
        and result["train"]["config"]["env"]["envs_per_worker"] == 2
    )
    assert (
        "`--set` algo.n_steps=7, env.envs_per_worker=2 (a variant, not the preset)"
        in (out / "suite_smoke.md").read_text()
    )


def test_an_unknown_set_key_is_a_one_line_error(tmp_path):
    bad = _suite(tmp_path / "suite", "--libs", "a3c", "--set", "algo.no_such_key=1")
    assert bad.returncode == 2 and "no_such_key" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "suite" / "jobs").exists(), "nothing ran"
