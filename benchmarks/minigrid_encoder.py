"""A user's encoder for MiniGrid, written as MiniGrid's own Stable-Baselines3 example writes its
features extractor (three 2x2 convs 16-32-64, ReLU, flatten, a linear layer to `features_dim`),
over the Dict observation's image. a3c hands it the observation as the env gives it: a dict of
tensors, the image `[N, 7, 7, 3]` channels-last with object codes (no scaling), so it transposes
the image itself.

    A3C("minigrid:MiniGrid-DoorKey-5x5-v0", obs_keys=["image", "direction"],
        encoder=MinigridFeaturesExtractor, encoder_kwargs={"features_dim": 128})
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn


class MinigridFeaturesExtractor(nn.Module):
    def __init__(self, observation_space: gym.spaces.Dict, features_dim: int = 512) -> None:
        super().__init__()
        h, w, c = observation_space["image"].shape
        self.cnn = nn.Sequential(
            nn.Conv2d(c, 16, (2, 2)),
            nn.ReLU(),
            nn.Conv2d(16, 32, (2, 2)),
            nn.ReLU(),
            nn.Conv2d(32, 64, (2, 2)),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flatten = self.cnn(torch.zeros(1, c, h, w)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())
        self.features_dim = features_dim

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        image = observations["image"].permute(0, 3, 1, 2)
        return self.linear(self.cnn(image))
