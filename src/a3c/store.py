"""Where the global parameters live, behind one declared interface.

A worker sees the global state only through `ParameterStore`: `pull` the parameters (and the
entropy coefficient of the current global step), `push` one update, read the run's `progress`,
and add to the shared observation statistics. `SharedStore` (this module) implements it: the
state itself, in memory that the processes backend shares with its worker processes (the serial
backend uses it in-process).
On the Ray backend each node has a `SharedStore` of its own (its workers are the processes
backend's), which a node group syncs with the global store sharded over Ray actors
(a3c/backends/ray_group.py, a3c/backends/ray_store.py).

All global parameters live in one flat float32 tensor; the shared optimizer's statistics are one
more flat tensor each (a3c/optim.py). Env steps and updates are counted in per-worker slots, so the
counters need no lock: the global count is their sum. Updates are lock-free (Hogwild) unless a lock
is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from a3c.config import Config
from a3c.models import ActorCritic
from a3c.normalize import ObservationStats, fold
from a3c.optim import Schedules, SharedOptimizer

# A worker killed while holding the lock must not stall the others for ever: a push waits this
# long, then applies its update lock-free (as Hogwild does anyway).
LOCK_TIMEOUT_S = 5.0
COUNTERS = ("worker_steps", "worker_updates", "worker_nonfinite")


class Pulled(NamedTuple):
    """What a pull hands the worker besides the parameters."""

    version: int  # the global update count at the pull (the update lag is measured from it)
    ent_coef: float  # the entropy coefficient at the global step of the pull


class Pushed(NamedTuple):
    lag: int  # global updates applied between the pull and this update
    learning_rate: float  # the actor's learning rate the update was applied with


class Progress(NamedTuple):
    steps: int  # global env steps
    updates: int  # global updates
    stop: bool  # the trainer asked the workers to stop


class ParameterStore(Protocol):
    """The one interface between a worker and the global state."""

    @property
    def size(self) -> int: ...

    @property
    def obs_stats(self) -> ObservationStats | None: ...

    def pull(self, out: Tensor) -> Pulled:
        """Copy the global parameters into `out`."""
        ...

    def push(self, worker: int, steps: int, pulled: Pulled, grad: Tensor | None) -> Pushed:
        """Apply one update of `worker` (`steps` env steps; `grad` None: a skipped non-finite
        one)."""
        ...

    def progress(self) -> Progress: ...


class SharedStore:
    """A run's global state: parameters, the shared optimizer, per-worker counters, the stop flag
    and the observation statistics; `state_dict` / `load_state_dict` are what a checkpoint holds."""

    def __init__(
        self,
        params: Tensor,
        n_actor: int,
        config: Config,
        obs_dim: int | None = None,
        other_nodes: bool = False,
    ) -> None:
        workers = config.backend.workers
        self.flat = params.detach().reshape(-1).to(torch.float32).clone()
        self.n_actor = n_actor  # the critic's parameters are flat[n_actor:]
        schedules = Schedules(config.optim, config.algo, config.run.total_steps)
        self.optimizer = SharedOptimizer(config.optim, schedules, self.flat.numel(), n_actor)
        self.counters = {name: torch.zeros(workers, dtype=torch.int64) for name in COUNTERS}
        self.stop_flag = torch.zeros(1, dtype=torch.int8)
        # Who holds the lock (worker + 1; 0: nobody): a worker killed inside it cannot release it.
        self.lock_owner = torch.zeros(1, dtype=torch.int64)
        # A node's store on the Ray backend (`other_nodes`) also counts what the other nodes did:
        # their env steps and updates (the schedules and the budget are the cluster's) and, in one
        # more row of the statistics, their observations. Zero on one machine.
        self.elsewhere = torch.zeros(2, dtype=torch.int64)
        rows = workers + 1 if other_nodes else workers
        self._obs_stats = None if obs_dim is None else ObservationStats(rows, obs_dim)
        # An exponential moving average of the parameters (eval.ema_steps: its time constant in env
        # steps), updated with each push: what the evaluator plays and checkpoints/best/ keeps.
        self.ema_steps = config.eval.ema_steps
        self.ema = None if self.ema_steps is None else self.flat.clone()
        self.lock: Any = None

    @classmethod
    def for_model(
        cls, model: ActorCritic, config: Config, obs_dim: int | None = None
    ) -> SharedStore:
        """A store initialised with `model`'s parameters (actor first, critic second)."""
        params = model.ordered_parameters()
        n_actor = sum(p.numel() for p in model.actor_parameters())
        return cls(torch.nn.utils.parameters_to_vector(params).detach(), n_actor, config, obs_dim)

    @property
    def size(self) -> int:
        return self.flat.numel()

    @property
    def obs_stats(self) -> ObservationStats | None:
        return self._obs_stats

    def share_memory_(self) -> SharedStore:
        for t in [
            self.flat,
            *self.optimizer.state.values(),
            *self.counters.values(),
            self.stop_flag,
            self.lock_owner,
            self.elsewhere,
        ]:
            t.share_memory_()
        if self.ema is not None:
            self.ema.share_memory_()
        if self._obs_stats is not None:
            self._obs_stats.share_memory_()
        return self

    def progress(self) -> Progress:
        return Progress(
            int(self.counters["worker_steps"].sum() + self.elsewhere[0]),
            int(self.counters["worker_updates"].sum() + self.elsewhere[1]),
            bool(self.stop_flag[0]),
        )

    def request_stop(self) -> None:
        self.stop_flag[0] = 1

    def pull(self, out: Tensor) -> Pulled:
        out.copy_(self.flat)
        steps, updates, _ = self.progress()
        return Pulled(updates, self.optimizer.schedules.ent_coef(steps))

    def push(self, worker: int, steps: int, pulled: Pulled, grad: Tensor | None) -> Pushed:
        # a non-finite update never reaches the parameters; its env steps still count
        if grad is None:
            self.counters["worker_steps"][worker] += steps
            self.counters["worker_nonfinite"][worker] += 1
            return Pushed(0, 0.0)
        with self._locked(worker):
            global_steps, updates, _ = self.progress()
            lr = self.optimizer.step(self.flat, grad, global_steps, worker)
            if self.ema is not None and self.ema_steps is not None:
                self.ema.lerp_(self.flat, min(1.0, steps / self.ema_steps))
            self.counters["worker_steps"][worker] += steps
            self.counters["worker_updates"][worker] += 1
        return Pushed(updates - pulled.version, lr)

    @contextlib.contextmanager
    def _locked(self, holder: int = -1) -> Iterator[None]:
        """The lock (if any), waiting a bounded time; `holder` is a worker index (-1: the
        trainer)."""
        locked = self.lock is not None and self.lock.acquire(timeout=LOCK_TIMEOUT_S)
        try:
            if locked:
                self.lock_owner[0] = holder + 1
            yield
        finally:
            if locked:
                self.lock_owner[0] = 0
                self.lock.release()

    def release_lock_of(self, worker: int) -> bool:
        """Release the lock if dead `worker` held it (a POSIX semaphore outlives its holder)."""
        if self.lock is None or int(self.lock_owner[0]) != worker + 1:
            return False
        self.lock_owner[0] = 0
        self.lock.release()
        return True

    def state_dict(self) -> dict[str, Tensor]:
        """A copy of the state (workers may be updating it: a Hogwild read; counters first, so they
        never count an update the parameters lack)."""
        out = {f"counters.{k}": v.clone() for k, v in self.counters.items()}
        with self._locked():
            out["params"] = self.flat.clone()
            out.update({f"optim.{k}": v.clone() for k, v in self.optimizer.state.items()})
            if self.ema is not None:
                out["ema"] = self.ema.clone()
        if self._obs_stats is not None:
            out["obs_stats"] = self._obs_stats.table.clone()
        return out

    def policy_state(self) -> dict[str, Tensor]:
        """A copy of what acting needs (the evaluator's snapshot): the counters (first, as in
        `state_dict`), the parameters (their moving average, if eval.ema_steps is set) and the
        observation statistics. Read without the lock, as a worker's pull is: a reader killed
        inside it could not release it."""
        out = {f"counters.{k}": v.clone() for k, v in self.counters.items()}
        out["params"] = (self.flat if self.ema is None else self.ema).clone()
        if self._obs_stats is not None:
            out["obs_stats"] = self._obs_stats.table.clone()
        return out

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Take the tensors `state` has (a checkpoint's, or a parameter server's): parameters (and
        their moving average), optimizer statistics, counters and observation statistics. Per-worker
        rows recorded with another worker count are folded into row 0 (only their sums matter)."""
        if "params" in state:
            self.flat.copy_(state["params"])
            if self.ema is not None:  # a state without an average starts it at its parameters
                self.ema.copy_(state["ema"] if "ema" in state else state["params"])
        for key, value in self.optimizer.state.items():
            if f"optim.{key}" in state:
                value.copy_(state[f"optim.{key}"])
        for key, value in self.counters.items():
            if f"counters.{key}" in state:
                fold(value, state[f"counters.{key}"])
        if self._obs_stats is not None and state.get("obs_stats") is not None:
            fold(self._obs_stats.table, state["obs_stats"])
