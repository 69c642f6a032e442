"""The shared optimizer on flat tensors, and the schedules it owns.

The optimizer's statistics (RMSprop's squared-gradient average, Adam's moments and step) are one
flat tensor each, in shared memory on the processes backend: one copy that every worker reads and
writes, as in the paper's "shared RMSProp" (Mnih et al. 2016, sec. 4 and S2); with
`optim.shared_statistics` false each worker keeps its own (the paper's per-thread baseline). Its
schedules (the actor's and the critic's learning rates, the entropy coefficient) are functions of
the absolute global step, so a resumed run continues them where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from a3c.config import AlgoConfig, OptimConfig

# Square roots of the squared-gradient averages are taken of max(avg, SQRT_FLOOR). On this
# machine's AVX-512 build, torch.sqrt of an exact 0 runs 8-20x slower than of a normal float, and a
# CNN's averages are half zeros (weights whose gradient has always been 0: dead units): 1.4 of a
# Pong worker's 27 ms per update. An average below the floor changes the denominator by at most
# 1e-15 / bias correction, 1e-7 of the smallest allowed eps' order; a weight whose average is 0
# has a zero gradient average too, so its step is 0 either way.
SQRT_FLOOR = 1e-30


class Schedules:
    """The learning rates and the entropy coefficient at a global step (eq. of the paper's
    annealing: lr = lr0 * (1 - T / T_max) for the linear schedule)."""

    def __init__(self, optim: OptimConfig, algo: AlgoConfig, total_steps: int) -> None:
        self.optim, self.algo, self.total_steps = optim, algo, total_steps

    def learning_rates(self, global_steps: int) -> tuple[float, float]:
        """(actor lr, critic lr) at `global_steps`."""
        o = self.optim
        lr = scheduled_lr(o.learning_rate, o.lr_schedule, global_steps, self.total_steps)
        if o.critic_learning_rate is None:
            return lr, lr
        return lr, scheduled_lr(
            o.critic_learning_rate, o.lr_schedule, global_steps, self.total_steps
        )

    def ent_coef(self, global_steps: int) -> float:
        return piecewise_linear(self.algo.ent_coef, self.algo.ent_coef_schedule, global_steps)


def new_state(name: str, size: int) -> dict[str, Tensor]:
    """Fresh statistics of optimizer `name` for `size` parameters (empty for sgd)."""
    if name == "rmsprop":
        return {"square_avg": torch.zeros(size)}
    if name == "rmsprop_tf":  # TensorFlow starts the average at 1: small first steps
        return {"square_avg": torch.ones(size)}
    if name == "adam":
        # `step` is a shared tensor, not a Python int: on current PyTorch a per-process step breaks
        # sharing.
        return {
            "exp_avg": torch.zeros(size),
            "exp_avg_sq": torch.zeros(size),
            "step": torch.zeros(1, dtype=torch.float64),
        }
    return {}


class SharedOptimizer:
    """Applies one worker's gradient to the flat parameters with the shared statistics, at the
    learning rates of the current global step."""

    def __init__(self, optim: OptimConfig, schedules: Schedules, size: int, n_actor: int) -> None:
        self.cfg, self.schedules, self.n_actor = optim, schedules, n_actor
        self.state = new_state(optim.name, size)
        self._scratch: Tensor | None = None  # this process's denominator buffer (never shared)
        # worker -> its own statistics (optim.shared_statistics false), in the worker's process:
        # never shared, never checkpointed (a restarted or resumed worker starts them afresh)
        self._own: dict[int, dict[str, Tensor]] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_scratch": None, "_own": {}}

    def step(self, flat: Tensor, grad: Tensor, global_steps: int, worker: int = 0) -> float:
        """One update of `flat` in place by `worker`; returns the actor's learning rate it used."""
        lr, critic_lr = self.schedules.learning_rates(global_steps)
        if self._scratch is None:
            self._scratch = torch.empty_like(flat)
        state = self.state
        if not self.cfg.shared_statistics:  # created once, not per update
            if worker not in self._own:
                self._own[worker] = new_state(self.cfg.name, flat.numel())
            state = self._own[worker]
        apply_update(
            self.cfg.name,
            flat,
            grad,
            state,
            self.cfg,
            lr,
            critic_lr,
            self.n_actor,
            self._scratch,
        )
        return lr


def apply_update(
    kind: str,
    flat: Tensor,
    grad: Tensor,
    state: dict[str, Tensor],
    cfg: OptimConfig,
    lr: float,
    critic_lr: float,
    n_actor: int,
    scratch: Tensor | None = None,
) -> None:
    """One optimizer step on the flat parameters, in place (actor slice at lr, critic slice at
    critic_lr).

    `scratch`, a tensor like `flat`, holds the denominator; without it a new one is allocated
    (the store keeps one per process, so an update allocates no parameter-sized tensor)."""
    if scratch is None:
        scratch = torch.empty_like(flat)
    if kind in ("rmsprop", "rmsprop_tf"):
        sq = state["square_avg"]
        sq.mul_(cfg.alpha).addcmul_(grad, grad, value=1.0 - cfg.alpha)
        # PyTorch: sqrt(g) + eps. TensorFlow (and the paper's eq. in S2): sqrt(g + eps), which
        # bounds the step of a parameter whose gradients are tiny to lr * grad / sqrt(eps).
        denom = (
            _sqrt(sq, scratch).add_(cfg.eps)
            if kind == "rmsprop"
            else torch.add(sq, cfg.eps, out=scratch).sqrt_()
        )
        step_dir = grad
    elif kind == "adam":
        b1, b2 = cfg.betas
        state["step"] += 1
        t = float(state["step"])
        state["exp_avg"].lerp_(grad, 1.0 - b1)
        state["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        # m / bias1 / (sqrt(v / bias2) + eps): the bias corrections fold into scalars, so the
        # denominator is the only parameter-sized temporary, as in torch's Adam.
        bias1, bias2_sqrt = 1.0 - b1**t, (1.0 - b2**t) ** 0.5
        step_dir = state["exp_avg"]
        denom = _sqrt(state["exp_avg_sq"], scratch).div_(bias2_sqrt).add_(cfg.eps)
        lr, critic_lr = lr / bias1, critic_lr / bias1
    else:  # plain SGD: theta += lr * grad of the objective (the tutorial's cliff demo)
        step_dir, denom = grad, None
    if lr == critic_lr:
        _step(flat, step_dir, denom, lr)
    else:
        _step(flat[:n_actor], step_dir[:n_actor], None if denom is None else denom[:n_actor], lr)
        _step(
            flat[n_actor:],
            step_dir[n_actor:],
            None if denom is None else denom[n_actor:],
            critic_lr,
        )


def _sqrt(avg: Tensor, out: Tensor) -> Tensor:
    """sqrt(max(avg, SQRT_FLOOR)) into `out` (see SQRT_FLOOR)."""
    return torch.clamp(avg, min=SQRT_FLOOR, out=out).sqrt_()


def _step(p: Tensor, d: Tensor, denom: Tensor | None, lr: float) -> None:
    if denom is None:
        p.add_(d, alpha=-lr)
    else:
        p.addcdiv_(d, denom, value=-lr)


def scheduled_lr(base: float, schedule: str, global_steps: int, total_steps: int) -> float:
    """The learning rate at a global step: linear anneals to 0 at total_steps (the paper), or
    constant."""
    if schedule == "constant":
        return base
    return base * max(0.0, 1.0 - global_steps / total_steps)


def piecewise_linear(base: float, points: Sequence[Sequence[float]], global_steps: int) -> float:
    """A value over global steps from [step, value] points: base until the first point, linear
    between points, the last value after the last (the entropy coefficient's schedule)."""
    if not points or global_steps < points[0][0]:
        return base
    for (s0, v0), (s1, v1) in zip(points, points[1:], strict=False):
        # so at two points with one step, the later value holds from that step
        if global_steps < s1:
            return v0 + (v1 - v0) * (global_steps - s0) / (s1 - s0)
    return float(points[-1][1])
