"""Tests of a3c.models (the actor-critic factory, sampling, log-probs) and a3c.optim (the shared
optimizer on one flat vector, the lr schedule, the store's pull/push)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from a3c import algo
from a3c.config import Config, ModelConfig, OptimConfig
from a3c.heads import categorical_logp_entropy, categorical_sample
from a3c.models import ActorCritic, make_model
from a3c.optim import apply_update, new_state, piecewise_linear, scheduled_lr
from a3c.store import Progress, Pulled, Pushed, SharedStore


@pytest.fixture(scope="module")
def cartpole_spaces() -> tuple[gym.Space, gym.Space]:
    env = gym.make("CartPole-v1")
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def tabular_model(n_states: int = 5, n_actions: int = 3) -> ActorCritic:
    return make_model(
        gym.spaces.Discrete(n_states), gym.spaces.Discrete(n_actions), ModelConfig(hidden=())
    )


def flat_of(model: ActorCritic) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.ordered_parameters()).detach()


# ---------------------------------------------------------------------------------------------
# make_model
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared_encoder", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_box_observations_give_logits_and_values(cartpole_spaces, shared_encoder, activation):
    obs_space, act_space = cartpole_spaces
    torch.manual_seed(0)
    model = make_model(
        obs_space, act_space, ModelConfig(shared_encoder=shared_encoder, activation=activation)
    )
    obs = torch.randn(7, 4)
    logits, values, _ = model(obs)
    assert logits.shape == (7, 2)
    assert values.shape == (7,)
    assert torch.isfinite(logits).all() and torch.isfinite(values).all()
    # SB3-style init: the policy head's 0.01 gain makes the initial policy near-uniform.
    probs = torch.softmax(logits, -1)
    assert (probs - 0.5).abs().max() < 0.05


def test_box_observations_accept_float64_numpy_like_input(cartpole_spaces):
    obs_space, act_space = cartpole_spaces
    model = make_model(obs_space, act_space, ModelConfig())
    logits, values, _ = model(torch.randn(3, 4, dtype=torch.float64))
    assert logits.dtype == torch.float32 and values.shape == (3,)


def test_discrete_observations_without_hidden_layers_are_tabular():
    n_states, n_actions = 5, 3
    model = tabular_model(n_states, n_actions)
    # the policy head is the table theta[s, a] (stored as Linear's [n_actions, n_states] weight)
    assert model.policy_head.weight.shape == (n_actions, n_states)
    assert model.policy_head.bias is None
    assert model.value_head.weight.shape == (1, n_states)
    assert model.value_head.bias is None
    # only the two tables are parameters
    assert sum(p.numel() for p in model.parameters()) == n_actions * n_states + n_states
    logits, values, _ = model(torch.arange(n_states))
    assert logits.shape == (n_states, n_actions) and values.shape == (n_states,)
    torch.testing.assert_close(
        torch.softmax(logits, -1), torch.full((n_states, n_actions), 1 / n_actions)
    )
    torch.testing.assert_close(values, torch.zeros(n_states))


def test_tabular_model_reads_its_table():
    # logits(s) = theta[s, :] = weight[:, s], V(s) = value_head.weight[0, s]
    model = tabular_model(4, 2)
    with torch.no_grad():
        model.policy_head.weight.copy_(torch.arange(8.0).reshape(2, 4))
        model.value_head.weight.copy_(torch.tensor([[10.0, 20.0, 30.0, 40.0]]))
    logits, values, _ = model(torch.tensor([2, 0]))
    torch.testing.assert_close(logits, torch.tensor([[2.0, 6.0], [0.0, 4.0]]))
    torch.testing.assert_close(values, torch.tensor([30.0, 10.0]))


def test_discrete_observations_with_hidden_layers_are_not_tabular():
    model = make_model(gym.spaces.Discrete(6), gym.spaces.Discrete(2), ModelConfig(hidden=(8,)))
    assert model.policy_head.bias is not None
    logits, values, _ = model(torch.tensor([0, 5, 3]))
    assert logits.shape == (3, 2) and values.shape == (3,)


def test_unsupported_spaces_raise_env_error():
    from a3c.errors import EnvError

    with pytest.raises(EnvError):
        make_model(gym.spaces.Discrete(3), gym.spaces.Box(-np.inf, np.inf, (2,)), ModelConfig())
    with pytest.raises(EnvError, match="Text space"):
        make_model(
            gym.spaces.Dict({"mission": gym.spaces.Text(10)}), gym.spaces.Discrete(2), ModelConfig()
        )


def test_discrete_observation_space_with_nonzero_start():
    obs_space = gym.spaces.Discrete(3, start=1)  # valid observations: 1, 2, 3
    model = make_model(obs_space, gym.spaces.Discrete(2), ModelConfig(hidden=()))
    logits, values, _ = model(torch.tensor([1, 2, 3]))
    assert logits.shape == (3, 2) and values.shape == (3,)


# ---------------------------------------------------------------------------------------------
# Tabular gradients equal hand-derived ones
# ---------------------------------------------------------------------------------------------


def test_tabular_policy_gradient_is_onehot_minus_pi_times_advantage():
    # For a softmax table, d(-log pi(a|s) A)/d theta[s, :] = -(onehot(a) - pi(.|s)) A, and 0 for
    # every other state s' (their logits do not enter the loss).
    n_states, n_actions, s, a, A = 4, 3, 2, 1, 1.7
    model = tabular_model(n_states, n_actions)
    with torch.no_grad():
        model.policy_head.weight.copy_(
            torch.tensor([[0.3, -1.0, 0.5, 2.0], [1.2, 0.0, -0.4, 0.1], [-0.7, 0.9, 1.1, -2.0]])
        )
    logits, _, _ = model(torch.tensor([s]))
    logp, _ = categorical_logp_entropy(logits, torch.tensor([a]))
    # N = 1: mean is the sample
    loss = algo.policy_gradient_loss(logp.reshape(1, 1), torch.tensor([[A]]))
    loss.backward()

    theta_s = model.policy_head.weight.detach()[:, s]
    pi = torch.softmax(theta_s, 0)
    expected = torch.zeros(n_actions, n_states)
    expected[:, s] = -(nn.functional.one_hot(torch.tensor(a), n_actions).float() - pi) * A
    torch.testing.assert_close(model.policy_head.weight.grad, expected)
    assert model.value_head.weight.grad is None or torch.all(model.value_head.weight.grad == 0)


def test_tabular_value_gradient_is_minus_td_target_error():
    # d(1/2 (G - V(s))^2)/dV(s) = -(G - V(s)); other entries of the V table get 0.
    n_states, s, G = 5, 3, 2.5
    model = tabular_model(n_states, 2)
    with torch.no_grad():
        model.value_head.weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]]))
    _, v, _ = model(torch.tensor([s]))
    algo.value_loss(v.reshape(1, 1), torch.tensor([[G]])).backward()
    expected = torch.zeros(1, n_states)
    expected[0, s] = -(G - 0.4)  # = -2.1
    torch.testing.assert_close(model.value_head.weight.grad, expected)
    assert model.policy_head.weight.grad is None or torch.all(model.policy_head.weight.grad == 0)


# ---------------------------------------------------------------------------------------------
# Categorical distribution helpers
# ---------------------------------------------------------------------------------------------


def test_categorical_logp_entropy_by_hand():
    # logits [0, ln 3] -> probs [1/4, 3/4]; H = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623351446...
    # logits [0, 0, 0, 0] -> uniform over 4: H = ln 4; logp = ln 1/4
    # logits [5, 5 + ln 3] -> same probs as the first row (softmax is shift-invariant)
    logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)], [0.0, math.log(3)]])
    logp, ent = categorical_logp_entropy(logits, torch.tensor([0, 1, 1]))
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert h == pytest.approx(0.5623351446, abs=1e-9)
    torch.testing.assert_close(logp, torch.tensor([math.log(0.25), math.log(0.75), math.log(0.75)]))
    torch.testing.assert_close(ent, torch.full((3,), h))

    logp4, ent4 = categorical_logp_entropy(torch.zeros(2, 4), torch.tensor([3, 0]))
    torch.testing.assert_close(logp4, torch.full((2,), math.log(0.25)))
    torch.testing.assert_close(ent4, torch.full((2,), math.log(4)))

    logp_s, ent_s = categorical_logp_entropy(
        torch.tensor([[5.0, 5.0 + math.log(3)]]), torch.tensor([0])
    )
    torch.testing.assert_close(logp_s, torch.tensor([math.log(0.25)]))
    torch.testing.assert_close(ent_s, torch.tensor([h]))


def test_categorical_logp_entropy_gradient_of_entropy():
    # dH/dlogits_i = -p_i (log p_i + H); for [0, ln 3]: p = [1/4, 3/4]
    logits = torch.tensor([[0.0, math.log(3)]], requires_grad=True)
    _, ent = categorical_logp_entropy(logits, torch.tensor([0]))
    ent.sum().backward()
    p = torch.tensor([0.25, 0.75])
    h = -(p * p.log()).sum()
    torch.testing.assert_close(logits.grad[0], -p * (p.log() + h))


def test_categorical_sample_is_reproducible_with_a_seeded_generator():
    logits = torch.randn(500, 5, generator=torch.Generator().manual_seed(0))
    a1 = categorical_sample(logits, torch.Generator().manual_seed(42))
    a2 = categorical_sample(logits, torch.Generator().manual_seed(42))
    a3 = categorical_sample(logits, torch.Generator().manual_seed(43))
    assert a1.shape == (500,) and a1.dtype == torch.int64
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, a3)
    assert a1.min() >= 0 and a1.max() <= 4


def test_categorical_sample_frequencies_match_softmax():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    n = 20_000
    logits = probs.log().expand(n, 4) + 3.0  # a shift must not matter
    actions = categorical_sample(logits, torch.Generator().manual_seed(7))
    freq = torch.bincount(actions, minlength=4).float() / n
    # std of a frequency <= sqrt(0.25 / 20000) = 0.0035; 0.015 is > 4 sigma
    assert (freq - probs).abs().max() < 0.015


def test_categorical_sample_never_picks_a_masked_action():
    logits = torch.tensor([[0.0, float("-inf"), 0.0]]).expand(2000, 3)
    actions = categorical_sample(logits, torch.Generator().manual_seed(1))
    assert (actions != 1).all()
    assert set(actions.tolist()) == {0, 2}


# ---------------------------------------------------------------------------------------------
# Parameter ordering (actor first, critic tail)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spaces,cfg",
    [
        ("cartpole", ModelConfig()),
        ("cartpole", ModelConfig(shared_encoder=True)),
        ("cartpole", ModelConfig(hidden=())),
        ("tabular", ModelConfig(hidden=())),
        ("tabular", ModelConfig(hidden=(4,))),
        ("tabular", ModelConfig(hidden=(), tabular="embedding", embedding_dim=3)),
    ],
)
def test_ordered_parameters_actor_first_then_critic_and_covers_all(cartpole_spaces, spaces, cfg):
    obs_space, act_space = (
        cartpole_spaces
        if spaces == "cartpole"
        else (gym.spaces.Discrete(5), gym.spaces.Discrete(3))
    )
    model = make_model(obs_space, act_space, cfg)
    actor, critic = model.actor_parameters(), model.critic_parameters()
    ordered = model.ordered_parameters()
    assert [id(p) for p in ordered] == [id(p) for p in actor] + [id(p) for p in critic]
    assert len({id(p) for p in ordered}) == len(ordered)  # no parameter twice
    assert {id(p) for p in ordered} == {id(p) for p in model.parameters()}  # and none missing
    # the heads are where they must be
    assert any(p is model.policy_head.weight for p in actor)
    assert any(p is model.value_head.weight for p in critic)
    # the critic is the contiguous tail of the flat vector
    n_actor = sum(p.numel() for p in actor)
    flat = flat_of(model)
    torch.testing.assert_close(flat[n_actor:], torch.cat([p.detach().reshape(-1) for p in critic]))


# ---------------------------------------------------------------------------------------------
# a3c.optim.apply_update
# ---------------------------------------------------------------------------------------------


def test_rmsprop_step_by_hand():
    # alpha = 0.9, lr = 0.01, eps tiny; p = [0, 1, 2], g = [1, -2, 0.5], square_avg starts at 0:
    #   square_avg = 0.1 * g^2 = [0.1, 0.4, 0.025]
    #   g / sqrt(square_avg) = [1/0.31623, -2/0.63246, 0.5/0.15811] = sqrt(10) * [1, -1, 1]
    #   p = [0, 1, 2] - 0.01 * sqrt(10) * [1, -1, 1] = [-0.0316228, 1.0316228, 1.9683772]
    cfg = OptimConfig(name="rmsprop", alpha=0.9, eps=1e-10)
    flat = torch.tensor([0.0, 1.0, 2.0])
    g = torch.tensor([1.0, -2.0, 0.5])
    state = {"square_avg": torch.zeros(3)}
    apply_update("rmsprop", flat, g, state, cfg, lr=0.01, critic_lr=0.01, n_actor=3)
    torch.testing.assert_close(state["square_avg"], torch.tensor([0.1, 0.4, 0.025]))
    s10 = math.sqrt(10) * 0.01
    torch.testing.assert_close(flat, torch.tensor([-s10, 1 + s10, 2 - s10]))
    # second step with g2 = [0, 1, 1]:
    #   square_avg = 0.9 * [0.1, 0.4, 0.025] + 0.1 * [0, 1, 1] = [0.09, 0.46, 0.1225]
    #   p -= 0.01 * [0, 1/sqrt(0.46), 1/0.35]
    g2 = torch.tensor([0.0, 1.0, 1.0])
    apply_update("rmsprop", flat, g2, state, cfg, lr=0.01, critic_lr=0.01, n_actor=3)
    torch.testing.assert_close(state["square_avg"], torch.tensor([0.09, 0.46, 0.1225]))
    torch.testing.assert_close(
        flat, torch.tensor([-s10, 1 + s10 - 0.01 / math.sqrt(0.46), 2 - s10 - 0.01 / 0.35])
    )


def test_rmsprop_tf_step_by_hand():
    # TensorFlow's form: square_avg starts at 1 and eps sits inside the square root.
    # alpha = 0.9, lr = 0.01, eps = 0.01; p = [0, 1], g = [1, 0]:
    #   square_avg = 0.9 * 1 + 0.1 * g^2 = [1.0, 0.9]
    #   p -= 0.01 * g / sqrt(square_avg + 0.01) = [0.01 / sqrt(1.01), 0]
    # (PyTorch's form, from 0 and with eps outside, would step p[0] by 0.01 / (sqrt(0.1) + 0.01).)
    cfg = OptimConfig(name="rmsprop_tf", alpha=0.9, eps=0.01)
    state = new_state("rmsprop_tf", 2)
    assert torch.equal(state["square_avg"], torch.ones(2))
    flat = torch.tensor([0.0, 1.0])
    apply_update(
        "rmsprop_tf", flat, torch.tensor([1.0, 0.0]), state, cfg, lr=0.01, critic_lr=0.01, n_actor=2
    )
    torch.testing.assert_close(state["square_avg"], torch.tensor([1.0, 0.9]))
    torch.testing.assert_close(flat, torch.tensor([-0.01 / math.sqrt(1.01), 1.0]))


def _torch_reference(
    opt_cls, p0: torch.Tensor, grads: list[torch.Tensor], **kwargs
) -> torch.Tensor:
    p = nn.Parameter(p0.clone())
    opt = opt_cls([p], **kwargs)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def test_rmsprop_matches_torch_rmsprop():
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(10, generator=gen)
    grads = [torch.randn(10, generator=gen) for _ in range(5)]
    cfg = OptimConfig(name="rmsprop", alpha=0.99, eps=1e-5)
    flat, state = p0.clone(), {"square_avg": torch.zeros(10)}
    for g in grads:
        apply_update("rmsprop", flat, g, state, cfg, lr=7e-4, critic_lr=7e-4, n_actor=6)
    expected = _torch_reference(torch.optim.RMSprop, p0, grads, lr=7e-4, alpha=0.99, eps=1e-5)
    torch.testing.assert_close(flat, expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(flat, p0)


def test_adam_matches_torch_adam():
    gen = torch.Generator().manual_seed(1)
    p0 = torch.randn(10, generator=gen)
    grads = [torch.randn(10, generator=gen) for _ in range(6)]
    cfg = OptimConfig(name="adam", betas=(0.9, 0.999), eps=1e-5)
    flat = p0.clone()
    state = {
        "exp_avg": torch.zeros(10),
        "exp_avg_sq": torch.zeros(10),
        "step": torch.zeros(1, dtype=torch.float64),
    }
    for g in grads:
        apply_update("adam", flat, g, state, cfg, lr=1e-2, critic_lr=1e-2, n_actor=6)
    expected = _torch_reference(torch.optim.Adam, p0, grads, lr=1e-2, betas=(0.9, 0.999), eps=1e-5)
    torch.testing.assert_close(flat, expected, rtol=1e-6, atol=1e-6)
    assert state["step"].item() == 6
    assert not torch.equal(flat, p0)


def test_adam_first_step_is_lr_times_sign():
    # After one step, m_hat = g and v_hat = g^2, so p -= lr * g / (|g| + eps) ~ lr * sign(g).
    cfg = OptimConfig(name="adam", betas=(0.9, 0.999), eps=1e-8)
    flat = torch.zeros(3)
    state = {
        "exp_avg": torch.zeros(3),
        "exp_avg_sq": torch.zeros(3),
        "step": torch.zeros(1, dtype=torch.float64),
    }
    apply_update(
        "adam", flat, torch.tensor([3.0, -0.5, 2.0]), state, cfg, lr=0.1, critic_lr=0.1, n_actor=3
    )
    torch.testing.assert_close(flat, torch.tensor([-0.1, 0.1, -0.1]))


def test_sgd_step():
    # p -= lr * g: [1, 2, 3] - 0.5 * [2, -2, 4] = [0, 3, 1]
    flat = torch.tensor([1.0, 2.0, 3.0])
    apply_update(
        "sgd",
        flat,
        torch.tensor([2.0, -2.0, 4.0]),
        {},
        OptimConfig(name="sgd"),
        lr=0.5,
        critic_lr=0.5,
        n_actor=3,
    )
    torch.testing.assert_close(flat, torch.tensor([0.0, 3.0, 1.0]))


def test_sgd_separate_critic_lr_by_hand():
    # n_actor = 2: flat[:2] moves by lr = 0.1, flat[2:] by critic_lr = 1.0.
    # [1, 1, 1, 1, 1] - [0.1*1, 0.1*2, 1.0*3, 1.0*4, 1.0*5] = [0.9, 0.8, -2, -3, -4]
    flat = torch.ones(5)
    apply_update(
        "sgd",
        flat,
        torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]),
        {},
        OptimConfig(name="sgd"),
        lr=0.1,
        critic_lr=1.0,
        n_actor=2,
    )
    torch.testing.assert_close(flat, torch.tensor([0.9, 0.8, -2.0, -3.0, -4.0]))


def _fresh_state(kind: str, n: int) -> dict[str, torch.Tensor]:
    if kind == "rmsprop":
        return {"square_avg": torch.zeros(n)}
    if kind == "adam":
        return {
            "exp_avg": torch.zeros(n),
            "exp_avg_sq": torch.zeros(n),
            "step": torch.zeros(1, dtype=torch.float64),
        }
    return {}


@pytest.mark.parametrize("kind", ["rmsprop", "adam", "sgd"])
def test_separate_critic_lr_applies_only_to_the_tail(kind):
    # Updating with (lr, critic_lr) equals the lr-only update on flat[:n_actor] and the
    # critic_lr-only update on flat[n_actor:], step after step (the statistics do not depend on lr).
    gen = torch.Generator().manual_seed(2)
    n, n_actor, lr, critic_lr = 9, 4, 1e-2, 5e-2
    cfg = OptimConfig(name=kind)
    p0 = torch.randn(n, generator=gen)
    grads = [torch.randn(n, generator=gen) for _ in range(3)]
    both, only_actor_lr, only_critic_lr = p0.clone(), p0.clone(), p0.clone()
    s_both, s_a, s_c = _fresh_state(kind, n), _fresh_state(kind, n), _fresh_state(kind, n)
    for g in grads:
        apply_update(kind, both, g, s_both, cfg, lr, critic_lr, n_actor)
        apply_update(kind, only_actor_lr, g, s_a, cfg, lr, lr, n_actor)
        apply_update(kind, only_critic_lr, g, s_c, cfg, critic_lr, critic_lr, n_actor)
    torch.testing.assert_close(both[:n_actor], only_actor_lr[:n_actor])
    torch.testing.assert_close(both[n_actor:], only_critic_lr[n_actor:])
    # the tail did move differently
    assert not torch.allclose(both[n_actor:], only_actor_lr[n_actor:])


@pytest.mark.parametrize("kind", ["rmsprop", "adam", "sgd"])
def test_zero_critic_lr_freezes_only_the_critic(kind):
    n, n_actor = 6, 2
    p0 = torch.arange(float(n))
    flat = p0.clone()
    apply_update(
        kind,
        flat,
        torch.ones(n),
        _fresh_state(kind, n),
        OptimConfig(name=kind),
        lr=0.1,
        critic_lr=0.0,
        n_actor=n_actor,
    )
    assert torch.equal(flat[n_actor:], p0[n_actor:])
    assert (flat[:n_actor] < p0[:n_actor]).all()


# ---------------------------------------------------------------------------------------------
# scheduled_lr
# ---------------------------------------------------------------------------------------------


def test_scheduled_lr_linear():
    assert scheduled_lr(1e-3, "linear", 0, 1000) == pytest.approx(1e-3)
    assert scheduled_lr(1e-3, "linear", 250, 1000) == pytest.approx(7.5e-4)
    assert scheduled_lr(1e-3, "linear", 500, 1000) == pytest.approx(5e-4)
    assert scheduled_lr(1e-3, "linear", 1000, 1000) == 0.0
    assert scheduled_lr(1e-3, "linear", 1500, 1000) == 0.0  # never negative past the horizon


def test_scheduled_lr_constant():
    for steps in (0, 500, 1000, 10**9):
        assert scheduled_lr(7e-4, "constant", steps, 1000) == 7e-4


def test_piecewise_linear_entropy_schedule():
    points = ((1000, 0.01), (3000, 0.002), (3000, 0.0005))
    assert piecewise_linear(0.01, (), 10**9) == 0.01  # no points: the base throughout
    assert piecewise_linear(0.02, points, 0) == 0.02  # the base holds until the first point
    assert piecewise_linear(0.02, points, 999) == 0.02
    assert piecewise_linear(0.02, points, 1000) == pytest.approx(0.01)
    assert piecewise_linear(0.02, points, 2000) == pytest.approx(0.006)
    assert piecewise_linear(0.02, points, 2999) == pytest.approx(0.002 + 0.008 / 2000)
    assert piecewise_linear(0.02, points, 3000) == pytest.approx(0.0005)  # a step at equal steps
    assert piecewise_linear(0.02, points, 10**9) == pytest.approx(0.0005)  # the last value after
    assert piecewise_linear(0.02, ((5, 0.1),), 5) == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------
# SharedStore (a3c/store.py)
# ---------------------------------------------------------------------------------------------


def _model_and_n_actor(cartpole_spaces) -> tuple[ActorCritic, int]:
    torch.manual_seed(0)
    model = make_model(*cartpole_spaces, ModelConfig(hidden=(8,)))
    return model, sum(p.numel() for p in model.actor_parameters())


def _store(model, workers=1, lock=None, **config) -> SharedStore:
    # A constant learning rate, so that the pushes below apply exactly the rates the test names.
    cfg = Config().replace({"workers": workers, "lr_schedule": "constant", **config})
    store = SharedStore.for_model(model, cfg)
    store.lock = lock
    return store


def test_the_store_is_a_copy_of_the_ordered_parameters(cartpole_spaces):
    model, n_actor = _model_and_n_actor(cartpole_spaces)
    store = _store(model, workers=2)
    assert store.size == sum(p.numel() for p in model.parameters()) and store.n_actor == n_actor
    torch.testing.assert_close(store.flat, flat_of(model))
    store.flat.add_(1.0)  # the store owns its memory: the model is unchanged
    assert not torch.allclose(store.flat, flat_of(model))


@pytest.mark.parametrize("name", ["rmsprop", "adam", "sgd"])
def test_store_push_is_deterministic(cartpole_spaces, name):
    model, _ = _model_and_n_actor(cartpole_spaces)
    gen = torch.Generator().manual_seed(3)
    n = sum(p.numel() for p in model.parameters())
    grads = [torch.randn(n, generator=gen) for _ in range(3)]
    results = []
    for _ in range(2):  # two separate stores from the same model, same pushes
        store = _store(
            model,
            workers=2,
            **{"optim.name": name, "learning_rate": 1e-3, "critic_learning_rate": 2e-3},
        )
        buf = torch.empty(store.size)
        for i, g in enumerate(grads):
            store.push(i % 2, 5, store.pull(buf), g)
        results.append(store.flat.clone())
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], flat_of(model))  # the pushes did change the parameters


def test_store_push_applies_apply_update_at_the_schedules_rates(cartpole_spaces):
    model, n_actor = _model_and_n_actor(cartpole_spaces)
    store = _store(
        model, **{"optim.name": "rmsprop", "learning_rate": 1e-3, "critic_learning_rate": 5e-3}
    )
    g = torch.linspace(-1, 1, store.size)
    expected, state = flat_of(model).clone(), {"square_avg": torch.zeros(store.size)}
    apply_update("rmsprop", expected, g, state, store.optimizer.cfg, 1e-3, 5e-3, n_actor)
    pushed = store.push(0, 1, Pulled(0, 0.0), g)
    assert pushed == Pushed(lag=0, learning_rate=1e-3)
    assert torch.equal(store.flat, expected)
    assert torch.equal(store.optimizer.state["square_avg"], state["square_avg"])


def test_the_store_owns_the_schedules_of_the_absolute_global_step(cartpole_spaces):
    """Learning rate (linear to 0 at total_steps) and entropy coefficient come from the store's
    global step count, not from the worker."""
    model, _ = _model_and_n_actor(cartpole_spaces)
    cfg = Config().replace(
        {
            "workers": 2,
            "total_steps": 100,
            "learning_rate": 1e-2,
            "ent_coef": 0.5,
            "ent_coef_schedule": [[40, 0.1]],
        }
    )
    store = SharedStore.for_model(model, cfg)
    buf = torch.empty(store.size)
    assert store.pull(buf).ent_coef == 0.5
    assert store.push(
        0, 25, store.pull(buf), torch.zeros(store.size)
    ).learning_rate == pytest.approx(1e-2)
    assert store.push(
        1, 25, store.pull(buf), torch.zeros(store.size)
    ).learning_rate == pytest.approx(1e-2 * 0.75)
    # 50 global steps: past the schedule's point
    assert store.pull(buf).ent_coef == pytest.approx(0.1)


def test_store_pull_copies_and_push_returns_update_lag(cartpole_spaces):
    model, _ = _model_and_n_actor(cartpole_spaces)
    store = _store(model, workers=2, **{"optim.name": "sgd"})
    buf0, buf1 = torch.empty(store.size), torch.empty(store.size)
    g = torch.ones(store.size)

    at0 = store.pull(buf0)
    at1 = store.pull(buf1)
    assert at0.version == at1.version == 0
    assert torch.equal(buf0, store.flat)

    assert store.push(0, 8, at0, g).lag == 0  # nobody pushed since
    assert store.push(1, 8, at1, g).lag == 1  # worker 0 pushed once
    assert not torch.equal(buf0, store.flat)  # a pull is a copy, not a view

    at0 = store.pull(buf0)
    assert at0.version == 2
    # worker 1 pushes again without pulling: two global updates since its pull at 0
    assert store.push(1, 8, at1, g).lag == 2
    assert store.push(0, 8, at0, g).lag == 1
    assert store.progress() == Progress(steps=32, updates=4, stop=False)
    assert store.counters["worker_updates"].tolist() == [2, 2]


def test_a_skipped_update_counts_its_steps_only_and_the_stop_flag(cartpole_spaces):
    model, _ = _model_and_n_actor(cartpole_spaces)
    store = _store(model, workers=2)
    before = store.flat.clone()
    store.push(1, 5, store.pull(torch.empty(store.size)), None)
    assert store.progress() == Progress(steps=5, updates=0, stop=False)
    assert store.counters["worker_nonfinite"].tolist() == [0, 1]
    assert torch.equal(store.flat, before)
    store.request_stop()
    assert store.progress().stop


def test_store_state_dict_round_trip_folds_other_worker_counts(cartpole_spaces):
    model, _ = _model_and_n_actor(cartpole_spaces)
    store = _store(model, workers=2, **{"optim.name": "adam"})
    for w in (0, 1, 1):
        store.push(w, 10, store.pull(torch.empty(store.size)), torch.ones(store.size))
    state = store.state_dict()
    assert set(state) == {
        "params",
        "optim.exp_avg",
        "optim.exp_avg_sq",
        "optim.step",
        "counters.worker_steps",
        "counters.worker_updates",
        "counters.worker_nonfinite",
    }
    three = _store(model, workers=3, **{"optim.name": "adam"})
    three.load_state_dict(state)
    assert torch.equal(three.flat, store.flat) and torch.equal(
        three.optimizer.state["exp_avg"], store.optimizer.state["exp_avg"]
    )
    assert three.counters["worker_steps"].tolist() == [30, 0, 0], (
        "another worker count: the totals in row 0"
    )
    assert three.progress() == store.progress()


def test_store_lock_is_used(cartpole_spaces):
    model, _ = _model_and_n_actor(cartpole_spaces)

    class CountingLock:
        entered = released = 0

        def acquire(self, timeout=None):
            assert timeout is not None, (
                "a bounded wait: a worker killed in the lock must not stall the others"
            )
            CountingLock.entered += 1
            return True

        def release(self):
            CountingLock.released += 1

    store = _store(model, lock=CountingLock())
    store.push(0, 1, Pulled(0, 0.0), torch.zeros(store.size))
    assert CountingLock.entered == 1 and CountingLock.released == 1
