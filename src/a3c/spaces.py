"""Observation spaces: what a worker stores per step, and the leaves an encoder reads.

Discrete observations are stored as int64 indices and Box observations as they come (uint8 pixels
stay uint8, anything else float32). Every other space (MultiDiscrete, MultiBinary, Dict and Tuple,
nested) is *packed*: its leaves, in the space's own order (Dict keys sorted, as Gymnasium keeps
them), flattened into one float32 vector. One tensor per step keeps the rollout buffers, the
observation statistics, the Ray transport and the checkpoints as they are for a plain Box; the
combined encoder cuts the vector back into its leaves (`ObsLayout.unpack`). float32 holds every
integer up to 2^24 exactly, so indices and pixels survive the round trip.

Images are Box leaves with three dimensions. Their layout is channels-first `[C, H, W]` or
channels-last `[H, W, C]`, detected as Stable-Baselines3 does (the smallest dimension is the
channels) unless `model.image_layout` says; the encoder transposes channels-last images itself.

What a step costs in the rollout buffers is the layout's too: `check_rollout_memory` refuses, at
start-up, buffers that would not fit in the machine's memory.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from a3c.errors import ConfigError, EnvError

Path = tuple[str | int, ...]
_UNENCODABLE = (gym.spaces.Text, gym.spaces.Graph, gym.spaces.Sequence, gym.spaces.OneOf)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One leaf of an observation space: where it sits (`path`), its space, and its columns
    `[offset, offset + size)` in the packed vector."""

    path: Path
    space: gym.Space
    offset: int
    size: int

    @property
    def name(self) -> str:
        return ".".join(str(p) for p in self.path) or "observation"


def leaves(space: gym.Space, path: Path = ()) -> list[tuple[Path, gym.Space]]:
    """The leaves of a (nested) Dict or Tuple space in order; refuses those no encoder reads."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in leaves(sub, (*path, key))]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces) for leaf in leaves(sub, (*path, i))]
    if isinstance(
        space,
        gym.spaces.Box | gym.spaces.Discrete | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary,
    ):
        return [(path, space)]
    kind = (
        f"a {type(space).__name__} space"
        if isinstance(space, gym.spaces.Space)
        else f"not a Gymnasium space ({type(space).__name__})"
    )
    if path:
        name = ".".join(str(p) for p in path)
        raise EnvError(
            f"observation key '{name}' is {kind}, which a3c cannot encode: drop it with --set "
            "env.obs_keys=[...] (the Dict keys to keep) or a Gymnasium wrapper"
        )
    if isinstance(space, _UNENCODABLE):
        raise EnvError(f"the observation is {kind}, which a3c cannot encode")
    raise EnvError(
        f"unsupported observation space {space}: a3c supports Box, Discrete, MultiDiscrete, "
        "MultiBinary, Dict and Tuple"
    )


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


def channels_last(shape: Sequence[int], layout: str = "auto") -> bool:
    """Whether an image of `shape` is `[H, W, C]`: stated by `layout` (chw / hwc), or detected as
    Stable-Baselines3 does: the smallest dimension is the channels (first wins a tie)."""
    if layout != "auto":
        return layout == "hwc"
    return int(np.argmin(shape)) == 2 and shape[2] < shape[0]


def channels_first_shape(shape: Sequence[int], layout: str = "auto") -> tuple[int, int, int]:
    c, h, w = (shape[2], shape[0], shape[1]) if channels_last(shape, layout) else tuple(shape)
    return int(c), int(h), int(w)


def _size(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return 1
    return math.prod(space.shape or ())


class ObsLayout:
    """How a worker stores the observations of `space`: `shape` and `dtype` per step; `packed`
    when the leaves go into one float32 vector."""

    def __init__(self, space: gym.Space) -> None:
        self.space = space
        found = leaves(space)  # refuses what cannot be encoded, naming the key
        self.packed = not isinstance(space, gym.spaces.Discrete | gym.spaces.Box)
        offset, self.leaves = 0, []
        for path, sub in found:
            self.leaves.append(Leaf(path, sub, offset, _size(sub)))
            offset += _size(sub)
        self.size = offset
        if isinstance(space, gym.spaces.Discrete):
            self.shape: tuple[int, ...] = ()
            self.np_dtype: np.dtype = np.dtype(np.int64)
        elif isinstance(space, gym.spaces.Box):
            self.shape, self.np_dtype = (
                tuple(space.shape),
                np.dtype(np.uint8 if space.dtype == np.uint8 else np.float32),
            )
        else:
            self.shape, self.np_dtype = (self.size,), np.dtype(np.float32)
        self.dtype = {np.dtype(np.int64): torch.int64, np.dtype(np.uint8): torch.uint8}.get(
            self.np_dtype, torch.float32
        )

    @property
    def floats(self) -> bool:
        return self.np_dtype.kind == "f"

    def pack(self, obs: Any) -> np.ndarray:
        """One observation as the worker stores it."""
        if not self.packed:
            return np.asarray(obs)
        out = np.empty(self.size, dtype=np.float32)
        for leaf in self.leaves:
            value = obs
            for key in leaf.path:
                value = value[key]
            out[leaf.offset : leaf.offset + leaf.size] = np.asarray(
                value, dtype=np.float32
            ).reshape(-1)
        return out

    def pack_batch(self, obs: Any) -> tuple[np.ndarray, bool]:
        """One observation or a batch (for Dict / Tuple: leaves with a leading batch dimension) as
        `[N, *shape]`, and whether it was a single one."""
        if not self.packed:
            arr = np.asarray(obs)
            if arr.shape == self.shape:
                return arr[None].astype(self.np_dtype), True
            if arr.ndim == len(self.shape) + 1 and arr.shape[1:] == self.shape:
                return arr.astype(self.np_dtype), False
            raise ValueError(
                f"observation of shape {arr.shape} does not fit {self.space} (one observation "
                f"{self.shape} or a batch [N, *{self.shape}])"
            )
        first = self.leaves[0]
        value = obs
        for key in first.path:
            value = value[key]
        leaf_shape = (
            () if isinstance(first.space, gym.spaces.Discrete) else tuple(first.space.shape or ())
        )
        arr = np.asarray(value)
        if arr.shape == leaf_shape:
            return self.pack(obs)[None], True
        n = arr.shape[0] if arr.ndim == len(leaf_shape) + 1 else -1
        if n < 0:
            raise ValueError(
                f"observation key '{first.name}' of shape {arr.shape} does not fit {first.space} "
                "(one observation or a batch)"
            )
        out = np.empty((n, self.size), dtype=np.float32)
        for leaf in self.leaves:
            value = obs
            for key in leaf.path:
                value = value[key]
            out[:, leaf.offset : leaf.offset + leaf.size] = np.asarray(
                value, dtype=np.float32
            ).reshape(n, -1)
        return out, False

    def leaf_tensors(self, obs: Tensor) -> list[Tensor]:
        """Packed observations `[N, size]` cut into their leaves `[N, *leaf shape]`, in order."""
        out = []
        for leaf in self.leaves:
            part = obs[:, leaf.offset : leaf.offset + leaf.size]
            shape = (
                () if isinstance(leaf.space, gym.spaces.Discrete) else tuple(leaf.space.shape or ())
            )
            out.append(part.reshape(obs.shape[0], *shape))
        return out

    def unpack(self, obs: Tensor) -> Any:
        """Observations `[N, ...]` in the env's own structure (dicts and tuples of tensors), for a
        user's encoder: float32 values as the env gave them, Discrete leaves as int64 indices."""
        if not self.packed:
            return obs.long() if self.dtype == torch.int64 else obs.to(torch.float32)
        parts = {
            leaf.path: (t.long() if isinstance(leaf.space, gym.spaces.Discrete) else t)
            for leaf, t in zip(self.leaves, self.leaf_tensors(obs), strict=True)
        }
        return _rebuild(self.space, (), parts)

    def normalizable(self) -> str | None:
        """None when running mean/std normalisation suits every column (float vectors only), else
        why not."""
        if (
            self.dtype == torch.int64
            or any(is_image(leaf.space) for leaf in self.leaves)
            or (not self.packed and len(self.shape) != 1)
        ):
            return (
                "env.normalize_obs needs vector observations (Box, or Dict / Tuple of float "
                f"vectors), not {self.space}"
            )
        for leaf in self.leaves:
            if not isinstance(leaf.space, gym.spaces.Box):
                return (
                    "env.normalize_obs needs float vector observations; observation key "
                    f"'{leaf.name}' is {leaf.space}"
                )
        return None

    def nbytes_per_step(self) -> int:
        return math.prod(self.shape) * self.np_dtype.itemsize


def _rebuild(space: gym.Space, path: Path, parts: dict[Path, Tensor]) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {key: _rebuild(sub, (*path, key), parts) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_rebuild(sub, (*path, i), parts) for i, sub in enumerate(space.spaces))
    return parts[path]


def check_rollout_memory(
    observation_space: gym.Space, action_space: gym.Space, n_steps: int, envs: int, workers: int
) -> None:
    """Refuse, before anything is allocated, rollout buffers that would not fit in this machine's
    memory: per worker (n_steps + 1) x `envs` observations (as the worker stores them:
    int64 indices, uint8 pixels or float32), n_steps x envs_per_worker actions, and three float32
    [n_steps, envs_per_worker] arrays (rewards, terminations, episode ends)."""
    t, b = n_steps, envs
    layout = ObsLayout(observation_space)
    shape, dtype = layout.shape, layout.np_dtype
    # float32 or int64
    action = (
        4 if isinstance(action_space, gym.spaces.Box | gym.spaces.MultiBinary) else 8
    ) * math.prod(action_space.shape or ())
    # + the envs' own batch
    per_worker = (t + 2) * b * layout.nbytes_per_step() + t * b * (action + 12)
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not on this platform: nothing to compare with
        return
    if physical > 0 and per_worker * workers > physical:
        total = (
            f", {per_worker * workers / 1e9:.1f} GB for {workers} workers" if workers > 1 else ""
        )
        raise ConfigError(
            f"the rollout buffers would need {per_worker / 1e9:.1f} GB per worker (n_steps {t} x "
            f"envs_per_worker {b} x observation {shape} {dtype.name}){total}; this machine has "
            f"{physical / 1e9:.1f} GB"
        )
