"""The `A3C` facade: builds the global model, starts a backend, consumes reports, logs, stops.

    agent = A3C("CartPole-v1", workers=2, n_steps=8)
    summary = agent.learn(total_steps=200_000)

Stops on the first of: the step budget, the wall-time budget, the target return (mean of the last
`return_window` episodes), a worker failure, or Ctrl-C. Every stop writes summary.json.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from a3c import __version__
from a3c.backends import WorkerFailure, make_backend
from a3c.config import Config, build_config
from a3c.envs import EnvFn, make_env_fn, probe_spaces
from a3c.errors import ConfigError
from a3c.models import make_model
from a3c.optim import GlobalParams
from a3c.runlog import Console, RunDir, Stats, default_run_dir

Callback = Callable[[dict[str, Any]], bool | None]


class A3C:
    """Asynchronous Advantage Actor-Critic over any Gymnasium env with Discrete actions.

    Args:
      env: a Gymnasium env id, `module:Class` / `module:make_fn`, or a module-level callable that
        returns an env (it must be importable by the worker processes).
      config: a full Config; otherwise one is built from the env family's preset.
      config_files: YAML files layered over the preset.
      **hyperparameters: any config field, bare (`n_steps=5`) or dotted (`"algo.n_steps"`), e.g.
        `workers=2`, `backend="serial"`, `learning_rate=7e-4`.
    """

    def __init__(
        self,
        env: str | Callable[[], gym.Env] = "CartPole-v1",
        config: Config | None = None,
        config_files: list[str | Path] = (),
        **hyperparameters: Any,
    ) -> None:
        self.env_fn: EnvFn | None = None
        if callable(env):
            self.env_fn = env
            env = f"{env.__module__}:{env.__qualname__}"
        if config is None:
            config = build_config(env, list(config_files), hyperparameters)
        else:
            config = config.replace({**hyperparameters, "env.id": env})
        self.config = config
        self.observation_space, self.action_space, self.reward_threshold = probe_spaces(config.env) if self.env_fn is None else _spaces_of(self.env_fn)
        torch.manual_seed(config.run.seed)
        self.model = make_model(self.observation_space, self.action_space, config.model)
        self.n_actor = sum(p.numel() for p in self.model.actor_parameters())
        self.run_dir: Path | None = None
        self.obs_stats: torch.Tensor | None = None  # observation normalisation statistics after learn()

    def _obs_norm_dim(self) -> int | None:
        if not self.config.env.normalize_obs:
            return None
        space = self.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ConfigError(f"env.normalize_obs needs vector Box observations, not {space}")
        return int(space.shape[0])

    @property
    def target_return(self) -> float | None:
        run = self.config.run
        if not run.stop_at_target:
            return None
        return run.target_return if run.target_return is not None else self.reward_threshold

    def learn(
        self,
        total_steps: int | None = None,
        run_dir: str | Path | None = None,
        callback: Callback | None = None,
        progress: str = "auto",
    ) -> dict[str, Any]:
        """Train; returns the summary (also written to run_dir/summary.json).

        `callback(row)` is called with every progress row; returning False stops training.
        `progress` is "auto" (a bar on a terminal), "bar", "lines" or "none".
        """
        if total_steps is not None:
            self.config = self.config.replace({"run.total_steps": total_steps})
        cfg = self.config
        rundir = RunDir(run_dir if run_dir is not None else default_run_dir(cfg.env.id))
        self.run_dir = rundir.path
        rundir.write_config(cfg.to_dict())
        store = GlobalParams(self.model, cfg.optim, cfg.run.workers, self.n_actor, obs_dim=self._obs_norm_dim())
        backend = make_backend(cfg.run.backend, cfg, store, self.env_fn or make_env_fn(cfg.env))
        stats = Stats(cfg.run.return_window)
        console = Console(cfg.run.total_steps, progress)
        target = self.target_return
        start = time.monotonic()
        next_log = cfg.run.log_interval
        reason, error = "total_steps", None
        logged_steps = -1

        def log_row(alive: int) -> None:
            nonlocal logged_steps
            row = stats.row(time.monotonic() - start, alive)
            logged_steps = stats.steps
            rundir.write_row(row)
            console.update(row)
            if callback is not None and callback(row) is False:
                raise _CallbackStop

        # One torch thread, as in every worker: the serial backend trains in this process, and a
        # second intra-op thread on a busy machine costs far more than it gains (30x measured).
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            backend.start()
            while True:
                for rep in backend.poll(timeout=0.05):
                    stats.add(rep)
                    rundir.write_episodes(rep, stats.steps, time.monotonic() - start)
                if stats.steps >= next_log:
                    log_row(backend.alive())
                    next_log = (stats.steps // cfg.run.log_interval + 1) * cfg.run.log_interval
                if target is not None and stats.window_full and stats.return_mean >= target:
                    reason = "target_return"
                    break
                if stats.steps >= cfg.run.total_steps:
                    reason = "total_steps"
                    break
                if cfg.run.max_time is not None and time.monotonic() - start >= cfg.run.max_time:
                    reason = "max_time"
                    break
        except _CallbackStop:
            reason = "callback"
        except KeyboardInterrupt:
            reason = "interrupted"
        except WorkerFailure as e:
            reason, error = "worker_failure", e
        finally:
            for rep in backend.stop():
                stats.add(rep)
                rundir.write_episodes(rep, stats.steps, time.monotonic() - start)
            # Bring the trainer's model to the final global parameters.
            torch.nn.utils.vector_to_parameters(store.flat.clone(), self.model.ordered_parameters())
            self.obs_stats = None if store.obs_stats is None else store.obs_stats.clone()
            wall = time.monotonic() - start
            if stats.steps != logged_steps:
                try:
                    log_row(0)
                except _CallbackStop:
                    pass
            console.close()
            summary = {
                "steps": stats.steps,
                "wall_s": round(wall, 3),
                "episodes": stats.episodes,
                "return_mean": stats.return_mean,
                "target_return": target,
                "solved": bool(target is not None and stats.window_full and stats.return_mean >= target),
                "stop_reason": reason,
                "updates": stats.updates,
                "nonfinite_updates": stats.nonfinite,
                "env_id": cfg.env.id,
                "workers": cfg.run.workers,
                "backend": cfg.run.backend,
                "seed": cfg.run.seed,
                "error": None if error is None else str(error),
                "versions": _versions(),
            }
            rundir.write_summary(summary)
            rundir.close()
            torch.set_num_threads(saved_threads)
        if error is not None:
            raise error
        return summary


class _CallbackStop(Exception):
    pass


def _spaces_of(env_fn: EnvFn) -> tuple[gym.Space, gym.Space, float | None]:
    env = env_fn()
    try:
        spec = getattr(env, "spec", None)
        return env.observation_space, env.action_space, getattr(spec, "reward_threshold", None)
    finally:
        env.close()


def _versions() -> dict[str, str]:
    return {"a3c": __version__, "torch": torch.__version__, "gymnasium": gym.__version__, "python": platform.python_version()}


def finite_or_none(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None


def train(env: str, overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Convenience: A3C(env, **overrides).learn(**kwargs)."""
    return A3C(env, **(overrides or {})).learn(**kwargs)
