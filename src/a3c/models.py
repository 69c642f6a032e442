"""Actor-critic models built from an env's spaces by one factory.

ActorCritic = encoder + body + optional LSTM core + heads:
- encoder (a3c/encoders.py): one per observation space, or the user's own module; an image
  encoder is shared by actor and critic and feeds the heads directly, any other encoder's output
  goes through the MLP body (`model.hidden`; separate for actor and critic unless shared);
- core: an optional LSTM whose state is carried across rollouts and reset at episode ends;
- heads (a3c/heads.py): one per action space (categorical, multi-categorical, Bernoulli, diagonal
  Gaussian), and a value.

A tabular actor-critic is this model with a one-hot encoder and no hidden layer: its policy head is
the softmax table theta[s, a] and its value head the table V[s]. Parameters are ordered actor first,
critic second, so the critic's parameters are a contiguous tail of the flat parameter vector.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import Tensor, nn

from a3c.config import ModelConfig
from a3c.encoders import make_encoder
from a3c.heads import Head, make_head
from a3c.layers import linear, mlp
from a3c.spaces import ObsLayout

State = tuple[Tensor, Tensor] | None


class ActorCritic(nn.Module):
    """pi(a|s) and V(s) for observations `[N, ...]` (feed-forward) or `[T, B, ...]` (unrolled)."""

    def __init__(
        self, observation_space: gym.Space, action_space: gym.Space, cfg: ModelConfig
    ) -> None:
        super().__init__()
        tabular = (
            isinstance(observation_space, gym.spaces.Discrete)
            and not cfg.hidden
            and cfg.encoder is None
        )
        self.layout = ObsLayout(observation_space)
        encoder, dim, image = make_encoder(self.layout, cfg)
        self.encoder = encoder
        # Image encoders (and the LSTM core) are shared by actor and critic, as in the paper.
        shared = cfg.shared_encoder or image or cfg.lstm
        self.pi_body, pi_dim = (
            (nn.Identity(), dim) if image else mlp(dim, cfg.hidden, cfg.activation)
        )
        self.core = nn.LSTMCell(pi_dim, cfg.lstm_size) if cfg.lstm else None
        if self.core is not None:
            pi_dim = cfg.lstm_size
            nn.init.zeros_(self.core.bias_ih)
            nn.init.zeros_(self.core.bias_hh)
        self.policy_head: Head = make_head(pi_dim, action_space, cfg, tabular)
        if shared:
            self.vf_body, vf_dim = None, pi_dim
        else:
            self.vf_body, vf_dim = mlp(dim, cfg.hidden, cfg.activation)
        self.value_head = linear(vf_dim, 1, 1.0, bias=not tabular)
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

    def unroll(
        self, obs: Tensor, state: State, end: Tensor
    ) -> tuple[Tensor, Tensor, dict[int, tuple[Tensor, Tensor]]]:
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
            cuts = (
                torch.nonzero(end[: t1 - 1].reshape(t1 - 1, b).any(dim=1)).flatten() + 1
            ).tolist()
            outs = []
            for start, stop in zip([0, *cuts], [*cuts, t1], strict=True):
                if start > 0:
                    state = reset_ended(state, end[start - 1])
                    assert state is not None
                y, hn, cn = torch.lstm(
                    h[start:stop],
                    (state[0].unsqueeze(0), state[1].unsqueeze(0)),
                    weights,
                    True,
                    1,
                    0.0,
                    self.training,
                    False,
                    False,
                )
                state = (hn[0], cn[0])
                hiddens[stop - 1] = state
                outs.append(y.reshape((stop - start) * b, -1))
            h = torch.cat(outs)
        out, v = self._heads(x, h)
        return out, v.view(t1, b), hiddens

    def value_after(self, obs: Tensor, state: State) -> Tensor:
        """V of observations `[K, ...]` seen right after `state` (no reset): truncation
        bootstraps."""
        _, v, _ = self.forward(obs, state)
        return v


def reset_ended(state: State, end: Tensor) -> State:
    """The core state with the rows of envs whose episode ended (`end [B]` is 1) zeroed: a new
    episode starts from a zero state."""
    if state is None:
        return None
    keep = (1.0 - end).unsqueeze(-1)
    return (state[0] * keep, state[1] * keep)


def make_model(
    observation_space: gym.Space, action_space: gym.Space, cfg: ModelConfig
) -> ActorCritic:
    """The one factory: picks encoder, core and heads from the spaces (raises EnvError if
    unsupported)."""
    return ActorCritic(observation_space, action_space, cfg)
