"""A3C's math as pure functions: no classes with state, no I/O.

Shapes follow rlax: a rollout is `[T, B]` (time-major, B envs). Episode ends travel per step:
`discount_t` is gamma where the episode goes on *or was truncated by a time limit*, and 0 only where
it terminated; `end_t` marks any episode end (terminated or truncated) so that no return is chained
across a reset. `v_tp1` is the value of the true successor of step t: V(s_{t+1}) inside an episode,
V(final observation) at a time-limit truncation (so truncation bootstraps; termination multiplies it
by a discount of 0).

References: the tutorial's eq. 1 (n-step advantage), eq. 2 (policy gradient with entropy bonus),
eq. 3 (value loss 1/2 A^2); Schulman et al. 2016 (GAE) for the lambda generalisation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class LossTerms(NamedTuple):
    """The loss and its parts, each a scalar tensor; logging iterates over the fields."""

    total: Tensor
    policy_loss: Tensor
    value_loss: Tensor
    entropy_loss: Tensor


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(s != first for s in shapes.values()):
        raise ValueError(f"expected tensors of one shape [T, B], got {shapes}")


def advantages(
    r_t: Tensor,
    discount_t: Tensor,
    v_t: Tensor,
    v_tp1: Tensor,
    end_t: Tensor,
    lambda_: float = 1.0,
) -> Tensor:
    """Advantages A_t over a `[T, B]` rollout; GAE(lambda), with lambda = 1 the n-step A_t of eq. 1.

    delta_t = r_t + discount_t * v_tp1[t] - v_t[t]
    A_t     = delta_t + discount_t * lambda * (1 - end_t) * A_{t+1},     A_T = 0

    With lambda = 1 and no episode end inside the rollout this telescopes to eq. 1 of the tutorial,
    A_t = sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n}) - V(s_t), with n = T - t the steps left in
    the rollout (each state uses all the rewards after it: the "forward view" of A3C, Mnih et al.
    2016, Algorithm S3). The result carries no gradient: targets are constants (the bootstrap value
    is not trained through).

    Args:
      r_t: rewards r_{t+1} received after acting at s_t, `[T, B]`.
      discount_t: gamma, or 0 where the episode terminated at step t, `[T, B]`.
      v_t: V(s_t), `[T, B]`.
      v_tp1: V of the successor of s_t (the final observation at a truncation), `[T, B]`.
      end_t: 1 where the episode ended (terminated or truncated) at step t, `[T, B]`.
      lambda_: GAE lambda in [0, 1].
    """
    _check_same_shape(r_t=r_t, discount_t=discount_t, v_t=v_t, v_tp1=v_tp1, end_t=end_t)
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be in [0, 1], got {lambda_}")
    # The recursion runs in NumPy on views of the tensors: a worker's rollout is small ([8, 8] for
    # CartPole), where each torch op costs microseconds of dispatch and the loop over T made this 3%
    # of an update. The arithmetic, its order and its dtype are those of the same loop in torch.
    r, d, v, v1 = (x.detach().cpu().numpy() for x in (r_t, discount_t, v_t, v_tp1))
    delta = r + d * v1 - v
    carry = d * lambda_ * (1.0 - end_t.cpu().numpy().astype(delta.dtype))
    adv = np.empty_like(delta)
    acc = np.zeros_like(delta[0])
    for t in range(delta.shape[0] - 1, -1, -1):
        acc = delta[t] + carry[t] * acc
        adv[t] = acc
    return torch.from_numpy(adv).to(r_t.device)


def policy_gradient_loss(logp_t: Tensor, adv_t: Tensor) -> Tensor:
    """-mean(log pi(a_t|s_t) * A_t): minimising it ascends eq. 2's policy gradient; A_t is a
    constant."""
    if logp_t.shape != adv_t.shape:
        raise ValueError(
            f"logp_t {tuple(logp_t.shape)} and adv_t {tuple(adv_t.shape)} differ in shape"
        )
    return -(logp_t * adv_t.detach()).mean()


def value_loss(v_t: Tensor, return_t: Tensor) -> Tensor:
    """mean(1/2 (G_t - V(s_t))^2) = mean(1/2 A_t^2) of eq. 3; the gradient flows through V(s_t)
    only."""
    if v_t.shape != return_t.shape:
        raise ValueError(
            f"v_t {tuple(v_t.shape)} and return_t {tuple(return_t.shape)} differ in shape"
        )
    return 0.5 * (return_t.detach() - v_t).pow(2).mean()


def entropy_loss(entropy_t: Tensor) -> Tensor:
    """-mean(H[pi(.|s_t)]): adding ent_coef times it to the loss is eq. 2's entropy bonus (beta)."""
    return -entropy_t.mean()


def a3c_loss(
    logp_t: Tensor,
    entropy_t: Tensor,
    v_t: Tensor,
    adv_t: Tensor,
    ent_coef: float,
    vf_coef: float,
) -> LossTerms:
    """Total A3C loss = policy loss + ent_coef * entropy loss + vf_coef * value loss (eq. 2 and
    3)."""
    pl = policy_gradient_loss(logp_t, adv_t)
    vl = value_loss(v_t, adv_t.detach() + v_t.detach())
    el = entropy_loss(entropy_t)
    return LossTerms(pl + ent_coef * el + vf_coef * vl, pl, vl, el)
