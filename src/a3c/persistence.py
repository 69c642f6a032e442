"""What an agent's checkpoint records besides its tensors, and the rules of loading and resuming.

The tensors are the store's `state_dict` (a3c/store.py); this module adds the JSON half (config,
counters, versions, the model's architecture), reads a recorded config back (translating the
previous layout), and checks that a resume continues the same run.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from a3c import checkpoint, run_checkpoints
from a3c.checkpoint import Checkpoint, CheckpointError
from a3c.config import SECTIONS, Config, from_recorded, resumable
from a3c.errors import ConfigError
from a3c.io import finite_or_none
from a3c.models import ActorCritic
from a3c.optim import new_state
from a3c.store import COUNTERS
from a3c.version import __version__

log = logging.getLogger("a3c")


def versions() -> dict[str, str]:
    return {
        "a3c": __version__,
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "python": platform.python_version(),
    }


def static_record(
    config: Config, model: ActorCritic, observation_space: gym.Space, action_space: gym.Space
) -> dict[str, Any]:
    """The parts of a checkpoint's meta.json that do not change during a run."""
    return {
        "versions": versions(),
        "config": config.to_dict(),
        "seed": config.run.seed,
        "observation_space": str(observation_space),
        "action_space": str(action_space),
        "architecture": checkpoint.architecture(model),
    }


def checkpoint_meta(
    record: dict[str, Any],
    state: dict[str, Tensor],
    *,
    episodes: int,
    return_mean: float | None,
    wall_s: float,
    resumes: int,
    **extra: Any,
) -> dict[str, Any]:
    """meta.json of a checkpoint of `state` (a store's state_dict)."""
    steps, updates = state["counters.worker_steps"], state["counters.worker_updates"]
    return {
        **record,
        "steps": int(steps.sum()),
        "episodes": episodes,
        "updates": int(updates.sum()),
        "nonfinite_updates": int(state["counters.worker_nonfinite"].sum()),
        "worker_steps": steps.tolist(),
        "worker_updates": updates.tolist(),
        "resumes": resumes,
        "wall_s": round(wall_s, 3),
        "return_mean": finite_or_none(return_mean),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def config_of(ckpt: Checkpoint) -> Config:
    """The config a checkpoint recorded."""
    try:
        return from_recorded(ckpt.meta["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {ckpt.path} has an invalid config: {e}") from None


def read_run_config(run_dir: Path) -> Config:
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (it has no config.json)")
    try:
        return from_recorded(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"cannot read {config_path}: {e}") from None


def _learning_settings(cfg: Config) -> dict[str, Any]:
    """The settings a resume may not change (everything but run.*, log.*, backend.*; the seed
    too)."""
    return {key: value for key, value in _flat(cfg.to_dict()).items() if not resumable(key)}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" in SECTIONS:  # env.kwargs is a value
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resumable(recorded: Config, new: Config) -> None:
    """A resume may change the budget, logging and where it runs, nothing that changes what it
    learns."""
    a, b = _learning_settings(recorded), _learning_settings(new)
    for key in a:
        if a[key] != b[key]:
            raise ConfigError(
                f"--resume cannot change {key} ({a[key]!r} -> {b[key]!r}); only run.*, log.*, "
                "eval.* and backend.* settings other than the seed may change"
            )


def check_same_run(recorded: Config, ckpt: Checkpoint) -> None:
    ours, theirs = _learning_settings(recorded), _learning_settings(config_of(ckpt))
    if ours != theirs:
        key = next(k for k in ours if ours[k] != theirs.get(k))
        raise CheckpointError(
            f"checkpoint {ckpt.path} belongs to another run: its {key} is {theirs.get(key)!r}, "
            f"the run's is {ours[key]!r}"
        )


def training_state(
    ckpt: Checkpoint, config: Config, obs_dim: int | None, resuming: bool
) -> dict[str, Tensor]:
    """The checkpoint's tensors this config can use: the parameters and observation statistics
    always; the optimizer's statistics and counters when they fit this config's optimizer (a
    resume requires that they do)."""
    t = ckpt.tensors
    size = t["params"].numel()
    fits = all(
        (have := t.get(f"optim.{key}")) is not None
        and have.shape == value.shape
        and have.dtype == value.dtype
        for key, value in new_state(config.optim.name, size).items()
    )
    if resuming and not fits:
        raise CheckpointError(
            f"checkpoint {ckpt.path} lacks the {config.optim.name} optimizer's statistics"
        )
    if obs_dim is not None:
        stats = t.get("obs_stats")
        if stats is None or stats.dim() != 2 or stats.shape[1] != 1 + 2 * obs_dim:
            raise CheckpointError(
                f"checkpoint {ckpt.path} lacks the observation statistics its config "
                "(env.normalize_obs) needs"
            )
    return {k: v.clone() for k, v in t.items() if fits or not k.startswith("optim.")}


def full_state(
    config: Config, params: Tensor, train_state: dict[str, Tensor], obs_stats: Tensor | None
) -> dict[str, Tensor]:
    """A checkpoint's tensors for an agent: its parameters and observation statistics, and the
    optimizer statistics and counters of its last run (fresh ones if it has none)."""
    state = {f"optim.{k}": v for k, v in new_state(config.optim.name, params.numel()).items()}
    state.update(
        {f"counters.{k}": torch.zeros(config.backend.workers, dtype=torch.int64) for k in COUNTERS}
    )
    state.update(train_state)
    state["params"] = params.clone()
    if obs_stats is not None:
        state["obs_stats"] = obs_stats.clone()
    return state


def segment_seed(seed: int, resumes: int) -> int:
    """The workers' seed of a run's `resumes`-th segment: new random streams, not a replay."""
    return int(np.random.SeedSequence([seed, resumes]).generate_state(1)[0]) & 0x7FFFFFFF


def select_checkpoint(path: str | Path, which: str | None = None) -> tuple[Checkpoint, str]:
    """The checkpoint to act with and which it is: "best", "latest" or "given".

    `path` a checkpoint directory: that one ("given"; `which` must be None). `path` a run directory:
    `which` "best" (checkpoints/best/, kept by evaluations during training), "latest" (the newest
    complete checkpoint by step), or another checkpoint (a path, or a name in the run's
    checkpoints/); None takes the best if the run has one (and it reads), else the latest.
    """
    path = Path(path)
    is_run = (path / run_checkpoints.CHECKPOINTS).is_dir() and not (path / checkpoint.META).exists()
    if not is_run:
        if which is not None:
            raise CheckpointError(
                f"{path} is not a run directory: a checkpoint ({which!r}) is picked from a run "
                "directory's checkpoints/"
            )
        return run_checkpoints.find(path), "given"
    best = run_checkpoints.best_path(path)
    if which is None and best is not None:
        try:
            return checkpoint.read(best), "best"
        except CheckpointError as e:
            log.warning("a3c: warning: %s; taking the latest checkpoint instead", e)
    if which in (None, "latest"):
        return run_checkpoints.find(path), "latest"
    if which == "best":
        if best is None:
            raise CheckpointError(
                f"{path} has no best checkpoint (checkpoints/best/ is kept by evaluations during "
                "training: eval.interval_steps or eval.interval_s)"
            )
        return checkpoint.read(best), "best"
    named = Path(which) if Path(which).exists() else path / run_checkpoints.CHECKPOINTS / which
    if not named.exists():
        raise CheckpointError(
            f"no such checkpoint: {which} (neither a path nor a name in "
            f"{path / run_checkpoints.CHECKPOINTS})"
        )
    return run_checkpoints.find(named), "given"


def check_unfinished(ckpt: Checkpoint, cfg: Config) -> None:
    """Refuse to resume a run that has nothing left to do under `cfg`: its step budget spent, its
    target reached (and still the target), or its time used; say how to continue it instead."""
    steps, stopped = ckpt.steps, ckpt.meta.get("stop_reason")
    if steps >= cfg.run.total_steps:
        raise ConfigError(
            f"the run is finished: it has {steps} steps (run.total_steps is "
            f"{cfg.run.total_steps}); give a larger --total-steps to train further"
        )
    reached = {"target_return": cfg.run.target_return, "target_eval_return": cfg.eval.target_mean}
    if stopped in reached and reached[stopped] is not None:
        flag = "--target-return" if stopped == "target_return" else "--target-eval-return"
        raise ConfigError(
            f"the run is finished: it reached its target ({stopped} at {steps} steps); to train "
            f"further, resume with {flag} null (or a higher target)"
        )
    wall = float(ckpt.meta.get("wall_s", 0.0))
    if cfg.run.max_time is not None and wall >= cfg.run.max_time:
        raise ConfigError(
            f"the run is finished: it has used its --max-time ({wall:.0f} s of "
            f"{cfg.run.max_time:g}); give a larger --max-time to train further"
        )


def newest_or_none(run_dir: Path) -> Checkpoint | None:
    """The run's newest complete checkpoint; None if it never completed one (killed during its
    first), so that the run starts again from scratch in its own directory."""
    try:
        return run_checkpoints.find(run_dir)
    except CheckpointError as e:
        if (
            any(run_checkpoints.list_checkpoints(run_dir / run_checkpoints.CHECKPOINTS))
            or not (run_dir / "progress.csv").exists()
        ):
            raise
        log.warning(
            "a3c: warning: %s has no complete checkpoint (%s); resuming it from scratch", run_dir, e
        )
        return None
