"""Observation normalisation by a running mean and std shared by all workers.

Each worker adds its observations to its own row of a shared `[workers, 1 + 2 D]` float64 tensor
(count, sum, sum of squares): no lock is needed and nothing is lost to races; the global statistics
are the column sums. A worker takes one snapshot per update (at its pull), so the rollout and the
loss see the same normalisation. The statistics are part of the model (saved with it).
"""

from __future__ import annotations

import torch
from torch import Tensor

CLIP = 10.0
EPS = 1e-8


def new_stats(workers: int, dim: int) -> Tensor:
    return torch.zeros(workers, 1 + 2 * dim, dtype=torch.float64)


def add(stats_row: Tensor, obs: Tensor) -> None:
    """Add observations `[..., D]` (any leading shape) to one worker's row, in place."""
    d = (stats_row.shape[0] - 1) // 2
    x = obs.reshape(-1, d).to(torch.float64)
    stats_row[0] += x.shape[0]
    stats_row[1 : 1 + d] += x.sum(0)
    stats_row[1 + d :] += x.pow(2).sum(0)


def mean_std(stats: Tensor) -> tuple[Tensor, Tensor]:
    """Global (mean, std) as float32 from all workers' rows; (0, 1) before any observation."""
    total = stats.sum(0)
    n, d = float(total[0]), (total.shape[0] - 1) // 2
    if n < 1:
        return torch.zeros(d), torch.ones(d)
    mean = total[1 : 1 + d] / n
    var = (total[1 + d :] / n - mean.pow(2)).clamp_min(0.0)
    return mean.float(), (var + EPS).sqrt().float()


def normalize(obs: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(obs - mean) / std, clipped to [-10, 10], for observations `[..., D]` of any leading shape."""
    return ((obs - mean) / std).clamp_(-CLIP, CLIP)
