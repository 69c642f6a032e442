"""Actor-critic models built from an env's spaces by one factory.

ActorCritic = encoder + optional LSTM core + heads:
- encoder: one-hot (a table) or embedding for Discrete observations; an MLP for vector Box
  observations; a convolutional encoder for image observations `[C, H, W]` (the paper's A3C network
  by default, the Nature DQN network as an option), shared by actor and critic;
- core: an optional LSTM whose state is carried across rollouts and reset at episode ends;
- heads: categorical logits for Discrete actions, a diagonal Gaussian for Box actions (state-
  independent learned log-std by default; the paper's SoftPlus variance head as an option), a value.

A tabular actor-critic is this model with a one-hot encoder and no hidden layer: its policy head is
the softmax table theta[s, a] and its value head the table V[s]. Parameters are ordered actor first,
critic second, so the critic's parameters are a contiguous tail of the flat parameter vector.
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
State = tuple[Tensor, Tensor] | None
LOG_2PI = math.log(2 * math.pi)


def _linear(i: int, o: int, gain: float, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(i, o, bias=bias)
    nn.init.orthogonal_(layer.weight, gain)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def _mlp(in_dim: int, hidden: tuple[int, ...], activation: str) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [_linear(in_dim, h, math.sqrt(2)), _ACTIVATIONS[activation]()]
        in_dim = h
    return nn.Sequential(*layers), in_dim


class OneHot(nn.Module):
    """Discrete(n, start) observations as one-hot rows (index obs - start)."""

    def __init__(self, n: int, start: int = 0) -> None:
        super().__init__()
        self.n, self.start = n, start

    def forward(self, obs: Tensor) -> Tensor:
        return nn.functional.one_hot(obs.long() - self.start, self.n).to(torch.float32)


class Embedding(nn.Embedding):
    """Discrete(n, start) observations as learned vectors (index obs - start)."""

    def __init__(self, n: int, dim: int, start: int = 0) -> None:
        super().__init__(n, dim)
        self.start = start

    def forward(self, obs: Tensor) -> Tensor:
        return super().forward(obs.long() - self.start)


class Flatten(nn.Module):
    def forward(self, obs: Tensor) -> Tensor:
        return obs.reshape(obs.shape[0], -1).to(torch.float32)


class ConvEncoder(nn.Module):
    """Image encoder. "a3c": Mnih et al. 2016's network (16 8x8/4, 32 4x4/2, fc 256, ReLU);
    "nature": Mnih et al. 2015's (32 8x8/4, 64 4x4/2, 64 3x3/1, fc 512); "universe": the 42x42
    network of universe-starter-agent and ikostrikov/pytorch-a3c (four 32 3x3/2 padded convs, ELU,
    no fc layer: the flattened maps, 288 features at 42x42, feed the LSTM core or the heads).
    uint8 pixels are scaled to [0, 1]."""

    # kind -> ([(out channels, kernel, stride, padding)], activation, fc size or None)
    KINDS = {
        "a3c": ([(16, 8, 4, 0), (32, 4, 2, 0)], nn.ReLU, 256),
        "nature": ([(32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0)], nn.ReLU, 512),
        "universe": ([(32, 3, 2, 1)] * 4, nn.ELU, None),
    }

    def __init__(self, shape: tuple[int, ...], kind: str) -> None:
        super().__init__()
        c = shape[0]
        convs, activation, fc = self.KINDS[kind]
        layers: list[nn.Module] = []
        for out, k, s, pad in convs:
            conv = nn.Conv2d(c, out, k, s, pad)
            nn.init.orthogonal_(conv.weight, math.sqrt(2))
            assert conv.bias is not None
            nn.init.zeros_(conv.bias)
            layers += [conv, activation()]
            c = out
        self.convs = nn.Sequential(*layers, nn.Flatten())
        try:
            with torch.no_grad():
                n = self.convs(torch.zeros(1, *shape)).shape[1]
        except RuntimeError:  # "Kernel size can't be greater than actual input size"
            raise EnvError(f"image observations of shape {tuple(shape)} are too small for model.cnn={kind}") from None
        self.out_dim = fc or n
        self.fc = nn.Sequential(_linear(n, fc, math.sqrt(2)), nn.ReLU()) if fc else nn.Identity()

    def forward(self, obs: Tensor) -> Tensor:
        # With gradient, the input goes channels-last: oneDNN's convolution backward is then 40%
        # faster on this machine (the weights keep their layout, and their gradients too); without
        # gradient the layout makes no difference and its conversion costs more.
        layout = torch.channels_last if torch.is_grad_enabled() and obs.dim() == 4 else torch.preserve_format
        x = obs.to(torch.float32, memory_format=layout)
        if obs.dtype == torch.uint8:
            x = x.mul_(1.0 / 255.0)  # a new tensor: the conversion from uint8 copied
        return self.fc(self.convs(x))


class CategoricalHead(nn.Linear):
    """pi(a|s) = softmax(W h + b) over Discrete(n) actions (shifted by the space's start). For a
    tabular model (one-hot h, no bias) `weight[a, s]` is the tutorial's policy table theta."""

    action_shape: tuple[int, ...] = ()
    action_dtype = torch.int64

    def __init__(self, in_dim: int, space: gym.spaces.Discrete, tabular: bool) -> None:
        super().__init__(in_dim, int(space.n), bias=not tabular)
        self.n, self.start = int(space.n), int(space.start)
        if tabular:  # the tutorial's policy table starts uniform
            nn.init.zeros_(self.weight)
        else:  # a near-uniform initial policy (SB3 / OpenAI baselines)
            nn.init.orthogonal_(self.weight, 0.01)
            nn.init.zeros_(self.bias)

    def sample(self, out: Tensor, generator: torch.Generator | None = None, deterministic: bool = False) -> Tensor:
        if deterministic:
            return out.argmax(-1)
        return categorical_sample(out, generator)

    def logp_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        return categorical_logp_entropy(out, actions)

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.numpy() + self.start


class GaussianHead(nn.Module):
    """A diagonal Gaussian over Box actions. The log-prob is of the unclipped sample; the env
    wrapper clips actions to the bounds. `out` is `[N, 3, d]`: mean, standard deviation, and the
    exploration noise to add when sampling (0 except for "sde").

    "state_independent": std = exp(log_std), one learned parameter per action dimension (SB3, PPO).
    "softplus": the paper's (Mnih et al. 2016, sec. 5.2) variance head, sigma^2 = softplus(linear(h)).
    "sde": generalized state-dependent exploration (Raffin et al. 2022): the noise is h^T E with a
      matrix E ~ N(0, exp(log_std)^2) drawn once per rollout (`resample`), so exploration is smooth
      in time; given s the action is Gaussian with variance (h^2)^T exp(log_std)^2. h is detached.
    """

    log_std: nn.Parameter
    noise_matrix: Tensor
    var: nn.Linear

    def __init__(self, in_dim: int, space: gym.spaces.Box, kind: str, log_std_init: float) -> None:
        super().__init__()
        d = int(np.prod(space.shape))
        self.kind, self.action_shape, self.action_dtype = kind, (d,), torch.float32
        self.env_shape = space.shape
        self.mean = _linear(in_dim, d, 0.01)
        if kind == "softplus":
            self.var = _linear(in_dim, d, 0.01)
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

    def sample(self, out: Tensor, generator: torch.Generator | None = None, deterministic: bool = False) -> Tensor:
        mean, std = out[:, 0], out[:, 1]
        if deterministic:
            return mean
        if self.kind == "sde":
            return mean + out[:, 2]
        return mean + std * torch.randn(mean.shape, generator=generator)

    def logp_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian_logp_entropy(out[:, 0], out[:, 1], actions)

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.numpy().reshape(-1, *self.env_shape)


def _encoder(space: gym.Space, cfg: ModelConfig) -> tuple[nn.Module, int, bool]:
    """(encoder, output size, is_image)."""
    if isinstance(space, gym.spaces.Discrete):
        if cfg.tabular == "embedding":
            return Embedding(int(space.n), cfg.embedding_dim, int(space.start)), cfg.embedding_dim, False
        return OneHot(int(space.n), int(space.start)), int(space.n), False
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) == 3:
            enc = ConvEncoder(_channels_first(space.shape), cfg.cnn)
            return enc, enc.out_dim, True
        return Flatten(), int(np.prod(space.shape)), False
    raise EnvError(f"unsupported observation space {space}: a3c supports Box and Discrete observations")


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    # Frame stacks of grayscale frames are [stack, H, W]; RGB images [H, W, 3] are not supported as is.
    if shape[-1] in (1, 3) and shape[0] > 4:
        raise EnvError(f"image observations of shape {shape} must be channels-first [C, H, W] (use the Atari preprocessing)")
    return tuple(shape)


class ActorCritic(nn.Module):
    """pi(a|s) and V(s) for observations `[N, ...]` (feed-forward) or `[T, B, ...]` (unrolled)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, cfg: ModelConfig) -> None:
        super().__init__()
        tabular = isinstance(observation_space, gym.spaces.Discrete) and not cfg.hidden
        encoder, dim, image = _encoder(observation_space, cfg)
        self.encoder = encoder
        # Image encoders (and the LSTM core) are shared by actor and critic, as in the paper.
        shared = cfg.shared_encoder or image or cfg.lstm
        self.pi_body, pi_dim = (nn.Identity(), dim) if image else _mlp(dim, cfg.hidden, cfg.activation)
        self.core = nn.LSTMCell(pi_dim, cfg.lstm_size) if cfg.lstm else None
        if self.core is not None:
            pi_dim = cfg.lstm_size
            nn.init.zeros_(self.core.bias_ih)
            nn.init.zeros_(self.core.bias_hh)
        if isinstance(action_space, gym.spaces.Discrete):
            self.policy_head: CategoricalHead | GaussianHead = CategoricalHead(pi_dim, action_space, tabular)
        elif isinstance(action_space, gym.spaces.Box) and np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)):
            self.policy_head = GaussianHead(pi_dim, action_space, cfg.gaussian, cfg.log_std_init)
        else:
            raise EnvError(f"unsupported action space {action_space}: a3c supports Discrete and bounded Box actions")
        if shared:
            self.vf_body, vf_dim = None, pi_dim
        else:
            self.vf_body, vf_dim = _mlp(dim, cfg.hidden, cfg.activation)
        self.value_head = _linear(vf_dim, 1, 1.0, bias=not tabular)
        if tabular:  # the tutorial's value table starts at 0
            nn.init.zeros_(self.value_head.weight)

    @property
    def recurrent(self) -> bool:
        return self.core is not None

    def actor_parameters(self) -> list[nn.Parameter]:
        mods = [self.encoder, self.pi_body, self.core, self.policy_head]
        return [p for m in mods if m is not None for p in m.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        mods = [self.value_head] if self.vf_body is None else [self.vf_body, self.value_head]
        return [p for m in mods for p in m.parameters()]

    def ordered_parameters(self) -> list[nn.Parameter]:
        """Actor parameters then critic parameters: the layout of the flat parameter vector."""
        params = self.actor_parameters() + self.critic_parameters()
        assert len(params) == len(list(self.parameters())), "every parameter must be in one group"
        return params

    def initial_state(self, batch: int) -> State:
        if self.core is None:
            return None
        z = torch.zeros(batch, self.core.hidden_size)
        return (z, z.clone())

    def _features(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        x = self.encoder(obs)
        return x, self.pi_body(x)

    def _heads(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v = self.value_head(h if self.vf_body is None else self.vf_body(x))
        return self.policy_head(h), v.squeeze(-1)

    def forward(self, obs: Tensor, state: State = None) -> tuple[Tensor, Tensor, State]:
        """One step for a batch `[B, ...]`: (policy output, V(s), next state)."""
        x, h = self._features(obs)
        if self.core is not None:
            state = self.core(h, state)
            h = state[0]
        out, v = self._heads(x, h)
        return out, v, state

    def act(self, obs: Tensor, state: State = None) -> tuple[Tensor, State]:
        """One step of the actor alone, for collecting a rollout: (policy output, next state). The
        critic is not evaluated (the rollout's values come from `unroll`, with gradient)."""
        _, h = self._features(obs)
        if self.core is not None:
            state = self.core(h, state)
            h = state[0]
        return self.policy_head(h), state

    def unroll(self, obs: Tensor, state: State, end: Tensor) -> tuple[Tensor, Tensor, dict[int, tuple[Tensor, Tensor]]]:
        """A whole rollout `obs [T1, B, ...]` from `state`, resetting the core after steps where
        `end [T1 - 1, B]` is 1. Returns policy outputs `[T1 * B, ...]`, values `[T1, B]`, and the
        core's state after every step where an episode ended (to evaluate truncated episodes' final
        observations), keyed by step.

        The core runs as PyTorch's fused multi-step LSTM over each stretch between episode ends
        (one call per stretch, the rows that ended reset in between): the input projection is one
        matrix product for the whole stretch, and its backward too. Stepping an LSTMCell instead
        costs twice as much on a 21-step rollout of one env (docs/architecture.md)."""
        t1, b = obs.shape[0], obs.shape[1]
        x, h = self._features(obs.reshape(t1 * b, *obs.shape[2:]))
        hiddens: dict[int, tuple[Tensor, Tensor]] = {}
        if self.core is not None:
            core = self.core
            weights = [core.weight_ih, core.weight_hh, core.bias_ih, core.bias_hh]
            h = h.view(t1, b, -1)
            if state is None:
                state = self.initial_state(b)
            assert state is not None
            cuts = (torch.nonzero(end[: t1 - 1].reshape(t1 - 1, b).any(dim=1)).flatten() + 1).tolist()
            outs = []
            for start, stop in zip([0, *cuts], [*cuts, t1], strict=True):
                if start > 0:
                    state = reset_ended(state, end[start - 1])
                    assert state is not None
                y, hn, cn = torch.lstm(h[start:stop], (state[0].unsqueeze(0), state[1].unsqueeze(0)), weights, True, 1, 0.0, self.training, False, False)
                state = (hn[0], cn[0])
                hiddens[stop - 1] = state
                outs.append(y.reshape((stop - start) * b, -1))
            h = torch.cat(outs)
        out, v = self._heads(x, h)
        return out, v.view(t1, b), hiddens

    def value_after(self, obs: Tensor, state: State) -> Tensor:
        """V of observations `[K, ...]` seen right after `state` (no reset): truncation bootstraps."""
        _, v, _ = self.forward(obs, state)
        return v


def reset_ended(state: State, end: Tensor) -> State:
    """The core state with the rows of envs whose episode ended (`end [B]` is 1) zeroed: a new
    episode starts from a zero state."""
    if state is None:
        return None
    keep = (1.0 - end).unsqueeze(-1)
    return (state[0] * keep, state[1] * keep)


def make_model(observation_space: gym.Space, action_space: gym.Space, cfg: ModelConfig) -> ActorCritic:
    """The one factory: picks encoder, core and heads from the spaces (raises EnvError if unsupported)."""
    return ActorCritic(observation_space, action_space, cfg)


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
