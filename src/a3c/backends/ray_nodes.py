"""Where the Ray backend's node groups run, and what each starts from.

`plan` places the groups: one per live node with the workers split by the nodes' CPUs, or one per
`backend.ray_workers_per_node` workers (Ray places those). `group_init` and `group_config` give a
group (new or recreated) its starting state and its workers' config.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from a3c.backends.ray_runtime import _raise_signal, _ray
from a3c.backends.ray_store import Slots
from a3c.config import Config
from a3c.store import COUNTERS


@dataclasses.dataclass
class Group:
    """The trainer's view of a node group."""

    index: int
    slots: Slots
    node: str | None  # the Ray node id it is pinned to (None: Ray places it)
    cpus: int
    actor: Any = None
    pending: Any = None  # the poll call in flight
    asked: float = 0.0  # when that call was made
    answered: bool = False  # this incarnation has answered a poll
    alive: int = 0
    done: bool = False
    worker_restarts: int = 0  # of its earlier incarnations
    current_restarts: int = 0
    traffic: dict[str, int] = dataclasses.field(default_factory=dict)
    ran_on: str | None = None  # the node its last answer came from


def plan(workers: int, nodes: list[tuple[str, int]], per_node: int | None) -> list[Group]:
    """The node groups: `per_node` workers each (Ray places them), or one per node with the workers
    split by the nodes' CPUs (largest remainders)."""
    groups: list[Group] = []
    if per_node is not None or not nodes:
        size = per_node or workers
        for g, start in enumerate(range(0, workers, size)):
            count = min(size, workers - start)
            groups.append(Group(g, Slots(start, count), None, count))
        return groups
    total = sum(c for _, c in nodes)
    shares = [workers * c / total for _, c in nodes]
    counts = [math.floor(s) for s in shares]
    by_remainder = sorted(range(len(nodes)), key=lambda i: (counts[i] - shares[i], -nodes[i][1]))
    for i in by_remainder[: workers - sum(counts)]:
        counts[i] += 1
    start = 0
    for (node, cpus), count in zip(nodes, counts, strict=True):
        if count:
            groups.append(Group(len(groups), Slots(start, count), node, min(count, cpus)))
            start += count
    return groups


def alive_nodes() -> list[tuple[str, int]]:
    """(node id, CPUs) of the cluster's live nodes that have CPUs, in a stable order."""
    nodes = [
        (n["NodeID"], int(n.get("Resources", {}).get("CPU", 0)))
        for n in _ray().nodes()
        if n.get("Alive")
    ]
    return sorted((n for n in nodes if n[1] > 0), key=lambda n: n[0])


def group_init(g: Group, state: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """What a group starts from: its slots' counters and statistics rows (and the others'
    total), the other nodes' step and update counts, and the optimizer statistics."""
    s = slice(g.slots.start, g.slots.end)
    init: dict[str, np.ndarray] = {}
    others = []
    for key in COUNTERS:
        counter = state[f"counters.{key}"]
        init[f"counters.{key}"] = counter[s].numpy().copy()
        others.append(int(counter.sum() - counter[s].sum()))
    init["elsewhere"] = np.array(others[:2], dtype=np.int64)
    init.update({k: v.numpy() for k, v in state.items() if k.startswith("optim.")})
    obs = state.get("obs_stats")
    if obs is not None:
        rest = obs.sum(0) - obs[s].sum(0)
        init["obs_stats"] = torch.cat([obs[s], rest[None]]).numpy()
    return init


def group_config(cfg: Config, g: Group, interval: float) -> Config:
    """The config of group g's workers: its worker count, its own random streams, the sync, and
    its momentum (Adam's beta1): a node's momentum is fed by its share of the cluster's updates
    only, so beta1 ** (1 / share) makes it fade over as many of the cluster's updates as one
    momentum shared by every worker does (0.9 -> 0.81 on 2 nodes of 1 worker; 1 node: 0.9)."""
    seed = int(np.random.SeedSequence([cfg.run.seed, 7919, g.index]).generate_state(1)[0])
    beta1, beta2 = cfg.optim.betas
    share = g.slots.count / cfg.backend.workers
    return cfg.replace(
        {
            "backend.workers": g.slots.count,
            "run.seed": seed % 2**31 if g.index else cfg.run.seed,
            "backend.ray_sync_interval_s": interval,
            "optim.betas": (beta1 ** (1 / share), beta2),
        }
    )


def counts_from_groups(
    groups: list[Group], state: dict[str, Tensor], timeout: float
) -> dict[str, Tensor]:
    """The counters and statistics rows as the groups hold them (absolute), over `state`'s."""
    ray = _ray()
    out = {f"counters.{key}": state[f"counters.{key}"].clone() for key in COUNTERS}
    obs = state.get("obs_stats")
    obs = None if obs is None else obs.clone()
    for g in groups:
        try:
            counts = ray.get(g.actor.counts.remote(), timeout=timeout)
        except Exception as e:
            _raise_signal(e)
            continue
        s = slice(g.slots.start, g.slots.end)
        for key in COUNTERS:
            out[f"counters.{key}"][s] = torch.from_numpy(np.array(counts[f"counters.{key}"]))
        if obs is not None and "obs_stats" in counts:
            obs[s] = torch.from_numpy(np.array(counts["obs_stats"]))
    if obs is not None:
        out["obs_stats"] = obs
    return out
