"""The LSTM core: state carried across rollouts, reset at episode ends."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from a3c import A3C, build_config
from a3c.config import ModelConfig
from a3c.models import make_model
from a3c.store import SharedStore
from a3c.worker import Worker


def _model():
    torch.manual_seed(0)
    return make_model(
        gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), ModelConfig(lstm=True, lstm_size=8)
    )


def _stepped(model, obs, state0, end):
    """The reference for `unroll`: one observation at a time, zeroing the rows that ended.
    Returns the policy outputs `[T * B, ...]`, the values `[T, B]` and the state after each step."""
    state, outs, values, states = state0, [], [], {}
    for t in range(obs.shape[0]):
        if t > 0:
            keep = (1 - end[t - 1]).unsqueeze(-1)
            state = (state[0] * keep, state[1] * keep)
        o, v, state = model(obs[t], state)
        outs.append(o)
        values.append(v)
        states[t] = state
    return torch.cat(outs), torch.stack(values), states


def test_unroll_resets_the_state_after_an_episode_end():
    model = _model()
    T, B = 4, 2
    obs = torch.randn(T, B, 3)
    state = (torch.randn(B, 8), torch.randn(B, 8))
    end = torch.zeros(T - 1, B)
    end[1, 0] = 1.0  # env 0's episode ends after step 1: step 2 starts from a zero state
    out, v, _ = model.unroll(obs, state, end)
    fresh_out, fresh_v, _ = model(obs[2, :1], model.initial_state(1))
    torch.testing.assert_close(out.view(T, B, -1)[2, 0], fresh_out[0])
    torch.testing.assert_close(v[2, 0], fresh_v[0])
    # env 1 did not end: its step 2 depends on the carried state
    carried_out, _, _ = model(obs[2, 1:], model.initial_state(1))
    assert not torch.allclose(out.view(T, B, -1)[2, 1], carried_out[0])


def test_unroll_equals_stepping_one_observation_at_a_time():
    model = _model()
    obs = torch.randn(3, 2, 3)
    end = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    state0 = model.initial_state(2)
    out, v, _ = model.unroll(obs, state0, end)
    torch.testing.assert_close(out, _stepped(model, obs, state0, end)[0])


def test_unroll_gradients_equal_stepping_one_observation_at_a_time():
    """The fused multi-step core, cut at episode ends, is the same function as stepping the cell:
    same outputs, same states after the ends, same gradients for every parameter."""
    model = _model()
    obs = torch.randn(6, 3, 3)
    end = torch.zeros(5, 3)
    end[1, 0] = end[1, 2] = end[3, 1] = 1.0  # two cuts, one of them for two envs at once
    state0 = (torch.randn(3, 8), torch.randn(3, 8))
    out, v, hiddens = model.unroll(obs, state0, end)
    loss = out.pow(2).sum() + v.pow(2).sum()
    fused = torch.autograd.grad(loss, list(model.parameters()))
    step_out, step_v, states = _stepped(model, obs, state0, end)
    torch.testing.assert_close(out, step_out)
    torch.testing.assert_close(v, step_v)
    assert sorted(hiddens) == [1, 3, 5]
    for t in hiddens:
        torch.testing.assert_close(hiddens[t], states[t])
    loss = step_out.pow(2).sum() + step_v.pow(2).sum()
    stepped = torch.autograd.grad(loss, list(model.parameters()))
    for a, b in zip(fused, stepped, strict=True):
        torch.testing.assert_close(a, b)


def test_worker_carries_the_state_across_rollouts_and_resets_it_at_episode_ends():
    cfg = build_config(
        "CartPole-v1",
        overrides={
            "backend": "serial",
            "workers": 1,
            "lstm": True,
            "lstm_size": 16,
            "n_steps": 7,
            "envs_per_worker": 4,
            "max_episode_steps": 7,
        },
    )
    agent = A3C("CartPole-v1", config=cfg)
    store = SharedStore.for_model(agent.model, cfg)
    worker = Worker(cfg, 0, store)
    saw_end = False
    for _ in range(6):
        worker.update()
        h, c = worker.state
        ended = worker.end_np[-1] > 0
        assert torch.all(h[torch.from_numpy(ended)] == 0) and torch.all(
            c[torch.from_numpy(ended)] == 0
        )
        if (~ended).any():
            assert torch.any(h[torch.from_numpy(~ended)] != 0), "a running episode keeps its state"
        saw_end |= bool(ended.any())
    assert saw_end, "7-step rollouts of 7-step episodes end on their last step"
    assert np.isfinite(worker.take_report().sums["policy_loss"])
