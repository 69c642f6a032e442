"""What an env returns, checked against what it declares, at its first reset and first step (as
Gymnasium's env checker and Stable-Baselines3's `check_env` do): each observation's structure and
shapes against the observation space, the reward a number, the flags booleans. One line naming
the env, the key and what was expected; never on the hot path (once per env).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from a3c.errors import EnvError


def mismatch(space: gym.Space, value: Any, path: str = "the observation") -> str | None:
    """Why `value` does not fit `space` (structure, shape, kind of number), or None. Bounds are
    not checked: many envs step slightly outside their declared Box."""
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(value, Mapping):
            return f"{path} is a {type(value).__name__}, its space is a Dict"
        if set(value) != set(space.spaces):
            return f"{path} has keys {sorted(value)}, its space {sorted(space.spaces)}"
        for key, sub in space.spaces.items():
            if (why := mismatch(sub, value[key], f"{path}[{key!r}]")) is not None:
                return why
        return None
    if isinstance(space, gym.spaces.Tuple):
        if not isinstance(value, Sequence) or len(value) != len(space.spaces):
            return f"{path} is not a tuple of {len(space.spaces)}, as its space is"
        for i, sub in enumerate(space.spaces):
            if (why := mismatch(sub, value[i], f"{path}[{i}]")) is not None:
                return why
        return None
    if not isinstance(
        space,
        gym.spaces.Box | gym.spaces.Discrete | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary,
    ):
        return None  # Text, Graph, ...: the layout refuses those up front
    try:
        arr = np.asarray(value)
    except Exception:  # a ragged sequence
        return f"{path} is not an array"
    if arr.dtype.kind not in "biuf":
        return f"{path} has dtype {arr.dtype}, its space holds numbers"
    shape = () if isinstance(space, gym.spaces.Discrete) else tuple(space.shape)
    if arr.shape != shape:
        return f"{path} has shape {arr.shape}, its space {space} has {shape}"
    if (
        not isinstance(space, gym.spaces.Box)
        and arr.dtype.kind == "f"
        and not (np.isfinite(arr).all() and (arr == np.round(arr)).all())
    ):
        return f"{path} is {arr.tolist()}, its space {space} holds integers"
    return None


def _name(env: gym.Env) -> str:
    return getattr(getattr(env, "spec", None), "id", None) or type(env.unwrapped).__name__


def check_reset(env: gym.Env, obs: Any) -> None:
    """The first reset's observation, against the env's observation space."""
    why = mismatch(env.observation_space, obs)
    if why is not None:
        raise EnvError(f"env {_name(env)} at its first reset: {why}")


def check_step(env: gym.Env, out: Any) -> None:
    """The first step's (observation, reward, terminated, truncated, info)."""
    if not isinstance(out, tuple) or len(out) != 5:
        raise EnvError(
            f"env {_name(env)}: step() must return (obs, reward, terminated, truncated, info), "
            f"got {type(out).__name__}{f' of {len(out)}' if isinstance(out, tuple) else ''}"
        )
    obs, reward, terminated, truncated, _ = out
    why = mismatch(env.observation_space, obs)
    if why is None and not (np.ndim(reward) == 0 and np.asarray(reward).dtype.kind in "biuf"):
        why = f"the reward is {type(reward).__name__} of shape {np.shape(reward)}, not a number"
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if why is None and not (np.ndim(flag) == 0 and np.asarray(flag).dtype.kind in "bi"):
            why = f"{name} is {type(flag).__name__} {flag!r}, not a bool"
    if why is not None:
        raise EnvError(f"env {_name(env)} at its first step: {why}")
