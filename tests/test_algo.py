"""Tests of a3c.algo: advantages/returns (eq. 1, GAE) and the A3C losses (eq. 2, 3).

Layout: hand-computed cases first, then a deliberately slow reference written like the formula,
then a fast-vs-slow comparison over a grid, then the losses.

Convention (the docstring of `advantages`): r_t is the reward received after acting at s_t;
v_tp1[t] is V of the true successor of s_t (V(s_{t+1}) inside an episode, V(final observation) at a
time-limit truncation); discount_t is 0 only at a termination; end_t marks any episode end.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from a3c import algo


def col(*xs: float) -> torch.Tensor:
    """A [T, 1] float32 column: one env."""
    return torch.tensor(xs, dtype=torch.float32).reshape(-1, 1)


def assert_close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    expected = torch.as_tensor(np.asarray(expected, dtype=np.float64), dtype=actual.dtype)
    torch.testing.assert_close(actual, expected.reshape(actual.shape), rtol=1e-5, atol=atol)


# ---------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------


def test_no_episode_end_is_eq1_by_hand():
    # T = 3, B = 2, gamma = 0.5, no episode end: A_t = sum_{k<n} g^k r_{t+k} + g^n V(s_3) - V(s_t).
    # env 0: r = [1, 2, 3], V(s_0..s_3) = [0.5, 1, 2, 4]
    #   A_2 = 3 + 0.5*4 - 2                              = 3
    #   A_1 = 2 + 0.5*3 + 0.25*4 - 1                     = 3.5
    #   A_0 = 1 + 0.5*2 + 0.25*3 + 0.125*4 - 0.5          = 2.75
    # env 1: r = [0, 0, 1], V(s_0..s_3) = [0, 0, 0, 10]
    #   A_2 = 1 + 0.5*10 - 0                             = 6
    #   A_1 = 0 + 0.5*1 + 0.25*10 - 0                    = 3
    #   A_0 = 0 + 0 + 0.25*1 + 0.125*10 - 0              = 1.5
    g = 0.5
    states_v = torch.tensor([[0.5, 0.0], [1.0, 0.0], [2.0, 0.0], [4.0, 10.0]])
    r_t = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    v_t, v_tp1 = states_v[:3], states_v[1:]
    discount_t = torch.full((3, 2), g)
    end_t = torch.zeros(3, 2)

    adv = algo.advantages(r_t, discount_t, v_t, v_tp1, end_t)

    assert_close(adv, [[2.75, 1.5], [3.5, 3.0], [3.0, 6.0]])
    # the n-step targets of eq. 1: G_t = A_t + V(s_t)
    assert_close(adv + v_t, [[3.25, 1.5], [4.5, 3.0], [5.0, 6.0]])


def test_termination_inside_rollout_bootstraps_zero_and_does_not_chain():
    # T = 4, B = 1, gamma = 0.9. The episode terminates after acting at s_1; s_2 is a reset state.
    # r = [1, 2, 3, 4]; V(s_0), V(s_1), V(s_2), V(s_3), V(s_4) = 1, 2, 3, 4, 5.
    # v_tp1[1] is V(terminal obs) = 100: it must be ignored (discount 0).
    #   A_3 = 4 + 0.9*5 - 4                    = 4.5
    #   A_2 = 3 + 0.9*4 + 0.81*5 - 3            = 7.65
    #   A_1 = 2 + 0 - 2                         = 0       (terminated: bootstrap 0)
    #   A_0 = 1 + 0.9*2 + 0 - 1                 = 1.8     (stops at the end: no r_2, r_3, V(s_4))
    r_t = col(1, 2, 3, 4)
    v_t = col(1, 2, 3, 4)
    v_tp1 = col(2, 100, 4, 5)
    discount_t = col(0.9, 0.0, 0.9, 0.9)
    end_t = col(0, 1, 0, 0)

    adv = algo.advantages(r_t, discount_t, v_t, v_tp1, end_t)

    assert_close(adv, [1.8, 0.0, 7.65, 4.5])


def test_truncation_inside_rollout_bootstraps_final_obs_value_and_does_not_chain():
    # Same rollout as above, but the episode is truncated by a time limit after acting at s_1.
    # v_tp1[1] = V(final obs) = 10, which differs from V(next stored state s_2) = 3.
    #   A_3 = 4.5, A_2 = 7.65                   (the new episode, as before)
    #   A_1 = 2 + 0.9*10 - 2                    = 9
    #   A_0 = 1 + 0.9*2 + 0.81*10 - 1           = 9.9
    # Bootstrapping wrongly from V(s_2) = 3 would give A_1 = 2.7; chaining across the reset would
    # add rewards r_2, r_3 to A_0 and A_1.
    r_t = col(1, 2, 3, 4)
    v_t = col(1, 2, 3, 4)
    v_tp1 = col(2, 10, 4, 5)
    discount_t = col(0.9, 0.9, 0.9, 0.9)
    end_t = col(0, 1, 0, 0)

    adv = algo.advantages(r_t, discount_t, v_t, v_tp1, end_t)

    assert_close(adv, [9.9, 9.0, 7.65, 4.5])


def test_end_flag_accepts_bool():
    # A bool end_t (what `terminated | truncated` gives) means the same as 0/1 floats.
    r_t, v_t, v_tp1 = col(1, 2, 3, 4), col(1, 2, 3, 4), col(2, 10, 4, 5)
    discount_t = col(0.9, 0.9, 0.9, 0.9)
    end_float = col(0, 1, 0, 0)
    adv_bool = algo.advantages(r_t, discount_t, v_t, v_tp1, end_float.bool())
    adv_float = algo.advantages(r_t, discount_t, v_t, v_tp1, end_float)
    assert torch.equal(adv_bool, adv_float)


def test_rewards_after_an_end_do_not_change_earlier_advantages():
    # No chaining across a reset: changing everything after the end leaves A_0, A_1 as they were.
    base = dict(
        r_t=col(1, 2, 3, 4),
        v_t=col(1, 2, 3, 4),
        v_tp1=col(2, 10, 4, 5),
        discount_t=col(0.9, 0.9, 0.9, 0.9),
        end_t=col(0, 1, 0, 0),
    )
    changed = dict(base, r_t=col(1, 2, -50, 70), v_t=col(1, 2, 30, -4), v_tp1=col(2, 10, 40, 500))
    a = algo.advantages(**base)
    b = algo.advantages(**changed)
    assert torch.equal(a[:2], b[:2])
    assert not torch.equal(a[2:], b[2:])


def test_gae_lambda_zero_is_one_step_td_error():
    # lambda = 0: A_t = delta_t = r_t + discount_t * v_tp1[t] - v_t[t], whatever the ends.
    gen = torch.Generator().manual_seed(3)
    T, B = 5, 3
    r_t = torch.randn(T, B, generator=gen)
    v_t = torch.randn(T, B, generator=gen)
    v_tp1 = torch.randn(T, B, generator=gen)
    end_t = (torch.rand(T, B, generator=gen) < 0.4).float()
    terminated = end_t * (torch.rand(T, B, generator=gen) < 0.5).float()
    discount_t = 0.9 * (1.0 - terminated)

    adv = algo.advantages(r_t, discount_t, v_t, v_tp1, end_t, lambda_=0.0)

    torch.testing.assert_close(adv, r_t + discount_t * v_tp1 - v_t)


def test_gae_lambda_zero_hand_case():
    # The rollout of the termination case with lambda = 0: delta_t = r_t + d_t v_tp1 - v_t
    #   delta = [1 + 0.9*2 - 1, 2 + 0*100 - 2, 3 + 0.9*4 - 3, 4 + 0.9*5 - 4] = [1.8, 0, 3.6, 4.5]
    adv = algo.advantages(
        col(1, 2, 3, 4),
        col(0.9, 0.0, 0.9, 0.9),
        col(1, 2, 3, 4),
        col(2, 100, 4, 5),
        col(0, 1, 0, 0),
        lambda_=0.0,
    )
    assert_close(adv, [1.8, 0.0, 3.6, 4.5])


def test_gae_intermediate_lambda_by_hand():
    # Env 0 of the eq. 1 case, gamma = 0.5, lambda = 0.5 (so gamma*lambda = 0.25):
    #   delta = [1 + 0.5*1 - 0.5, 2 + 0.5*2 - 1, 3 + 0.5*4 - 2] = [1, 2, 3]
    #   A_2 = 3
    #   A_1 = 2 + 0.25*3     = 2.75
    #   A_0 = 1 + 0.25*2.75  = 1.6875
    # Cross-check with the lambda-return G_t = r_t + g((1-l) V(s_{t+1}) + l G_{t+1}), G_3 = V(s_3) =
    # 4:
    #   G_2 = 3 + 0.5*4 = 5                        -> A_2 = 5 - 2 = 3
    #   G_1 = 2 + 0.5*(0.5*2 + 0.5*5) = 3.75       -> A_1 = 3.75 - 1 = 2.75
    #   G_0 = 1 + 0.5*(0.5*1 + 0.5*3.75) = 2.1875  -> A_0 = 2.1875 - 0.5 = 1.6875
    r_t, v_t, v_tp1 = col(1, 2, 3), col(0.5, 1, 2), col(1, 2, 4)
    discount_t, end_t = col(0.5, 0.5, 0.5), col(0, 0, 0)

    adv = algo.advantages(r_t, discount_t, v_t, v_tp1, end_t, lambda_=0.5)

    assert_close(adv, [1.6875, 2.75, 3.0])
    assert_close(adv + v_t, [2.1875, 3.75, 5.0])


def test_gae_intermediate_lambda_with_truncation_by_hand():
    # T = 3, gamma = 1, lambda = 0.5, truncation after acting at s_0 with V(final obs) = 6.
    # r = [1, 1, 1]; v_t = [2, 0, 1]; v_tp1 = [6, 1, 3]; end = [1, 0, 0]
    #   delta = [1 + 6 - 2, 1 + 1 - 0, 1 + 3 - 1] = [5, 2, 3]
    #   A_2 = 3;  A_1 = 2 + 0.5*3 = 3.5;  A_0 = 5 (no chaining across the end)
    adv = algo.advantages(
        col(1, 1, 1), col(1, 1, 1), col(2, 0, 1), col(6, 1, 3), col(1, 0, 0), lambda_=0.5
    )
    assert_close(adv, [5.0, 3.5, 3.0])


# ---------------------------------------------------------------------------------------------
# Slow references, written like the formulas (NumPy float64, explicit loops)
# ---------------------------------------------------------------------------------------------


def slow_nstep_advantages(r, v, v_tp1, terminated, truncated, gamma):
    """Eq. 1 per (t, b), looping forward: sum gamma^k r until the episode or the rollout ends.

    The bootstrap after n steps is gamma^n times: 0 at a termination, V(final obs) = v_tp1 at a
    truncation, V(s_T) = v_tp1[T-1] at the end of the rollout.
    """
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            g = 0.0
            for k in range(t, T):
                n = k - t + 1  # rewards summed so far
                g += gamma ** (k - t) * r[k, b]
                if terminated[k, b]:
                    break  # bootstrap 0
                if truncated[k, b]:
                    g += gamma**n * v_tp1[k, b]  # V(final observation)
                    break
                if k == T - 1:
                    g += gamma**n * v_tp1[k, b]  # V(s_T): rollout end
            adv[t, b] = g - v[t, b]
    return adv


def _steps_to_end(t, b, terminated, truncated):
    """N: number of steps from t until (and including) the episode end or the rollout end."""
    T = terminated.shape[0]
    for k in range(t, T):
        if terminated[k, b] or truncated[k, b]:
            return k - t + 1
    return T - t


def slow_nstep_return(r, v_tp1, terminated, gamma, t, b, n):
    """G^(n)_t = sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n}) (0 if the step t+n-1 terminated)."""
    g = sum(gamma**k * r[t + k, b] for k in range(n))
    j = t + n - 1
    return g + (0.0 if terminated[j, b] else gamma**n * v_tp1[j, b])


def slow_lambda_return_advantages(r, v, v_tp1, terminated, truncated, gamma, lam):
    """Truncated lambda-return: G^l_t = (1-l) sum_{n=1}^{N-1} l^{n-1} G^(n)_t + l^{N-1} G^(N)_t."""
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            N = _steps_to_end(t, b, terminated, truncated)
            g = sum(
                (1 - lam) * lam ** (n - 1) * slow_nstep_return(r, v_tp1, terminated, gamma, t, b, n)
                for n in range(1, N)
            )
            g += lam ** (N - 1) * slow_nstep_return(r, v_tp1, terminated, gamma, t, b, N)
            adv[t, b] = g - v[t, b]
    return adv


def slow_gae_advantages(r, v, v_tp1, terminated, truncated, gamma, lam):
    """GAE as a sum: A_t = sum_{k<N} (gamma*lam)^k delta_{t+k}, delta_j = r_j + gamma V' -
    V(s_j)."""
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            N = _steps_to_end(t, b, terminated, truncated)
            total = 0.0
            for k in range(N):
                j = t + k
                boot = 0.0 if terminated[j, b] else gamma * v_tp1[j, b]
                total += (gamma * lam) ** k * (r[j, b] + boot - v[j, b])
            adv[t, b] = total
    return adv


def random_rollout(rng: np.random.Generator, T: int, B: int, p_end: float):
    """A consistent random rollout: v_tp1[t] = v_t[t+1] inside an episode; at an end, v_tp1[t] is
    the value of the final observation (a fresh number, unrelated to the reset state's value)."""
    states_v = rng.normal(size=(T + 1, B))
    v = states_v[:T]
    v_tp1 = states_v[1:].copy()
    r = rng.normal(size=(T, B))
    end = rng.random((T, B)) < p_end
    terminated = end & (rng.random((T, B)) < 0.5)
    truncated = end & ~terminated
    v_tp1[end] = rng.normal(size=int(end.sum())) * 3.0
    return r, v, v_tp1, terminated, truncated


def fast_advantages(r, v, v_tp1, terminated, truncated, gamma, lam):
    """Encode the ends as a3c.algo expects (discount 0 only at termination) and call it in
    float32."""
    f = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
    discount = gamma * (1.0 - terminated.astype(np.float64))
    end = (terminated | truncated).astype(np.float64)
    return (
        algo.advantages(f(r), f(discount), f(v), f(v_tp1), f(end), lambda_=lam)
        .numpy()
        .astype(np.float64)
    )


def test_slow_references_agree_with_hand_cases():
    # The slow references themselves must reproduce the hand numbers (else the grid proves nothing).
    r = np.array([[1.0], [2.0], [3.0], [4.0]])
    v = np.array([[1.0], [2.0], [3.0], [4.0]])
    no = np.zeros((4, 1), dtype=bool)
    ended = np.array([[False], [True], [False], [False]])
    term_tp1 = np.array([[2.0], [100.0], [4.0], [5.0]])
    trunc_tp1 = np.array([[2.0], [10.0], [4.0], [5.0]])
    np.testing.assert_allclose(
        slow_nstep_advantages(r, v, term_tp1, ended, no, 0.9).ravel(), [1.8, 0.0, 7.65, 4.5]
    )
    np.testing.assert_allclose(
        slow_nstep_advantages(r, v, trunc_tp1, no, ended, 0.9).ravel(), [9.9, 9.0, 7.65, 4.5]
    )
    r3, v3, tp3, no3 = (
        np.array([[1.0], [2], [3]]),
        np.array([[0.5], [1], [2]]),
        np.array([[1.0], [2], [4]]),
        np.zeros((3, 1), bool),
    )
    np.testing.assert_allclose(
        slow_lambda_return_advantages(r3, v3, tp3, no3, no3, 0.5, 0.5).ravel(), [1.6875, 2.75, 3.0]
    )
    np.testing.assert_allclose(
        slow_gae_advantages(r3, v3, tp3, no3, no3, 0.5, 0.5).ravel(), [1.6875, 2.75, 3.0]
    )


# ---------------------------------------------------------------------------------------------
# Fast vs slow over a grid
# ---------------------------------------------------------------------------------------------

GRID_TB = [(1, 1), (2, 3), (4, 2), (7, 1), (9, 4)]
GAMMAS = [1.0, 0.99, 0.5]
P_ENDS = [0.0, 0.25, 0.6]


@pytest.mark.parametrize("T,B", GRID_TB)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_nstep_fast_matches_slow(T, B, gamma):
    rng = np.random.default_rng(1000 * T + 10 * B + int(100 * gamma))
    n_ends = 0
    for p_end, _ in itertools.product(P_ENDS, range(4)):
        r, v, v_tp1, term, trunc = random_rollout(rng, T, B, p_end)
        n_ends += int(term.sum() + trunc.sum())
        expected = slow_nstep_advantages(r, v, v_tp1, term, trunc, gamma)
        np.testing.assert_allclose(
            fast_advantages(r, v, v_tp1, term, trunc, gamma, 1.0), expected, rtol=1e-5, atol=1e-5
        )
    if T * B >= 4:
        assert n_ends > 0  # the grid did exercise episode ends


@pytest.mark.parametrize("T,B", GRID_TB)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
def test_gae_fast_matches_slow(T, B, gamma, lam):
    rng = np.random.default_rng(7 + 1000 * T + 10 * B + int(100 * gamma) + int(1000 * lam))
    for p_end, _ in itertools.product(P_ENDS, range(3)):
        r, v, v_tp1, term, trunc = random_rollout(rng, T, B, p_end)
        by_sum = slow_gae_advantages(r, v, v_tp1, term, trunc, gamma, lam)
        by_lambda_return = slow_lambda_return_advantages(r, v, v_tp1, term, trunc, gamma, lam)
        # two slow forms agree
        np.testing.assert_allclose(by_sum, by_lambda_return, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            fast_advantages(r, v, v_tp1, term, trunc, gamma, lam), by_sum, rtol=1e-5, atol=1e-5
        )


def test_gae_lambda_one_is_nstep():
    rng = np.random.default_rng(11)
    r, v, v_tp1, term, trunc = random_rollout(rng, 8, 3, 0.3)
    np.testing.assert_allclose(
        slow_gae_advantages(r, v, v_tp1, term, trunc, 0.9, 1.0),
        slow_nstep_advantages(r, v, v_tp1, term, trunc, 0.9),
        rtol=1e-9,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        fast_advantages(r, v, v_tp1, term, trunc, 0.9, 1.0),
        slow_nstep_advantages(r, v, v_tp1, term, trunc, 0.9),
        rtol=1e-5,
        atol=1e-5,
    )


def test_advantages_carry_no_gradient():
    v_t = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    v_tp1 = torch.tensor([[3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    r_t, discount_t, end_t = torch.ones(2, 2), torch.full((2, 2), 0.9), torch.zeros(2, 2)
    adv = algo.advantages(r_t, discount_t, v_t, v_tp1, end_t)
    assert not adv.requires_grad
    assert adv.grad_fn is None


def test_advantages_shape_checks():
    ok = torch.zeros(3, 2)
    with pytest.raises(ValueError):
        algo.advantages(ok, ok, ok, torch.zeros(3, 1), ok)
    with pytest.raises(ValueError):
        algo.advantages(ok, ok, ok, ok, torch.zeros(2, 2))
    flat = torch.zeros(3)
    with pytest.raises(ValueError):  # [T] is not [T, B]
        algo.advantages(flat, flat, flat, flat, flat)
    with pytest.raises(ValueError):
        algo.advantages(ok, torch.zeros(2, 3), ok, ok, ok)


@pytest.mark.parametrize("lam", [-0.1, 1.5])
def test_advantages_rejects_lambda_out_of_range(lam):
    ok = torch.zeros(3, 2)
    with pytest.raises(ValueError):
        algo.advantages(ok, ok, ok, ok, ok, lambda_=lam)


# ---------------------------------------------------------------------------------------------
# Losses (eq. 2 and 3)
# ---------------------------------------------------------------------------------------------


def test_policy_gradient_loss_by_hand_and_gradients():
    # -mean(logp * A) with logp = [[-1, -2], [-0.5, -3]], A = [[1, 2], [3, -1]]:
    #   products = [-1, -4, -1.5, 3], sum = -3.5, mean = -0.875, loss = 0.875
    #   d loss / d logp = -A / N = -A / 4
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    loss = algo.policy_gradient_loss(logp, adv)
    assert loss.item() == pytest.approx(0.875)
    g_logp, g_adv = torch.autograd.grad(loss, [logp, adv], allow_unused=True)
    torch.testing.assert_close(g_logp, -adv.detach() / 4)
    assert g_adv is None  # A_t is a constant in eq. 2: no gradient flows into it


def test_policy_gradient_loss_does_not_flow_into_values_through_adv():
    # adv computed from a value that requires grad (e.g. G - V without detach): the policy loss
    # must still not reach V.
    v = torch.tensor([[0.5, 1.5]], requires_grad=True)
    adv = torch.tensor([[2.0, 2.0]]) - v
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    loss = algo.policy_gradient_loss(logp, adv)
    (g_v,) = torch.autograd.grad(loss, [v], allow_unused=True)
    assert g_v is None


def test_value_loss_by_hand_and_gradient():
    # mean(1/2 (G - v)^2), G = [[1, 2], [3, 4]], v = [[0, 2], [5, 1]]:
    #   G - v = [1, 0, -2, 3], 1/2 squares = [0.5, 0, 2, 4.5], mean = 7/4 = 1.75
    #   d/dv = -(G - v) / N = [-0.25, 0, 0.5, -0.75]
    ret = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    v = torch.tensor([[0.0, 2.0], [5.0, 1.0]], requires_grad=True)
    loss = algo.value_loss(v, ret)
    assert loss.item() == pytest.approx(1.75)
    g_v, g_ret = torch.autograd.grad(loss, [v, ret], allow_unused=True)
    torch.testing.assert_close(g_v, torch.tensor([[-0.25, 0.0], [0.5, -0.75]]))
    assert g_ret is None  # the target is a constant


def test_value_loss_is_half_mean_squared_advantage():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(5, 3, generator=gen)
    adv = torch.randn(5, 3, generator=gen)
    torch.testing.assert_close(algo.value_loss(v, v + adv), 0.5 * (adv**2).mean())


def test_entropy_loss_is_minus_mean_entropy():
    ent = torch.tensor([[0.5, 1.0], [1.5, 0.0]], requires_grad=True)
    loss = algo.entropy_loss(ent)
    assert loss.item() == pytest.approx(-0.75)
    (g,) = torch.autograd.grad(loss, [ent])
    torch.testing.assert_close(g, torch.full((2, 2), -0.25))


def test_a3c_loss_total_and_parts():
    gen = torch.Generator().manual_seed(1)
    T, B = 4, 2
    logp = torch.randn(T, B, generator=gen).requires_grad_()
    ent = torch.rand(T, B, generator=gen).requires_grad_()
    v = torch.randn(T, B, generator=gen).requires_grad_()
    adv = torch.randn(T, B, generator=gen)
    ent_coef, vf_coef = 0.01, 0.5

    terms = algo.a3c_loss(logp, ent, v, adv, ent_coef=ent_coef, vf_coef=vf_coef)

    assert isinstance(terms, algo.LossTerms)
    torch.testing.assert_close(terms.policy_loss, -(logp * adv).mean())
    torch.testing.assert_close(terms.value_loss, 0.5 * (adv**2).mean())
    torch.testing.assert_close(terms.entropy_loss, -ent.mean())
    torch.testing.assert_close(
        terms.total, terms.policy_loss + ent_coef * terms.entropy_loss + vf_coef * terms.value_loss
    )
    for field in terms:
        assert field.shape == ()
    # Gradients of the total: d/dlogp = -A/N, d/dent = -ent_coef/N, d/dv = -vf_coef * A / N
    # (the value target is G = A + V(s) held constant, so d(1/2 (G - v)^2)/dv = -(G - v) = -A).
    g_logp, g_ent, g_v = torch.autograd.grad(terms.total, [logp, ent, v])
    N = T * B
    torch.testing.assert_close(g_logp, -adv / N)
    torch.testing.assert_close(g_ent, torch.full((T, B), -ent_coef / N))
    torch.testing.assert_close(g_v, -vf_coef * adv / N)


def test_a3c_loss_adv_gets_no_gradient():
    logp = torch.zeros(2, 2, requires_grad=True)
    v = torch.zeros(2, 2, requires_grad=True)
    adv = torch.ones(2, 2, requires_grad=True)
    terms = algo.a3c_loss(logp, torch.ones(2, 2), v, adv, ent_coef=0.1, vf_coef=0.5)
    (g_adv,) = torch.autograd.grad(terms.total, [adv], allow_unused=True)
    assert g_adv is None


def test_a3c_loss_with_advantages_from_algo_end_to_end():
    # A hand rollout through advantages -> a3c_loss: the value part equals mean(1/2 A^2).
    # Using the eq. 1 case (A = [[2.75], [3.5], [3.0]]): mean(1/2 A^2) = (7.5625 + 12.25 + 9) / 6
    v_t = col(0.5, 1, 2).requires_grad_()
    adv = algo.advantages(col(1, 2, 3), col(0.5, 0.5, 0.5), v_t, col(1, 2, 4), col(0, 0, 0))
    terms = algo.a3c_loss(torch.zeros(3, 1), torch.zeros(3, 1), v_t, adv, ent_coef=0.0, vf_coef=1.0)
    assert terms.value_loss.item() == pytest.approx((7.5625 + 12.25 + 9.0) / 6)
    assert terms.total.item() == pytest.approx(terms.value_loss.item())
    assert math.isclose(terms.policy_loss.item(), 0.0, abs_tol=1e-12)


def test_loss_shape_checks():
    a, b = torch.zeros(3, 2), torch.zeros(2, 3)
    with pytest.raises(ValueError):
        algo.policy_gradient_loss(a, b)
    with pytest.raises(ValueError):
        algo.value_loss(a, torch.zeros(3))
    with pytest.raises(ValueError):
        algo.a3c_loss(a, a, a, b, ent_coef=0.0, vf_coef=0.5)
