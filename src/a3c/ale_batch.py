"""`AleVectorBatch`: ale-py's C++ AtariVectorEnv as a worker's batch (`env.atari.ale_vector`), in
its SAME_STEP autoreset mode, with `EnvBatch`'s interface."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from a3c.atari_wrappers import FIRE, played_actions
from a3c.env_batch import EpisodeTally


class AleVectorBatch(EpisodeTally):
    """`EnvBatch`'s interface over ale-py's C++ AtariVectorEnv: the frames of `_EnvRecipe._atari`
    (same emulator, frame skip with max-pooling, resize and zero-padded stack; tests/test_atari.py
    compares them frame for frame), stepped on one thread of its own per worker.

    The env returns raw rewards, and with `life_loss_info` a lost life ends the training episode
    while the game goes on. A game is over when the env restarted it: its episode frame counter
    fell. The finished (score, length) pairs are whole games' real scores, as with
    RecordEpisodeStatistics. In games that need FIRE (`atari_wrappers.FireReset`) the first step of
    a game and the first after a lost life play FIRE whatever the action (the frames of the
    Gymnasium path).
    """

    def __init__(self, recipe: Any, n: int, seeds: list[int]) -> None:
        args = recipe.ale_vector_args()  # first: a clear error without the Atari extra
        from ale_py.vector_env import AtariVectorEnv

        super().__init__(n)
        self.n, self.clip_rewards = n, recipe.cfg.atari.clip_rewards
        self.env = AtariVectorEnv(num_envs=n, num_threads=1, autoreset_mode="SameStep", **args)
        self.observation_space, self.action_space = (
            self.env.single_observation_space,
            self.env.single_action_space,
        )
        # its seeds are C ints
        obs, info = self.env.reset(seed=np.array([s % 2**31 for s in seeds], dtype=np.int64))
        self.obs = np.array(obs)
        self._frame = np.array(info["episode_frame_number"])
        self.fire = bool(recipe.fire())
        self._lives = np.array(info["lives"])
        self._fire_next = np.ones(n, dtype=bool)

    def __len__(self) -> int:
        return self.n

    def played(self, actions: Tensor) -> Tensor:
        """The actions the next step plays for the agent's `actions` (FIRE where it is forced)."""
        return played_actions(actions, self._fire_next) if self.fire else actions

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]:
        actions = np.asarray(actions, dtype=np.int64)
        if self.fire and self._fire_next.any():
            # a game's start, or after a lost life
            actions = np.where(self._fire_next, FIRE, actions)
        obs, raw, terminated, truncated, info = self.env.step(actions)
        self.obs[...] = obs
        frame = info["episode_frame_number"]
        game_over = (terminated | truncated) & (frame < self._frame)  # a game restarted: it is over
        self._tally(raw, game_over)
        self._frame = np.array(frame)
        lives = np.array(info["lives"])
        # a new game, or a lost life
        self._fire_next = game_over | ((0 < lives) & (lives < self._lives))
        self._lives = lives
        finals = [
            (int(i), np.array(info["final_obs"][i]))
            for i in np.flatnonzero(truncated & ~terminated)
        ]
        reward = (np.sign(raw) if self.clip_rewards else raw).astype(np.float32)
        return (
            self.obs,
            reward,
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
            finals,
        )

    def close(self) -> None:
        self.env.close()
