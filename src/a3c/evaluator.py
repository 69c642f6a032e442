"""The evaluator: whole episodes played with a snapshot of the global parameters, beside the workers.

    evaluator = make_evaluator(cfg, store, backend, spec)
    evaluator.start()
    evaluator.request(wall_s)   # evaluate the global state as it is now; False while one is under way
    evaluator.poll()            # the finished evaluations; a crashed or hung evaluator is restarted

It reads the global parameters and observation statistics (a `SharedStore.policy_state()`), plays
`eval.episodes` episodes with `a3c.evaluation.evaluate` on envs built as `a3c eval` builds them
(real scores: Atari whole games, no end-of-life, no reward clipping) and hands back an
`EvalResult` with the state it evaluated, so the trainer can keep it as the best model. Where it
runs depends on the backend, as the workers do:

- processes: a process of its own, forked from the workers' fork server (A3C's test process). It
  reads the store in shared memory itself; the trainer only asks and later reads the answer, so
  training never waits for it. Each env step ticks a heartbeat in shared memory: no tick for
  `eval.timeout` seconds is a hang, and the process is killed and started again (lazily, at the
  next evaluation), as is one that raised or died. A warning says so; the run goes on.
- serial: inline in the trainer at the interval (the deterministic emulation: a seed fixes the
  evaluations too); a hung env step is interrupted by a watchdog (a3c/watchdog.py).
- ray: an actor that asks the parameter server for the state (a3c/backends/ray_evaluator.py).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from a3c import forkserver
from a3c.config import Config
from a3c.envs import EnvFn, make_env_fn, probe_spaces
from a3c.errors import first_line
from a3c.evaluation import eval_env_fn, evaluate
from a3c.metrics import EVAL_COLUMNS
from a3c.models import make_model
from a3c.normalize import ObservationStats
from a3c.policy import Policy
from a3c.store import SharedStore
from a3c.watchdog import UpdateTimeout, Watchdog

if TYPE_CHECKING:
    from a3c.backends import Backend

STOP_TIMEOUT_S = 0.5  # an evaluator told to stop between evaluations exits at once; one playing is killed


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What an evaluator needs besides the config: the user's env factory (None: the config's
    env id) and the spaces the model is built for."""

    env_fn: EnvFn | None
    observation_space: gym.Space
    action_space: gym.Space

    @classmethod
    def probe(cls, cfg: Config, env_fn: EnvFn | None = None) -> EvalSpec:
        obs_space, act_space, _ = probe_spaces(env_fn or make_env_fn(cfg.env), cfg.backend.worker_timeout)
        return cls(env_fn, obs_space, act_space)


@dataclasses.dataclass
class EvalResult:
    """One evaluation: an eval.csv row (EVAL_COLUMNS) and the state that was evaluated."""

    steps: int  # global env steps behind the evaluated parameters
    wall_s: float  # the run's wall time when the evaluation was asked for
    mean: float
    std: float
    min: float
    max: float
    episodes: int
    mean_length: float
    duration_s: float
    state: dict[str, Tensor] = dataclasses.field(repr=False)  # params, counters.*, obs_stats

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in EVAL_COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, Any], state: dict[str, Any]) -> EvalResult:
        return cls(**row, state={k: torch.from_numpy(np.array(v)) for k, v in state.items()})


Wrap = Callable[[gym.Env], gym.Env]


def play(cfg: Config, spec: EvalSpec, state: dict[str, Tensor], wall_s: float, wrap: Wrap | None = None) -> EvalResult:
    """Evaluate a policy state: a model of `spec`'s spaces with its parameters (and observation
    statistics), `eval.episodes` episodes with the run's seed (the same episodes every time).
    `wrap(env)` wraps each env (a heartbeat, a watchdog)."""
    start = time.monotonic()
    model = make_model(spec.observation_space, spec.action_space, cfg.model)
    torch.nn.utils.vector_to_parameters(state["params"], model.ordered_parameters())
    policy = Policy(model, spec.observation_space, spec.action_space, cfg.run.seed)
    if cfg.env.normalize_obs and state.get("obs_stats") is not None:
        policy.obs_stats = ObservationStats.like(state["obs_stats"].clone())
    base = eval_env_fn(cfg, spec.env_fn)
    env_fn = base if wrap is None else _Wrapped(base, wrap)
    out = evaluate(policy, cfg, env_fn, cfg.eval.episodes, cfg.eval.deterministic, None, None)
    return EvalResult(
        steps=int(state["counters.worker_steps"].sum()), wall_s=round(wall_s, 3), mean=out["mean"], std=out["std"],
        min=out["min"], max=out["max"], episodes=out["episodes"], mean_length=float(np.mean(out["lengths"])),
        duration_s=round(time.monotonic() - start, 3), state=state,
    )  # fmt: skip


class _Wrapped:
    """An env factory that wraps what another one builds."""

    def __init__(self, env_fn: EnvFn, wrap: Wrap) -> None:
        self.env_fn, self.wrap = env_fn, wrap

    def __call__(self) -> gym.Env:
        return self.wrap(self.env_fn())


class Evaluator(Protocol):
    """Where evaluations run (one at a time). Failures are its own business: `poll` restarts a
    crashed or hung evaluator with a warning; nothing it does stops the run."""

    restarts: int  # evaluators restarted after a failure

    def start(self) -> None: ...

    def request(self, wall_s: float) -> bool:
        """Evaluate the global state as it is now; False (nothing done) while one is under way."""
        ...

    def poll(self) -> list[EvalResult]:
        """The evaluations finished since the last poll."""
        ...

    def stop(self) -> None:
        """Stop the evaluator at once (an evaluation under way is abandoned); never raises."""
        ...


def warn_failed(message: str, restarts: int) -> None:
    print(f"a3c: warning: the evaluator failed ({message}); restarting it ({restarts} so far); training goes on", file=sys.stderr, flush=True)


class InlineEvaluator:
    """The serial backend's evaluator: plays in the trainer's own thread when asked."""

    def __init__(self, cfg: Config, store: SharedStore, spec: EvalSpec) -> None:
        self.cfg, self.store, self.spec = cfg, store, spec
        self.restarts = 0
        self._done: list[EvalResult] = []

    def start(self) -> None:
        pass

    def request(self, wall_s: float) -> bool:
        with Watchdog(self.cfg.eval.timeout) as dog:
            try:
                self._done.append(play(self.cfg, self.spec, self.store.policy_state(), wall_s, lambda env: _Bounded(env, dog)))
            except Exception as e:  # the env raised, or hung (UpdateTimeout): the next evaluation starts afresh
                self.restarts += 1
                hung = f"no env step for {self.cfg.eval.timeout:g} s (stuck, e.g. in its env); interrupted"
                warn_failed(hung if isinstance(e, UpdateTimeout) else f"{type(e).__name__}: {first_line(e)}", self.restarts)
        return True

    def poll(self) -> list[EvalResult]:
        out, self._done = self._done, []
        return out

    def stop(self) -> None:
        pass


class _Bounded(gym.Wrapper):
    """Each reset and step under the watchdog: one that hangs raises UpdateTimeout."""

    def __init__(self, env: gym.Env, dog: Watchdog) -> None:
        super().__init__(env)
        self.dog = dog

    def reset(self, **kwargs: Any) -> Any:
        with self.dog.bound():
            return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        with self.dog.bound():
            return self.env.step(action)


class _Heartbeat(gym.Wrapper):
    """Ticks a shared counter at each reset and step (the trainer watches it for a hang), and ends
    the process if the trainer is gone (checked once a second)."""

    def __init__(self, env: gym.Env, beats: Tensor) -> None:
        super().__init__(env)
        self.beats, self.checked = beats, time.monotonic()

    def _tick(self) -> None:
        self.beats += 1
        if time.monotonic() - self.checked > 1.0:
            self.checked = time.monotonic()
            _exit_if_orphaned()

    def reset(self, **kwargs: Any) -> Any:
        self._tick()
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        self._tick()
        return self.env.step(action)


def _exit_if_orphaned() -> None:
    trainer = multiprocessing.parent_process()
    if trainer is not None and not trainer.is_alive():
        os._exit(0)


def evaluator_main(cfg: Config, store: SharedStore, conn: Any, spec: EvalSpec, beats: Tensor) -> None:
    """Entry point of the evaluator process: wait for a request, evaluate, answer; until told to
    stop or the trainer is gone. An error is sent with its traceback, and the process ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the trainer, which stops us
    torch.set_num_threads(1)
    try:
        import cv2  # only present with the Atari extra

        cv2.setNumThreads(1)
    except ImportError:
        pass
    while True:
        try:
            if not conn.poll(1.0):
                _exit_if_orphaned()
                continue
            message = conn.recv()
        except (EOFError, OSError):
            return  # the trainer closed its end
        if message[0] != "eval":
            return
        try:
            result = play(cfg, spec, store.policy_state(), message[1], lambda env: _Heartbeat(env, beats))
            conn.send(("result", result.row(), {k: v.numpy() for k, v in result.state.items()}))
        except BaseException as e:  # every failure must reach the trainer
            try:
                conn.send(("error", f"{type(e).__name__}: {first_line(e)}", traceback.format_exc()))
            except OSError:
                pass
            return


class ProcessEvaluator:
    """The processes backend's evaluator: a process of its own (see the module's docstring)."""

    def __init__(self, cfg: Config, store: SharedStore, spec: EvalSpec) -> None:
        self.cfg, self.store, self.spec = cfg, store, spec
        self.ctx = forkserver.context()
        self.beats = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.proc: Any = None
        self.conn: Any = None
        self.restarts = 0
        self.busy = False
        self._seen = (0, 0.0)  # (heartbeat, when it last moved) of the evaluation under way

    def start(self) -> None:
        try:
            self._spawn()
        except Exception as e:  # e.g. the fork server is gone: tried again at the first evaluation
            self._failed(f"could not start it ({type(e).__name__}: {first_line(e)})")

    def _spawn(self) -> None:
        recv, send = self.ctx.Pipe(duplex=True)
        try:
            args = (self.cfg, self.store, send, self.spec, self.beats)
            proc = self.ctx.Process(target=evaluator_main, args=args, daemon=True, name="a3c-evaluator")
            proc.start()
            self.proc, self.conn = proc, recv
        except BaseException:
            recv.close()
            raise
        finally:
            send.close()  # the child holds its own end: EOF on ours means it is gone

    def request(self, wall_s: float) -> bool:
        if self.busy:
            return False
        try:
            if self.proc is None:  # restarted lazily: one that cannot start is tried once per interval
                self._spawn()
            self.conn.send(("eval", wall_s))
        except Exception as e:  # e.g. the fork server is gone
            self._failed(f"could not start it ({type(e).__name__}: {first_line(e)})")
            return False
        self.busy, self._seen = True, (int(self.beats[0]), time.monotonic())
        return True

    def poll(self) -> list[EvalResult]:
        out: list[EvalResult] = []
        if self.proc is None:
            return out
        try:
            while self.conn.poll():
                kind, *rest = self.conn.recv()
                if kind == "result":
                    out.append(EvalResult.from_row(*rest))
                    self.busy = False
                else:
                    self._failed(rest[0])
                    return out
        except (EOFError, OSError):
            pass  # it died: its exit code says so below
        if self.proc.exitcode is not None:
            code = self.proc.exitcode
            self._failed(f"its process died ({f'killed by signal {-code}' if code < 0 else f'exit code {code}'})")
        elif self.busy and self.cfg.eval.timeout is not None:
            beats, now = int(self.beats[0]), time.monotonic()
            if beats != self._seen[0]:
                self._seen = (beats, now)
            elif now - self._seen[1] > self.cfg.eval.timeout:
                self._failed(f"no env step for {self.cfg.eval.timeout:g} s (stuck, e.g. in its env); killed")
        return out

    def _failed(self, message: str) -> None:
        self._end()
        self.restarts += 1
        warn_failed(message, self.restarts)

    def _end(self, grace: float = 0.0) -> None:
        proc, conn, self.proc, self.conn, self.busy = self.proc, self.conn, None, None, False
        if proc is not None:
            proc.join(timeout=grace)
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        try:
            if self.conn is not None and not self.busy:
                self.conn.send(("stop",))
        except OSError:
            pass
        self._end(grace=STOP_TIMEOUT_S if not self.busy else 0.0)


def make_evaluator(cfg: Config, store: SharedStore, backend: Backend, spec: EvalSpec) -> Evaluator:
    """The evaluator for `cfg.backend.name`, beside `backend` (started: the store is shared)."""
    name = cfg.backend.name
    if name == "serial":
        return InlineEvaluator(cfg, store, spec)
    if name == "ray":
        from a3c.backends.ray_backend import RayBackend
        from a3c.backends.ray_evaluator import RayEvaluator

        return RayEvaluator(cfg, cast(RayBackend, backend), spec)
    return ProcessEvaluator(cfg, store, spec)
