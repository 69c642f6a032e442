"""The `A3C` facade: a Stable-Baselines3-style API over the training session, persistence,
prediction and evaluation.

    agent = A3C("CartPole-v1", workers=2, n_steps=8)
    summary = agent.learn(total_steps=200_000)
    agent.save("agent")                       # a checkpoint directory (a3c/checkpoint.py)
    agent = A3C.load("agent")                 # or a run directory: its best, else newest checkpoint
    action, state = agent.predict(obs, deterministic=True)
    result = agent.evaluate(episodes=10)      # {"mean": ..., "std": ..., "returns": [...], ...}
    agent = A3C.resume("runs/cartpole")       # continue a stopped or killed run where it left off
    agent.learn()
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from a3c import backends, checkpoint, evaluation, persistence
from a3c.callbacks import CallbackLike
from a3c.checkpoint import Checkpoint
from a3c.config import Config, resolve_target
from a3c.configfile import build_config, env_family
from a3c.envs import EnvFn, FromSpec, check_env, make_env_fn, probe_spaces
from a3c.errors import ConfigError
from a3c.imports import name_of
from a3c.models import make_model
from a3c.normalize import ObservationStats
from a3c.plots import draw_run_curves
from a3c.policy import Policy
from a3c.runlog import default_run_dir
from a3c.session import TrainingSession
from a3c.spaces import check_rollout_memory
from a3c.store import SharedStore

log = logging.getLogger("a3c")


class A3C:
    """Asynchronous Advantage Actor-Critic over any Gymnasium env: Box, Discrete, MultiDiscrete,
    MultiBinary, Dict and Tuple observations; Discrete (optionally masked), MultiDiscrete,
    MultiBinary and bounded Box actions.

    Args:
      env: a Gymnasium env id, `module:Class` / `module:make_fn`, or a module-level callable that
        returns an env (it must be importable by the worker processes).
      config: a full Config; otherwise one is built from the env family's preset.
      config_files: YAML files layered over the preset.
      encoder: your own observation encoder (`model.encoder`): a module-level class or factory
        called as `encoder(observation_space, **encoder_kwargs)` that returns a torch.nn.Module
        (its output size in `out_dim` or `features_dim`, else found by a forward pass), or its
        name "module:Class". The MLP body, the LSTM core and the heads stay a3c's. Saved by name.
      encoder_kwargs: keyword arguments for `encoder` (`model.encoder_kwargs`).
      **hyperparameters: any config key, bare (`n_steps=5`) or dotted (`"algo.n_steps"`), e.g.
        `workers=2`, `backend="serial"`, `learning_rate=7e-4`.
    """

    def __init__(
        self,
        env: str | Callable[[], gym.Env] | gym.Env = "CartPole-v1",
        config: Config | None = None,
        config_files: list[str | Path] | tuple[()] = (),
        encoder: str | Callable[..., torch.nn.Module] | None = None,
        encoder_kwargs: dict[str, Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.env_fn: EnvFn | None = None
        if isinstance(env, gym.vector.VectorEnv):
            raise ConfigError(
                "a3c builds each worker's envs itself: pass the env id (and env.envs_per_worker=N "
                "for N envs per worker) instead of a vector env"
            )
        env_id: str
        if isinstance(env, gym.Env):  # SB3's habit: rebuilt in every worker from its spec
            from_spec = FromSpec.of(env)
            self.env_fn, env_id = from_spec, from_spec.spec.id
        elif callable(env):
            self.env_fn = env
            env_id = f"{env.__module__}:{env.__qualname__}"
        else:
            env_id = env
        if encoder is not None:
            hyperparameters["model.encoder"] = (
                encoder if isinstance(encoder, str) else name_of(encoder, "encoder", ConfigError)
            )
        if encoder_kwargs is not None:
            hyperparameters["model.encoder_kwargs"] = dict(encoder_kwargs)
        files = list(config_files)
        built = config is None
        if config is None:
            config = build_config(env_id, files, hyperparameters)
        else:
            config = config.replace({**hyperparameters, "env.id": env_id})
        backends.prepare(config.backend.name)  # e.g. the fork server's imports overlap what follows
        self.observation_space, self.action_space, self.reward_threshold = probe_spaces(
            self.env_fn or make_env_fn(config.env),
            config.backend.worker_timeout,
            config.env.action_masks,
        )
        # an image env, say: its family's preset
        if built and env_family(env_id, self.observation_space) != env_family(env_id):
            config = build_config(
                env_id, files, hyperparameters, observation_space=self.observation_space
            )
        self.config = config
        torch.manual_seed(config.run.seed)
        self.model = make_model(self.observation_space, self.action_space, config.model)
        # before any worker allocates
        check_rollout_memory(
            self.observation_space,
            self.action_space,
            config.algo.n_steps,
            config.env.envs_per_worker,
            config.backend.workers,
        )
        self.n_actor = sum(p.numel() for p in self.model.actor_parameters())
        self.policy = Policy(self.model, self.observation_space, self.action_space, config.run.seed)
        self.run_dir: Path | None = None
        self.checkpoint_path: Path | None = None  # the checkpoint this agent was loaded from
        self.checkpoint_kind: str | None = (
            None  # which: "best", "latest" or "given" (a3c.persistence.select_checkpoint)
        )
        # What a checkpoint holds besides the parameters and observation statistics (optimizer
        # statistics, counters) after learn() or load(); meta.json of the last one.
        self._train_state: dict[str, Tensor] = {}
        self._meta: dict[str, Any] = {}
        self._resume: tuple[Path, Checkpoint | None] | None = None

    @property
    def obs_stats(self) -> ObservationStats | None:
        """The observation statistics the model normalises with (env.normalize_obs), or None."""
        return self.policy.obs_stats

    @obs_stats.setter
    def obs_stats(self, stats: ObservationStats | None) -> None:
        self.policy.obs_stats = stats

    @property
    def num_timesteps(self) -> int:
        """Global env steps behind the current parameters (of the last learn() or the loaded
        checkpoint)."""
        return int(self._meta.get("steps", 0))

    @property
    def target_return(self) -> float | None:
        return resolve_target(self.config.run.target_return, self.reward_threshold)

    def _obs_dim(self) -> int | None:
        if not self.config.env.normalize_obs:
            return None
        problem = self.model.layout.normalizable()
        if problem:
            raise ConfigError(problem)
        return self.model.layout.size

    # --- training -----------------------------------------------------------------------------

    def learn(
        self,
        total_steps: int | None = None,
        run_dir: str | Path | None = None,
        callback: CallbackLike | None = None,
        progress: str = "auto",
    ) -> dict[str, Any]:
        """Train; returns the summary (also written to run_dir/summary.json).

        Starts from the agent's current parameters (and observation statistics) with fresh optimizer
        statistics and counters, into a new run directory; an agent from `A3C.resume` instead
        continues its run (counters, optimizer statistics, schedule, files) in its run directory.
        `total_steps` is the run's global step budget (absolute on a resumed run).
        `callback`: a `Callback` (a3c/callbacks.py: on_training_start, on_progress,
        on_evaluation, on_checkpoint, on_training_end), a list of them, or a function called with
        every progress row; any returning False stops training.
        `progress` is "auto" (a bar on a terminal), "bar", "lines" or "none".
        """
        if total_steps is not None:
            self.config = self.config.replace({"run.total_steps": total_steps})
        cfg = self.config
        resume, self._resume = self._resume, None
        if (
            resume is not None
            and run_dir is not None
            and Path(run_dir).resolve() != resume[0].resolve()
        ):
            raise ConfigError(
                "a resumed agent continues in its own run directory; do not pass run_dir"
            )
        if run_dir is not None and not str(run_dir).strip():
            raise ConfigError(
                "run_dir is empty: name a folder (or leave it out: runs/ENV-DATE-TIME)"
            )
        ckpt = None if resume is None else resume[1]
        if ckpt is not None:
            persistence.check_unfinished(ckpt, cfg)
        backends.warn_if_oversubscribed(cfg)
        # the env's first reset and step against its spaces: a bad env is one line now, not a
        # worker failure restarted until the budget is spent
        check_env(
            self.env_fn or make_env_fn(cfg.env), cfg.backend.worker_timeout, cfg.env.action_masks
        )
        store = SharedStore.for_model(self.model, cfg, self._obs_dim())
        if self.obs_stats is not None:
            store.load_state_dict({"obs_stats": self.obs_stats.table})
        if ckpt is not None:
            store.load_state_dict(ckpt.tensors)
        path = (
            resume[0]
            if resume is not None
            else Path(run_dir)
            if run_dir is not None
            else default_run_dir(cfg.env.id)
        )
        record = persistence.static_record(
            cfg, self.model, self.observation_space, self.action_space
        )
        session = TrainingSession(
            cfg,
            store,
            self.env_fn or make_env_fn(cfg.env),
            path,
            record,
            target=self.target_return,
            resumed=ckpt,
            reopen=resume is not None,
            callback=callback,
            progress=progress,
            evaluation=evaluation.EvalSpec(self.env_fn, self.observation_space, self.action_space),
        )
        self.run_dir = session.rundir.path
        try:
            return session.run().to_dict()
        finally:
            if session.final_state:
                self._take_state(session.final_state)
                self._meta = session.last_meta or self._meta
            draw_run_curves(self.run_dir)

    def _take_state(self, state: dict[str, Tensor]) -> None:
        """Bring the model (and observation statistics) to `state`; keep the rest for save()."""
        torch.nn.utils.vector_to_parameters(
            state["params"].clone(), self.model.ordered_parameters()
        )
        stats = state.get("obs_stats")
        self.obs_stats = (
            None
            if stats is None or self._obs_dim() is None
            else ObservationStats.like(stats.clone())
        )
        self._train_state = {k: v for k, v in state.items() if k not in ("params", "obs_stats")}

    # --- save / load / resume -----------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the agent as a checkpoint directory at `path` (parameters, observation statistics,
        optimizer statistics and counters of the last learn(), config); never a pickle."""
        cfg = self.config
        params = torch.nn.utils.parameters_to_vector(self.model.ordered_parameters()).detach()
        state = persistence.full_state(
            cfg, params, self._train_state, None if self.obs_stats is None else self.obs_stats.table
        )
        meta = self._meta
        record = persistence.static_record(
            cfg, self.model, self.observation_space, self.action_space
        )
        fresh = persistence.checkpoint_meta(
            record,
            state,
            episodes=int(meta.get("episodes", 0)),
            return_mean=meta.get("return_mean"),
            wall_s=float(meta.get("wall_s", 0.0)),
            resumes=int(meta.get("resumes", 0)),
        )
        return checkpoint.write(path, state, fresh)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: str | Callable[[], gym.Env] | None = None,
        checkpoint: str | None = None,
        **hyperparameters: Any,
    ) -> A3C:
        """An agent from a checkpoint directory, or from a run directory: `checkpoint` "best" (the
        best evaluation's state, checkpoints/best/), "latest" (the newest complete checkpoint), a
        path or a name in its checkpoints/; by default the best if the run has one, else the latest.
        `agent.checkpoint_kind` and `agent.checkpoint_path` say which was loaded.

        `env` replaces the recorded env (e.g. a factory that is not importable by name);
        `hyperparameters` override the recorded config (an architecture change is an error).
        """
        ckpt, kind = persistence.select_checkpoint(path, checkpoint)
        cfg = persistence.config_of(ckpt)
        if hyperparameters:
            cfg = cfg.replace(hyperparameters)
        agent = cls(env if env is not None else cfg.env.id, config=cfg)
        agent._load(ckpt)
        agent.checkpoint_kind = kind
        log.info("a3c: loaded the %s checkpoint %s (%d steps)", kind, ckpt.path, ckpt.steps)
        return agent

    @classmethod
    def resume(
        cls, run_dir: str | Path, env: str | Callable[[], gym.Env] | None = None, **overrides: Any
    ) -> A3C:
        """An agent that continues the run in `run_dir` from its newest checkpoint on its next
        learn().

        `overrides` may change only run.*, log.*, eval.* and backend.* settings other than the seed
        (the budget: total_steps, max_time, target_return; workers, backend, intervals); anything
        else is a ConfigError.
        """
        run_dir = Path(run_dir)
        recorded = persistence.read_run_config(run_dir)
        cfg = recorded.replace(overrides) if overrides else recorded
        persistence.check_resumable(recorded, cfg)
        ckpt = persistence.newest_or_none(run_dir)
        agent = cls(env if env is not None else cfg.env.id, config=cfg)
        if ckpt is not None:
            checkpoint.check_architecture(ckpt, agent.model)
            persistence.check_same_run(recorded, ckpt)
            agent._load(ckpt, resuming=True)
        agent._resume = (run_dir, ckpt)
        agent.run_dir = run_dir
        return agent

    def _load(self, ckpt: Checkpoint, resuming: bool = False) -> None:
        checkpoint.check_architecture(ckpt, self.model)
        self._take_state(persistence.training_state(ckpt, self.config, self._obs_dim(), resuming))
        self._meta = dict(ckpt.meta)
        self.checkpoint_path = ckpt.path

    # --- acting -------------------------------------------------------------------------------

    def predict(
        self,
        observation: Any,
        state: tuple[Any, Any] | None = None,
        episode_start: Any = None,
        deterministic: bool = False,
        action_masks: Any = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Actions for one observation or a batch `[N, ...]` (Dict / Tuple observations: their
        leaves with a leading batch dimension), as Stable-Baselines3's predict:
        `action, state = agent.predict(obs, deterministic=True)`. Box actions are clipped to the
        bounds. `action_masks` (one `[flags]` or `[N, flags]`, True for a valid action; Discrete and
        MultiDiscrete actions) keeps invalid actions from being sampled or chosen, as sb3-contrib's
        MaskablePPO. For an LSTM model pass the returned `state` back, and `episode_start` (one flag
        per observation) to reset it at new episodes; feed-forward models return state None."""
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks)

    def evaluate(
        self,
        episodes: int = 10,
        deterministic: bool = True,
        seed: int | None = None,
        video_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Play `episodes` whole episodes on a fresh env and return {"mean", "std", "returns",
        "lengths", ...}: real, unclipped returns (Atari: whole games, no end-of-life, no reward
        clipping; the same preprocessing as training otherwise). `video_dir` records each episode
        with Gymnasium's RecordVideo (needs the video extra: pip install 'a3c[video]')."""
        return evaluation.evaluate(
            self.policy, self.config, self.env_fn, episodes, deterministic, seed, video_dir
        )

    def export(
        self, path: str | Path, format: str = "onnx", with_distribution: bool = False
    ) -> Path:
        """Write the greedy acting path, from the env's observation to the env's action, as ONNX
        or TorchScript (`format` "torchscript"), and `path`.json describing its inputs and outputs
        (a3c/export.py; ONNX needs the export extra). `with_distribution` also outputs the
        distribution's parameters and the value."""
        from a3c.export import export_agent

        return export_agent(self, path, format, with_distribution)
