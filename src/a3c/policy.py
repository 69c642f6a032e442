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

    def __init__(
        self, model: ActorCritic, observation_space: gym.Space, action_space: gym.Space, seed: int
    ) -> None:
        self.model, self.observation_space, self.action_space = (
            model,
            observation_space,
            action_space,
        )
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
        self,
        observation: Any,
        state: tuple[Any, Any] | None = None,
        episode_start: Any = None,
        deterministic: bool = False,
        action_masks: Any = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        obs_t, single = self._obs_tensor(observation)
        mask = None if action_masks is None else self._mask(action_masks, obs_t.shape[0])
        state_t = self._state(obs_t.shape[0], state, episode_start)
        if not deterministic and not self._noise_drawn:
            self.new_episode(deterministic)  # gSDE: an exploration matrix before the first sample
        with torch.inference_mode():
            out, _, new_state = self.model(obs_t, state_t)
            if mask is not None:
                out = self.model.policy_head.apply_mask(out, mask)
            actions = self.model.policy_head.sample(
                out, self.generator, deterministic=deterministic
            )
        act = self.model.policy_head.to_env(actions)
        if isinstance(self.action_space, gym.spaces.Box):
            act = np.clip(act, self.action_space.low, self.action_space.high).astype(
                self.action_space.dtype
            )
        if single:
            act = act[0]
        out_state = (
            None
            if new_state is None
            else (new_state[0].numpy().copy(), new_state[1].numpy().copy())
        )
        return act, out_state

    def _state(
        self, n: int, state: tuple[Any, Any] | None, episode_start: Any
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.model.recurrent:
            return None
        if state is None:
            state_t = self.model.initial_state(n)
            assert state_t is not None
        else:
            h, c = (
                torch.as_tensor(np.asarray(s), dtype=torch.float32).reshape(n, -1) for s in state
            )
            state_t = (h, c)
        if episode_start is not None:
            keep = 1.0 - torch.as_tensor(np.asarray(episode_start, dtype=np.float32).reshape(n, 1))
            state_t = (state_t[0] * keep, state_t[1] * keep)
        return state_t

    def _obs_tensor(self, observation: Any) -> tuple[torch.Tensor, bool]:
        obs, single = self.model.layout.pack_batch(observation)
        t = torch.as_tensor(obs)
        if self.obs_stats is not None:
            t = self.obs_stats.snapshot()(t)
        return t, single

    def _mask(self, action_masks: Any, n: int) -> torch.Tensor:
        """Masks for `n` observations: one `[flags]` or a batch `[n, flags]` of valid-action
        flags."""
        size = getattr(self.model.policy_head, "mask_size", None)
        if size is None:
            raise ValueError(
                "action masks apply to Discrete, MultiDiscrete and MultiBinary actions, not "
                f"{self.action_space}"
            )
        mask = torch.as_tensor(np.asarray(action_masks).astype(bool)).reshape(-1, size)
        if mask.shape[0] != n:
            raise ValueError(f"{mask.shape[0]} action masks for {n} observations")
        if not bool(mask.any(-1).all()):
            raise ValueError("an action mask with no valid action")
        return mask
