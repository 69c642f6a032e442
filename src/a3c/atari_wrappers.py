"""Gymnasium wrappers of the Atari pipeline that Gymnasium does not have: end-of-life as the end of
a training episode only (`EpisodicLife`), and FIRE where a game needs it to start (`FireReset`)."""

from __future__ import annotations

from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

FIRE = 1  # the action index of FIRE in ALE's minimal action sets that have it


def played_actions(actions: Tensor, fire_next: np.ndarray) -> Tensor:
    """The actions a step will play: FIRE where the pipeline forces it (a game's first step, the
    first after a lost life), the agent's elsewhere. The worker stores these, so the policy gradient
    of a forced step is that of FIRE, the action that made the transition, not of the one drawn."""
    if not fire_next.any():
        return actions
    return torch.where(torch.from_numpy(fire_next), torch.full_like(actions, FIRE), actions)


class EpisodicLife(gym.Wrapper):
    """A lost life ends the *training* episode (Mnih et al. 2015); the game itself goes on: reset
    after a lost life is a no-op step, not a new game. Wrap it outside RecordEpisodeStatistics, so
    reported returns are whole games."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self._lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self._lives()
        return obs, info

    def _lives(self) -> int:
        # an AtariEnv: lives from the emulator
        return int(cast(Any, self.env.unwrapped).ale.lives())


def needs_fire(meanings: list[str]) -> bool:
    """Whether a game's action set starts NOOP, FIRE, ... (Stable-Baselines3's FireResetEnv test):
    in such games (Breakout) the ball or the play does not start until FIRE, at a game's start and
    again after each lost life."""
    return len(meanings) >= 3 and meanings[1] == "FIRE"


class FireReset(gym.Wrapper):
    """In games that need it (`needs_fire`), the first step of a game and the first step after a
    lost life play FIRE whatever the action. Without it a greedy policy that has not learned to
    press FIRE in that state waits until the time limit (a Breakout game: 27,000 agent steps).
    AleVectorBatch does the same, so both paths give the same frames. Stable-Baselines3's
    AtariWrapper fires inside reset, which its EpisodicLifeEnv calls after each lost life in
    training (not in evaluation without end-of-life); here it happens in training and evaluation
    alike."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives, self.fire_next = 0, True

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self.lives, self.fire_next = self._lives(), True
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(FIRE if self.fire_next else action)
        lives = self._lives()
        self.fire_next = 0 < lives < self.lives and not (terminated or truncated)
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def _lives(self) -> int:
        return int(cast(Any, self.env.unwrapped).ale.lives())


def fire_wrapper(env: gym.Env) -> FireReset | None:
    """The FireReset inside `env`'s wrappers, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, FireReset):
            return env
        env = env.env
    return None
