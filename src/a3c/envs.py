"""Environments: one factory from an env id to a worker's batch of envs.

An env id is any registered Gymnasium id, or `module:Class` / `module:make_fn` for a user's own env.
`EnvBatch` steps a worker's envs in a plain loop with same-step reset: when an episode ends, the
final observation is kept (a time-limit truncation bootstraps from its value) and the env is reset
at once, so every stored transition is a real one (Gymnasium's vector envs default to NEXT_STEP
autoreset, whose extra reset step is not a transition). `AleVectorBatch` is the same for Atari with
ale-py's C++ AtariVectorEnv (`env.atari.ale_vector`), in its SAME_STEP autoreset mode;
`make_env_batch` picks one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np
from torch import Tensor

from a3c.ale_batch import AleVectorBatch, EpisodeTally, played_actions
from a3c.atari_wrappers import EpisodicLife, FireReset, fire_wrapper, needs_fire
from a3c.config import EnvConfig
from a3c.errors import A3CError, EnvError, first_line
from a3c.imports import load_entry
from a3c.masks import MaskReader, reader_for
from a3c.spaces import ObsLayout
from a3c.watchdog import UpdateTimeout, bounded

log = logging.getLogger("a3c")

EnvFn = Callable[[], gym.Env]


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


def worker_seeds(seed: int, worker: int, n: int, incarnation: int = 0) -> list[int]:
    """n independent 32-bit seeds derived from (seed, worker index[, incarnation of a restarted
    worker])."""
    key = [seed, worker] if incarnation == 0 else [seed, worker, incarnation]
    return [int(s) for s in np.random.SeedSequence(key).generate_state(n)]


class EnvBatch(EpisodeTally):
    """B envs of one worker, stepped together; resets in the same step an episode ends.

    `step` returns observations `[B, ...]`, rewards, terminated and truncated flags `[B]`, and the
    final observations of the truncated envs (`(index, obs)` pairs) for bootstrapping. Finished
    episodes' (return, length) pairs collect in `finished` until the owner takes them.
    """

    def __init__(
        self, env_fn: EnvFn, n: int, seeds: list[int], label: str = "", masks: bool = True
    ) -> None:
        super().__init__(n)
        self.label = label  # who steps these envs, for warnings ("worker 0")
        self._warned = False
        self.envs = [env_fn() for _ in range(n)]
        fires = [fire_wrapper(e) for e in self.envs]
        # Atari games that need FIRE
        self._fires = [f for f in fires if f is not None] if all(fires) else []
        # Where finished episodes' returns come from: our own sums of the rewards, or (Atari) the
        # real score that RecordEpisodeStatistics puts in info["episode"] at the end of a game.
        self.score_from_info = bool(getattr(env_fn, "score_from_info", False))
        first = self.envs[0]
        self.observation_space, self.action_space = first.observation_space, first.action_space
        # Dict, Tuple, Multi*: packed into one vector
        self.layout = ObsLayout(first.observation_space)
        self._pack = self.layout.pack if self.layout.packed else np.asarray
        resets = [e.reset(seed=s) for e, s in zip(self.envs, seeds, strict=True)]
        self.obs = np.stack([self._pack(o) for o, _ in resets]).astype(self.layout.np_dtype)
        # The valid actions in each env's current state (None: the env gives no masks, or they are
        # off).
        self.readers: list[MaskReader] | None = None
        if reader_for(first, resets[0][1], first.action_space, masks) is not None:
            self.readers = [MaskReader(e, e.action_space) for e in self.envs]
            self.masks = np.stack(
                [r.read(info) for r, (_, info) in zip(self.readers, resets, strict=True)]
            )
        for e, s in zip(self.envs, seeds, strict=True):
            e.action_space.seed(s)
        space = first.action_space
        # Gaussian actions are sampled unbounded (the log-prob is of that sample) and clipped here.
        self._clip = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        self._reward = np.zeros(n, dtype=np.float32)
        self._terminated = np.zeros(n, dtype=bool)
        self._truncated = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.envs)

    def played(self, actions: Tensor) -> Tensor:
        """The actions the next step plays for the agent's `actions` (FIRE where `FireReset` forces
        it)."""
        if not self._fires:
            return actions
        return played_actions(actions, np.array([f.fire_next for f in self._fires]))

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]:
        obs, reward, terminated, truncated = (
            self.obs,
            self._reward,
            self._terminated,
            self._truncated,
        )
        readers, masks = self.readers, self.masks
        finals: list[tuple[int, np.ndarray]] = []
        if self._clip is not None:
            actions = np.clip(actions, *self._clip)
        for i, (env, a) in enumerate(
            zip(self.envs, actions if self._clip is not None else actions.tolist(), strict=True)
        ):
            o, r, term, trunc, info = env.step(a)
            reward[i], terminated[i], truncated[i] = r, term, trunc
            if self.score_from_info and "episode" in info:
                self.finished.append((float(info["episode"]["r"]), int(info["episode"]["l"])))
            if term or trunc:
                if trunc and not term:
                    finals.append((i, self._pack(o)))
                o, info = env.reset()
            obs[i] = self._pack(o)
            if readers is not None and masks is not None:
                masks[i] = readers[i].read(info)
        dropped = None
        # Non-finite data never reaches the rollout. A sum is non-finite if any term is: one cheap
        # test per step (about 3 us for 8 CartPole envs), the careful one only when it fails.
        total = np.add.reduce(reward, dtype=np.float64) + (
            np.add.reduce(obs, axis=None, dtype=np.float64) if obs.dtype.kind == "f" else 0.0
        )
        if finals or not math.isfinite(total):
            dropped = self._drop_nonfinite(obs, reward, terminated, truncated, finals)
        if not self.score_from_info:
            self._tally(reward, terminated | truncated, dropped)
        return obs, reward, terminated, truncated, finals

    def _drop_nonfinite(
        self,
        obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        finals: list[tuple[int, np.ndarray]],
    ) -> np.ndarray:
        """Envs whose step gave a non-finite observation, reward or final observation: the step
        becomes an episode end with reward 0 (no bootstrap from garbage), the episode is dropped
        from the returns, and the env is reset. Counted, and warned about once."""
        floats = obs.dtype.kind == "f"
        bad_final = {i for i, f in finals if floats and not np.isfinite(f).all()}
        bad = ~np.isfinite(reward) | np.array(
            [
                (floats and not np.isfinite(obs[i]).all()) or i in bad_final
                for i in range(len(self.envs))
            ]
        )
        if not bad.any():
            return bad
        finals[:] = [(i, f) for i, f in finals if not bad[i]]
        readers, masks = self.readers, self.masks
        for i in np.flatnonzero(bad):
            reward[i], terminated[i], truncated[i] = 0.0, True, False
            o, info = self.envs[i].reset()
            o = self._pack(o)
            obs[i] = o if np.isfinite(np.asarray(o, dtype=np.float64)).all() else 0
            if readers is not None and masks is not None:
                masks[i] = readers[i].read(info)
        self.nonfinite += int(bad.sum())
        if not self._warned:
            self._warned = True
            env_id = (
                getattr(getattr(self.envs[0], "spec", None), "id", None)
                or type(self.envs[0].unwrapped).__name__
            )
            log.warning(
                "a3c: warning: %s: env %s returned a non-finite observation or reward; that "
                "episode is dropped "
                "and the env reset (counted in progress.csv's nonfinite_steps; warned once per "
                "worker)",
                self.label or "a worker",
                env_id,
            )
        return bad

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make_env_batch(
    env_fn: EnvFn, n: int, seeds: list[int], label: str = "", masks: bool = True
) -> EnvBatch | AleVectorBatch:
    """A worker's batch of n envs: ale-py's AtariVectorEnv when the recipe asks for it
    (`env.atari.ale_vector`), else `EnvBatch`."""
    if isinstance(env_fn, _EnvRecipe) and env_fn.cfg.atari.ale_vector:
        # its observations and rewards are integers: always finite
        return AleVectorBatch(env_fn, n, seeds)
    return EnvBatch(env_fn, n, seeds, label, masks)
