"""The acting path of a trained model as one module: the observation as the env gives it in, the
greedy action as the env takes it out (a3c/export.py writes it as ONNX or TorchScript).

Everything between the env and the network is inside: the observation's dtype conversion, uint8
scaling and channels-last images, one-hot and multi-one-hot encodings, the run's observation
normalisation (its statistics frozen in), a Dict or Tuple observation as one input per leaf
(`obs.<key>`), the action mask as an input, the LSTM state as inputs and outputs; with
`with_distribution` also the distribution's parameters (logits, or mean and std) and the value.
`ports` names and shapes the inputs and outputs in order.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from a3c.heads import GaussianHead
from a3c.models import ActorCritic
from a3c.spaces import Leaf, ObsLayout


def _leaf_dtype(space: gym.Space) -> np.dtype:
    """The dtype an env gives a leaf in: Discrete indices as int64, any other space its own."""
    if isinstance(space, gym.spaces.Discrete):
        return np.dtype(np.int64)
    return np.dtype(space.dtype)


def _leaf_shape(space: gym.Space) -> tuple[int, ...]:
    return () if isinstance(space, gym.spaces.Discrete) else tuple(space.shape or ())


class ActingGraph(nn.Module):
    """The model's greedy acting path over raw env observations (see the module's docstring).

    forward(*observation leaves, [action_mask], [state_h, state_c]) -> (action, [logits | mean,
    std, value], [next_state_h, next_state_c])."""

    obs_mean: Tensor
    obs_std: Tensor
    low: Tensor
    high: Tensor
    start: Tensor

    def __init__(
        self,
        model: ActorCritic,
        action_space: gym.Space,
        obs_stats: tuple[Tensor, Tensor] | None,
        masks: bool,
        with_distribution: bool,
    ) -> None:
        super().__init__()
        self.model, self.layout = model, model.layout
        self.head = model.policy_head
        self.masks, self.with_distribution = masks, with_distribution
        self.normalize = obs_stats is not None
        mean, std = obs_stats if obs_stats is not None else (torch.zeros(1), torch.ones(1))
        self.register_buffer("obs_mean", mean.clone().float())
        self.register_buffer("obs_std", std.clone().float())
        self.gaussian = isinstance(self.head, GaussianHead)
        self.env_shape = tuple(action_space.shape or ())
        self.action_dtype = _torch_dtype(
            np.dtype(np.int64)
            if isinstance(action_space, gym.spaces.Discrete)
            else action_space.dtype
        )
        low, high, start = torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.int64)
        if isinstance(action_space, gym.spaces.Box):
            low = torch.as_tensor(action_space.low.reshape(-1), dtype=torch.float32)
            high = torch.as_tensor(action_space.high.reshape(-1), dtype=torch.float32)
        elif isinstance(action_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
            start = torch.as_tensor(np.asarray(action_space.start).reshape(-1), dtype=torch.int64)
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.register_buffer("start", start)

    def observation(self, leaves: tuple[Tensor, ...]) -> Tensor:
        """The leaves as the model reads them: packed, converted, normalised."""
        if self.layout.packed:
            obs = torch.cat([x.reshape(x.shape[0], -1).to(torch.float32) for x in leaves], dim=1)
        else:
            obs = leaves[0].to(self.layout.dtype)
        if self.normalize:
            obs = ((obs - self.obs_mean) / self.obs_std).clamp(-10.0, 10.0)
        return obs

    def action(self, out: Tensor) -> Tensor:
        """The greedy action from the policy output, as the env takes it."""
        chosen = self.head.sample(out, None, deterministic=True)
        if self.gaussian:
            chosen = torch.maximum(torch.minimum(chosen, self.high), self.low)
        elif self.action_dtype == torch.int64:
            chosen = chosen + self.start
        if self.env_shape:
            chosen = chosen.reshape((-1, *self.env_shape))
        return chosen.to(self.action_dtype)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        n = len(self.layout.leaves) if self.layout.packed else 1
        obs, rest = self.observation(inputs[:n]), list(inputs[n:])
        mask = rest.pop(0) if self.masks else None
        state = (rest[0], rest[1]) if self.model.recurrent else None
        out, value, next_state = self.model(obs, state)
        if mask is not None:
            out = self.head.apply_mask(out, mask.to(torch.bool))
        outputs = [self.action(out)]
        if self.with_distribution:
            outputs += [out[:, 0], out[:, 1]] if self.gaussian else [out]
            outputs.append(value)
        if next_state is not None:
            outputs += [next_state[0], next_state[1]]
        return tuple(outputs)


def _torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(1, dtype=np.dtype(dtype))).dtype


def _input_leaves(layout: ObsLayout) -> list[Leaf]:
    if layout.packed:
        return layout.leaves
    return [Leaf((), layout.space, 0, layout.size)]


def ports(graph: ActingGraph, action_space: gym.Space) -> tuple[list[dict], list[dict]]:
    """The graph's inputs and outputs, in order: name, shape ("batch" first), dtype."""
    model = graph.model
    inputs = [
        {
            "name": "obs" if not leaf.path else "obs." + leaf.name,
            "shape": ["batch", *_leaf_shape(leaf.space)],
            "dtype": _leaf_dtype(leaf.space).name,
        }
        for leaf in _input_leaves(graph.layout)
    ]
    head = graph.head
    if graph.masks:
        inputs.append({"name": "action_mask", "shape": ["batch", head.mask_size], "dtype": "bool"})
    outputs = [
        {
            "name": "action",
            "shape": ["batch", *graph.env_shape],
            "dtype": str(graph.action_dtype).removeprefix("torch."),
        }
    ]
    if graph.with_distribution:
        width = head.mean.out_features if isinstance(head, GaussianHead) else int(head.out_features)
        names = ["mean", "std"] if graph.gaussian else ["logits"]
        outputs += [{"name": n, "shape": ["batch", width], "dtype": "float32"} for n in names]
        outputs.append({"name": "value", "shape": ["batch"], "dtype": "float32"})
    if model.core is not None:
        size = model.core.hidden_size
        for prefix, where in (("", inputs), ("next_", outputs)):
            where += [
                {"name": f"{prefix}state_{k}", "shape": ["batch", size], "dtype": "float32"}
                for k in "hc"
            ]
    return inputs, outputs


def sample_inputs(graph: ActingGraph, spec: list[dict], n: int, seed: int = 0) -> list[Tensor]:
    """A batch of `n` observations drawn from the observation space (with all-valid masks and zero
    states), as the graph's inputs."""
    space = graph.layout.space
    space.seed(seed)
    rows = [space.sample() for _ in range(n)]
    tensors = []
    for leaf in _input_leaves(graph.layout):
        values = []
        for row in rows:
            for key in leaf.path:
                row = row[key]
            values.append(np.asarray(row, dtype=_leaf_dtype(leaf.space)))
        tensors.append(torch.as_tensor(np.stack(values)))
    for port in spec[len(tensors) :]:
        width = port["shape"][1]
        if port["name"] == "action_mask":
            tensors.append(torch.ones(n, width, dtype=torch.bool))
        else:
            tensors.append(torch.zeros(n, width))
    return tensors


def describe_space(space: gym.Space) -> dict[str, Any]:
    """An action space as JSON."""
    out: dict[str, Any] = {"type": type(space).__name__, "dtype": np.dtype(space.dtype).name}
    if isinstance(space, gym.spaces.Discrete):
        out.update(n=int(space.n), start=int(space.start), dtype="int64")
    elif isinstance(space, gym.spaces.MultiDiscrete):
        out.update(nvec=space.nvec.tolist(), start=np.asarray(space.start).tolist())
    elif isinstance(space, gym.spaces.Box):
        out.update(shape=list(space.shape), low=space.low.tolist(), high=space.high.tolist())
    else:
        out.update(shape=list(space.shape or ()))
    return out
