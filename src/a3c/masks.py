"""Action masks from the env: which actions are valid in the current state.

Two conventions are read, in this order: an `action_masks()` method (sb3-contrib's MaskablePPO;
found through Gymnasium wrappers with `get_wrapper_attr`) and `info["action_mask"]` (Gymnasium's
own, e.g. Taxi-v3). A mask is one flag per choice: n for Discrete(n), sum(nvec) for MultiDiscrete
(each dimension's block in turn), 2 per entry for MultiBinary (may be 0, may be 1): sb3-contrib's
layouts. `env.action_masks: false` ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from a3c.errors import EnvError


def mask_size(space: gym.Space) -> int | None:
    """Flags per mask for an action space, None for spaces that take no mask."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, gym.spaces.MultiBinary):
        return 2 * int(np.prod(space.shape))
    return None


def _method(env: gym.Env) -> Callable[[], Any] | None:
    try:
        fn = env.get_wrapper_attr("action_masks")
    except AttributeError:
        return None
    return fn if callable(fn) else None


class MaskReader:
    """Reads the mask of one env after each reset or step, checked: right size, and at least one
    valid action (per dimension for MultiDiscrete); else an EnvError."""

    def __init__(self, env: gym.Env, action_space: gym.Space) -> None:
        self.method = _method(env)
        size = mask_size(action_space)
        if size is None:
            raise EnvError(
                "the env provides action masks, which a3c applies to Discrete, MultiDiscrete and "
                f"MultiBinary actions, not {action_space}: set env.action_masks=false to ignore "
                "them"
            )
        self.size = size
        # where each dimension's choices start (MultiDiscrete, MultiBinary): each needs a valid one
        self.blocks = _blocks(action_space)
        self.name = getattr(getattr(env, "spec", None), "id", None) or type(env.unwrapped).__name__

    @staticmethod
    def provided(env: gym.Env, info: dict[str, Any]) -> bool:
        """Whether the env gives masks by either convention."""
        return _method(env) is not None or "action_mask" in info

    def read(self, info: dict[str, Any]) -> np.ndarray:
        raw = self.method() if self.method is not None else info.get("action_mask")
        if raw is None:
            raise EnvError(
                f"env {self.name} gave info['action_mask'] at reset but not after a step (or set "
                "env.action_masks=false)"
            )
        mask = np.asarray(raw).astype(bool, copy=False).reshape(-1)
        if mask.shape[0] != self.size:
            raise EnvError(
                f"env {self.name} gave an action mask of {mask.shape[0]} flags; its action space "
                f"needs {self.size}"
            )
        valid = mask.any() if self.blocks is None else np.add.reduceat(mask, self.blocks).all()
        if not valid:
            where = "" if self.blocks is None else " in one of its dimensions"
            raise EnvError(
                f"env {self.name} gave an action mask with no valid action{where}: "
                f"{mask.astype(int).tolist()}"
            )
        return mask


def _blocks(space: gym.Space) -> np.ndarray | None:
    """Where each dimension's flags start (each needs a valid one), None for one categorical."""
    if isinstance(space, gym.spaces.MultiDiscrete):
        return np.cumsum([0, *np.asarray(space.nvec).reshape(-1)[:-1]])
    if isinstance(space, gym.spaces.MultiBinary):
        return np.arange(0, 2 * int(np.prod(space.shape)), 2)
    return None


def reader_for(
    env: gym.Env, info: dict[str, Any], action_space: gym.Space, enabled: bool
) -> MaskReader | None:
    """A MaskReader when masks are enabled and the env provides them, else None."""
    if not enabled or not MaskReader.provided(env, info):
        return None
    return MaskReader(env, action_space)
