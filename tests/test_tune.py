"""`a3c tune` (a3c/tune.py), CI-sized: a 6-trial CartPole study completes, prunes with the median
pruner and writes a best.yaml that `a3c train --config` takes; an interrupted study resumes; a
failing trial does not stop the study; two processes share one study; bad input is one line."""

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
from waiting import default_sigint, wait_for

A3C_BIN = Path(sys.executable).with_name("a3c")
# serial trials and a seeded random sampler: the same study every time
TINY = [
    "--budget-steps",
    "8000",
    "--evaluations",
    "4",
    "--eval-episodes",
    "2",
    "--startup-trials",
    "2",
    "--sampler",
    "random",
    "--set",
    "backend=serial",
]


def _tune(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(A3C_BIN), "tune", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _trials(study: Path) -> list[dict]:
    with open(study / "trials.csv") as f:
        return list(csv.DictReader(f))


def _study_trials(journal: Path) -> list:
    """The trials of the CartPole study in a journal file, as Optuna reads them."""
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    return optuna.load_study(study_name="a3c-CartPole-v1", storage=storage).get_trials()


def test_a_six_trial_study_prunes_and_its_best_config_trains(tmp_path):
    args = ["--trials", "6", *TINY, "--final-episodes", "3", "--study-dir", "study"]
    out = _tune("CartPole-v1", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    study = tmp_path / "study"
    trials = _trials(study)
    # a complete trial's value is its final evaluation, of --final-episodes episodes
    finals = [t for t in _study_trials(study / "study.journal") if t.state.name == "COMPLETE"]
    assert finals and all(t.user_attrs["final_eval"]["episodes"] == 3 for t in finals)
    assert all(t.value == t.user_attrs["final_eval"]["mean"] for t in finals)
    states = [t["state"] for t in trials]
    assert len(trials) == 6 and "pruned" in states and "complete" in states, states
    assert len([line for line in out.stdout.splitlines() if line.startswith("trial ")]) == 6
    best = max((t for t in trials if t["state"] == "complete"), key=lambda t: float(t["value"]))
    report = json.loads((study / "study.json").read_text())
    assert report["best"]["number"] == int(best["number"])
    assert report["best"]["value"] == pytest.approx(float(best["value"]))
    assert f"best trial {best['number']}" in out.stdout.splitlines()[-1]
    for t in trials:  # every trial's run directory, with its evaluations
        assert (Path(tmp_path / t["run_dir"]) / "eval.csv").is_file()
    for png in ("history.png", "importances.png"):
        assert (study / png).stat().st_size > 5_000
    trained = subprocess.run(
        [str(A3C_BIN), "train", "CartPole-v1", "--config", "study/best.yaml"]
        + ["--total-steps", "2000", "--run-dir", "again", "--progress", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    hp = report["best"]["hyperparameters"]
    assert config["optim"]["learning_rate"] == hp["optim.learning_rate"]
    assert config["model"]["hidden"] == hp["model.hidden"]
    assert config["algo"]["n_steps"] == hp["algo.n_steps"]


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_an_interrupted_study_resumes_where_it_stopped(tmp_path):
    args = ["CartPole-v1", "--trials", "5", *TINY, "--study-dir", "study"]
    # the interrupted process trains on the processes backend: its workers must go too
    first_args = [a if a != "backend=serial" else "backend=processes" for a in args]
    proc = subprocess.Popen(
        [str(A3C_BIN), "tune", *first_args, "--budget-steps", "200000"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    try:
        journal = tmp_path / "study" / "study.journal"
        assert wait_for(lambda: (tmp_path / "study" / "trials" / "0001").is_dir(), 120)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to the group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, err
    assert wait_for(lambda: _group_gone(proc.pid), 30), "a worker of the study outlived it"
    first = _trials(tmp_path / "study")
    assert first[-1]["state"] == "fail" and first[-1]["reason"].startswith("interrupted"), first
    assert journal.is_file() and len(first) < 5
    again = _tune(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _trials(tmp_path / "study")
    assert (
        len(trials) == 5 and trials[: len(first)] == first
    )  # the earlier trials kept as they were


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path):
    # normalised observations are refused for Discrete observations: every trial that draws
    # true fails at its start with the config's one line
    (tmp_path / "space.yaml").write_text(
        "env.normalize_obs: [true, false]\n"
        "optim.learning_rate: {low: 1.0e-3, high: 1.0e-1, log: true}\n"
    )
    args = ["--space", "space.yaml", "--pruner", "none", "--study-dir", "study"]
    out = _tune("FrozenLake-v1", "--trials", "6", *TINY, *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = _trials(tmp_path / "study")
    failed = [t for t in trials if t["state"] == "fail"]
    assert len(trials) == 6 and failed and len(failed) < 6, trials
    assert all("normalize_obs" in t["reason"] and t["env.normalize_obs"] == "True" for t in failed)
    assert all(t["env.normalize_obs"] == "False" for t in trials if t["state"] == "complete")


def test_two_processes_share_one_study(tmp_path):
    storage = str(tmp_path / "shared.journal")
    args = ["CartPole-v1", "--trials", "6", *TINY, "--pruner", "none", "--storage", storage]
    procs = [
        subprocess.Popen(
            [str(A3C_BIN), "tune", *args, "--study-dir", f"p{i}", "--seed", str(i)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    trials = _study_trials(Path(storage))
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and {p.pid for p in procs} == pids
    assert 6 <= len(trials) <= 7  # --trials is the study's total (a race may add one)
    assert sorted(t.number for t in trials) == list(range(len(trials)))


@pytest.mark.parametrize(
    "args,says",
    [
        (["--trials", "0", "--budget-steps", "100"], "--trials must be >= 1"),
        (["--trials", "2"], "needs a budget"),
        (["--budget-steps", "100"], "needs --trials N"),
        (["--trials", "2", "--budget-steps", "100", "--space", "space.yaml"], "unknown config key"),
        (["--trials", "2", "--budget-steps", "100", "--space", "bad.yaml"], "algo.n_steps"),
        (["--trials", "2", "--budget-steps", "100", "--storage", "nosuchdb://x"], "--storage"),
        (["--trials", "2", "--budget-steps", "100", "--set", "optim.name=nope"], "optim.name"),
        (["--trials", "2", "--budget-steps", "100", "--final-episodes", "0"], "--final-episodes"),
    ],
)
def test_bad_tune_input_is_one_line(tmp_path, args, says):
    (tmp_path / "space.yaml").write_text("no_such_key: [1, 2]\n")
    (tmp_path / "bad.yaml").write_text("algo.n_steps: [8, -1]\n")
    out = _tune("CartPole-v1", *args, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("a3c: error:") and out.stderr.count("\n") == 1, out.stderr
    assert says in out.stderr


def test_print_space_is_the_family_default_that_space_takes(tmp_path):
    out = _tune("Acrobot-v1", "--print-space", cwd=tmp_path)
    assert out.returncode == 0 and "optim.learning_rate" in out.stdout
    from a3c import tune_space

    (tmp_path / "s.yaml").write_text(out.stdout)
    assert tune_space.load(tmp_path / "s.yaml") == tune_space.default("classic_control")


def test_jobs_run_trials_in_processes_of_their_own_and_warn_when_cores_are_short(tmp_path):
    short = [a if a != "backend=serial" else "backend=processes" for a in TINY]
    args = ["--budget-steps", "3000", "--jobs", "2", "--set", "workers=2", "--study-dir", "study"]
    out = _tune("CartPole-v1", "--trials", "4", *short, *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # 2 trials x 2 workers: more processes than cores below 4 cores
    assert ("--jobs 2 trials x 2 workers" in out.stderr) == ((os.cpu_count() or 1) < 4)
    trials = _trials(tmp_path / "study")
    assert len(trials) >= 4 and all(t["state"] in ("complete", "pruned") for t in trials)
    trials = _study_trials(tmp_path / "study" / "study.journal")
    assert len({t.user_attrs["pid"] for t in trials}) == 2


@pytest.mark.parametrize(
    "text,says",
    [
        ("algo.n_steps: []\n", "empty choice"),
        ("optim.learning_rate: {low: 0.1, high: 0.01}\n", "must be below high"),
        ("optim.learning_rate: {low: 0, high: 0.01, log: true}\n", "log scale needs low > 0"),
        ("optim.learning_rate: {low: 0.001, high: 0.01, step: 2}\n", "takes low, high and log"),
        ("optim.learning_rate: {low: abc, high: 0.01}\n", "must be a number"),
        ("optim.learning_rate: 0.001\n", "a list of choices or {low, high, log}"),
        ("algo.gamma: [0.99, 1.5]\n", "algo.gamma"),
        ("[1, 2]\n", "a mapping of config keys"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_a_bad_search_space_is_one_line_naming_the_key(tmp_path, text, says):
    from a3c import tune_space
    from a3c.errors import ConfigError

    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(ConfigError, match=says) as e:
        tune_space.load(tmp_path / "s.yaml")
    assert "\n" not in str(e.value)


def test_integer_bounds_sample_integers_and_lists_are_one_choice():
    import optuna

    from a3c import tune_space

    dims = tune_space.parse(
        {"algo.n_steps": {"low": 4, "high": 64, "log": True}, "model.hidden": [[8], [16, 16]]}, "t"
    )
    trial = optuna.trial.FixedTrial({"algo.n_steps": 16, "model.hidden": "[16, 16]"})
    assert [d.suggest(trial) for d in dims] == [16, [16, 16]]
    assert dims[0].integer and dims[0].log and dims[1].choices == ([8], [16, 16])


def test_a_trial_left_running_by_a_killed_process_is_failed_when_the_study_reopens(tmp_path):
    args = ["CartPole-v1", "--trials", "3", *TINY, "--study-dir", "study"]
    proc = subprocess.Popen(
        [str(A3C_BIN), "tune", *args, "--budget-steps", "10000000"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: (tmp_path / "study" / "trials" / "0000").is_dir(), 120)
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9: nothing of it marks the trial
        proc.wait(timeout=30)
    again = _tune(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _trials(tmp_path / "study")
    assert len(trials) == 3 and trials[0]["state"] == "fail", trials
    assert trials[0]["reason"] == "interrupted (its process stopped)"
    assert all(t["state"] in ("complete", "pruned") for t in trials[1:])
