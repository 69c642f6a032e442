"""The node group's Ray actor: a shell that starts the node's fork server, then builds the group.

A new actor process first imports the module of its class and its arguments' modules. The
group's module imports torch (about 1.5 s), and the fork server that the group's workers are
forked from imports it again. This module imports no torch, and the group's arguments (the env
factory's module imports torch) arrive packed, so the shell starts the fork server before either
is imported: the two imports run side by side instead of one after the other. Every method is
the group's (a3c/backends/ray_group.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from a3c.metrics import WorkerReport


class NodeGroup:
    """`ray_group.GroupCore` as a Ray actor (its process title: ray::NodeGroup)."""

    def __init__(self, shards: Sequence[Any] | None, packed: bytes) -> None:
        from a3c import forkserver

        forkserver.warm_up(main=False)  # the main module is Ray's worker script
        import cloudpickle

        from a3c.backends.ray_group import GroupCore

        self.group = GroupCore(shards=shards, **cloudpickle.loads(packed))

    @staticmethod
    def pack(**kwargs: Any) -> bytes:
        """The group's arguments but its shards (Ray's actor handles), for `NodeGroup(shards, ...)`.
        By value, as Ray sends arguments: an env factory of the user's script arrives whole."""
        import cloudpickle  # Gymnasium's dependency, so present wherever a3c is

        return bytes(cloudpickle.dumps(kwargs))

    def start(self) -> None:
        self.group.start()

    def poll(self, timeout: float) -> dict[str, Any]:
        return self.group.poll(timeout)

    def set_shards(self, shards: Sequence[Any], replaced: Sequence[int]) -> None:
        self.group.set_shards(shards, replaced)

    def state(self) -> dict[str, np.ndarray]:
        return self.group.state()

    def base_slice(self, k: int) -> tuple[float, np.ndarray]:
        return self.group.base_slice(k)

    def counts(self) -> dict[str, np.ndarray]:
        return self.group.counts()

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.group.optimizer_state()

    def stop(self) -> list[WorkerReport]:
        return self.group.stop()

    def request_stop(self) -> None:
        self.group.request_stop()
