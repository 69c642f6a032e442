"""Actor-critic models built from an env's spaces by one factory.

ActorCritic = encoder (tabular one-hot/embedding for Discrete observations, MLP for Box
observations) + heads (categorical policy logits for Discrete actions, a scalar value). A tabular
actor-critic is this model with a one-hot encoder and no hidden layer: its policy head is the
softmax table theta[s, a] and its value head the table V[s].

Parameters are ordered actor first, critic second, so the critic's parameters are one contiguous
tail of the flat parameter vector (what lets the optimizer give it its own learning rate).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from a3c.config import ModelConfig
from a3c.errors import EnvError

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(in_dim: int, hidden: tuple[int, ...], activation: str) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layer = nn.Linear(in_dim, h)
        nn.init.orthogonal_(layer.weight, math.sqrt(2))
        nn.init.zeros_(layer.bias)
        layers += [layer, _ACTIVATIONS[activation]()]
        in_dim = h
    return nn.Sequential(*layers), in_dim


class OneHot(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, obs: Tensor) -> Tensor:
        return nn.functional.one_hot(obs.long(), self.n).to(torch.float32)


class Flatten(nn.Module):
    def forward(self, obs: Tensor) -> Tensor:
        return obs.reshape(obs.shape[0], -1).to(torch.float32)


def _encoder(space: gym.Space, cfg: ModelConfig) -> tuple[nn.Module, int]:
    if isinstance(space, gym.spaces.Discrete):
        if cfg.tabular == "embedding":
            return nn.Embedding(int(space.n), cfg.embedding_dim), cfg.embedding_dim
        return OneHot(int(space.n)), int(space.n)
    if isinstance(space, gym.spaces.Box):
        return Flatten(), int(np.prod(space.shape))
    raise EnvError(f"unsupported observation space {space}: a3c supports Box and Discrete observations")


class ActorCritic(nn.Module):
    """pi(a|s) as categorical logits and V(s), for a batch of observations `[N, ...]`."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, cfg: ModelConfig) -> None:
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise EnvError(f"unsupported action space {action_space}: a3c supports Discrete actions")
        self.n_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        tabular = isinstance(observation_space, gym.spaces.Discrete) and not cfg.hidden
        encoder, dim = _encoder(observation_space, cfg)
        self.encoder = encoder
        self.pi_body, pi_dim = _mlp(dim, cfg.hidden, cfg.activation)
        self.policy_head = nn.Linear(pi_dim, self.n_actions, bias=not tabular)
        if cfg.shared_encoder:
            self.vf_body, vf_dim = None, pi_dim
        else:
            self.vf_body, vf_dim = _mlp(dim, cfg.hidden, cfg.activation)
        self.value_head = nn.Linear(vf_dim, 1, bias=not tabular)
        if tabular:  # the tutorial's tables start at a uniform policy and V = 0
            nn.init.zeros_(self.policy_head.weight)
            nn.init.zeros_(self.value_head.weight)
        else:  # SB3/OpenAI baselines init: a near-uniform initial policy, unit-scale values
            nn.init.orthogonal_(self.policy_head.weight, 0.01)
            nn.init.zeros_(self.policy_head.bias)
            nn.init.orthogonal_(self.value_head.weight, 1.0)
            nn.init.zeros_(self.value_head.bias)

    def actor_parameters(self) -> list[nn.Parameter]:
        mods = [self.encoder, self.pi_body, self.policy_head]
        return [p for m in mods for p in m.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        mods = [self.value_head] if self.vf_body is None else [self.vf_body, self.value_head]
        return [p for m in mods for p in m.parameters()]

    def ordered_parameters(self) -> list[nn.Parameter]:
        """Actor parameters then critic parameters: the layout of the flat parameter vector."""
        params = self.actor_parameters() + self.critic_parameters()
        assert len(params) == len(list(self.parameters())), "every parameter must be in one group"
        return params

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        x = self.encoder(obs)
        h = self.pi_body(x)
        logits = self.policy_head(h)
        v = self.value_head(h if self.vf_body is None else self.vf_body(x))
        return logits, v.squeeze(-1)


def make_model(observation_space: gym.Space, action_space: gym.Space, cfg: ModelConfig) -> ActorCritic:
    """The one factory: picks encoder and heads from the spaces (raises EnvError if unsupported)."""
    return ActorCritic(observation_space, action_space, cfg)


def categorical_sample(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Sample a ~ softmax(logits) per row via the Gumbel-max trick (one RNG call, seedable)."""
    u = torch.rand(logits.shape, generator=generator).clamp_(1e-20, 1.0)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)


def categorical_logp_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """log pi(a|s) of the taken actions and the entropy H[pi(.|s)], per row."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy
