"""Observation normalisation by a running mean and std shared by all workers.

`ObservationStats` keeps one row of (count, sum, sum of squares) per worker in a `[workers, 1 + 2
D]` float64 table (in shared memory on the processes backend): each worker adds to its own row, so
no lock is needed and nothing is lost to races; the global statistics are the column sums. A worker
takes one snapshot per update (at its pull), so the rollout and the loss see the same normalisation.
The statistics are part of the model (saved with it).
"""

from __future__ import annotations

import torch
from torch import Tensor

CLIP = 10.0
EPS = 1e-8


class Normalizer:
    """(obs - mean) / std, clipped to [-10, 10]: a frozen snapshot of the statistics."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean, self.std = mean, std

    def __call__(self, obs: Tensor) -> Tensor:
        return normalize(obs, self.mean, self.std)


def identity(obs: Tensor) -> Tensor:
    return obs


class ObservationStats:
    """Per-worker running sums of observations `[..., D]`; `snapshot()` normalises by their
    total."""

    def __init__(self, workers: int, dim: int, table: Tensor | None = None) -> None:
        self.dim = dim
        self.table = (
            torch.zeros(workers, 1 + 2 * dim, dtype=torch.float64) if table is None else table
        )

    @classmethod
    def like(cls, table: Tensor) -> ObservationStats:
        """Statistics over an existing table (a checkpoint's `obs_stats`)."""
        return cls(table.shape[0], (table.shape[1] - 1) // 2, table)

    def update(self, worker: int, obs: Tensor) -> None:
        """Add observations `[..., D]` (any leading shape) to `worker`'s row, in place."""
        add(self.table[worker], obs)

    def snapshot(self) -> Normalizer:
        mean, std = mean_std(self.table)
        return Normalizer(mean, std)

    def share_memory_(self) -> ObservationStats:
        self.table.share_memory_()
        return self

    def clone(self) -> ObservationStats:
        return ObservationStats.like(self.table.clone())


def add(stats_row: Tensor, obs: Tensor) -> None:
    """Add observations `[..., D]` (any leading shape) to one row of (count, sum, sum of
    squares)."""
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
    """(obs - mean) / std, clipped to [-10, 10], for observations `[..., D]` of any leading
    shape."""
    return ((obs - mean) / std).clamp_(-CLIP, CLIP)


def fold(dst: Tensor, src: Tensor) -> None:
    """Copy per-worker rows; for another worker count, put the totals in row 0 (sums are what
    count)."""
    if dst.shape == src.shape:
        dst.copy_(src)
    else:
        dst.zero_()
        dst[0] = src.sum(0)
