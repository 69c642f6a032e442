"""The Ray backend's evaluator: an actor beside the worker actors.

Asked for an evaluation, the actor fetches the global state from the store shards (parameters, or
their moving average with eval.ema_steps; counters; observation statistics),
plays the episodes (`a3c.evaluation.play`) and returns the result with the state. The trainer never
waits for it: it checks the call without blocking at each poll. The actor takes two calls at once
(`max_concurrency=2`), so while it plays the trainer can ask it how many env steps it has made
(about once a second): none for `eval.timeout` seconds is a hang. A hung, dead or raising actor is
killed and created again at the next evaluation, with a warning; the run goes on. It asks for no
CPU of Ray's (as the parameter server), so it never waits behind the workers for a slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a3c.backends.ray_runtime import START_GRACE_S, _raise_signal, _ray, _ray_error_line
from a3c.backends.ray_store import gather
from a3c.config import Config
from a3c.evaluation import EvalResult, EvalSpec, play, warn_failed

HEARTBEAT_S = 1.0


class EvaluatorActor:
    """Plays evaluations in a Ray actor; `heartbeat` answers while `evaluate` runs."""

    def __init__(self, cfg: Config, spec: EvalSpec) -> None:
        torch.set_num_threads(1)
        self.cfg, self.spec = cfg, spec
        self.beats = 0

    def evaluate(
        self, shards: list[Any], wall_s: float
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = gather(_ray().get([s.state.remote() for s in shards]))
        if "ema" in state:  # the moving average is what is evaluated and kept as the best
            state["params"] = state.pop("ema")
        result = play(self.cfg, self.spec, state, wall_s, lambda env: _Counting(env, self))
        return result.row(), {k: v.numpy() for k, v in result.state.items()}

    def heartbeat(self) -> int:
        return self.beats


class _Counting(gym.Wrapper):
    def __init__(self, env: gym.Env, owner: EvaluatorActor) -> None:
        super().__init__(env)
        self.owner = owner

    def reset(self, **kwargs: Any) -> Any:
        self.owner.beats += 1
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        self.owner.beats += 1
        return self.env.step(action)


class RayEvaluator:
    """The trainer's side of the evaluator actor (an `a3c.evaluation.Evaluator`). `shards()` gives
    the store shards' current handles (a restored shard has a new one)."""

    def __init__(self, cfg: Config, shards: Callable[[], list[Any]], spec: EvalSpec) -> None:
        self.cfg, self.shards, self.spec = cfg, shards, spec
        self.actor: Any = None
        self.pending: Any = None  # the evaluation under way
        self.beat: Any = None  # a heartbeat call in flight
        self.restarts = 0
        self._seen: tuple[int | None, float] = (None, 0.0)  # (heartbeat, when it last moved)
        self._asked = 0.0

    def start(self) -> None:
        try:
            self._spawn()
        except Exception as e:  # tried again at the first evaluation
            _raise_signal(e)
            self._failed(f"could not start it ({_ray_error_line(e)})")

    def _spawn(self) -> None:
        self.actor = (
            _ray().remote(num_cpus=0, max_concurrency=2)(EvaluatorActor).remote(self.cfg, self.spec)
        )

    def request(self, wall_s: float) -> bool:
        if self.pending is not None:
            return False
        try:
            if self.actor is None:
                self._spawn()
            # The shards' handles of now: a restored shard has a new one.
            self.pending = self.actor.evaluate.remote(self.shards(), wall_s)
        except Exception as e:
            _raise_signal(e)
            self._failed(f"could not start it ({_ray_error_line(e)})")
            return False
        self._seen = (None, time.monotonic())
        return True

    def poll(self) -> list[EvalResult]:
        if self.pending is None:
            return []
        ray = _ray()
        if not ray.wait([self.pending], timeout=0)[0]:
            self._watch()
            return []
        ref, self.pending = self.pending, None
        try:
            row, state = ray.get(ref)
        except Exception as e:  # RayTaskError (the env raised), RayActorError (the actor died)
            _raise_signal(e)
            self._failed(_ray_error_line(e))
            return []
        return [EvalResult.from_row(row, state)]

    def _watch(self) -> None:
        """Kill an evaluation whose actor has made no env step for `eval.timeout` seconds (a new
        actor's process gets START_GRACE_S more to start before its first answer)."""
        timeout = self.cfg.eval.timeout
        if timeout is None:
            return
        ray, now = _ray(), time.monotonic()
        if self.beat is None and now - self._asked >= HEARTBEAT_S:
            self.beat, self._asked = self.actor.heartbeat.remote(), now
        if self.beat is not None and ray.wait([self.beat], timeout=0)[0]:
            beat, self.beat = self.beat, None
            try:
                beats = ray.get(beat)
            except Exception as e:  # the actor died: the evaluation's own call fails next
                _raise_signal(e)
                return
            if beats != self._seen[0]:
                self._seen = (beats, now)
        grace = START_GRACE_S if self._seen[0] is None else 0.0
        if now - self._seen[1] > timeout + grace:
            self._failed(f"no env step for {timeout:g} s (stuck, e.g. in its env); killed")

    def _failed(self, message: str) -> None:
        self.stop()
        self.restarts += 1
        warn_failed(message, self.restarts)

    def stop(self) -> None:
        actor, self.actor, self.pending, self.beat = self.actor, None, None, None
        if actor is not None:
            try:
                _ray().kill(actor)
            except Exception:  # Ray is already gone
                pass
