"""The `A3C` facade: builds the global model, starts a backend, consumes reports, logs, checkpoints,
stops; and the Stable-Baselines3-style API around it.

    agent = A3C("CartPole-v1", workers=2, n_steps=8)
    summary = agent.learn(total_steps=200_000)
    agent.save("agent")                       # a checkpoint directory (a3c/checkpoint.py)
    agent = A3C.load("agent")                 # or a run directory: its latest checkpoint
    action, state = agent.predict(obs, deterministic=True)
    result = agent.evaluate(episodes=10)      # {"mean": ..., "std": ..., "returns": [...], ...}
    agent = A3C.resume("runs/cartpole")       # continue a stopped or killed run where it left off
    agent.learn()

Stops on the first of: the step budget, the wall-time budget, the target return (mean of the last
`return_window` episodes), a callback, a worker failure, or Ctrl-C. Every stop writes summary.json
and a checkpoint; checkpoints are also written every `checkpoint_interval_steps` global steps and/or
`checkpoint_interval_s` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import platform
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a3c import __version__, checkpoint, forkserver, normalize
from a3c.backends import WorkerFailure, make_backend
from a3c.checkpoint import Checkpoint, CheckpointError
from a3c.config import Config, canonical_key, from_recorded, resolve_target, resumable
from a3c.configfile import build_config
from a3c.envs import EnvFn, make_env_fn, probe_spaces
from a3c.errors import A3CError, ConfigError
from a3c.models import make_model
from a3c.optim import GlobalParams
from a3c.runlog import Console, RunDir, Stats, default_run_dir

Callback = Callable[[dict[str, Any]], bool | None]
log = logging.getLogger("a3c")

# Seed stream of evaluation envs, apart from the workers' streams (seed, worker index).
EVAL_STREAM = 1_000_000_007


class A3C:
    """Asynchronous Advantage Actor-Critic over any Gymnasium env with Discrete or bounded Box actions.

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
        # What a checkpoint holds besides the parameters (optimizer statistics, counters), after
        # learn() or load(); and the checkpoint a resumed agent continues from.
        self._train_tensors: dict[str, torch.Tensor] = {}
        self._train_meta: dict[str, Any] = {}
        self._resume: tuple[Path, Checkpoint] | None = None
        self.checkpoint_path: Path | None = None  # the checkpoint this agent was loaded from
        self._predict_generator = torch.Generator().manual_seed(config.run.seed)
        self._noise_drawn = False

    def _obs_norm_dim(self) -> int | None:
        if not self.config.env.normalize_obs:
            return None
        space = self.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ConfigError(f"env.normalize_obs needs vector Box observations, not {space}")
        return int(space.shape[0])

    @property
    def num_timesteps(self) -> int:
        """Global env steps behind the current parameters (of the last learn() or the loaded checkpoint)."""
        return int(self._train_meta.get("steps", 0))

    @property
    def target_return(self) -> float | None:
        return resolve_target(self.config.run.target_return, self.reward_threshold)

    # --- training -----------------------------------------------------------------------------

    def learn(
        self,
        total_steps: int | None = None,
        run_dir: str | Path | None = None,
        callback: Callback | None = None,
        progress: str = "auto",
    ) -> dict[str, Any]:
        """Train; returns the summary (also written to run_dir/summary.json).

        Starts from the agent's current parameters (and observation statistics) with fresh optimizer
        statistics and counters, into a new run directory; an agent from `A3C.resume` instead
        continues its run (counters, optimizer statistics, schedule, files) in its run directory.
        `total_steps` is the run's global step budget (absolute on a resumed run).
        `callback(row)` is called with every progress row; returning False stops training.
        `progress` is "auto" (a bar on a terminal), "bar", "lines" or "none".
        """
        forkserver.refuse_unguarded_main()  # not inside a worker that is importing the user's script
        if total_steps is not None:
            self.config = self.config.replace({"run.total_steps": total_steps})
        cfg = self.config
        if cfg.backend.name == "processes" and self.env_fn is not None:
            _check_picklable(self.env_fn)
        if cfg.backend.name == "processes":
            forkserver.warm_up()  # the workers' imports start now, in the background, while the run is set up
        resume, self._resume = self._resume, None
        if resume is not None and run_dir is not None and Path(run_dir).resolve() != resume[0].resolve():
            raise ConfigError("a resumed agent continues in its own run directory; do not pass run_dir")
        ckpt = None if resume is None else resume[1]
        resumes = 0 if ckpt is None else int(ckpt.meta.get("resumes", 0)) + 1
        if ckpt is not None and ckpt.steps >= cfg.run.total_steps:
            raise ConfigError(f"the run already has {ckpt.steps} steps (run.total_steps is {cfg.run.total_steps}); raise --total-steps to train further")
        if resume is not None:
            rundir = RunDir(resume[0], resume_steps=ckpt.steps)  # refuses a run a live trainer holds
            checkpoint.set_aside_newer(resume[0], ckpt.steps)
        else:
            rundir = RunDir(run_dir if run_dir is not None else default_run_dir(cfg.env.id))
        self.run_dir = rundir.path
        rundir.write_config(cfg.to_dict())
        store = self._new_store(ckpt.tensors if ckpt is not None else None)
        # A resumed run's workers draw new random streams: (seed, resume count) seeds them, so the
        # lost work is not replayed identically.
        worker_cfg = cfg if resumes == 0 else cfg.replace({"run.seed": _segment_seed(cfg.run.seed, resumes)})
        backend = make_backend(cfg.backend.name, worker_cfg, store, self.env_fn or make_env_fn(cfg.env))
        stats = Stats(cfg.run.return_window)
        wall_before = 0.0
        if ckpt is not None:
            t = ckpt.tensors
            stats.restore(
                steps=ckpt.steps, episodes=int(ckpt.meta["episodes"]), updates=int(t["counters.worker_updates"].sum()),
                nonfinite=int(t["counters.worker_nonfinite"].sum()), recent=rundir.recent_episodes(cfg.run.return_window),
            )  # fmt: skip
            wall_before = float(ckpt.meta.get("wall_s", 0.0))
        console = Console(cfg.run.total_steps, progress)
        target = self.target_return
        start = time.monotonic() - wall_before  # wall time continues from the checkpoint's
        log_every = cfg.log.log_interval
        next_log = (stats.steps // log_every + 1) * log_every
        ckpt_steps, ckpt_s = cfg.log.checkpoint_interval_steps, cfg.log.checkpoint_interval_s
        next_ckpt = None if ckpt_steps is None else (stats.steps // ckpt_steps + 1) * ckpt_steps
        last_ckpt_time = time.monotonic()
        reason, error = "total_steps", None
        logged_steps = stats.steps if ckpt is not None else -1
        last_checkpoint: Path | None = None

        def log_row(alive: int) -> None:
            nonlocal logged_steps
            row = stats.row(time.monotonic() - start, alive)
            row["worker_restarts"] = backend.budget.restarts
            logged_steps = stats.steps
            rundir.write_row(row)
            console.update(row)
            if callback is not None and callback(row) is False:
                raise _CallbackStop

        def save_checkpoint(final: bool = False, **extra: Any) -> Path:
            sync = getattr(backend, "sync", None)
            if started and not final and sync is not None:  # the ray backend's state lives in its parameter server (stop() syncs it)
                sync()
            tensors, meta = self._snapshot(store, stats, time.monotonic() - start, resumes)
            return checkpoint.save_in_run(rundir.path, tensors, {**meta, **extra}, cfg.log.checkpoint_keep)

        # One torch thread, as in every worker: the serial backend trains in this process, and a
        # second intra-op thread on a busy machine costs far more than it gains (30x measured).
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        started = False
        # (steps, window mean) when the window met the target. Episodes the workers finish while
        # they stop still join the log and the final window; they don't un-solve the run.
        solved_at: tuple[int, float] | None = None

        def stop_reason() -> str | None:
            if target is not None and stats.window_full and stats.return_mean >= target:
                return "target_return"
            if stats.steps >= cfg.run.total_steps:
                return "total_steps"
            if cfg.run.max_time is not None and time.monotonic() - start >= cfg.run.max_time:
                return "max_time"
            return None

        restore_sigterm = _catch_sigterm()  # `kill PID` stops like Ctrl-C: checkpoint, summary
        try:
            # A resumed run may have nothing left to do (solved, or out of time): no workers then.
            done = stop_reason() if ckpt is not None else None
            if done is not None:
                reason = done
                if done == "target_return":
                    solved_at = (stats.steps, stats.return_mean)
            else:
                started = True
                backend.start()
            while done is None:
                for rep in backend.poll(timeout=0.05):
                    stats.add(rep)
                    rundir.write_episodes(rep, stats.steps, time.monotonic() - start)
                if stats.steps >= next_log:
                    log_row(backend.alive())
                    next_log = (stats.steps // log_every + 1) * log_every
                # Checkpoint frequencies count global env steps (as reported), or seconds.
                if (next_ckpt is not None and stats.steps >= next_ckpt) or (ckpt_s is not None and time.monotonic() - last_ckpt_time >= ckpt_s):
                    rundir.flush_episodes()
                    last_checkpoint = save_checkpoint()
                    last_ckpt_time = time.monotonic()
                    if next_ckpt is not None:
                        next_ckpt = (stats.steps // ckpt_steps + 1) * ckpt_steps
                done = stop_reason()
                if done is None and backend.all_done():
                    done = "total_steps"
                if done is not None:
                    reason = done
                    if done == "target_return":
                        solved_at = (stats.steps, stats.return_mean)
                    break
        except _CallbackStop:
            reason = "callback"
        except KeyboardInterrupt:
            reason = "interrupted"
        except _Terminated:
            reason = "terminated"
        except WorkerFailure as e:
            reason, error = "worker_failure", e
        except Exception as e:  # noqa: BLE001 - recorded in the summary and raised again below
            reason, error = "error", e
        finally:
            restore_sigterm()
            for rep in backend.stop() if started else []:
                stats.add(rep)
                rundir.write_episodes(rep, stats.steps, time.monotonic() - start)
            # The shared counters are authoritative (a killed worker's last steps were never reported).
            if started:
                stats.steps = max(stats.steps, store.global_steps())
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
            # The end-of-run checkpoint, whatever the stop (a worker failure or Ctrl-C included).
            try:
                last_checkpoint = save_checkpoint(final=True, stop_reason=reason)
            except (OSError, A3CError) as e:
                log.warning("a3c: warning: could not write the final checkpoint: %s", e)
            summary = {
                "steps": stats.steps,
                "wall_s": round(wall, 3),
                "episodes": stats.episodes,
                "return_mean": stats.return_mean,
                "target_return": target,
                "solved": solved_at is not None or bool(target is not None and stats.window_full and stats.return_mean >= target),
                "solved_steps": None if solved_at is None else solved_at[0],
                "solved_return_mean": None if solved_at is None else solved_at[1],
                "stop_reason": reason,
                "updates": stats.updates,
                "nonfinite_updates": stats.nonfinite,
                "worker_restarts": backend.budget.restarts,
                "env_id": cfg.env.id,
                "workers": cfg.backend.workers,
                "backend": cfg.backend.name,
                "seed": cfg.run.seed,
                "resumes": resumes,
                "resumed_from_steps": None if ckpt is None else ckpt.steps,
                "checkpoint": None if last_checkpoint is None else str(last_checkpoint),
                "error": None if error is None else str(error),
                "versions": _versions(),
            }
            rundir.write_summary(summary)
            rundir.close()
            torch.set_num_threads(saved_threads)
        if error is not None:
            raise error
        return summary

    def _new_store(self, tensors: Mapping[str, torch.Tensor] | None) -> GlobalParams:
        """Global parameters from the agent's model and observation statistics; with `tensors` (a
        checkpoint's), the optimizer statistics and per-worker counters continue from them too."""
        cfg = self.config
        store = GlobalParams(self.model, cfg.optim, cfg.backend.workers, self.n_actor, obs_dim=self._obs_norm_dim())
        if store.obs_stats is not None and self.obs_stats is not None:
            _fold_into(store.obs_stats, self.obs_stats)
        if tensors is not None:
            for key, value in store.state.items():
                value.copy_(tensors[f"optim.{key}"])
            _fold_into(store.worker_steps, tensors["counters.worker_steps"])
            _fold_into(store.worker_updates, tensors["counters.worker_updates"])
            _fold_into(store.worker_nonfinite, tensors["counters.worker_nonfinite"])
        return store

    def _snapshot(self, store: GlobalParams, stats: Stats | None, wall_s: float, resumes: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """A consistent-enough copy of the shared state (workers may be updating it: Hogwild) and the
        JSON half of a checkpoint. Kept on the agent, so save() after learn() writes the same."""
        counters = {k: getattr(store, k).clone() for k in ("worker_steps", "worker_updates", "worker_nonfinite")}
        with store.lock if store.lock is not None else contextlib.nullcontext():
            tensors = {"params": store.flat.clone(), **{f"optim.{k}": v.clone() for k, v in store.state.items()}}
        tensors.update({f"counters.{k}": v for k, v in counters.items()})
        if store.obs_stats is not None:
            tensors["obs_stats"] = store.obs_stats.clone()
        episodes = stats.episodes if stats is not None else int(self._train_meta.get("episodes", 0))
        return_mean = stats.return_mean if stats is not None else self._train_meta.get("return_mean")
        meta = {
            "versions": _versions(),
            "config": self.config.to_dict(),
            "steps": int(counters["worker_steps"].sum()),
            "episodes": episodes,
            "updates": int(counters["worker_updates"].sum()),
            "nonfinite_updates": int(counters["worker_nonfinite"].sum()),
            "worker_steps": counters["worker_steps"].tolist(),
            "worker_updates": counters["worker_updates"].tolist(),
            "seed": self.config.run.seed,
            "resumes": resumes,
            "wall_s": round(wall_s, 3),
            "return_mean": finite_or_none(return_mean),
            "observation_space": str(self.observation_space),
            "action_space": str(self.action_space),
            "architecture": checkpoint.architecture(self.model),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._train_tensors = {k: v for k, v in tensors.items() if k != "params"}
        self._train_meta = meta
        return tensors, meta

    # --- save / load / resume -----------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the agent as a checkpoint directory at `path` (parameters, observation statistics,
        optimizer statistics and counters of the last learn(), config); never a pickle."""
        cfg = self.config
        store = GlobalParams(self.model, cfg.optim, cfg.backend.workers, self.n_actor, obs_dim=self._obs_norm_dim())
        if self.obs_stats is not None and store.obs_stats is not None:
            _fold_into(store.obs_stats, self.obs_stats)
        t = self._train_tensors
        if all(f"optim.{k}" in t for k in store.state):
            for key, value in store.state.items():
                value.copy_(t[f"optim.{key}"])
        for key in ("worker_steps", "worker_updates", "worker_nonfinite"):
            if f"counters.{key}" in t:
                _fold_into(getattr(store, key), t[f"counters.{key}"])
        meta = dict(self._train_meta)
        tensors, fresh = self._snapshot(store, None, float(meta.get("wall_s", 0.0)), int(meta.get("resumes", 0)))
        return checkpoint.write(path, tensors, fresh)

    @classmethod
    def load(cls, path: str | Path, env: str | Callable[[], gym.Env] | None = None, **hyperparameters: Any) -> A3C:
        """An agent from a checkpoint directory, or from a run directory's latest checkpoint.

        `env` replaces the recorded env (e.g. a factory that is not importable by name);
        `hyperparameters` override the recorded config (an architecture change is an error).
        """
        ckpt = checkpoint.find(path)
        cfg = _config_of(ckpt)
        if hyperparameters:
            cfg = cfg.replace(hyperparameters)
        agent = cls(env if env is not None else cfg.env.id, config=cfg)
        agent._load(ckpt)
        return agent

    @classmethod
    def resume(cls, run_dir: str | Path, env: str | Callable[[], gym.Env] | None = None, **overrides: Any) -> A3C:
        """An agent that continues the run in `run_dir` from its latest checkpoint on its next learn().

        `overrides` may change only `run.*`, `log.*` and `backend.*` settings other than the seed (the
        budget: total_steps, max_time, target_return; intervals; workers, backend); anything else is a
        ConfigError.
        """
        run_dir = Path(run_dir)
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise ConfigError(f"{run_dir} is not a run directory (it has no config.json)")
        try:
            recorded = from_recorded(json.loads(config_path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            raise ConfigError(f"cannot read {config_path}: {e}") from None
        cfg = recorded.replace(overrides) if overrides else recorded
        _check_resumable(recorded, cfg)
        ckpt = checkpoint.find(run_dir)
        agent = cls(env if env is not None else cfg.env.id, config=cfg)
        checkpoint.check_architecture(ckpt, agent.model)
        ours, theirs = _comparable(recorded), _comparable(_config_of(ckpt))
        if ours != theirs:
            key = next(k for k in ours if ours[k] != theirs.get(k))
            raise CheckpointError(f"checkpoint {ckpt.path} belongs to another run: its {key} is {theirs.get(key)!r}, the run's is {ours[key]!r}")
        agent._load(ckpt, resuming=True)
        agent._resume = (run_dir, ckpt)
        agent.run_dir = run_dir
        return agent

    def _load(self, ckpt: Checkpoint, resuming: bool = False) -> None:
        """Take the checkpoint's parameters and observation statistics; its optimizer statistics and
        counters too when they fit this config's optimizer (a resume requires that they do)."""
        checkpoint.check_architecture(ckpt, self.model)
        t = ckpt.tensors
        fresh = GlobalParams(self.model, self.config.optim, 1, self.n_actor).state
        fits = all(
            (have := t.get(f"optim.{key}")) is not None and have.shape == value.shape and have.dtype == value.dtype
            for key, value in fresh.items()
        )
        if resuming and not fits:
            raise CheckpointError(f"checkpoint {ckpt.path} lacks the {self.config.optim.name} optimizer's statistics")
        dim = self._obs_norm_dim()
        if dim is not None:
            stats = t.get("obs_stats")
            if stats is None or stats.dim() != 2 or stats.shape[1] != 1 + 2 * dim:
                raise CheckpointError(f"checkpoint {ckpt.path} lacks the observation statistics its config (env.normalize_obs) needs")
            self.obs_stats = stats.clone()
        torch.nn.utils.vector_to_parameters(t["params"].clone(), self.model.ordered_parameters())
        self._train_tensors = {k: v for k, v in t.items() if k != "params" and (fits or not k.startswith("optim."))}
        self._train_meta = dict(ckpt.meta)
        self.checkpoint_path = ckpt.path

    # --- acting -------------------------------------------------------------------------------

    def predict(
        self,
        observation: Any,
        state: tuple[Any, Any] | None = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Actions for one observation or a batch `[N, ...]`, as Stable-Baselines3's predict:
        `action, state = agent.predict(obs, deterministic=True)`. Box actions are clipped to the
        bounds. For an LSTM model pass the returned `state` back, and `episode_start` (one flag per
        observation) to reset it at new episodes; feed-forward models return state None."""
        obs_t, single = self._obs_tensor(observation)
        n = obs_t.shape[0]
        state_t = None
        if self.model.recurrent:
            if state is None:
                state_t = self.model.initial_state(n)
            else:
                state_t = tuple(torch.as_tensor(np.asarray(s), dtype=torch.float32).reshape(n, -1) for s in state)
            if episode_start is not None:
                keep = 1.0 - torch.as_tensor(np.asarray(episode_start, dtype=np.float32).reshape(n, 1))
                state_t = (state_t[0] * keep, state_t[1] * keep)
        resample = getattr(self.model.policy_head, "resample", None)
        if resample is not None and not deterministic and not self._noise_drawn:
            resample(self._predict_generator)  # gSDE: draw an exploration matrix before the first sample
            self._noise_drawn = True
        with torch.inference_mode():
            out, _, new_state = self.model(obs_t, state_t)
            actions = self.model.policy_head.sample(out, self._predict_generator, deterministic=deterministic)
        act = self.model.policy_head.to_env(actions)
        if isinstance(self.action_space, gym.spaces.Box):
            act = np.clip(act, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)
        if single:
            act = act[0]
        out_state = None if new_state is None else (new_state[0].numpy().copy(), new_state[1].numpy().copy())
        return act, out_state

    def _obs_tensor(self, observation: Any) -> tuple[torch.Tensor, bool]:
        space = self.observation_space
        obs = np.asarray(observation)
        shape = () if isinstance(space, gym.spaces.Discrete) else tuple(space.shape)
        if obs.shape == shape:
            obs, single = obs[None], True
        elif obs.shape[1:] == shape and obs.ndim == len(shape) + 1:
            single = False
        else:
            raise ValueError(f"observation of shape {obs.shape} does not fit {space} (one observation {shape} or a batch [N, *{shape}])")
        if isinstance(space, gym.spaces.Discrete):
            t = torch.as_tensor(obs.astype(np.int64))
        elif space.dtype == np.uint8:
            t = torch.as_tensor(obs.astype(np.uint8))
        else:
            t = torch.as_tensor(obs.astype(np.float32))
        if self.obs_stats is not None and self.config.env.normalize_obs:
            mean, std = normalize.mean_std(self.obs_stats)
            t = normalize.normalize(t, mean, std)
        return t, single

    def evaluate(
        self, episodes: int = 10, deterministic: bool = True, seed: int | None = None, video_dir: str | Path | None = None
    ) -> dict[str, Any]:
        """Play `episodes` whole episodes on a fresh env and return {"mean", "std", "returns",
        "lengths", ...}: real, unclipped returns (Atari: whole games, no end-of-life, no reward
        clipping; the same preprocessing as training otherwise). `video_dir` records each episode
        with Gymnasium's RecordVideo (needs the video extra: pip install 'a3c[video]')."""
        if not (isinstance(episodes, int) and episodes >= 1):
            raise ConfigError(f"episodes must be an integer >= 1, got {episodes!r}")
        seed = self.config.run.seed if seed is None else seed
        base = int(np.random.SeedSequence([seed, EVAL_STREAM]).generate_state(1)[0])
        saved_generator, self._predict_generator = self._predict_generator, torch.Generator().manual_seed(base)
        env = self._eval_env(video_dir)
        returns: list[float] = []
        lengths: list[int] = []
        # One torch thread, as in learn(): small batch-1 forward passes on a busy machine run ~30x
        # slower with more (measured: a Pong game, 50 s with 2 threads, 1.4 s with 1).
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            env.action_space.seed(base)
            for episode in range(episodes):
                obs, _ = env.reset(seed=base if episode == 0 else None)
                resample = getattr(self.model.policy_head, "resample", None)
                if resample is not None and not deterministic:  # gSDE: one exploration matrix per episode
                    resample(self._predict_generator)
                    self._noise_drawn = True
                state, total, length, done = None, 0.0, 0, False
                while not done:
                    action, state = self.predict(obs, state, deterministic=deterministic)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    length += 1
                    done = bool(terminated or truncated)
                returns.append(total)
                lengths.append(length)
        except gym.error.DependencyNotInstalled as e:
            raise A3CError(f"recording video needs more packages: pip install 'a3c[video]' ({_first_line(e)})") from None
        finally:
            self._predict_generator = saved_generator
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
            "env_id": self.config.env.id,
            "video_dir": None if video_dir is None else str(video_dir),
        }

    def _eval_env(self, video_dir: str | Path | None) -> gym.Env:
        if video_dir is not None:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array frames need no display (pygame envs)
        if self.env_fn is not None:
            env = self.env_fn()
        else:
            kwargs = dict(self.config.env.kwargs)
            if video_dir is not None:
                kwargs["render_mode"] = "rgb_array"
            # Real scores: Atari's end-of-life and reward clipping are training aids only.
            atari = dataclasses.replace(self.config.env.atari, episodic_life=False, clip_rewards=False)
            env_cfg = dataclasses.replace(self.config.env, atari=atari, kwargs=kwargs)
            env = make_env_fn(env_cfg)()
        if video_dir is None:
            return env
        if getattr(env, "render_mode", None) != "rgb_array":
            env.close()
            raise A3CError(f"recording video needs an env with render_mode='rgb_array' (this one has {getattr(env, 'render_mode', None)!r})")
        try:
            return gym.wrappers.RecordVideo(env, str(video_dir), episode_trigger=lambda _: True, name_prefix="eval", disable_logger=True)
        except gym.error.DependencyNotInstalled as e:
            env.close()
            raise A3CError(f"recording video needs moviepy: pip install 'a3c[video]' ({_first_line(e)})") from None


class _CallbackStop(Exception):
    pass


class _Terminated(Exception):
    """SIGTERM (`kill PID`) during learn(): stop like Ctrl-C, with a final checkpoint and summary."""


def _catch_sigterm() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM raises _Terminated in the main thread (once: a
    second SIGTERM gets the previous handler, by default terminating at once). Elsewhere than the
    main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _fold_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy per-worker rows; for another worker count, put the totals in row 0 (sums are what count)."""
    if dst.shape == src.shape:
        dst.copy_(src)
    else:
        dst.zero_()
        dst[0] = src.sum(0)


def _check_picklable(env_fn: Any) -> None:
    """Worker processes receive the env factory pickled: a lambda or a local function cannot go."""
    try:
        pickle.dumps(env_fn)
    except Exception as e:  # noqa: BLE001 - pickling raises PicklingError, AttributeError or TypeError
        raise ConfigError(
            f"the processes backend sends the env factory to its worker processes, and {env_fn!r} cannot be pickled ({e}): "
            "pass a module-level function or class or an env id, or use backend='serial' or 'ray'"
        ) from None


def _segment_seed(seed: int, resumes: int) -> int:
    return int(np.random.SeedSequence([seed, resumes]).generate_state(1)[0]) & 0x7FFFFFFF


def _config_of(ckpt: Checkpoint) -> Config:
    try:
        return from_recorded(ckpt.meta["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {ckpt.path} has an invalid config: {e}") from None


def _comparable(cfg: Config) -> dict[str, Any]:
    """A config's settings that a resumed run keeps (all but those `resumable` allows to change)."""
    return {key: value for key, value in cfg.to_flat().items() if not resumable(key)}


def _check_resumable(recorded: Config, new: Config) -> None:
    a, b = _comparable(recorded), _comparable(new)
    for key in a:
        if a[key] != b[key]:
            raise ConfigError(f"--resume cannot change {canonical_key(key)} ({a[key]!r} -> {b[key]!r}); only run.*, log.* and backend.* settings other than the seed may change")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _spaces_of(env_fn: EnvFn) -> tuple[gym.Space, gym.Space, float | None]:
    env = env_fn()
    try:
        spec = getattr(env, "spec", None)
        return env.observation_space, env.action_space, getattr(spec, "reward_threshold", None)
    finally:
        env.close()


def _versions() -> dict[str, str]:
    return {"a3c": __version__, "torch": torch.__version__, "gymnasium": gym.__version__, "python": platform.python_version()}


def finite_or_none(x: Any) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None
