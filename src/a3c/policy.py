"""Acting with a trained model: actions for observations, as Stable-Baselines3's `predict`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a3c.models import ActorCritic
from a3c.normalize import ObservationStats


class Policy:
    """The model's policy over raw env observations: normalises them with the observation
    statistics (if any), carries the LSTM state the caller hands back, and owns the sampling RNG
    (and gSDE's exploration matrix)."""

    def __init__(self, model: ActorCritic, observation_space: gym.Space, action_space: gym.Space, seed: int) -> None:
        self.model, self.observation_space, self.action_space = model, observation_space, action_space
        self.obs_stats: ObservationStats | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self._noise_drawn = False

    def new_episode(self, deterministic: bool) -> None:
        """gSDE draws one exploration matrix per episode when sampling."""
        resample = getattr(self.model.policy_head, "resample", None)
        if resample is not None and not deterministic:
            resample(self.generator)
            self._noise_drawn = True

    def predict(
        self, observation: Any, state: tuple[Any, Any] | None = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        obs_t, single = self._obs_tensor(observation)
        state_t = self._state(obs_t.shape[0], state, episode_start)
        if not deterministic and not self._noise_drawn:
            self.new_episode(deterministic)  # gSDE: an exploration matrix before the first sample
        with torch.inference_mode():
            out, _, new_state = self.model(obs_t, state_t)
            actions = self.model.policy_head.sample(out, self.generator, deterministic=deterministic)
        act = self.model.policy_head.to_env(actions)
        if isinstance(self.action_space, gym.spaces.Box):
            act = np.clip(act, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)
        if single:
            act = act[0]
        out_state = None if new_state is None else (new_state[0].numpy().copy(), new_state[1].numpy().copy())
        return act, out_state

    def _state(self, n: int, state: tuple[Any, Any] | None, episode_start: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.model.recurrent:
            return None
        if state is None:
            state_t = self.model.initial_state(n)
            assert state_t is not None
        else:
            h, c = (torch.as_tensor(np.asarray(s), dtype=torch.float32).reshape(n, -1) for s in state)
            state_t = (h, c)
        if episode_start is not None:
            keep = 1.0 - torch.as_tensor(np.asarray(episode_start, dtype=np.float32).reshape(n, 1))
            state_t = (state_t[0] * keep, state_t[1] * keep)
        return state_t

    def _obs_tensor(self, observation: Any) -> tuple[torch.Tensor, bool]:
        space = self.observation_space
        obs = np.asarray(observation)
        shape = () if isinstance(space, gym.spaces.Discrete) else tuple(space.shape or ())
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
        if self.obs_stats is not None:
            t = self.obs_stats.snapshot()(t)
        return t, single
