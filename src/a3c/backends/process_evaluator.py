"""The processes backend's evaluator: a process of its own, forked from the workers' fork server
(A3C's test process).

It reads the store in shared memory itself; the trainer only asks and later reads the answer, so
training never waits for it. Each env step ticks a heartbeat in shared memory: no tick for
`eval.timeout` seconds is a hang, and the process is killed and started again (lazily, at the next
evaluation), as is one that raised or died. A warning says so; the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

from a3c import forkserver
from a3c.config import Config
from a3c.errors import first_line
from a3c.evaluation import EvalResult, EvalSpec, play, warn_failed
from a3c.store import SharedStore

# An evaluator told to stop between evaluations exits at once; one playing is killed.
STOP_TIMEOUT_S = 0.5


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


def evaluator_main(
    cfg: Config, store: SharedStore, conn: Any, spec: EvalSpec, beats: Tensor
) -> None:
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
            result = play(
                cfg, spec, store.policy_state(), message[1], lambda env: _Heartbeat(env, beats)
            )
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
            proc = self.ctx.Process(
                target=evaluator_main, args=args, daemon=True, name="a3c-evaluator"
            )
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
            # restarted lazily: one that cannot start is tried once per interval
            if self.proc is None:
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
            self._failed(
                "its process died "
                f"({f'killed by signal {-code}' if code < 0 else f'exit code {code}'})"
            )
        elif self.busy and self.cfg.eval.timeout is not None:
            beats, now = int(self.beats[0]), time.monotonic()
            if beats != self._seen[0]:
                self._seen = (beats, now)
            elif now - self._seen[1] > self.cfg.eval.timeout:
                self._failed(
                    f"no env step for {self.cfg.eval.timeout:g} s (stuck, e.g. in its env); killed"
                )
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
