"""The global parameters and the shared optimizer, as one flat vector each.

All global parameters live in one flat float32 tensor (in shared memory on the processes backend);
the optimizer's statistics (RMSprop's squared-gradient average, Adam's moments and step) are one
more flat tensor each, also shared: one copy that every worker reads and writes, as in the paper's
"shared RMSProp" (Mnih et al. 2016, sec. 4 and S2). A pull is one copy; a push is a few vector ops.

Workers' env steps and updates are counted in per-worker slots, so counters need no lock: the global
count is their sum. Updates are lock-free (Hogwild) unless a lock is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from a3c import normalize
from a3c.config import OptimConfig

LOCK_TIMEOUT_S = 5.0
# Square roots of the squared-gradient averages are taken of max(avg, SQRT_FLOOR). On this
# machine's AVX-512 build, torch.sqrt of an exact 0 runs 8-20x slower than of a normal float, and a
# CNN's averages are half zeros (weights whose gradient has always been 0: dead units): 1.4 of a
# Pong worker's 27 ms per update. An average below the floor changes the denominator by at most
# 1e-15 / bias correction, 1e-7 of the smallest allowed eps' order; a weight whose average is 0
# has a zero gradient average too, so its step is 0 either way.
SQRT_FLOOR = 1e-30


class GlobalParams:
    """Global parameters, shared optimizer statistics and counters; the backends' pull/push."""

    def __init__(
        self, model: nn.Module, cfg: OptimConfig, workers: int, n_actor: int, lock: Any = None, obs_dim: int | None = None
    ) -> None:
        params = model.ordered_parameters()
        self.flat = torch.cat([p.detach().reshape(-1) for p in params]).to(torch.float32).clone()
        self.n_actor = n_actor  # the critic's parameters are flat[n_actor:]
        self.cfg = cfg
        self.state: dict[str, Tensor] = {}
        if cfg.name == "rmsprop":
            self.state["square_avg"] = torch.zeros_like(self.flat)
        elif cfg.name == "rmsprop_tf":  # TensorFlow starts the average at 1: small first steps
            self.state["square_avg"] = torch.ones_like(self.flat)
        elif cfg.name == "adam":
            self.state["exp_avg"] = torch.zeros_like(self.flat)
            self.state["exp_avg_sq"] = torch.zeros_like(self.flat)
            # A shared tensor, not a Python int: on current PyTorch a per-process step breaks sharing.
            self.state["step"] = torch.zeros(1, dtype=torch.float64)
        self.worker_steps = torch.zeros(workers, dtype=torch.int64)
        self.worker_updates = torch.zeros(workers, dtype=torch.int64)
        self.worker_nonfinite = torch.zeros(workers, dtype=torch.int64)
        self.stop_flag = torch.zeros(1, dtype=torch.int8)
        # Observation normalisation statistics, one row per worker (a3c/normalize.py), or None.
        self.obs_stats = None if obs_dim is None else normalize.new_stats(workers, obs_dim)
        self.lock = lock
        self._scratch: Tensor | None = None  # this process's denominator buffer (never shared)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_scratch": None}

    def share_memory_(self) -> GlobalParams:
        extra = [] if self.obs_stats is None else [self.obs_stats]
        for t in [self.flat, *self.state.values(), self.worker_steps, self.worker_updates, self.worker_nonfinite, self.stop_flag, *extra]:
            t.share_memory_()
        return self

    @property
    def size(self) -> int:
        return self.flat.numel()

    def global_steps(self) -> int:
        return int(self.worker_steps.sum())

    def global_updates(self) -> int:
        return int(self.worker_updates.sum())

    def should_stop(self) -> bool:
        return bool(self.stop_flag[0])

    def request_stop(self) -> None:
        self.stop_flag[0] = 1

    def pull(self, out: Tensor) -> int:
        """Copy the global parameters into `out`; returns the global update count at the pull."""
        out.copy_(self.flat)
        return self.global_updates()

    def count_skipped(self, worker: int, steps: int) -> None:
        """A non-finite update never reaches the parameters; its env steps still count."""
        self.worker_steps[worker] += steps
        self.worker_nonfinite[worker] += 1

    def push(self, grad: Tensor, lr: float, critic_lr: float, worker: int, steps: int, pulled_at: int) -> int:
        """Apply one worker's (clipped, finite) gradient; returns the update lag since its pull."""
        # A worker killed while holding the lock must not stall the others for ever: wait a bounded
        # time, then apply the update lock-free (as Hogwild does anyway).
        locked = self.lock is not None and self.lock.acquire(timeout=LOCK_TIMEOUT_S)
        try:
            lag = self.global_updates() - pulled_at
            if self._scratch is None:
                self._scratch = torch.empty_like(self.flat)
            apply_update(self.cfg.name, self.flat, grad, self.state, self.cfg, lr, critic_lr, self.n_actor, self._scratch)
            self.worker_steps[worker] += steps
            self.worker_updates[worker] += 1
        finally:
            if locked:
                self.lock.release()
        return lag


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
    """One optimizer step on the flat parameters, in place (actor slice at lr, critic slice at critic_lr).

    `scratch`, a tensor like `flat`, holds the denominator; without it a new one is allocated
    (the store keeps one per process, so an update allocates no parameter-sized tensor)."""
    if scratch is None and kind != "sgd":
        scratch = torch.empty_like(flat)
    if kind in ("rmsprop", "rmsprop_tf"):
        sq = state["square_avg"]
        sq.mul_(cfg.alpha).addcmul_(grad, grad, value=1.0 - cfg.alpha)
        # PyTorch: sqrt(g) + eps. TensorFlow (and the paper's eq. in S2): sqrt(g + eps), which
        # bounds the step of a parameter whose gradients are tiny to lr * grad / sqrt(eps).
        denom = _sqrt(sq, scratch).add_(cfg.eps) if kind == "rmsprop" else torch.add(sq, cfg.eps, out=scratch).sqrt_()
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
        _step(flat[n_actor:], step_dir[n_actor:], None if denom is None else denom[n_actor:], critic_lr)


def _sqrt(avg: Tensor, out: Tensor) -> Tensor:
    """sqrt(max(avg, SQRT_FLOOR)) into `out` (see SQRT_FLOOR)."""
    return torch.clamp(avg, min=SQRT_FLOOR, out=out).sqrt_()


def _step(p: Tensor, d: Tensor, denom: Tensor | None, lr: float) -> None:
    if denom is None:
        p.add_(d, alpha=-lr)
    else:
        p.addcdiv_(d, denom, value=-lr)


def scheduled_lr(base: float, schedule: str, global_steps: int, total_steps: int) -> float:
    """The learning rate at a global step: linear anneals to 0 at total_steps (the paper), or constant."""
    if schedule == "constant":
        return base
    return base * max(0.0, 1.0 - global_steps / total_steps)


def piecewise_linear(base: float, points: Sequence[Sequence[float]], global_steps: int) -> float:
    """A value over global steps from [step, value] points: base until the first point, linear
    between points, the last value after the last (the entropy coefficient's schedule)."""
    if not points or global_steps < points[0][0]:
        return base
    for (s0, v0), (s1, v1) in zip(points, points[1:], strict=False):
        if global_steps < s1:  # so at two points with one step, the later value holds from that step
            return v0 + (v1 - v0) * (global_steps - s0) / (s1 - s0)
    return float(points[-1][1])
