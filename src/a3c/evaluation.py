"""Evaluation: whole episodes played with a policy on a fresh env, real returns, optional video;
and the types of evaluation during training.

`evaluate` plays a `Policy` (the `a3c eval` command, `A3C.evaluate`). During training, an
`Evaluator` plays snapshots of the global state beside the workers with `play` and hands back
`EvalResult`s. Each backend creates and supervises its own evaluator (`Backend.evaluator`), as it
does its workers: inline in the trainer (serial), a process of its own (processes), an actor (ray).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from a3c.config import Config
from a3c.envs import EnvFn, make_env_fn, probe_spaces
from a3c.errors import A3CError, ConfigError, first_line
from a3c.masks import reader_for
from a3c.metrics import EVAL_COLUMNS
from a3c.models import make_model
from a3c.normalize import ObservationStats
from a3c.policy import Policy

log = logging.getLogger("a3c")

# Seed stream of evaluation envs, apart from the workers' streams (seed, worker index).
EVAL_STREAM = 1_000_000_007


def evaluate(
    policy: Policy,
    config: Config,
    env_fn: EnvFn | None,
    episodes: int,
    deterministic: bool,
    seed: int | None,
    video_dir: str | Path | None,
) -> dict[str, Any]:
    """Play `episodes` episodes one after another (no batch: finishing order would bias toward
    short episodes) and return their statistics. `env_fn` None builds the env from the config,
    with real scores (Atari: whole games, no end-of-life, no reward clipping)."""
    if not (isinstance(episodes, int) and episodes >= 1):
        raise ConfigError(f"episodes must be an integer >= 1, got {episodes!r}")
    seed = config.run.seed if seed is None else seed
    base = int(np.random.SeedSequence([seed, EVAL_STREAM]).generate_state(1)[0])
    saved_generator, policy.generator = policy.generator, torch.Generator().manual_seed(base)
    env = eval_env(config, env_fn, video_dir)
    returns: list[float] = []
    lengths: list[int] = []
    # One torch thread: small batch-1 forward passes on a busy machine run ~30x slower with more
    # (measured: a Pong game, 50 s with 2 threads, 1.4 s with 1).
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env.action_space.seed(base)
        for episode in range(episodes):
            total, length = _play(
                policy, env, base if episode == 0 else None, deterministic, config.env.action_masks
            )
            returns.append(total)
            lengths.append(length)
    except gym.error.DependencyNotInstalled as e:
        raise A3CError(
            f"recording video needs more packages: pip install 'a3c[video]' ({first_line(e)})"
        ) from None
    finally:
        policy.generator = saved_generator
        torch.set_num_threads(saved_threads)
        env.close()
    arr = np.asarray(returns, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "episodes": episodes,
        "deterministic": deterministic,
        "seed": seed,
        "returns": returns,
        "lengths": lengths,
        "env_id": config.env.id,
        "video_dir": None if video_dir is None else str(video_dir),
    }


def eval_env_fn(config: Config, env_fn: EnvFn | None, render: bool = False) -> EnvFn:
    """The factory of evaluation envs: `env_fn` if given, else the config's env with real scores
    (Atari's end-of-life and reward clipping are training aids only; one env through Gymnasium's
    wrappers, not ale-py's vector env) and `eval.env_kwargs` over `env.kwargs`."""
    if env_fn is not None:
        return env_fn
    kwargs = {**config.env.kwargs, **config.eval.env_kwargs}
    if render:
        kwargs["render_mode"] = "rgb_array"
    atari = dataclasses.replace(
        config.env.atari, episodic_life=False, clip_rewards=False, ale_vector=False
    )
    return make_env_fn(dataclasses.replace(config.env, atari=atari, kwargs=kwargs))


def _play(
    policy: Policy, env: gym.Env, seed: int | None, deterministic: bool, masks: bool
) -> tuple[float, int]:
    obs, info = env.reset(seed=seed)
    reader = reader_for(env, info, env.action_space, masks)
    policy.new_episode(deterministic)
    state, total, length, done = None, 0.0, 0, False
    while not done:
        mask = None if reader is None else reader.read(info)
        action, state = policy.predict(obs, state, deterministic=deterministic, action_masks=mask)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        length += 1
        done = bool(terminated or truncated)
    return total, length


def eval_env(config: Config, env_fn: EnvFn | None, video_dir: str | Path | None) -> gym.Env:
    """A fresh env for evaluation (wrapped by RecordVideo with `video_dir`)."""
    if video_dir is not None:
        # rgb_array frames need no display (pygame envs)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = eval_env_fn(config, env_fn, render=video_dir is not None)()
    if video_dir is None:
        return env
    if getattr(env, "render_mode", None) != "rgb_array":
        env.close()
        raise A3CError(
            "recording video needs an env with render_mode='rgb_array' (this one has "
            f"{getattr(env, 'render_mode', None)!r})"
        )
    try:
        return gym.wrappers.RecordVideo(
            env,
            str(video_dir),
            episode_trigger=lambda _: True,
            name_prefix="eval",
            disable_logger=True,
        )
    except gym.error.DependencyNotInstalled as e:
        env.close()
        raise A3CError(
            f"recording video needs moviepy: pip install 'a3c[video]' ({first_line(e)})"
        ) from None


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What an evaluator needs besides the config: the user's env factory (None: the config's
    env id) and the spaces the model is built for."""

    env_fn: EnvFn | None
    observation_space: gym.Space
    action_space: gym.Space

    @classmethod
    def probe(cls, cfg: Config, env_fn: EnvFn | None = None) -> EvalSpec:
        obs_space, act_space, _ = probe_spaces(
            env_fn or make_env_fn(cfg.env), cfg.backend.worker_timeout
        )
        return cls(env_fn, obs_space, act_space)


@dataclasses.dataclass
class EvalResult:
    """One evaluation: an eval.csv row (EVAL_COLUMNS) and the state that was evaluated."""

    steps: int  # global env steps behind the evaluated parameters
    wall_s: float  # the run's wall time when the evaluation was asked for
    mean: float
    std: float
    min: float
    max: float
    episodes: int
    mean_length: float
    duration_s: float
    state: dict[str, Tensor] = dataclasses.field(repr=False)  # params, counters.*, obs_stats

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in EVAL_COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, Any], state: dict[str, Any]) -> EvalResult:
        return cls(**row, state={k: torch.from_numpy(np.array(v)) for k, v in state.items()})


Wrap = Callable[[gym.Env], gym.Env]


def play(
    cfg: Config,
    spec: EvalSpec,
    state: dict[str, Tensor],
    wall_s: float,
    wrap: Wrap | None = None,
    building: Callable[[], AbstractContextManager[Any]] | None = None,
) -> EvalResult:
    """Evaluate a policy state: a model of `spec`'s spaces with its parameters (and observation
    statistics), `eval.episodes` episodes with the run's seed (the same episodes every time).
    `wrap(env)` wraps each env (a heartbeat, a watchdog); the env is built inside `building()` (a
    watchdog's bound: an env whose constructor hangs is interrupted too)."""
    start = time.monotonic()
    model = make_model(spec.observation_space, spec.action_space, cfg.model)
    torch.nn.utils.vector_to_parameters(state["params"], model.ordered_parameters())
    policy = Policy(model, spec.observation_space, spec.action_space, cfg.run.seed)
    if cfg.env.normalize_obs and state.get("obs_stats") is not None:
        policy.obs_stats = ObservationStats.like(state["obs_stats"].clone())
    base = eval_env_fn(cfg, spec.env_fn)
    env_fn = base if wrap is None else _Wrapped(base, wrap, building)
    out = evaluate(policy, cfg, env_fn, cfg.eval.episodes, cfg.eval.deterministic, None, None)
    return EvalResult(
        steps=int(state["counters.worker_steps"].sum()),
        wall_s=round(wall_s, 3),
        mean=out["mean"],
        std=out["std"],
        min=out["min"],
        max=out["max"],
        episodes=out["episodes"],
        mean_length=float(np.mean(out["lengths"])),
        duration_s=round(time.monotonic() - start, 3),
        state=state,
    )


class _Wrapped:
    """An env factory that wraps what another one builds."""

    def __init__(
        self,
        env_fn: EnvFn,
        wrap: Wrap,
        building: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.env_fn, self.wrap, self.building = env_fn, wrap, building

    def __call__(self) -> gym.Env:
        with self.building() if self.building is not None else nullcontext():
            env = self.env_fn()
        return self.wrap(env)


class Evaluator(Protocol):
    """Where evaluations run (one at a time). Failures are its own business: `poll` restarts a
    crashed or hung evaluator with a warning; nothing it does stops the run."""

    restarts: int  # evaluators restarted after a failure

    def start(self) -> None: ...

    def request(self, wall_s: float) -> bool:
        """Evaluate the global state as it is now; False (nothing done) while one is under way."""
        ...

    def poll(self) -> list[EvalResult]:
        """The evaluations finished since the last poll."""
        ...

    def stop(self) -> None:
        """Stop the evaluator at once (an evaluation under way is abandoned); never raises."""
        ...


def warn_failed(message: str, restarts: int) -> None:
    """The one warning of an evaluator that failed and is restarted; the run goes on."""
    log.warning(
        "a3c: warning: the evaluator failed (%s); restarting it (%d so far); training goes on",
        message,
        restarts,
    )
