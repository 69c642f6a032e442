"""Policy heads, one per action space, and their distributions.

- Discrete: a categorical over n logits; MultiDiscrete: independent categoricals, one per
  dimension, log-probs and entropies summed; MultiBinary: independent Bernoullis, summed likewise;
  bounded Box: a diagonal Gaussian.
- Action masks (Discrete, MultiDiscrete, MultiBinary; `apply_mask`): invalid actions' logits are
  set to MASKED_LOGIT before sampling, the greedy argmax, the log-prob and the entropy
  (sb3-contrib's MaskablePPO does the same), so a masked action has probability 0 and adds 0 to
  the entropy.

A head maps features `h` to the policy output `out`; `sample(out)`, `logp_entropy(out, actions)` and
`to_env(actions)` read it. `make_head` picks one from the action space.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from a3c.config import ModelConfig
from a3c.errors import EnvError
from a3c.layers import linear

LOG_2PI = math.log(2 * math.pi)
# A logit no Gumbel noise can lift above a valid one's (the noise is within [-4, 17] in float32) and
# whose probability, exp(-1e8), is exactly 0: p log p stays 0, never 0 * -inf.
MASKED_LOGIT = -1e8


def near_uniform(layer: nn.Linear) -> None:
    """A near-uniform initial policy (SB3 / OpenAI baselines): small orthogonal weights, zero
    bias."""
    nn.init.orthogonal_(layer.weight, 0.01)
    nn.init.zeros_(layer.bias)


def masked(out: Tensor, mask: Tensor) -> Tensor:
    """Logits `out [N, L]` with the invalid entries (`mask [N, L]` False) at MASKED_LOGIT."""
    return out.masked_fill(~mask, MASKED_LOGIT)


class CategoricalHead(nn.Linear):
    """pi(a|s) = softmax(W h + b) over Discrete(n) actions (shifted by the space's start). For a
    tabular model (one-hot h, no bias) `weight[a, s]` is the tutorial's policy table theta."""

    action_shape: tuple[int, ...] = ()
    action_dtype = torch.int64

    def __init__(self, in_dim: int, space: gym.spaces.Discrete, tabular: bool) -> None:
        super().__init__(in_dim, int(space.n), bias=not tabular)
        self.n, self.start = int(space.n), int(space.start)
        self.mask_size: int | None = self.n
        if tabular:  # the tutorial's policy table starts uniform
            nn.init.zeros_(self.weight)
        else:  # a near-uniform initial policy (SB3 / OpenAI baselines)
            near_uniform(self)

    def sample(
        self, out: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> Tensor:
        if deterministic:
            return out.argmax(-1)
        return categorical_sample(out, generator)

    def logp_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        return categorical_logp_entropy(out, actions)

    def apply_mask(self, out: Tensor, mask: Tensor) -> Tensor:
        return masked(out, mask)

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.numpy() + self.start


class MultiCategoricalHead(nn.Linear):
    """MultiDiscrete(nvec) actions: one categorical per dimension over its own slice of the
    sum(nvec) logits; the log-prob and the entropy of the joint are the sums over dimensions."""

    action_dtype = torch.int64

    def __init__(self, in_dim: int, space: gym.spaces.MultiDiscrete) -> None:
        nvec = [int(n) for n in np.asarray(space.nvec).reshape(-1)]
        super().__init__(in_dim, sum(nvec))
        self.nvec, self.env_shape = nvec, space.shape
        self.start = np.asarray(space.start).reshape(-1)
        self.action_shape = (len(nvec),)
        self.mask_size = sum(nvec)
        near_uniform(self)

    def sample(
        self, out: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> Tensor:
        parts = out.split(self.nvec, dim=-1)
        if deterministic:
            return torch.stack([p.argmax(-1) for p in parts], dim=-1)
        return torch.stack([categorical_sample(p, generator) for p in parts], dim=-1)

    def logp_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        pairs = [
            categorical_logp_entropy(p, actions[:, i])
            for i, p in enumerate(out.split(self.nvec, dim=-1))
        ]
        return torch.stack([lp for lp, _ in pairs]).sum(0), torch.stack([h for _, h in pairs]).sum(
            0
        )

    def apply_mask(self, out: Tensor, mask: Tensor) -> Tensor:
        return masked(out, mask)

    def to_env(self, actions: Tensor) -> np.ndarray:
        return (actions.numpy() + self.start).reshape(-1, *self.env_shape)


class BernoulliHead(nn.Linear):
    """MultiBinary(n) actions: one Bernoulli per entry, p = sigmoid(logit); log-probs and
    entropies summed over the entries. Actions are stored as float32 0 / 1. A mask is two flags
    per entry (may be 0, may be 1; sb3-contrib's layout): an entry with one valid value is fixed
    to it (its logit at -MASKED_LOGIT or MASKED_LOGIT: probability 1, entropy 0)."""

    action_dtype = torch.float32

    def __init__(self, in_dim: int, space: gym.spaces.MultiBinary) -> None:
        d = int(np.prod(space.shape))
        super().__init__(in_dim, d)
        self.action_shape, self.env_shape = (d,), tuple(space.shape)
        self.mask_size: int | None = 2 * d
        near_uniform(self)

    def sample(
        self, out: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> Tensor:
        if deterministic:
            return (out > 0).to(torch.float32)
        return (torch.rand(out.shape, generator=generator) < torch.sigmoid(out)).to(torch.float32)

    def logp_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        return bernoulli_logp_entropy(out, actions)

    def apply_mask(self, out: Tensor, mask: Tensor) -> Tensor:
        pairs = mask.view(out.shape[0], -1, 2)
        only_one, only_zero = pairs[..., 1] & ~pairs[..., 0], pairs[..., 0] & ~pairs[..., 1]
        return out.masked_fill(only_one, -MASKED_LOGIT).masked_fill(only_zero, MASKED_LOGIT)

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.numpy().astype(np.int8).reshape(-1, *self.env_shape)


class GaussianHead(nn.Module):
    """A diagonal Gaussian over Box actions. The log-prob is of the unclipped sample; the env
    wrapper clips actions to the bounds. `out` is `[N, 3, d]`: mean, standard deviation, and the
    exploration noise to add when sampling (0 except for "sde").

    "state_independent": std = exp(log_std), one learned parameter per action dimension (SB3, PPO).
    "softplus": the paper's (Mnih et al. 2016, sec. 5.2) variance head, sigma^2 =
    softplus(linear(h)). "sde": generalized state-dependent exploration (Raffin et al. 2022): the
    noise is h^T E with a
      matrix E ~ N(0, exp(log_std)^2) drawn once per rollout (`resample`), so exploration is smooth
      in time; given s the action is Gaussian with variance (h^2)^T exp(log_std)^2. h is detached.
    """

    log_std: nn.Parameter
    noise_matrix: Tensor
    var: nn.Linear
    mask_size = None

    def __init__(self, in_dim: int, space: gym.spaces.Box, kind: str, log_std_init: float) -> None:
        super().__init__()
        d = int(np.prod(space.shape))
        self.kind, self.action_shape, self.action_dtype = kind, (d,), torch.float32
        self.env_shape = space.shape
        self.mean = linear(in_dim, d, 0.01)
        if kind == "softplus":
            self.var = linear(in_dim, d, 0.01)
            # softplus(b) = exp(2 * log_std_init): start at the same std as the default head.
            nn.init.constant_(self.var.bias, math.log(math.expm1(math.exp(2 * log_std_init))))
        elif kind == "sde":
            self.log_std = nn.Parameter(torch.full((in_dim, d), float(log_std_init)))
            self.register_buffer("noise_matrix", torch.zeros(in_dim, d), persistent=False)
        else:
            self.log_std = nn.Parameter(torch.full((d,), float(log_std_init)))

    def resample(self, generator: torch.Generator | None = None) -> None:
        """Draw the exploration matrix of gSDE (a no-op for the other kinds)."""
        if self.kind == "sde":
            with torch.no_grad():
                std = self.log_std.exp()
                self.noise_matrix.copy_(torch.randn(std.shape, generator=generator) * std)

    def forward(self, h: Tensor) -> Tensor:
        mean = self.mean(h)
        noise = torch.zeros_like(mean)
        if self.kind == "softplus":
            std = torch.sqrt(nn.functional.softplus(self.var(h)) + 1e-8)
        elif self.kind == "sde":
            hd = h.detach()
            std = torch.sqrt(hd.pow(2) @ self.log_std.exp().pow(2) + 1e-6)
            noise = hd @ self.noise_matrix
        else:
            std = self.log_std.exp().expand_as(mean)
        return torch.stack([mean, std, noise], dim=1)

    def sample(
        self, out: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> Tensor:
        mean, std = out[:, 0], out[:, 1]
        if deterministic:
            return mean
        if self.kind == "sde":
            return mean + out[:, 2]
        return mean + std * torch.randn(mean.shape, generator=generator)

    def logp_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian_logp_entropy(out[:, 0], out[:, 1], actions)

    def apply_mask(self, out: Tensor, mask: Tensor) -> Tensor:
        raise EnvError("Box actions take no action mask")  # masks.MaskReader refuses them first

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.numpy().reshape(-1, *self.env_shape)


def categorical_sample(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Sample a ~ softmax(logits) per row via the Gumbel-max trick (one RNG call, seedable)."""
    u = torch.rand(logits.shape, generator=generator).clamp_(1e-20, 1.0)
    # logits + Gumbel noise, -log(-log u), computed in place in u (one sample per env step).
    return torch.argmax(logits - u.log_().neg_().log_(), dim=-1)


def categorical_logp_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """log pi(a|s) of the taken actions and the entropy H[pi(.|s)], per row."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def gaussian_logp_entropy(mean: Tensor, std: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Diagonal Gaussian: log N(a; mean, std^2) summed over action dims, and its entropy
    sum(1/2 log(2 pi e std^2)), per row."""
    log_std = torch.log(std)
    z = (actions - mean) / std
    logp = (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)
    entropy = (0.5 + 0.5 * LOG_2PI + log_std).sum(-1)
    return logp, entropy


def bernoulli_logp_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Independent Bernoullis with p = sigmoid(logits): log p(a) = a log p + (1 - a) log(1 - p)
    with log p = -softplus(-l) and log(1 - p) = -softplus(l); H = p softplus(-l) + (1 - p)
    softplus(l); both summed over the last dimension."""
    log_p, log_q = -nn.functional.softplus(-logits), -nn.functional.softplus(logits)
    logp = (actions * log_p + (1.0 - actions) * log_q).sum(-1)
    p = torch.sigmoid(logits)
    entropy = -(p * log_p + (1.0 - p) * log_q).sum(-1)
    return logp, entropy


Head = CategoricalHead | MultiCategoricalHead | BernoulliHead | GaussianHead


def make_head(in_dim: int, space: gym.Space, cfg: ModelConfig, tabular: bool) -> Head:
    """The policy head for an action space (EnvError for one a3c does not support)."""
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalHead(in_dim, space, tabular)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiCategoricalHead(in_dim, space)
    if isinstance(space, gym.spaces.MultiBinary):
        return BernoulliHead(in_dim, space)
    if (
        isinstance(space, gym.spaces.Box)
        and np.all(np.isfinite(space.low))
        and np.all(np.isfinite(space.high))
    ):
        return GaussianHead(in_dim, space, cfg.gaussian, cfg.log_std_init)
    raise EnvError(
        f"unsupported action space {space}: a3c supports Discrete, MultiDiscrete, MultiBinary and "
        "bounded Box actions"
    )
