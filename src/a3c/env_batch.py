"""A worker's batch of envs: `EnvBatch` steps them in a plain loop with same-step reset.

When an episode ends, the final observation is kept (a time-limit truncation bootstraps from its
value) and the env is reset at once, so every stored transition is a real one (Gymnasium's vector
envs default to NEXT_STEP autoreset, whose extra reset step is not a transition). `EpisodeTally`
is the episode bookkeeping every batch shares (`AleVectorBatch` too).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from torch import Tensor

from a3c.atari_wrappers import fire_wrapper, played_actions
from a3c.env_check import check_reset, check_step
from a3c.masks import MaskReader, reader_for
from a3c.spaces import ObsLayout

log = logging.getLogger("a3c")

EnvFn = Callable[[], gym.Env]  # an env factory: a Gymnasium id's, a user's class or function


class EpisodeTally:
    """Finished episodes' (return, length) pairs, from per-env sums of the rewards, kept in
    `finished` until the owner takes them."""

    def __init__(self, n: int) -> None:
        self.ep_return = np.zeros(n, dtype=np.float64)
        self.ep_length = np.zeros(n, dtype=np.int64)
        self.finished: list[tuple[float, int]] = []
        self.nonfinite = 0  # steps with a non-finite observation or reward, not yet taken
        self.masks: np.ndarray | None = None  # [n, flags] valid actions now, if the envs give masks

    def _tally(
        self, reward: np.ndarray, done: np.ndarray, dropped: np.ndarray | None = None
    ) -> None:
        self.ep_return += reward
        self.ep_length += 1
        if done.any():
            for i in np.flatnonzero(done if dropped is None else done & ~dropped):
                self.finished.append((float(self.ep_return[i]), int(self.ep_length[i])))
            self.ep_return[done] = 0.0
            self.ep_length[done] = 0

    def take_finished(self) -> list[tuple[float, int]]:
        out, self.finished = self.finished, []
        return out

    def take_nonfinite(self) -> int:
        out, self.nonfinite = self.nonfinite, 0
        return out


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
        for env, (o, _) in zip(self.envs, resets, strict=True):
            check_reset(env, o)
        self._unchecked = set(range(n))  # envs whose first step is still to be checked
        self.obs = np.stack([self._pack(o) for o, _ in resets]).astype(self.layout.np_dtype)
        if self.obs.dtype.kind == "f" and not np.isfinite(self.obs).all():
            # as on a step: a non-finite first observation never reaches the statistics
            bad = ~np.isfinite(self.obs.reshape(n, -1)).all(axis=1)
            self.obs[bad] = 0
            self.nonfinite += int(bad.sum())
            self._warn()
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
            out = env.step(a)
            if self._unchecked:
                self._check_first(i, out)
            o, r, term, trunc, info = out
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
        self._warn()
        return bad

    def _check_first(self, i: int, out: Any) -> None:
        if i in self._unchecked:
            self._unchecked.discard(i)
            check_step(self.envs[i], out)

    def _warn(self) -> None:
        """Warn once per worker of non-finite data from its envs."""
        if not self._warned:
            self._warned = True
            env_id = (
                getattr(getattr(self.envs[0], "spec", None), "id", None)
                or type(self.envs[0].unwrapped).__name__
            )
            log.warning(
                "a3c: warning: %s: env %s returned a non-finite observation or reward; that "
                "episode is dropped and the env reset (counted in progress.csv's "
                "nonfinite_steps; warned once per worker)",
                self.label or "a worker",
                env_id,
            )

    def close(self) -> None:
        for env in self.envs:
            env.close()
