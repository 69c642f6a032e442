"""Small envs for tests, importable as `fake_envs:Name` (tests put this folder on sys.path)."""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np


class Target1D(gym.Env):
    """Reach a target on a line: obs (position, target) in [-1, 1]; action a velocity in [-1, 1];
    reward -|position - target| per step; 20 steps. A good policy earns about -2, a random one
    -9."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0.0
        self.target = float(self.np_random.uniform(-1, 1))
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.pos, self.target], np.float32)

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        assert -1.0 <= a <= 1.0, "actions must arrive clipped to the bounds"
        self.pos = float(np.clip(self.pos + 0.2 * a, -1, 1))
        self.t += 1
        return self._obs(), -abs(self.pos - self.target), False, self.t >= 20, {}


class RaisesOnStep(gym.Env):
    """Raises on the 50th step: a worker failure."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.n = getattr(self, "n", 0)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.n += 1
        if self.n >= 50:
            raise RuntimeError("boom from the env")
        return np.zeros(2, np.float32), 1.0, False, False, {}


class CartPoleRaisesOnce(gym.Wrapper):
    """CartPole that raises once in the whole run, on its 30th step: the first env to get there
    creates `marker` and raises; every later env sees the marker and behaves."""

    def __init__(self, marker: str) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.marker, self.n = marker, 0

    def step(self, action):
        self.n += 1
        if self.n == 30:
            try:
                with open(self.marker, "x"):
                    pass
            except FileExistsError:
                pass
            else:
                raise RuntimeError("env crashed once")
        return self.env.step(action)


class CartPoleDiesOnce(CartPoleRaisesOnce):
    """Like CartPoleRaisesOnce, but the worker's process dies outright (as under SIGKILL)."""

    def step(self, action):
        try:
            return super().step(action)
        except RuntimeError:
            import os

            os._exit(137)


class Pixels(gym.Env):
    """Random 4x24x24 uint8 frames, 3 actions, reward +1 when the action matches the brightest
    quadrant; an episode terminates with probability 0.1 per step and is truncated after 9 steps."""

    observation_space = gym.spaces.Box(0, 255, (4, 24, 24), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        self.frame = self.np_random.integers(0, 256, (4, 24, 24), dtype=np.uint8)
        return self.frame

    def step(self, action):
        best = int(
            np.argmax(
                [
                    self.frame[:, :12, :12].mean(),
                    self.frame[:, 12:, :12].mean(),
                    self.frame[:, :12, 12:].mean(),
                ]
            )
        )
        reward = float(int(action) == best)
        self.t += 1
        return self._obs(), reward, bool(self.np_random.random() < 0.1), self.t >= 9, {}


class PidLogging(gym.Wrapper):
    """CartPole that appends the pid of the process building it to the file `path`."""

    def __init__(self, path):
        super().__init__(gym.make("CartPole-v1"))
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")


def _claim(marker: str | None) -> bool:
    """True for the first caller in the whole run (it creates `marker`); always True without one."""
    if marker is None:
        return True
    try:
        with open(marker, "x"):
            return True
    except FileExistsError:
        return False


class CartPoleHangs(gym.Wrapper):
    """CartPole whose step sleeps for an hour at its `after`-th step: once in the whole run with a
    `marker` file (the first env to get there), in every env without one."""

    def __init__(self, after: int = 2000, marker: str | None = None) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.after, self.marker, self.n = after, marker, 0

    def step(self, action):
        self.n += 1
        if self.n == self.after and _claim(self.marker):
            time.sleep(3600)
        return self.env.step(action)


class CartPoleNonFinite(gym.Wrapper):
    """CartPole that returns a NaN observation (`what="obs"`) or reward (`what="reward"`) every
    `every` steps of each env."""

    def __init__(self, every: int = 300, what: str = "obs") -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.every, self.what, self.n = every, what, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.n += 1
        if self.n % self.every == 0:
            if self.what == "obs":
                obs = np.full_like(obs, np.nan)
            else:
                reward = float("nan")
        return obs, reward, terminated, truncated, info


class RaisesInInit(gym.Env):
    """An env whose constructor raises (not a TypeError)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        raise RuntimeError("cannot open the simulator")


def make_raising_env():
    """A factory that raises."""
    raise ValueError("no such level")


class NoSpaces(gym.Env):
    """A gymnasium.Env that never sets observation_space or action_space."""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


class NotAnEnv:
    """Spaces and methods, but not a gymnasium.Env."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}

    def close(self):
        pass


NOT_CALLABLE = 42


class TinyPixels(Pixels):
    """4x7x7 uint8 frames: too small for the image encoders' 8x8 first kernel."""

    observation_space = gym.spaces.Box(0, 255, (4, 7, 7), np.uint8)

    def _obs(self):
        self.frame = self.np_random.integers(0, 256, (4, 7, 7), dtype=np.uint8)
        return self.frame


class BigPixels(Pixels):
    """4x84x84 uint8 frames (never stepped in the tests: the rollout buffers are refused first)."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)

    def _obs(self):
        self.frame = np.zeros((4, 84, 84), dtype=np.uint8)
        return self.frame


class FixedLength(gym.Env):
    """Every episode lasts `length` steps and pays 1 per step, whatever the actions: its return is
    known (`length`) for any policy. With `pid_file`, the pid of the process building it is
    appended to that file."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 7, pid_file: str | None = None) -> None:
        self.length, self.t = length, 0
        _log_pid(pid_file)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, self.t >= self.length, False, {}


class CartPoleEvalFails(gym.Wrapper):
    """CartPole that, built with `fail` ("raise", "hang", "nan" or "hang_init", whose constructor
    hangs; the evaluation env gets it
    through eval.env_kwargs), raises, sleeps for an hour or rewards NaN at its `after`-th step:
    once in the whole run with a `marker` file (the first env to get there), in every env without
    one. With `pid_file`, the pid of the process building it is appended to that file."""

    def __init__(
        self,
        fail: str | None = None,
        marker: str | None = None,
        after: int = 20,
        pid_file: str | None = None,
    ) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.fail, self.marker, self.after, self.n = fail, marker, after, 0
        _log_pid(pid_file)
        if fail == "hang_init" and _claim(marker):  # its constructor hangs (once in the run)
            time.sleep(3600)

    def step(self, action):
        self.n += 1
        if self.fail in ("raise", "hang", "nan") and self.n == self.after and _claim(self.marker):
            if self.fail == "nan":  # a NaN reward in this episode: its return is NaN
                obs, _, terminated, truncated, info = self.env.step(action)
                return obs, float("nan"), terminated, truncated, info
            if self.fail == "hang":
                time.sleep(3600)
            raise RuntimeError("the evaluation env crashed")
        return self.env.step(action)


def _log_pid(path: str | None) -> None:
    if path is not None:
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
