"""Environments: one factory from an env id to a worker's batch of envs.

An env id is any registered Gymnasium id, or `module:Class` / `module:make_fn` for a user's own env.
`make_env_fn` gives the env factory with the family's standard wrappers (Atari's preprocessing,
end-of-life and reward clipping for training); `probe_spaces` reads its spaces once; and
`make_env_batch` gives a worker its batch: `EnvBatch` (a3c/env_batch.py), or for Atari with
`env.atari.ale_vector` ale-py's C++ AtariVectorEnv (`AleVectorBatch`, a3c/ale_batch.py).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, cast

import gymnasium as gym
import numpy as np

from a3c.ale_batch import AleVectorBatch
from a3c.atari_wrappers import EpisodicLife, FireReset, needs_fire
from a3c.config import EnvConfig
from a3c.env_batch import EnvBatch, EnvFn
from a3c.env_check import check_reset, check_step
from a3c.errors import A3CError, ConfigError, EnvError, first_line
from a3c.imports import load_entry
from a3c.masks import reader_for
from a3c.watchdog import UpdateTimeout, bounded

log = logging.getLogger("a3c")


class FromSpec:
    """An env factory from a Gymnasium env instance's spec (`gym.make(spec)`, its wrappers
    included): what `A3C(gym.make("CartPole-v1"))` trains on, rebuilt in every worker."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    @classmethod
    def of(cls, env: gym.Env) -> FromSpec:
        spec = getattr(env, "spec", None)
        if spec is None:
            raise ConfigError(
                f"a3c builds the env in every worker, and this {type(env.unwrapped).__name__} "
                "instance has no spec to rebuild it from: pass its id, its class or a function "
                "that makes it"
            )
        return cls(spec)

    def __call__(self) -> gym.Env:
        return gym.make(self.spec)


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def make_env_fn(cfg: EnvConfig) -> EnvFn:
    """A picklable-by-value recipe that builds one env of `cfg` (called inside each worker)."""
    return _EnvRecipe(cfg)


# The ALE/*-v5 arguments AtariVectorEnv takes; it has no game modes, difficulties or RGB frames.
_ALE_VECTOR_KWARGS = frozenset(
    {"repeat_action_probability", "full_action_space", "max_num_frames_per_episode"}
)


class _EnvRecipe:
    def __init__(self, cfg: EnvConfig) -> None:
        self.cfg = cfg
        self.env_id, self.kwargs, self.max_episode_steps = (
            cfg.id,
            dict(cfg.kwargs),
            cfg.max_episode_steps,
        )
        # Atari training rewards are clipped and lives end episodes: the real score comes from info.
        self.score_from_info = is_atari(cfg.id)
        if cfg.atari.ale_vector:
            if not is_atari(cfg.id):
                raise EnvError(
                    f"env.atari.ale_vector=true steps ALE/<Game>-v5 envs only, not '{cfg.id}'"
                )
            unsupported = sorted(set(self.kwargs) - _ALE_VECTOR_KWARGS)
            if unsupported:
                raise EnvError(
                    "env.atari.ale_vector=true takes only env.kwargs "
                    f"{sorted(_ALE_VECTOR_KWARGS)}, not {unsupported}: set "
                    "env.atari.ale_vector=false"
                )

    def __call__(self) -> gym.Env:
        env_id, kwargs = self.env_id, self.kwargs
        if is_atari(env_id):
            return self._atari()
        # not gym's module:EnvId-v0
        if ":" in env_id and "/" not in env_id.split(":")[0] and "-v" not in env_id.split(":")[1]:
            entry = load_entry(env_id, "env id", EnvError)
            try:
                env = entry(**kwargs)
            except A3CError:
                raise
            except Exception as e:  # the user's constructor raised
                raise EnvError(
                    f"cannot build env '{env_id}' with kwargs {kwargs}: {type(e).__name__}: "
                    f"{first_line(e)}"
                ) from None
            if not isinstance(env, gym.Env):
                raise EnvError(
                    f"'{env_id}' did not return a gymnasium.Env (got {type(env).__name__})"
                )
            if self.max_episode_steps is not None:
                env = gym.wrappers.TimeLimit(env, self.max_episode_steps)
            return self._keep_keys(env)
        extra = (
            {} if self.max_episode_steps is None else {"max_episode_steps": self.max_episode_steps}
        )
        try:
            return self._keep_keys(gym.make(env_id, disable_env_checker=True, **extra, **kwargs))
        except A3CError:
            raise
        except gym.error.Error as e:
            raise EnvError(f"unknown env id '{env_id}': {first_line(e)}") from None
        except Exception as e:  # the env's constructor raised (TypeError: kwargs it does not take)
            raise EnvError(
                f"cannot build env '{env_id}' with kwargs {kwargs}: {type(e).__name__}: "
                f"{first_line(e)}"
            ) from None

    def _keep_keys(self, env: gym.Env) -> gym.Env:
        """The Dict observation's keys of `env.obs_keys` only (Gymnasium's FilterObservation)."""
        keys = list(self.cfg.obs_keys)
        if not keys:
            return env
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict):
            env.close()
            raise EnvError(
                f"env.obs_keys selects keys of Dict observations; {self.env_id} has {space}"
            )
        missing = [k for k in keys if k not in space.spaces]
        if missing:
            env.close()
            raise EnvError(
                f"env.obs_keys names {missing}, which {self.env_id}'s observations do not have "
                f"(keys: {sorted(space.spaces)})"
            )
        return gym.wrappers.FilterObservation(env, keys)

    def _register_ale(self) -> None:
        try:
            import ale_py
        except ImportError:
            raise EnvError(
                f"'{self.env_id}' needs the Atari extra: pip install 'a3c[atari]'"
            ) from None
        gym.register_envs(ale_py)

    def _atari(self) -> gym.Env:
        """ALE/*-v5 with the standard preprocessing (Machado et al. 2018): the base env at
        frameskip=1, AtariPreprocessing (no-op starts, frame skip with max-pooling, grayscale,
        resize), FIRE at a game's start and after a lost life (`FireReset`), the real score
        recorded, then end-of-life and reward clipping for training only,
        then frame stacking."""
        self._register_ale()
        cfg = self.cfg
        extra = (
            {} if self.max_episode_steps is None else {"max_episode_steps": self.max_episode_steps}
        )
        try:
            # The wrapper reads the screen from the emulator itself, so the base env's own
            # observation of every frame is thrown away: grayscale is a third of RGB's copy.
            env = gym.make(
                self.env_id,
                frameskip=1,
                disable_env_checker=True,
                **extra,
                **{"obs_type": "grayscale", **self.kwargs},
            )
        except gym.error.Error as e:
            raise EnvError(f"unknown env id '{self.env_id}': {e}") from None
        env = gym.wrappers.AtariPreprocessing(
            env,
            noop_max=cfg.atari.noop_max,
            frame_skip=cfg.atari.frame_skip,
            screen_size=cfg.atari.screen_size,
            terminal_on_life_loss=False,
            grayscale_obs=True,
            scale_obs=False,
        )
        if cfg.atari.fire_reset and needs_fire(cast(Any, env.unwrapped).get_action_meanings()):
            env = FireReset(env)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        if cfg.atari.episodic_life:
            env = EpisodicLife(env)
        if cfg.atari.clip_rewards:
            env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(float(r))))
        # Zero padding at a game's start, as AtariVectorEnv does, so both give the same frames.
        return gym.wrappers.FrameStackObservation(env, cfg.atari.frame_stack, padding_type="zero")

    def fire(self) -> bool:
        """Whether FIRE starts play in this game (`FireReset`), read from one base env's action
        set."""
        if not self.cfg.atari.fire_reset:
            return False
        if not hasattr(self, "_fire"):
            self._register_ale()
            env = gym.make(
                self.env_id,
                disable_env_checker=True,
                **{k: v for k, v in self.kwargs.items() if k in _ALE_VECTOR_KWARGS},
            )
            self._fire = needs_fire(cast(Any, env.unwrapped).get_action_meanings())
            env.close()
        return self._fire

    def ale_vector_args(self) -> dict[str, Any]:
        """AtariVectorEnv's arguments for the preprocessing of `_atari`: the registered v5 game
        settings (sticky actions, minimal action set, 108k frames) under the user's kwargs. Lives
        and rewards arrive raw; `AleVectorBatch` keeps the real score and applies the training
        aids."""
        self._register_ale()
        try:
            spec = gym.spec(self.env_id)
        except gym.error.Error as e:
            raise EnvError(f"unknown env id '{self.env_id}': {e}") from None
        game = {k: v for k, v in spec.kwargs.items() if k in _ALE_VECTOR_KWARGS or k == "game"}
        args = {**game, **self.kwargs}
        # counts frames, as the TimeLimit on the frameskip=1 env does
        if self.max_episode_steps is not None:
            args["max_num_frames_per_episode"] = min(
                args.get("max_num_frames_per_episode", self.max_episode_steps),
                self.max_episode_steps,
            )
        cfg = self.cfg
        return dict(
            args,
            img_height=cfg.atari.screen_size,
            img_width=cfg.atari.screen_size,
            grayscale=True,
            stack_num=cfg.atari.frame_stack,
            frameskip=cfg.atari.frame_skip,
            maxpool=True,
            noop_max=cfg.atari.noop_max,
            use_fire_reset=False,
            episodic_life=False,
            life_loss_info=cfg.atari.episodic_life,
            reward_clipping=False,
        )


def probe_spaces(
    env_fn: EnvFn, timeout: float | None = None, masks: bool = True
) -> tuple[gym.Space, gym.Space, float | None]:
    """Build one env to read its spaces and reward threshold (within `timeout` seconds); raises
    EnvError on a bad id, an env that cannot be built in time, one without Gymnasium spaces, or
    one with an `action_masks()` method for actions that take no mask (unless `masks` is off)."""
    try:
        with bounded(timeout):
            return _probe(env_fn, masks)
    except UpdateTimeout:
        raise EnvError(
            f"building the env took longer than {timeout:g} s (backend.worker_timeout): is it "
            "stuck?"
        ) from None


def _probe(env_fn: EnvFn, masks: bool) -> tuple[gym.Space, gym.Space, float | None]:
    try:
        env = env_fn()
    except (A3CError, UpdateTimeout):
        raise
    except Exception as e:  # a user's factory passed as a callable
        raise EnvError(f"cannot build the env: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(env, gym.Env):
        raise EnvError(f"the env factory did not return a gymnasium.Env (got {type(env).__name__})")
    try:
        spaces = []
        for name in ("observation_space", "action_space"):
            try:
                space = getattr(env, name)
            except Exception:  # an env whose space attribute raises has none
                space = None
            if not isinstance(space, gym.spaces.Space):
                raise EnvError(
                    f"the env {type(env.unwrapped).__name__} has no {name} (a "
                    f"gymnasium.spaces.Space; got {type(space).__name__})"
                )
            spaces.append(space)
        reader_for(env, {}, spaces[1], masks)  # refuses masks for actions that take none
        spec = getattr(env, "spec", None)
        threshold = spec.reward_threshold if spec is not None else None
        return spaces[0], spaces[1], threshold
    finally:
        env.close()


def check_env(env_fn: EnvFn, timeout: float | None = None, masks: bool = True) -> None:
    """Build one env, reset it and step it once, checking what it returns against its spaces
    (once the spaces themselves are known to be supported), within `timeout` seconds."""
    try:
        with bounded(timeout):
            env = env_fn()
            try:
                _first_steps(env, masks)
            finally:
                env.close()
    except UpdateTimeout:
        raise EnvError(
            f"the env's first reset and step took longer than {timeout:g} s "
            "(backend.worker_timeout): is it stuck?"
        ) from None


def _first_steps(env: gym.Env, masks: bool) -> None:
    """Reset the probe env and step it once, checking what it returns against its spaces (a bad
    env is then one line before any worker starts, not a worker failure restarted until the
    budget is spent). An action mask, if the env gives one, picks the action."""
    try:
        with warnings.catch_warnings():  # the env's own warnings show in the workers, not twice
            warnings.simplefilter("ignore")
            obs, info = env.reset(seed=0)
            out = _probe_step(env, info, masks)
        check_reset(env, obs)
        check_step(env, out)
    except (A3CError, UpdateTimeout):
        raise
    except Exception as e:  # the user's env raised at its first reset or step
        raise EnvError(
            f"env {type(env.unwrapped).__name__} failed at its first reset or step: "
            f"{type(e).__name__}: {first_line(e)}"
        ) from None


def _probe_step(env: gym.Env, info: dict[str, Any], masks: bool) -> Any:
    """One step with a valid action (the env's mask picks it, if it gives one)."""
    reader = reader_for(env, info, env.action_space, masks)
    mask = None if reader is None else reader.read(info)
    space = env.action_space
    if mask is not None and isinstance(space, gym.spaces.Discrete):
        return env.step(int(space.start) + int(np.flatnonzero(mask)[0]))
    return env.step(space.sample())


def worker_seeds(seed: int, worker: int, n: int, incarnation: int = 0) -> list[int]:
    """n independent 32-bit seeds derived from (seed, worker index[, incarnation of a restarted
    worker])."""
    key = [seed, worker] if incarnation == 0 else [seed, worker, incarnation]
    return [int(s) for s in np.random.SeedSequence(key).generate_state(n)]


def make_env_batch(
    env_fn: EnvFn, n: int, seeds: list[int], label: str = "", masks: bool = True
) -> EnvBatch | AleVectorBatch:
    """A worker's batch of n envs: ale-py's AtariVectorEnv when the recipe asks for it
    (`env.atari.ale_vector`), else `EnvBatch`."""
    if isinstance(env_fn, _EnvRecipe) and env_fn.cfg.atari.ale_vector:
        # its observations and rewards are integers: always finite
        return AleVectorBatch(env_fn, n, seeds)
    return EnvBatch(env_fn, n, seeds, label, masks)


__all__ = ["EnvFn", "is_atari", "make_env_batch", "make_env_fn", "probe_spaces", "worker_seeds"]
