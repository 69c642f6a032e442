"""Observation encoders, one per space, and `make_encoder`, which picks them.

- Discrete: one-hot rows (a table) or a learned embedding;
- Box vectors: flattened as they are;
- Box images, `[C, H, W]` or `[H, W, C]` (spaces.py): a CNN chosen by image size, uint8 pixels
  scaled to [0, 1], channels-last images transposed inside the encoder;
- MultiDiscrete: one one-hot block per dimension; MultiBinary: the 0 / 1 entries;
- Dict and Tuple, nested: `CombinedEncoder`, one sub-encoder per leaf, concatenated (SB3's
  CombinedExtractor), followed by the model's MLP body;
- `model.encoder: "module:Class"`: the user's own module over the observations in the env's own
  structure (`UserEncoder`).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from a3c.config import ModelConfig
from a3c.errors import ConfigError, EnvError, first_line
from a3c.imports import load_entry
from a3c.layers import linear
from a3c.spaces import ObsLayout, channels_first_shape, channels_last, is_image


class OneHot(nn.Module):
    """Discrete(n, start) observations as one-hot rows (index obs - start)."""

    def __init__(self, n: int, start: int = 0) -> None:
        super().__init__()
        self.n, self.start = n, start

    def forward(self, obs: Tensor) -> Tensor:
        return nn.functional.one_hot(obs.long() - self.start, self.n).to(torch.float32)


class Embedding(nn.Embedding):
    """Discrete(n, start) observations as learned vectors (index obs - start)."""

    def __init__(self, n: int, dim: int, start: int = 0) -> None:
        super().__init__(n, dim)
        self.start = start

    def forward(self, obs: Tensor) -> Tensor:
        return super().forward(obs.long() - self.start)


class MultiOneHot(nn.Module):
    """MultiDiscrete(nvec, start) observations: a one-hot block per dimension, concatenated."""

    start: Tensor
    offsets: Tensor

    def __init__(self, nvec: np.ndarray, start: np.ndarray) -> None:
        super().__init__()
        self.nvec = [int(n) for n in np.asarray(nvec).reshape(-1)]
        self.register_buffer(
            "start",
            torch.as_tensor(np.asarray(start).reshape(-1), dtype=torch.int64),
            persistent=False,
        )
        self.register_buffer(
            "offsets",
            torch.as_tensor(np.cumsum([0, *self.nvec[:-1]]), dtype=torch.int64),
            persistent=False,
        )
        self.out_dim = sum(self.nvec)

    def forward(self, obs: Tensor) -> Tensor:
        index = obs.reshape(obs.shape[0], -1).long() - self.start + self.offsets
        out = torch.zeros(obs.shape[0], self.out_dim)
        return out.scatter_(1, index, 1.0)


class Flatten(nn.Module):
    def forward(self, obs: Tensor) -> Tensor:
        return obs.reshape(obs.shape[0], -1).to(torch.float32)


class ConvEncoder(nn.Module):
    """Image encoder. "a3c": Mnih et al. 2016's network (16 8x8/4, 32 4x4/2, fc 256, ReLU);
    "nature": Mnih et al. 2015's (32 8x8/4, 64 4x4/2, 64 3x3/1, fc 512); "universe": the 42x42
    network of universe-starter-agent and ikostrikov/pytorch-a3c (four 32 3x3/2 padded convs, ELU,
    no fc layer: the flattened maps, 288 features at 42x42, feed the LSTM core or the heads);
    "small": for grids such as MiniGrid's 7x7 views, each image standardised, then three padded 3x3
    convs (16, 32, 32; stride 2 in the last two when the image is larger than 12), fc 128. "auto"
    takes "a3c" for images of 36 pixels or more a side (Atari-sized frames) and "small" below. uint8
    pixels are scaled to [0, 1].
    `shape` is the env's; a channels-last `[H, W, C]` image is transposed here."""

    # kind -> ([(out channels, kernel, stride, padding)], activation, fc size or None)
    KINDS: dict[str, tuple[list[tuple[int, int, int, int]], type[nn.Module], int | None]] = {
        "a3c": ([(16, 8, 4, 0), (32, 4, 2, 0)], nn.ReLU, 256),
        "nature": ([(32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0)], nn.ReLU, 512),
        "universe": ([(32, 3, 2, 1)] * 4, nn.ELU, None),
    }

    def __init__(
        self, shape: tuple[int, ...], kind: str, layout: str = "auto", scale: bool = False
    ) -> None:
        super().__init__()
        self.hwc = channels_last(shape, layout)
        chw = channels_first_shape(shape, layout)
        kind = self.pick(chw, kind)
        self.kind, self.scale = kind, scale
        convs, activation, fc = self.KINDS.get(kind) or self._small(chw)
        c = chw[0]
        layers: list[nn.Module] = []
        for out, k, stride, pad in convs:
            conv = nn.Conv2d(c, out, k, stride, pad)
            nn.init.orthogonal_(conv.weight, math.sqrt(2))
            assert conv.bias is not None
            nn.init.zeros_(conv.bias)
            layers += [conv, activation()]
            c = out
        self.convs = nn.Sequential(*layers, nn.Flatten())
        try:
            with torch.no_grad():
                n = self.convs(torch.zeros(1, *chw)).shape[1]
        except RuntimeError:  # "Kernel size can't be greater than actual input size"
            raise EnvError(
                f"image observations of shape {tuple(shape)} are too small for model.cnn={kind} "
                "(model.cnn=small or auto serves small images)"
            ) from None
        self.out_dim = fc or n
        self.fc = nn.Sequential(linear(n, fc, math.sqrt(2)), nn.ReLU()) if fc else nn.Identity()
        # The small CNN standardises each image (mean 0, std 1 over C, H, W): symbolic grids such as
        # MiniGrid's are uint8 "images" of object codes 0..10, a few hundredths once scaled, and on
        # them the convolutions' gradients fall below Adam's eps: DoorKey-5x5 stayed at a uniform
        # policy for 1M steps, and learned in 160k with the standardisation (docs/spaces.md).
        self.standardize = kind == "small"

    @staticmethod
    def _small(
        chw: tuple[int, int, int],
    ) -> tuple[list[tuple[int, int, int, int]], type[nn.Module], int | None]:
        s = 2 if min(chw[1:]) > 12 else 1
        return [(16, 3, 1, 1), (32, 3, s, 1), (32, 3, s, 1)], nn.ReLU, 128

    @staticmethod
    def pick(chw: tuple[int, int, int], kind: str) -> str:
        if kind != "auto":
            return kind
        return "a3c" if min(chw[1:]) >= 36 else "small"

    def forward(self, obs: Tensor) -> Tensor:
        if self.hwc:  # [N, H, W, C] -> [N, C, H, W]: a view, already in channels-last memory order
            obs = obs.permute(0, 3, 1, 2)
        # With gradient, the input goes channels-last: oneDNN's convolution backward is then 40%
        # faster on this machine (the weights keep their layout, and their gradients too); without
        # gradient the layout makes no difference and its conversion costs more.
        layout = (
            torch.channels_last
            if torch.is_grad_enabled() and obs.dim() == 4
            else torch.preserve_format
        )
        x = obs.to(torch.float32, memory_format=layout)
        if obs.dtype == torch.uint8:
            x = x.mul_(1.0 / 255.0)  # a new tensor: the conversion from uint8 copied
        elif self.scale:  # uint8 pixels that travelled packed as float32 (a Dict's image)
            x = x * (1.0 / 255.0)
        if self.standardize:
            x = (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1e-5)
        return self.fc(self.convs(x))


def leaf_encoder(space: gym.Space, cfg: ModelConfig) -> tuple[nn.Module, int]:
    """(encoder, output size) for one leaf of a Dict / Tuple observation, or a whole MultiDiscrete /
    MultiBinary one."""
    if isinstance(space, gym.spaces.Discrete):
        if cfg.tabular == "embedding":
            return Embedding(int(space.n), cfg.embedding_dim, int(space.start)), cfg.embedding_dim
        return OneHot(int(space.n), int(space.start)), int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        enc = MultiOneHot(space.nvec, space.start)
        return enc, enc.out_dim
    shape = tuple(space.shape or ())
    if is_image(space):
        conv = ConvEncoder(shape, cfg.cnn, cfg.image_layout, scale=space.dtype == np.uint8)
        return conv, conv.out_dim
    return Flatten(), math.prod(shape)


class CombinedEncoder(nn.Module):
    """Packed observations (spaces.ObsLayout): each leaf through its own encoder, concatenated."""

    def __init__(self, layout: ObsLayout, cfg: ModelConfig) -> None:
        super().__init__()
        self.layout = layout
        built = [leaf_encoder(leaf.space, cfg) for leaf in layout.leaves]
        self.parts = nn.ModuleList(enc for enc, _ in built)
        self.out_dim = sum(dim for _, dim in built)

    def forward(self, obs: Tensor) -> Tensor:
        flat = obs.reshape(obs.shape[0], -1)
        return torch.cat(
            [enc(t) for enc, t in zip(self.parts, self.layout.leaf_tensors(flat), strict=True)],
            dim=-1,
        )


class UserEncoder(nn.Module):
    """The user's module (`model.encoder`) over the observations in the env's own structure: a
    tensor `[N, ...]` for Box (float32, as the env gave it: no scaling, no transpose) and Discrete
    (int64), dicts and tuples of such tensors for Dict and Tuple. Its output is flattened to `[N,
    D]`."""

    def __init__(self, layout: ObsLayout, name: str, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.layout, self.name = layout, name
        factory = load_entry(name, "model.encoder", ConfigError, builds="an encoder")
        try:
            module = factory(layout.space, **kwargs)
        except Exception as e:  # the user's constructor raised
            raise ConfigError(
                f"model.encoder '{name}' with encoder_kwargs {kwargs} raised {type(e).__name__}: "
                f"{first_line(e)}"
            ) from None
        if not isinstance(module, nn.Module):
            raise ConfigError(
                f"model.encoder '{name}' returned a {type(module).__name__}, not a torch.nn.Module"
            )
        self.net = module
        size = getattr(module, "out_dim", None) or getattr(module, "features_dim", None)
        self.out_dim = self._probe(name, None if not size else int(size))

    def _probe(self, name: str, declared: int | None) -> int:
        """The output size, from one forward pass on a batch of 3 sample observations, checked: a
        float tensor of [3, ...] rows, as wide as the module declares (`out_dim`/`features_dim`).
        A wrong encoder is one line now, not a failure in every worker."""
        n = 3
        rows = [self.layout.pack_batch(self.layout.space.sample())[0] for _ in range(n)]
        batch = torch.as_tensor(np.concatenate(rows))
        try:
            with torch.no_grad():
                out = self.net(self.layout.unpack(batch))
        except Exception as e:
            raise ConfigError(
                f"model.encoder '{name}' failed on a sample observation: {type(e).__name__}: "
                f"{first_line(e)}"
            ) from None
        what = f"model.encoder '{name}' returned"
        if not isinstance(out, Tensor):
            raise ConfigError(f"{what} a {type(out).__name__}, not a torch.Tensor")
        if not out.is_floating_point():
            raise ConfigError(f"{what} a {out.dtype} tensor; an encoder returns floats")
        if out.dim() < 2 or out.shape[0] != n:
            raise ConfigError(
                f"{what} shape {list(out.shape)} for a batch of {n} observations; an encoder "
                "returns [batch, features]"
            )
        width = int(out.reshape(n, -1).shape[1])
        if declared is not None and declared != width:
            raise ConfigError(
                f"{what} {width} features per observation, but declares {declared} "
                "(out_dim / features_dim)"
            )
        return width

    def forward(self, obs: Tensor) -> Tensor:
        out = self.net(self.layout.unpack(obs))
        return out.reshape(out.shape[0], -1)


def make_encoder(layout: ObsLayout, cfg: ModelConfig) -> tuple[nn.Module, int, bool]:
    """(encoder, output size, whether it is an image encoder that feeds the heads directly)."""
    if cfg.encoder is not None:
        enc = UserEncoder(layout, cfg.encoder, dict(cfg.encoder_kwargs))
        return enc, enc.out_dim, False
    space = layout.space
    if layout.packed:
        combined = CombinedEncoder(layout, cfg)
        return combined, combined.out_dim, False
    module, dim = leaf_encoder(space, cfg)
    return module, dim, is_image(space)
