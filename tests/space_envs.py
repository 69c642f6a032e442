"""Small envs, one per space a3c supports, that a policy must read to earn its return.

Each is a "cue" task: every step shows a random cue in the observation space under test, the
reward is 1 for the action the cue asks for (0 otherwise), and an episode is `LENGTH` steps
(truncated). Random play earns LENGTH times the chance of guessing; a policy that reads the cue
earns LENGTH. Importable as `space_envs:Name` (tests put this folder on sys.path).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

LENGTH = 8


class _Cue(gym.Env):
    """Subclasses set the spaces and define `_cue()` (draw one, return the observation) and
    `_reward(action)`."""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._cue(), {}

    def step(self, action):
        reward = float(self._reward(action))
        self.t += 1
        return self._cue(), reward, False, self.t >= LENGTH, {}


class DictCue(_Cue):
    """Dict observation: a Discrete cue, a Box of noise and a MultiBinary of noise; act = cue."""

    observation_space = gym.spaces.Dict(
        {
            "cue": gym.spaces.Discrete(3),
            "noise": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "bits": gym.spaces.MultiBinary(2),
        }
    )
    action_space = gym.spaces.Discrete(3)

    def _cue(self):
        self.c = int(self.np_random.integers(3))
        return {
            "cue": self.c,
            "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32),
            "bits": self.np_random.integers(0, 2, 2).astype(np.int8),
        }

    def _reward(self, action):
        return int(action) == self.c


class NestedTupleCue(_Cue):
    """Tuple observation, nested: (Box noise, (Discrete cue, MultiDiscrete noise)); act = cue."""

    observation_space = gym.spaces.Tuple(
        (
            gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
            gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.MultiDiscrete([3, 2]))),
        )
    )
    action_space = gym.spaces.Discrete(2)

    def _cue(self):
        self.c = int(self.np_random.integers(2))
        return (
            self.np_random.uniform(-1, 1, 1).astype(np.float32),
            (self.c, self.np_random.integers(0, [3, 2])),
        )

    def _reward(self, action):
        return int(action) == self.c


class MultiDiscreteObsCue(_Cue):
    """MultiDiscrete([3, 3]) observation (start 1); act = the second value, zero-based."""

    observation_space = gym.spaces.MultiDiscrete([3, 3], start=[1, 1])
    action_space = gym.spaces.Discrete(3)

    def _cue(self):
        self.c = self.np_random.integers(0, 3, 2)
        return self.c + 1

    def _reward(self, action):
        return int(action) == int(self.c[1])


class MultiBinaryObsCue(_Cue):
    """MultiBinary(3) observation; act = bit 2."""

    observation_space = gym.spaces.MultiBinary(3)
    action_space = gym.spaces.Discrete(2)

    def _cue(self):
        self.c = self.np_random.integers(0, 2, 3).astype(np.int8)
        return self.c

    def _reward(self, action):
        return int(action) == int(self.c[2])


class MultiDiscreteActionCue(_Cue):
    """Box cue (two values in {-1, 1}... as floats); MultiDiscrete([2, 3]) action: reward 0.5 per
    dimension right (dimension 0: the sign of cue 0; dimension 1: cue 1 mapped to 0 / 2)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def _cue(self):
        self.c = self.np_random.integers(0, 2, 2)
        return (self.c * 2.0 - 1.0).astype(np.float32)

    def _reward(self, action):
        a = np.asarray(action)
        assert a.shape == (2,) and 0 <= a[0] < 2 and 0 <= a[1] < 3
        return 0.5 * (a[0] == self.c[0]) + 0.5 * (a[1] == 2 * self.c[1])


class MultiBinaryActionCue(_Cue):
    """MultiBinary(3) cue and MultiBinary((3,)) action: reward 1/3 per bit copied."""

    observation_space = gym.spaces.MultiBinary(3)
    action_space = gym.spaces.MultiBinary(3)

    def _cue(self):
        self.c = self.np_random.integers(0, 2, 3).astype(np.int8)
        return self.c

    def _reward(self, action):
        a = np.asarray(action)
        assert a.shape == (3,) and set(np.unique(a)) <= {0, 1}
        return float((a == self.c).sum()) / 3.0


class SideImage(_Cue):
    """The issue's trivial image task: a 32x32 RGB uint8 image, red on the left or the right half;
    act on that side. `layout` "chw" (3x32x32) or "hwc" (32x32x3)."""

    def __init__(self, layout: str = "chw") -> None:
        self.layout = layout
        shape = (3, 32, 32) if layout == "chw" else (32, 32, 3)
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def _cue(self):
        self.c = int(self.np_random.integers(2))
        img = np.zeros((3, 32, 32), np.uint8)
        img[0, :, 16 * self.c : 16 * (self.c + 1)] = 200  # + noise below 40: no uint8 wrap-around
        img += self.np_random.integers(0, 40, img.shape, dtype=np.uint8)  # some noise everywhere
        return img if self.layout == "chw" else np.ascontiguousarray(img.transpose(1, 2, 0))

    def _reward(self, action):
        return int(action) == self.c


class SideImageHWC(SideImage):
    def __init__(self) -> None:
        super().__init__("hwc")


class GridDict(_Cue):
    """A MiniGrid-like Dict: a 7x7x3 uint8 grid view (HWC, object codes 0..10) with a goal (code 8)
    in the left or the right three columns, a Discrete(4) direction and a Text mission to drop with
    env.obs_keys; act = the goal's side."""

    observation_space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
            "direction": gym.spaces.Discrete(4),
            "mission": gym.spaces.Text(40),
        }
    )
    action_space = gym.spaces.Discrete(2)

    def _cue(self):
        self.c = int(self.np_random.integers(2))
        img = np.ones((7, 7, 3), np.uint8)
        img[
            self.np_random.integers(7), (0 if self.c == 0 else 4) + self.np_random.integers(3), 0
        ] = 8
        return {
            "image": img,
            "direction": int(self.np_random.integers(4)),
            "mission": "get to the goal",
        }

    def _reward(self, action):
        return int(action) == self.c


class MaskedCueInfo(_Cue):
    """Discrete(4) actions, two of which are valid at each step, given in info["action_mask"]
    (Gymnasium's convention); the rewarded one is the valid action the cue names. Taking an
    invalid action raises: a masked action must never be sampled."""

    observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(4)

    def _cue(self):
        valid = self.np_random.choice(4, 2, replace=False)
        self.mask = np.zeros(4, np.int8)
        self.mask[valid] = 1
        self.c = int(valid[self.np_random.integers(2)])
        return np.eye(4, dtype=np.float32)[self.c] * 0.5 + self.mask * 0.5

    def _reward(self, action):
        return int(action) == self.c

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, self._info(info)

    def step(self, action):
        if not self.mask[int(action)]:
            raise RuntimeError(f"masked action {action} taken (mask {self.mask})")
        obs, r, term, trunc, info = super().step(action)
        return obs, r, term, trunc, self._info(info)

    def _info(self, info):
        return {**info, "action_mask": self.mask.copy()}


class MaskedCue(MaskedCueInfo):
    """MaskedCueInfo with the mask from an `action_masks()` method (sb3-contrib's convention)."""

    def action_masks(self):
        return self.mask.astype(bool)

    def _info(self, info):
        return info


class NoValidAction(MaskedCue):
    """An env whose mask has no valid action: an env error."""

    def _cue(self):
        obs = super()._cue()
        self.mask[:] = 0
        return obs


class TextObs(gym.Env):
    """A Dict with a Text leaf and nothing else readable."""

    observation_space = gym.spaces.Dict(
        {"pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float32), "mission": gym.spaces.Text(20)}
    )
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"pos": np.zeros(2, np.float32), "mission": "go"}, {}

    def step(self, action):
        return {"pos": np.zeros(2, np.float32), "mission": "go"}, 0.0, True, False, {}


class SequenceObs(TextObs):
    observation_space = gym.spaces.Sequence(gym.spaces.Discrete(3))


class GraphObs(TextObs):
    observation_space = gym.spaces.Graph(
        gym.spaces.Box(0.0, 1.0, (2,), np.float32), gym.spaces.Discrete(2)
    )


class UnboundedActions(TextObs):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)


class TupleActions(UnboundedActions):
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))


class MaskedBoxActions(MaskedCue):
    """Masks offered with Box actions: a3c refuses unless env.action_masks is false."""

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def step(self, action):
        return self._cue(), 0.0, False, True, {}


# --- user encoders ---------------------------------------------------------------------------


class GridEncoder(nn.Module):
    """A user's encoder for GridDict's observations (image and direction), written as MiniGrid's
    own Stable-Baselines3 example writes its features extractor: 2x2 convs over the channels-first
    image, flatten, a linear layer to `features_dim`; the direction one-hot concatenated."""

    def __init__(self, observation_space: gym.spaces.Dict, features_dim: int = 64) -> None:
        super().__init__()
        h, w, c = observation_space["image"].shape
        self.cnn = nn.Sequential(
            nn.Conv2d(c, 16, 2), nn.ReLU(), nn.Conv2d(16, 32, 2), nn.ReLU(), nn.Flatten()
        )
        n = 32 * (h - 2) * (w - 2)
        self.linear = nn.Sequential(nn.Linear(n, features_dim), nn.ReLU())
        self.features_dim = features_dim + 4

    def forward(self, obs):
        image = obs["image"].permute(0, 3, 1, 2) / 10.0  # HWC object codes -> CHW, about [0, 1]
        direction = nn.functional.one_hot(obs["direction"], 4).float()
        return torch.cat([self.linear(self.cnn(image)), direction], dim=-1)


def make_vector_encoder(observation_space: gym.Space, width: int = 16) -> nn.Module:
    """A user's factory (not a class): a small MLP over a Box vector; no size attribute, so a3c
    finds the output size by a forward pass."""
    return nn.Sequential(nn.Linear(int(np.prod(observation_space.shape)), width), nn.Tanh())


def dict_cartpole() -> gym.Env:
    """CartPole with a Dict of two float vectors: {"cart": (x, x_dot), "pole": (theta,
    theta_dot)}."""
    env = gym.make("CartPole-v1")
    box = env.observation_space
    space = gym.spaces.Dict(
        {
            "cart": gym.spaces.Box(box.low[:2], box.high[:2]),
            "pole": gym.spaces.Box(box.low[2:], box.high[2:]),
        }
    )
    return gym.wrappers.TransformObservation(env, lambda o: {"cart": o[:2], "pole": o[2:]}, space)


class CueEncoder(nn.Module):
    """A user's encoder class for DictCue: the cue one-hot and the noise through one linear
    layer."""

    def __init__(self, observation_space: gym.spaces.Dict, features_dim: int = 16) -> None:
        super().__init__()
        self.n = int(observation_space["cue"].n)
        self.linear = nn.Sequential(nn.Linear(self.n + 2, features_dim), nn.Tanh())
        self.out_dim = features_dim

    def forward(self, obs):
        cue = nn.functional.one_hot(obs["cue"], self.n).float()
        return self.linear(torch.cat([cue, obs["noise"]], dim=-1))


class WrongShape(gym.Env):
    """Declares Box(4,) observations and returns `shape` ones; with `array_reward`, a reward of
    shape (1,): what the env check refuses at the first reset and step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, shape=(1,), array_reward=False):
        self.shape, self.array_reward = tuple(shape), array_reward

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.shape, np.float32), {}

    def step(self, action):
        reward = np.array([1.0]) if self.array_reward else 1.0
        return np.zeros(self.shape, np.float32), reward, False, False, {}


class NaNAtFirstReset(gym.Env):
    """A nested Dict observation whose first reset has a NaN in one leaf (later ones are finite)."""

    observation_space = gym.spaces.Dict(
        {
            "a": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "b": gym.spaces.Dict({"c": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)}),
        }
    )
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.resets = 0

    def _obs(self, nan=False):
        c = np.array([np.nan if nan else 0.5, 0.25], np.float32)
        return {"a": np.zeros(2, np.float32), "b": {"c": c}}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets += 1
        self.t = 0
        return self._obs(nan=self.resets == 1), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, False, self.t >= 20, {}


class _BadEncoder(torch.nn.Module):
    """Encoders that do not return what an encoder must: [batch, features] floats, as wide as
    declared (each is refused at start-up with one line)."""

    out_dim = 8

    def __init__(self, observation_space):
        super().__init__()
        self.linear = torch.nn.Linear(int(np.prod(observation_space.shape)), 4)

    def forward(self, obs):
        return self.linear(obs.reshape(obs.shape[0], -1))


class WrongWidthEncoder(_BadEncoder):
    pass  # declares 8, returns 4


class OneDimEncoder(_BadEncoder):
    def forward(self, obs):
        return super().forward(obs).sum(0)


class OneRowEncoder(_BadEncoder):
    out_dim = 4

    def forward(self, obs):
        return super().forward(obs)[:1]


class IntegerEncoder(_BadEncoder):
    out_dim = 4

    def forward(self, obs):
        return super().forward(obs).long()
