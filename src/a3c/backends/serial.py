"""The serial backend: workers interleaved round-robin in one process, bit-for-bit reproducible.

The tutorial's emulation of asynchrony: each poll lets every worker make one update in turn against
the same global parameters, so worker k's pull sees the pushes of workers 0..k-1 (an update lag of
workers - 1, as in a real asynchronous run), and a seed fixes everything.

The envs run in the trainer's own thread, so a hung env would hang the trainer: a watchdog thread
interrupts an update that has run for `backend.worker_timeout` seconds (SIGUSR1 to the main thread,
whose handler raises `UpdateTimeout` there), and the worker is restarted like one that raised.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from torch import Tensor

from a3c.backends.base import RestartBudget, WorkerFailure
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.errors import first_line
from a3c.evaluation import EvalResult, EvalSpec, Evaluator, play, warn_failed
from a3c.metrics import WorkerReport
from a3c.store import SharedStore
from a3c.watchdog import UpdateTimeout, Watchdog
from a3c.worker import Worker


class SerialBackend:
    def __init__(self, cfg: Config, store: SharedStore, env_fn: EnvFn | None = None) -> None:
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.workers: list[Worker] = []
        self.budget = RestartBudget(cfg.backend.workers, cfg.backend.max_restarts)
        self.watchdog = Watchdog(cfg.backend.worker_timeout)

    def start(self) -> None:
        self.watchdog.__enter__()
        self.workers = [self._build(i, 0) for i in range(self.cfg.backend.workers)]

    def _build(self, i: int, incarnation: int) -> Worker:
        with self.watchdog.bound():  # building a worker resets its envs: env code, bounded too
            return Worker(self.cfg, i, self.store, self.env_fn, incarnation)

    def poll(self, timeout: float) -> list[WorkerReport]:
        reports = []
        for w in self.workers:
            steps, _, stop = self.store.progress()
            if stop or steps >= self.cfg.run.total_steps:
                break
            try:
                with self.watchdog.bound():
                    w.update()
            except Exception as e:  # the same supervision as the processes backend
                self._restart(
                    w, str(e) if isinstance(e, UpdateTimeout) else f"{type(e).__name__}: {e}", e
                )
                continue
            reports.append(w.take_report())
        return reports

    def _restart(self, w: Worker, message: str, cause: Exception) -> None:
        i = w.index
        try:
            incarnation = self.budget.failed(i, message)
        except WorkerFailure as e:
            raise e from cause
        try:
            w.close()
        except Exception:  # a broken env may fail to close too
            pass
        self.workers[i] = self._build(i, incarnation)

    def stop(self) -> list[WorkerReport]:
        self.watchdog.__exit__()
        self.store.request_stop()
        reports = [w.take_report() for w in self.workers]
        for w in self.workers:
            w.close()
        return reports

    def all_done(self) -> bool:
        return self.store.progress().steps >= self.cfg.run.total_steps

    def alive(self) -> int:
        return 0 if self.store.progress().stop else len(self.workers)

    def snapshot(self) -> dict[str, Tensor]:
        return self.store.state_dict()

    @property
    def restarts(self) -> int:
        return self.budget.restarts

    def lost_steps(self) -> int:
        return 0  # the store is the state itself: nothing is ever restored from a copy

    def evaluator(self, spec: EvalSpec) -> Evaluator:
        """Inline in the trainer at the interval (a seed fixes the evaluations too); a hung env is
        interrupted by a watchdog."""
        return InlineEvaluator(self.cfg, self.store, spec)


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
                self._done.append(
                    play(
                        self.cfg,
                        self.spec,
                        self.store.policy_state(),
                        wall_s,
                        lambda env: _Bounded(env, dog),
                        dog.bound,  # its constructor too: an env that hangs there is interrupted
                    )
                )
            # the env raised, or hung (UpdateTimeout): the next evaluation starts afresh
            except Exception as e:
                self.restarts += 1
                hung = (
                    f"no env step for {self.cfg.eval.timeout:g} s (stuck, e.g. in its env); "
                    "interrupted"
                )
                warn_failed(
                    hung
                    if isinstance(e, UpdateTimeout)
                    else f"{type(e).__name__}: {first_line(e)}",
                    self.restarts,
                )
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
