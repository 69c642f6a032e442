"""Suites: a3c (its presets) against Stable-Baselines3 A2C (rl-baselines3-zoo's hyperparameters) on
the same envs, one job after the other, resumable; greedy evaluation of both by one harness.

    .venv/bin/python benchmarks/suite.py atari  [--out benchmarks/results/suite_atari] [--resume]
    .venv/bin/python benchmarks/suite.py mujoco [--out benchmarks/results/suite_mujoco] [--resume]
    .venv/bin/python benchmarks/suite.py smoke  [--out DIR] [--resume]   (CartPole, seconds: for CI)
    .venv/bin/python benchmarks/suite.py SUITE --report-only     (tables from finished jobs)
    .venv/bin/python benchmarks/suite.py mujoco --libs a3c --envs Hopper-v5 \
        --set env.envs_per_worker=2 --out DIR   (a variant: a3c's preset with --set keys over it)

Suites (`SUITES`):

* atari: ALE/Breakout-v5, ALE/SpaceInvaders-v5, ALE/Seaquest-v5 (`--envs` adds ALE/Pong-v5), one
  seed, 1 hour of training wall clock per library and game (running time only: a paused job's
  clock stops), 30 greedy games each.
* mujoco: HalfCheetah-v5, Hopper-v5, Walker2d-v5, seeds 0-2, 1M env steps per library, env and
  seed, 10 greedy episodes each.
* smoke: CartPole-v1, 20,000 steps: the whole machinery (subprocess jobs, SIGTERM, --resume, the
  harness, the tables) in about 20 s.

Every job (library, env, seed) runs in a subprocess of its own in `OUT/jobs/<lib>__<env>__s<seed>/`
and writes `result.json` there when it is complete (training, then evaluation). SIGTERM (or
Ctrl-C) to the suite stops the current job cleanly and exits 143; `--resume` skips the finished jobs
and continues the unfinished one where it stopped:

* a3c: `A3C(env_id, ...).learn(run_dir=OUT/jobs/.../run)` with the env family's preset, the same as
  `a3c train`; a3c's trainer itself turns SIGTERM into a final checkpoint, and the job continues
  with `A3C.resume(run_dir)` (`a3c train --resume RUN_DIR`). `run.max_time` counts the running time
  of all segments. Its periodic evaluation is off (`eval.interval_s`/`interval_steps` null): both
  libraries spend the budget training, and both are evaluated afterwards by the same harness.
* SB3: the model (and VecNormalize's statistics) is saved with its running time and steps every
  `--checkpoint-s` seconds and at SIGTERM, and continued with `A2C.load(...)` and
  `learn(..., reset_num_timesteps=False)`; the wall-clock budget counts time inside learn() only.
  Its Monitor's training episodes are appended to `episodes.csv`, so the last-100 mean spans
  segments.
* random: no training, the same harness with uniformly random actions.

SB3's hyperparameters are read from rl-baselines3-zoo's own `hyperparams/a2c.yml`, from the
`rl_zoo3` package (`ZOO_VERSION`, the zoo release that matches SB3 2.9). Installing rl_zoo3 with its
dependencies pulls in optuna, huggingface_sb3, pytablewriter and more, none of which is needed to
read one YAML file, so: if `rl_zoo3` is importable (`make bench-zoo` installs it with --no-deps),
its file is read in place; otherwise `pip download rl_zoo3==ZOO_VERSION --no-deps` fetches the wheel
into `benchmarks/.zoo/` (git-ignored) once, and the YAML is read from the wheel. Nothing of rl_zoo3
is imported. The entries are translated as the zoo's ExpManager does (`sb3_hyperparams`):

* atari (`atari` entry): AtariWrapper (no-op starts, frame skip 4 with max-pooling, end of life,
  FIRE at reset, 84x84 grayscale, reward clipping) over a Monitor on `ALE/<Game>-v5` made with
  `frameskip=1` (the wrapper skips frames; v5's own frame skip would multiply it) and v5's sticky
  actions (repeat_action_probability 0.25 per frame, as a3c's pipeline), frame_stack 4, n_envs 16,
  CnnPolicy, ent_coef 0.01, vf_coef 0.25, RMSpropTFLike(eps=1e-5); the rest SB3's defaults (n_steps
  5, lr 7e-4, gamma 0.99). Monitor sits under AtariWrapper, so SB3's training episodes are whole
  games with real scores (a lost life does not reset the Monitor).
* mujoco: the zoo has no `-v5` entries; its `HalfCheetah-v4`, `Hopper-v4`, `Walker2d-v4` entries
  (normalize: true, MlpPolicy, 1M steps; n_envs not given: the zoo's default 1) are applied to the
  v5 ids: VecNormalize (obs and reward; evaluation uses the obs statistics only, as the zoo).
* smoke: the zoo's `CartPole-v1` entry.

The evaluation harness (`evaluate_job`) plays the final parameters greedily (SB3 deterministic=True,
a3c deterministic) for N whole episodes, one after another, on one fresh env built the same way for
every library, seeded alike: a3c's evaluation env (`a3c.evaluation.eval_env_fn`). Atari: ALE v5 with
sticky actions, the same preprocessing as training (no-op starts, frame skip 4 with max-pooling,
84x84 grayscale from ALE's screen, 4 zero-padded frames, FIRE at a game's start and after a lost
life) but no end-of-life and no reward clipping: real whole-game scores. SB3's model gets those
frames (channel-first, as its VecTransposeImage gives them; ALE's grayscale, where SB3's WarpFrame
converts RGB with OpenCV: the same luminance weights). MuJoCo: the raw v5 env; SB3's actions come
from VecNormalize-normalised observations, a3c normalises its own. Also reported: each side's mean
of the last 100 training episodes (a3c: episodes.csv; SB3: its Monitor).

Outputs: `OUT/jobs/*/result.json`, and `OUT/suite_<suite>.json` / `.md` (machine, versions, commit
of every job, the table with a3c, SB3, random and the published references with their protocols).
Test hook: A3C_SUITE_TERM_AT_STEPS=N makes a job's first segment SIGTERM itself at N steps.

This module imports only the standard library at top level (a3c's fork server imports it).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, machine, md_table  # noqa: E402

ZOO_VERSION = "2.9.2"
ZOO_CACHE = ROOT / "benchmarks" / ".zoo"
TERM_HOOK = "A3C_SUITE_TERM_AT_STEPS"

SUITES: dict[str, dict[str, Any]] = {
    "atari": {
        "family": "atari",
        "envs": ["ALE/Breakout-v5", "ALE/SpaceInvaders-v5", "ALE/Seaquest-v5"],
        "seeds": [0],
        "budget_s": 3600.0,
        "budget_steps": None,
        "episodes": 30,
        "sb3_threads": 0,
    },
    "mujoco": {
        "family": "mujoco",
        "envs": ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"],
        "seeds": [0, 1, 2],
        "budget_s": None,
        "budget_steps": 1_000_000,
        "episodes": 10,
        "sb3_threads": 1,
    },
    "smoke": {
        "family": "classic",
        "envs": ["CartPole-v1"],
        "seeds": [0],
        "budget_s": None,
        "budget_steps": 20_000,
        "episodes": 3,
        "sb3_threads": 1,
    },
}
LIBS = ("random", "a3c", "sb3")

# Published references, with their protocols (not the protocol of this suite: see the table's
# notes).
# Mnih et al. 2016, Table S3: A3C FF, 1 day of training on 16 CPU threads, human starts
A3C_PAPER = {
    "ALE/Breakout-v5": 551.6,
    "ALE/SpaceInvaders-v5": 2214.7,
    "ALE/Seaquest-v5": 2300.2,
    "ALE/Pong-v5": 11.4,
}
# rl-baselines3-zoo benchmark.md, a2c: one trained agent (Atari: 10M steps, NoFrameskip-v4,
# stochastic policy; MuJoCo: v3, 1M steps, deterministic)
ZOO_A2C = {
    "ALE/Breakout-v5": 279.793,
    "ALE/SpaceInvaders-v5": 627.160,
    "ALE/Seaquest-v5": 1721.493,
    "ALE/Pong-v5": 17.292,
    "HalfCheetah-v5": 3041.174,
    "Hopper-v5": 733.454,
    "CartPole-v1": 500.0,
}


PONG_EXISTING = (
    "Pong, from the existing runs (another protocol: not this suite's jobs): a3c's preset, run "
    "18 (benchmarks/records/pong/pong_run18.md), 100-game training mean +11.5 at 1 h and +15.4 "
    "at 2 h of running time; its best checkpoint (kept by evaluation during training) +17.1 ± "
    "2.5 over 30 greedy games. `--envs ALE/Pong-v5` adds a row measured as the others."
)


# --------------------------------------------------------------------------------------------
# rl-baselines3-zoo's hyperparameters
# --------------------------------------------------------------------------------------------


def zoo_a2c_yaml() -> tuple[str, str]:
    """The text of rl-baselines3-zoo's hyperparams/a2c.yml and where it came from."""
    spec = importlib.util.find_spec("rl_zoo3")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "hyperparams" / "a2c.yml"
        if path.exists():
            return path.read_text(), str(path)
    wheels = sorted(ZOO_CACHE.glob(f"rl_zoo3-{ZOO_VERSION}-*.whl"))
    if not wheels:
        ZOO_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"rl_zoo3=={ZOO_VERSION}",
                "--no-deps",
                "-d",
                str(ZOO_CACHE),
            ],
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
        )
        wheels = sorted(ZOO_CACHE.glob(f"rl_zoo3-{ZOO_VERSION}-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as z:
        return z.read(
            "rl_zoo3/hyperparams/a2c.yml"
        ).decode(), f"{wheels[-1]}!rl_zoo3/hyperparams/a2c.yml"


def zoo_entry(family: str, env_id: str) -> tuple[str, dict[str, Any], str]:
    """The zoo's a2c.yml entry for the env: (key, entry, source). Atari games share `atari`;
    an env whose version has no entry takes the newest version that has one (MuJoCo v5 -> v4)."""
    import yaml

    text, source = zoo_a2c_yaml()
    table = yaml.safe_load(text)
    if family == "atari":
        return "atari", dict(table["atari"]), source
    if env_id in table:
        return env_id, dict(table[env_id]), source
    name, _, version = env_id.rpartition("-v")
    for v in range(int(version) - 1, -1, -1):
        if f"{name}-v{v}" in table:
            return f"{name}-v{v}", dict(table[f"{name}-v{v}"]), source
    raise KeyError(f"rl-baselines3-zoo's a2c.yml has no entry for {env_id}")


def sb3_hyperparams(family: str, env_id: str) -> dict[str, Any]:
    """The zoo's entry split as its ExpManager does: env settings, and A2C's keyword arguments
    (policy_kwargs and schedules still as the YAML's strings; `build_sb3` evaluates them)."""
    key, entry, source = zoo_entry(family, env_id)
    env = {
        k: entry.pop(k)
        for k in ("n_envs", "normalize", "frame_stack", "env_wrapper", "n_timesteps")
        if k in entry
    }
    return {
        "zoo_key": key,
        "source": source,
        "zoo_entry": {**env, **entry},
        "n_envs": env.get("n_envs", 1),
        "normalize": env.get("normalize", False),
        "frame_stack": env.get("frame_stack"),
        "env_wrapper": env.get("env_wrapper"),
        "policy": entry.pop("policy"),
        "a2c_kwargs": entry,
    }


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------


def job_name(lib: str, env_id: str, seed: int) -> str:
    return f"{lib}__{env_id.replace('/', '_')}__s{seed}"


def job_specs(suite: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    s = SUITES[suite]
    envs = args.envs or s["envs"]
    seeds = args.seeds if args.seeds is not None else s["seeds"]
    budget_s = args.budget_s if args.budget_s is not None else s["budget_s"]
    budget_steps = args.budget_steps if args.budget_steps is not None else s["budget_steps"]
    jobs = []
    for env_id in envs:
        for i, seed in enumerate(seeds):
            trained = ["a3c", "sb3"] if i % 2 == 0 else ["sb3", "a3c"]  # alternate who goes first
            for lib in ["random", *trained]:
                if lib == "random" and i > 0:
                    continue  # random play: one job per env (its seed is the harness's)
                if args.libs and lib not in args.libs:
                    continue
                jobs.append(
                    {
                        "suite": suite,
                        "family": s["family"],
                        "lib": lib,
                        "env_id": env_id,
                        "seed": seed,
                        "budget_s": budget_s,
                        "budget_steps": budget_steps,
                        "episodes": args.episodes or s["episodes"],
                        "eval_seed": 12345,
                        "sb3_threads": s["sb3_threads"],
                        "checkpoint_s": args.checkpoint_s,
                        **({"a3c_set": args.a3c_set} if lib == "a3c" and args.a3c_set else {}),
                        "name": job_name(lib, env_id, seed),
                    }
                )
    return jobs


def job_timeout(spec: dict[str, Any]) -> float:
    """A bound on a job's process: its training budget plus generous start-up and evaluation."""
    train = spec["budget_s"] * 1.2 if spec["budget_s"] else (spec["budget_steps"] or 0) / 200.0
    return 600.0 + train + 120.0 * spec["episodes"]


_current: subprocess.Popen | None = None
_stopping = False


def _on_stop(signum: int, _frame: Any) -> None:
    global _stopping
    _stopping = True
    if _current is not None and _current.poll() is None:
        _current.send_signal(signal.SIGTERM)  # the job's own process only: it stops its workers


def run_suite(suite: str, args: argparse.Namespace) -> int:
    out: Path = args.out or ROOT / "benchmarks" / "results" / f"suite_{suite}"
    jobs_dir = out / "jobs"
    specs = job_specs(suite, args)
    if not args.report_only:
        if jobs_dir.exists() and any(jobs_dir.iterdir()) and not args.resume:
            print(
                f"suite: {jobs_dir} has jobs already: pass --resume to continue them, or another "
                "--out",
                file=sys.stderr,
            )
            return 2
        global _current
        signal.signal(signal.SIGTERM, _on_stop)
        signal.signal(signal.SIGINT, _on_stop)
        for spec in specs:
            job_dir = jobs_dir / spec["name"]
            if (job_dir / "result.json").exists():
                print(f"suite: {spec['name']}: done, skipped", flush=True)
                continue
            if _stopping:
                break
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
            going = (job_dir / "state.json").exists() or (job_dir / "run").exists()
            print(f"suite: {spec['name']}: {'continuing' if going else 'starting'}", flush=True)
            t0 = time.monotonic()
            with open(job_dir / "log.txt", "a") as log:
                _current = subprocess.Popen(
                    [sys.executable, __file__, "--child", str(job_dir)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=ROOT,
                )
                try:
                    rc = _current.wait(timeout=job_timeout(spec))
                except subprocess.TimeoutExpired:
                    _current.send_signal(signal.SIGTERM)
                    try:
                        rc = _current.wait(timeout=120)
                    except subprocess.TimeoutExpired:
                        os.killpg(_current.pid, signal.SIGKILL)
                        rc = _current.wait()
                    print(
                        f"suite: {spec['name']}: timed out after {job_timeout(spec):.0f} s",
                        flush=True,
                    )
                _current = None
            print(
                f"suite: {spec['name']}: exit {rc} after {time.monotonic() - t0:.1f} s", flush=True
            )
            if rc == 143 or _stopping:
                print("suite: stopped; continue with --resume", flush=True)
                return 143
            if rc != 0:
                print(
                    f"suite: {spec['name']} failed (see {job_dir / 'log.txt'}); the others go on",
                    file=sys.stderr,
                    flush=True,
                )
    report = build_report(suite, specs, jobs_dir, out)
    print(report["markdown"])
    return 0


# --------------------------------------------------------------------------------------------
# Child: one job
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        # code only: the suite's results are tracked files that change while it runs
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "src",
                "benchmarks",
                ":(exclude)benchmarks/results",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def speed_ref() -> float:
    """Seconds for a fixed single-core workload (an interpreter loop and small matrix products): the
    machine's speed when a job (segment) starts, since a shared host's speed drifts over days."""
    import numpy as np

    t = time.perf_counter()
    acc = 0
    for i in range(6_000_000):
        acc += i
    m = np.ones((128, 128))
    for _ in range(600):
        m = (m @ m) / 128.0
    return round(time.perf_counter() - t, 3)


def child_main(job_dir: Path) -> int:
    spec = json.loads((job_dir / "spec.json").read_text())
    train_file, speed_file = job_dir / "train.json", job_dir / "speed_ref.json"
    if spec["lib"] != "random" and not train_file.exists():
        refs = json.loads(speed_file.read_text()) if speed_file.exists() else []
        _write_json(speed_file, [*refs, speed_ref()])
        train = train_a3c(spec, job_dir) if spec["lib"] == "a3c" else train_sb3(spec, job_dir)
        if train is None:
            return 143  # stopped by SIGTERM: the state to continue from is saved
        _write_json(train_file, train)
    train = json.loads(train_file.read_text()) if train_file.exists() else {}
    train["speed_ref_s"] = json.loads(speed_file.read_text()) if speed_file.exists() else None
    result = {
        "spec": spec,
        "train": train,
        "eval": evaluate_job(spec, job_dir),
        "eval_commit": _commit(),
    }
    _write_json(job_dir / "result.json", result)
    return 0


def _term_hook_steps(first_segment: bool) -> int | None:
    value = os.environ.get(TERM_HOOK)
    return int(value) if value and first_segment else None


def _last_mean(returns: list[float], n: int = 100) -> float | None:
    return statistics.fmean(returns[-n:]) if returns else None


def train_a3c(spec: dict[str, Any], job_dir: Path) -> dict[str, Any] | None:
    from a3c import A3C

    run = job_dir / "run"
    budget: dict[str, Any] = {
        "run.target_return": None,
        "eval.interval_s": None,
        "eval.interval_steps": None,
    }
    if spec["budget_s"]:
        budget["run.max_time"] = spec["budget_s"]
    if spec["budget_steps"]:
        budget["run.total_steps"] = spec["budget_steps"]
    if spec["suite"] == "smoke" or os.environ.get(TERM_HOOK):
        budget["log.log_interval"] = 500  # the callback (and the test hook) sees every 500 steps
    first = not (run / "config.json").exists()
    if first:
        agent = A3C(spec["env_id"], seed=spec["seed"], **{**spec.get("a3c_set", {}), **budget})
    else:
        agent = A3C.resume(
            run, **{k: v for k, v in budget.items() if k.startswith(("run.", "eval.", "log."))}
        )
    hook = _term_hook_steps(first)

    fired = []

    def callback(row: dict[str, Any]) -> bool:
        if hook is not None and row["steps"] >= hook and not fired:
            fired.append(True)
            # once: a second SIGTERM kills a3c's trainer at once
            os.kill(os.getpid(), signal.SIGTERM)
        return True

    if not first and spec["budget_steps"] and agent.num_timesteps >= spec["budget_steps"]:
        # stopped at its budget
        summary = {**json.loads((run / "summary.json").read_text()), "stop_reason": "total_steps"}
    else:
        summary = agent.learn(run_dir=run if first else None, progress="none", callback=callback)
    if summary["stop_reason"] in ("terminated", "interrupted"):
        return None
    with open(run / "episodes.csv", newline="") as f:
        returns = [float(r["return"]) for r in csv.DictReader(f)]
    return {
        "steps": summary["steps"],
        "wall_s": summary["wall_s"],
        "stop_reason": summary["stop_reason"],
        "resumes": summary["resumes"],
        "episodes": len(returns),
        "train_last100": _last_mean(returns),
        "commit": _commit(),
        "config": {
            k: v
            for k, v in agent.config.to_dict().items()
            if k in ("env", "algo", "optim", "model", "backend")
        },
    }


def build_sb3(
    spec: dict[str, Any], hp: dict[str, Any], job_dir: Path, resume: bool
) -> tuple[Any, Any]:
    """The zoo's env and model for the job (a loaded one with `resume`)."""
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    # noqa: F401 (the zoo's lin_ schedules)
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    env_id, seed = spec["env_id"], spec["seed"]
    if spec["family"] == "atari":
        import ale_py

        gym.register_envs(ale_py)
        assert hp["env_wrapper"] == ["stable_baselines3.common.atari_wrappers.AtariWrapper"], hp[
            "env_wrapper"
        ]
        env = make_atari_env(env_id, n_envs=hp["n_envs"], seed=seed, env_kwargs={"frameskip": 1})
    else:
        if spec["family"] == "mujoco":
            import gymnasium.envs.mujoco  # noqa: F401
        env = make_vec_env(env_id, n_envs=hp["n_envs"], seed=seed)
    if hp["normalize"]:
        kwargs = hp["normalize"] if isinstance(hp["normalize"], dict) else {}
        if "gamma" in hp["a2c_kwargs"]:
            kwargs = {**kwargs, "gamma": hp["a2c_kwargs"]["gamma"]}
        env = (
            VecNormalize.load(str(job_dir / "vecnormalize.pkl"), env)
            if resume
            else VecNormalize(env, **kwargs)
        )
    if hp["frame_stack"]:
        env = VecFrameStack(env, hp["frame_stack"])
    if resume:
        return env, A2C.load(job_dir / "sb3_model.zip", env=env, device="cpu")
    kwargs = dict(hp["a2c_kwargs"])
    namespace = {"dict": dict, "RMSpropTFLike": RMSpropTFLike, "nn": __import__("torch").nn}
    if isinstance(kwargs.get("policy_kwargs"), str):
        # the zoo evaluates these strings too
        kwargs["policy_kwargs"] = eval(kwargs["policy_kwargs"], namespace)
    for k, v in kwargs.items():
        if isinstance(v, str) and v.startswith("lin_"):
            lr = float(v[4:])
            kwargs[k] = lambda progress, lr=lr: progress * lr
    return env, A2C(hp["policy"], env, seed=seed, device="cpu", verbose=0, **kwargs)


def train_sb3(spec: dict[str, Any], job_dir: Path) -> dict[str, Any] | None:
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    if spec["sb3_threads"]:
        torch.set_num_threads(spec["sb3_threads"])
    hp = sb3_hyperparams(spec["family"], spec["env_id"])
    state_file = job_dir / "state.json"
    state = (
        json.loads(state_file.read_text())
        if state_file.exists()
        else {"steps": 0, "elapsed_s": 0.0, "segments": 0}
    )
    env, model = build_sb3(spec, hp, job_dir, resume=state_file.exists())
    hook = _term_hook_steps(state["segments"] == 0)
    stop = {"term": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(term=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(term=True))
    episodes = open(job_dir / "episodes.csv", "a", newline="")
    writer = csv.writer(episodes)
    if episodes.tell() == 0:
        writer.writerow(["steps", "elapsed_s", "return", "length"])

    def save() -> None:
        tmp = job_dir / "sb3_model.tmp.zip"
        model.save(tmp)
        os.replace(tmp, job_dir / "sb3_model.zip")
        if hp["normalize"]:
            model.get_vec_normalize_env().save(str(job_dir / "vecnormalize.pkl"))
        episodes.flush()
        _write_json(state_file, {**state, "steps": model.num_timesteps, "elapsed_s": elapsed()})

    def elapsed() -> float:
        return state["elapsed_s"] + time.monotonic() - t0

    class Budget(BaseCallback):
        last_save = time.monotonic()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    writer.writerow(
                        [
                            self.num_timesteps,
                            round(elapsed(), 3),
                            info["episode"]["r"],
                            info["episode"]["l"],
                        ]
                    )
            if hook is not None and self.num_timesteps >= hook and not stop["term"]:
                os.kill(os.getpid(), signal.SIGTERM)
            if stop["term"]:
                return False
            if spec["budget_s"] and elapsed() >= spec["budget_s"]:
                return False
            if spec["budget_steps"] and self.num_timesteps >= spec["budget_steps"]:
                return False
            if time.monotonic() - self.last_save >= spec["checkpoint_s"]:
                save()
                self.last_save = time.monotonic()
            return True

    state["segments"] += 1
    remaining = spec["budget_steps"] - model.num_timesteps if spec["budget_steps"] else 10**12
    t0 = time.monotonic()
    if remaining > 0 and not (spec["budget_s"] and state["elapsed_s"] >= spec["budget_s"]):
        model.learn(total_timesteps=remaining, reset_num_timesteps=False, callback=Budget())
    save()
    episodes.close()
    # during the evaluation SIGTERM ends the job at once (it is redone)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if stop["term"]:
        env.close()
        return None
    with open(job_dir / "episodes.csv", newline="") as f:
        returns = [float(r["return"]) for r in csv.DictReader(f)]
    env.close()
    import stable_baselines3

    return {
        "steps": model.num_timesteps,
        "wall_s": elapsed(),
        "stop_reason": "max_time" if spec["budget_s"] else "total_steps",
        "resumes": state["segments"] - 1,
        "episodes": len(returns),
        "train_last100": _last_mean(returns),
        "commit": _commit(),
        "torch_threads": torch.get_num_threads(),
        "sb3": stable_baselines3.__version__,
        "hyperparams": hp,
    }


# --------------------------------------------------------------------------------------------
# The evaluation harness: one env recipe, greedy whole episodes
# --------------------------------------------------------------------------------------------


def harness_env(env_id: str) -> Any:
    """The evaluation env of every library: a3c's (real scores; Atari without end-of-life and
    reward clipping), from the env family's preset."""
    from a3c import build_config
    from a3c.evaluation import eval_env_fn

    return eval_env_fn(build_config(env_id), None)()


def play(env: Any, act: Any, episodes: int, seed: int) -> tuple[list[float], list[int]]:
    """Whole episodes one after another; the first reset seeded, the env's own stream after."""
    returns, lengths = [], []
    env.action_space.seed(seed)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            length += 1
            done = bool(terminated or truncated)
        returns.append(total)
        lengths.append(length)
    return returns, lengths


def policy_of(spec: dict[str, Any], job_dir: Path, env: Any) -> Any:
    """The job's final parameters as a greedy act(obs) function."""
    if spec["lib"] == "random":
        return lambda obs: env.action_space.sample()
    if spec["lib"] == "a3c":
        from a3c import A3C

        agent = A3C.load(job_dir / "run", checkpoint="latest")
        return lambda obs: agent.predict(obs, deterministic=True)[0]
    import numpy as np
    from stable_baselines3 import A2C

    model = A2C.load(job_dir / "sb3_model.zip", device="cpu")
    norm = None
    if (job_dir / "vecnormalize.pkl").exists():
        import pickle

        with open(job_dir / "vecnormalize.pkl", "rb") as f:
            norm = pickle.load(f)  # VecNormalize.load without a venv: only its statistics are used
        norm.training = False

    def act(obs: Any) -> Any:
        o = np.asarray(obs)[None]
        if norm is not None:
            o = norm.normalize_obs(o)
        return model.predict(o, deterministic=True)[0][0]

    return act


def evaluate_job(spec: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # batch-1 forward passes: one thread (as a3c's evaluator)
    env = harness_env(spec["env_id"])
    try:
        t0 = time.monotonic()
        returns, lengths = play(
            env, policy_of(spec, job_dir, env), spec["episodes"], spec["eval_seed"]
        )
    finally:
        env.close()
    return {
        "mean": statistics.fmean(returns),
        "std": statistics.pstdev(returns),
        "returns": returns,
        "lengths": lengths,
        "episodes": len(returns),
        "deterministic": spec["lib"] != "random",
        "seed": spec["eval_seed"],
        "wall_s": time.monotonic() - t0,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _versions() -> dict[str, Any]:
    import importlib.metadata as md

    out = {}
    for name in ("stable_baselines3", "ale-py", "mujoco", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["rl_zoo3 (a2c.yml)"] = ZOO_VERSION
    return out


def _fmt(mean: float | None, std: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:,.1f}" + (f" ± {std:,.1f}" if std is not None else "")


def build_report(
    suite: str, specs: list[dict[str, Any]], jobs_dir: Path, out: Path
) -> dict[str, Any]:
    results = {}
    for spec in specs:
        f = jobs_dir / spec["name"] / "result.json"
        if f.exists():
            results[spec["name"]] = json.loads(f.read_text())
    envs = list(dict.fromkeys(s["env_id"] for s in specs))
    rows = []
    for env_id in envs:
        cells: list[Any] = [env_id]
        for lib in ("a3c", "sb3"):
            done = [
                r
                for r in results.values()
                if r["spec"]["env_id"] == env_id and r["spec"]["lib"] == lib
            ]
            means = [r["eval"]["mean"] for r in done]
            train = [
                r["train"]["train_last100"]
                for r in done
                if r["train"].get("train_last100") is not None
            ]
            cells += [
                (
                    _fmt(statistics.fmean(means), statistics.pstdev(means))
                    + f" ({len(means)} seeds)"
                    if len(means) > 1
                    else _fmt(done[0]["eval"]["mean"], done[0]["eval"]["std"])
                )
                if means
                else "-",
                _fmt(statistics.fmean(train)) if train else "-",
                f"{statistics.fmean(r['train']['steps'] for r in done):,.0f} / "
                f"{statistics.fmean(r['train']['wall_s'] for r in done):,.0f} s"
                if done
                else "-",
            ]
        rand = [
            r
            for r in results.values()
            if r["spec"]["env_id"] == env_id and r["spec"]["lib"] == "random"
        ]
        cells.append(_fmt(rand[0]["eval"]["mean"], rand[0]["eval"]["std"]) if rand else "-")
        cells += [_fmt(A3C_PAPER.get(env_id)), _fmt(ZOO_A2C.get(env_id))]
        rows.append(cells)
    s = SUITES[suite]
    budget = (
        f"{s['budget_s'] / 3600:g} h of training wall clock"
        if specs and specs[0]["budget_s"]
        else f"{specs[0]['budget_steps']:,} env steps"
        if specs
        else ""
    )
    header = [
        "env",
        "a3c greedy",
        "a3c train last-100",
        "a3c steps / wall",
        "SB3 A2C greedy",
        "SB3 train last-100",
        "SB3 steps / wall",
        "random",
        "A3C paper (FF, 1 day)",
        "zoo A2C",
    ]
    info = machine()
    info.update(_versions())
    commits = sorted(
        {r["train"].get("commit") for r in results.values() if r["train"].get("commit")}
        | {r.get("eval_commit") for r in results.values() if r.get("eval_commit")}
    )
    md = "\n\n".join(
        [
            f"### Suite `{suite}`: a3c vs Stable-Baselines3 A2C ({budget} per library, env and "
            "seed)",
            f"`benchmarks/suite.py {suite}`; {len(results)}/{len(specs)} jobs finished; report "
            f"{info['date']}, {info['cpus']} CPUs, Python {info['python']}, torch "
            f"{info['torch']}, gymnasium {info['gymnasium']}, SB3 {info['stable_baselines3']}, "
            f"ale-py {info['ale-py']}, mujoco {info['mujoco']}, a3c {info['a3c']}, rl_zoo3 "
            f"a2c.yml {ZOO_VERSION}; jobs' commits: {', '.join(commits) or '-'}",
            md_table(header, rows),
            "Greedy: the final parameters, "
            f"{'/'.join(sorted({str(r['eval']['episodes']) for r in results.values()})) or '-'} "
            "whole episodes by one harness (a3c's evaluation env: Atari v5 with sticky actions, "
            "real scores, no end-of-life, no reward clipping); mean ± std over episodes (over "
            "seeds' means with several seeds). Train last-100: the mean of each side's last 100 "
            "training episodes (whole games). Random: the same harness, uniform actions. A3C "
            "paper: Mnih et al. 2016, Table S3, A3C FF after 1 day on 16 CPU threads, human "
            "starts (not this protocol). zoo A2C: rl-baselines3-zoo benchmark.md, one agent "
            "(Atari: NoFrameskip-v4, 10M steps, stochastic policy; MuJoCo: v3, 1M steps, "
            "deterministic; no Walker2d entry).",
        ]
    )
    refs = {
        lib: [
            x
            for r in results.values()
            if r["spec"]["lib"] == lib
            for x in r["train"].get("speed_ref_s") or []
        ]
        for lib in ("a3c", "sb3")
    }
    if any(refs.values()):
        md += (
            "\n\nMachine speed at each job segment's start (`speed_ref`: seconds for a fixed "
            "single-core workload, lower is faster; a shared host drifts): "
            + ", ".join(
                f"{lib} median {statistics.median(v):.2f} s ({min(v):.2f} to {max(v):.2f}, "
                f"{len(v)} segments)"
                for lib, v in refs.items()
                if v
            )
            + ". Jobs from before it was recorded have none."
        )
    variants = sorted(
        {
            json.dumps(r["spec"]["a3c_set"], sort_keys=True)
            for r in results.values()
            if r["spec"].get("a3c_set")
        }
    )
    if variants:
        md += (
            "\n\na3c's preset with `--set` "
            + "; ".join(", ".join(f"{k}={v}" for k, v in json.loads(x).items()) for x in variants)
            + " (a variant, not the preset)."
        )
    if suite == "atari" and "ALE/Pong-v5" not in envs:
        md += "\n\n" + PONG_EXISTING
    report = {"suite": suite, "machine": info, "jobs": results, "markdown": md}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"suite_{suite}.json").write_text(
        json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2) + "\n"
    )
    (out / f"suite_{suite}.md").write_text(md + "\n")
    return report


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("suite", nargs="?", choices=sorted(SUITES))
    p.add_argument(
        "--out", type=Path, help="output folder (default benchmarks/results/suite_<suite>)"
    )
    p.add_argument(
        "--resume", action="store_true", help="skip finished jobs, continue the unfinished one"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the tables from the finished jobs, run nothing",
    )
    p.add_argument("--envs", nargs="+", help="env ids instead of the suite's")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds instead of the suite's")
    p.add_argument("--libs", nargs="+", choices=LIBS, help="only these libraries' jobs")
    p.add_argument(
        "--budget-s", type=float, help="training wall clock per job instead of the suite's"
    )
    p.add_argument("--budget-steps", type=int, help="env steps per job instead of the suite's")
    p.add_argument("--episodes", type=int, help="greedy evaluation episodes instead of the suite's")
    p.add_argument(
        "--checkpoint-s",
        type=float,
        default=300.0,
        help="SB3: save the model every this many seconds (default 300)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="a3c_set",
        help="a3c: a config key over its preset, as `a3c train --set` (repeatable; a variant: "
        "give it its own --out)",
    )
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child_main(args.child)
    if not args.suite:
        p.error("a suite is required")
    from a3c.configfile import parse_assignments
    from a3c.errors import ConfigError

    try:
        args.a3c_set = parse_assignments(args.a3c_set)
    except ConfigError as e:
        p.error(str(e))
    return run_suite(args.suite, args)


if __name__ == "__main__":
    sys.exit(main())
