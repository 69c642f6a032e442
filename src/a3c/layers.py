"""Layers every part of the model builds from: orthogonally initialised linear layers and MLPs."""

from __future__ import annotations

import math

from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def linear(i: int, o: int, gain: float, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(i, o, bias=bias)
    nn.init.orthogonal_(layer.weight, gain)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, hidden: tuple[int, ...], activation: str) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [linear(in_dim, h, math.sqrt(2)), ACTIVATIONS[activation]()]
        in_dim = h
    return nn.Sequential(*layers), in_dim
