"""The global store of the Ray backend: the global parameters in K shard actors, each owning a
contiguous slice of the flat vector; shard 0 also holds the per-worker counters (the global step
that drives the schedules) and the observation statistics.

Every `backend.ray_sync_interval_s` a node group (a3c/backends/ray_group.py) sends each shard the
change of its slice since the group's last sync, and the shard adds it to the global parameters:
each node's updates are applied, as A3C applies every worker's. The reply is the change of the
global slice since what this group last received, so the group can take the merged parameters
back while keeping the updates its workers made during the round trip. Changes travel as int8 by
default, or as bfloat16 or float32 (`backend.ray_sync_dtype`), with error feedback both ways:
what rounding drops is carried into the next sync, never lost. Shard 0 takes each group's
counters and statistics rows as absolute values (a repeated sync changes nothing) and answers
with the other groups' totals.

A shard asks for no CPU of Ray's; one call is a few vector operations over its slice.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Without `backend.ray_store_shards`, one shard per this many bytes of float32 parameters (when
# they travel as float32: see shard_count).
SHARD_BYTES = 8 << 20
MAX_SHARDS = 16


def shard_count(size: int, requested: int | None, dtype: str = "float32") -> int:
    """K: `requested`, or one shard per SHARD_BYTES of float32 parameters, times float32's bytes
    over the wire format's: by default a node syncs that much more often (sync_interval), so each
    shard keeps float32's share of the work. At least 1, at most 16, never more than parameters."""
    if requested is None:
        syncs = wire_bytes("float32") / wire_bytes(dtype)  # per float32 sync, by default
        requested = min(MAX_SHARDS, math.ceil(4 * size / SHARD_BYTES * syncs))
    return max(1, min(requested, size))


def slices(size: int, k: int) -> list[tuple[int, int]]:
    """K contiguous (start, end) slices of a flat vector of `size`, as equal as can be."""
    bounds = [round(i * size / k) for i in range(k + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


# int8 on the wire: one float32 scale per block of this many values, then a byte per value.
INT8_BLOCK = 256


def wire_bytes(dtype: str) -> float:
    """Bytes a value takes on the wire in `dtype` (int8's block scales included)."""
    return {"float32": 4.0, "bfloat16": 2.0, "int8": 1.0 + 4.0 / INT8_BLOCK}[dtype]


def encode(x: Tensor, dtype: str) -> tuple[np.ndarray, Tensor]:
    """What goes on the wire for float32 values `x`, and the values it stands for: `x` itself in
    float32; rounded to bfloat16 (sent as its 16 bits); or in int8, each block of INT8_BLOCK
    values as its largest magnitude over 127 (float32) times an integer in [-127, 127]."""
    if dtype == "float32":
        return x.numpy(), x
    if dtype == "bfloat16":
        b = x.to(torch.bfloat16)
        return b.view(torch.int16).numpy().copy(), b.float()
    n = x.numel()
    blocks = -(-n // INT8_BLOCK)
    wire = torch.empty(4 * blocks + n, dtype=torch.uint8)
    scale, q = wire[: 4 * blocks].view(torch.float32), wire[4 * blocks :].view(torch.int8)
    values = torch.empty(n)
    for part, rows in _blocks(n):
        block = x[part].view(rows.stop - rows.start, -1)
        s = block.abs().amax(1).div_(127)
        scale[rows] = s
        r = block.mul(s.clamp_min(1e-30).reciprocal()[:, None]).round_()  # in [-127, 127]
        q[part].view_as(r).copy_(r)
        torch.mul(r, s[:, None], out=values[part].view_as(r))
    return wire.numpy(), values


def _blocks(n: int) -> list[tuple[slice, slice]]:
    """The whole blocks of INT8_BLOCK values among `n`, then the last, shorter one: (the values,
    the blocks) of each, so each part is a 2-d view without a padded copy."""
    full = n // INT8_BLOCK
    parts = [
        (slice(0, full * INT8_BLOCK), slice(0, full)),
        (slice(full * INT8_BLOCK, n), slice(full, full + 1)),
    ]
    return [(part, rows) for part, rows in parts if part.stop > part.start]


def decode(wire: np.ndarray) -> Tensor:
    """The float32 values of what came off the wire (its numpy dtype says which encoding)."""
    t = torch.from_numpy(np.array(wire))  # a copy: Ray's arrays are read-only
    if t.dtype == torch.int16:
        return t.view(torch.bfloat16).float()
    if t.dtype != torch.uint8:
        return t
    blocks = -(-t.numel() // (INT8_BLOCK + 4))  # 4 bytes of scale and up to INT8_BLOCK values
    scale, q = t[: 4 * blocks].view(torch.float32), t[4 * blocks :].view(torch.int8)
    values = torch.empty(q.numel())
    for part, rows in _blocks(q.numel()):
        out = values[part].view(rows.stop - rows.start, -1)
        torch.mul(q[part].view_as(out), scale[rows, None], out=out)
    return values


@dataclass
class Slots:
    """The global worker slots a group's workers fill: workers [start, start + count)."""

    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


class StoreShard:
    """One slice of the global parameters (and its moving average, with eval.ema_steps); shard 0
    also the counters and the observation statistics."""

    def __init__(
        self,
        index: int,
        params: np.ndarray,
        ema: np.ndarray | None,
        ema_steps: int | None,
        dtype: str,
        counters: dict[str, np.ndarray] | None = None,
        obs_stats: np.ndarray | None = None,
    ) -> None:
        torch.set_num_threads(1)
        self.index, self.dtype, self.ema_steps = index, dtype, ema_steps
        self.params = torch.from_numpy(np.array(params, dtype=np.float32))
        self.ema = None if ema is None else torch.from_numpy(np.array(ema, dtype=np.float32))
        self.counters = {k: torch.from_numpy(np.array(v)) for k, v in (counters or {}).items()}
        self.obs_stats = None if obs_stats is None else torch.from_numpy(np.array(obs_stats))
        self.sent: dict[int, Tensor] = {}  # group -> what it holds of this slice
        self.syncs = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.busy_s = 0.0  # CPU time spent inside sync (its cost, for the scaling model)

    def join(self, group: int) -> np.ndarray:
        """A group (new or recreated) takes the slice as it is: its base for later syncs."""
        self.sent[group] = self.params.clone()
        return self.params.numpy().copy()

    def sync(
        self,
        group: int,
        delta: np.ndarray,
        steps: int,
        slots: Slots | None = None,
        counters: dict[str, np.ndarray] | None = None,
        obs_rows: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Add a group's change (`steps`: its env steps since its last sync, for the moving
        average); answer with the change of the slice since what the group last received, and
        (shard 0, given the group's `slots`) the other groups' totals."""
        start = time.thread_time()  # CPU time: other processes on the core do not count
        change = decode(delta)
        self.params += change
        if self.ema is not None and self.ema_steps is not None and steps > 0:
            self.ema.lerp_(self.params, min(1.0, steps / self.ema_steps))
        base = self.sent.get(group)
        if base is None:  # a group this shard has not seen (a restored shard): the whole slice
            base = torch.zeros_like(self.params)
        wire, sent = encode(self.params - base, self.dtype)
        self.sent[group] = base + sent  # what the group holds now, rounding included
        self.syncs += 1
        self.bytes_in += delta.nbytes
        self.bytes_out += wire.nbytes
        reply: dict[str, Any] = {"change": wire}
        if slots is not None and self.counters:
            reply.update(self._take_counts(slots, counters or {}, obs_rows))
        self.busy_s += time.thread_time() - start
        return reply

    def _take_counts(
        self, slots: Slots, counters: dict[str, np.ndarray], obs_rows: np.ndarray | None
    ) -> dict[str, Any]:
        for key, value in counters.items():
            self.counters[key][slots.start : slots.end] = torch.from_numpy(np.array(value))
        mine = slice(slots.start, slots.end)
        others = {
            k: int(v.sum()) - int(v[mine].sum()) for k, v in self.counters.items()
        }  # the other groups' steps, updates and skipped updates
        out: dict[str, Any] = {"others": others}
        if self.obs_stats is not None and obs_rows is not None:
            self.obs_stats[mine] = torch.from_numpy(np.array(obs_rows))
            out["obs_others"] = (self.obs_stats.sum(0) - self.obs_stats[mine].sum(0)).numpy()
        return out

    def state(self) -> dict[str, np.ndarray]:
        """This shard's part of the global state (for checkpoints, the evaluator, a restore)."""
        out = {"params": self.params.numpy().copy()}
        if self.ema is not None:
            out["ema"] = self.ema.numpy().copy()
        out.update({f"counters.{k}": v.numpy().copy() for k, v in self.counters.items()})
        if self.obs_stats is not None:
            out["obs_stats"] = self.obs_stats.numpy().copy()
        return out

    def traffic(self) -> dict[str, float]:
        """Syncs served, bytes in and out (of the changes only) and CPU seconds spent in them since
        the shard started, and the shard process's CPU seconds in all."""
        return {
            "syncs": self.syncs,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "busy_s": self.busy_s,
            "process_cpu_s": time.process_time(),  # Ray's own work on the calls included
        }


def gather(states: list[dict[str, np.ndarray]]) -> dict[str, Tensor]:
    """The global state from the shards' states, in order: parameters (and their average)
    concatenated, counters and statistics from shard 0."""
    out = {"params": torch.from_numpy(np.concatenate([s["params"] for s in states]))}
    if "ema" in states[0]:
        out["ema"] = torch.from_numpy(np.concatenate([s["ema"] for s in states]))
    rest = {k: v for k, v in states[0].items() if k not in ("params", "ema")}
    out.update({k: torch.from_numpy(np.array(v)) for k, v in rest.items()})  # writable copies
    return out


# Without `backend.ray_sync_interval_s`, a node sends about this many bytes of parameter changes
# per second (and receives as many): 2 MB/s, a small share of any cluster network.
SYNC_BYTES_PER_S = 2e6
MIN_SYNC_S = 0.05


def sync_interval(size: int, requested: float | None, dtype: str = "float32") -> float:
    """Seconds between a node's syncs: `requested`, or the model's bytes on the wire over
    SYNC_BYTES_PER_S (CartPole's MLP: every 0.05 s; the Atari CNN in float32: every 1.4 s, in
    bfloat16 0.68 s, in int8 0.34 s)."""
    if requested is not None:
        return float(requested)
    return max(MIN_SYNC_S, wire_bytes(dtype) * size / SYNC_BYTES_PER_S)
