"""The processes backend (the default): one torch.multiprocessing worker per process.

The global parameters and the shared optimizer's statistics sit in shared memory; workers update
them lock-free (Hogwild) unless `optim.lock` is set. Workers are forked from a clean fork server
that has torch and a3c imported (`a3c.forkserver`; never a fork of the trainer, which may hold torch
threads), run one torch thread each, ignore Ctrl-C (the trainer stops them through the shared stop
flag), and send their reports and any exception, with its traceback, through a pipe of their own
(not one shared queue: a worker killed while writing to a shared queue holds its lock for ever and
stalls the others). They are daemons and watch their trainer: they die with it. A failed worker is
restarted: see `ProcessesBackend`. No env code runs in the trainer's process.

Starting: the first workers wait for the fork server to import torch (about 0.9 s on a 2-core
machine). `backends.prepare` starts the server as early as it can, so its imports overlap the
trainer's own; a run that starts later finds the server ready. The evaluator is a process of its
own beside the workers, forked from the same server (process_evaluator.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import time
import traceback
from multiprocessing import connection as mp_connection
from typing import Any, cast

import torch
import torch.multiprocessing as mp
from torch import Tensor

from a3c import forkserver
from a3c.backends.base import RestartBudget, WorkerFailure
from a3c.backends.process_evaluator import ProcessEvaluator
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.errors import ConfigError
from a3c.evaluation import EvalSpec, Evaluator
from a3c.metrics import WorkerReport
from a3c.store import SharedStore
from a3c.worker import Worker

# Workers stop between updates; one that has not within this many seconds is stuck, and killed.
STOP_TIMEOUT_S = 1.5
log = logging.getLogger("a3c")


def worker_main(
    cfg: Config,
    index: int,
    store: SharedStore,
    conn: Any,
    env_fn: EnvFn | None,
    incarnation: int = 0,
) -> None:
    """Entry point of a worker process: update until told to stop, the step budget is spent, or the
    trainer is gone (a worker never outlives its trainer, even one killed with SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        import cv2  # only present with the Atari extra

        cv2.setNumThreads(1)
    except ImportError:
        pass
    # the trainer (for a forked worker too: its sentinel is the trainer's)
    trainer = mp.parent_process()
    try:
        worker = Worker(cfg, index, store, env_fn, incarnation)
        last = time.monotonic()
        while not (progress := store.progress()).stop and progress.steps < cfg.run.total_steps:
            worker.update()
            now = time.monotonic()
            if now - last >= cfg.backend.report_interval:
                if trainer is not None and not trainer.is_alive():
                    return  # orphaned: the trainer died
                conn.send(worker.take_report())
                last = now
        conn.send(worker.take_report())
        worker.close()
        conn.send(("done", index))
    except BaseException as e:  # every failure must reach the trainer
        try:
            conn.send(("error", index, f"{type(e).__name__}: {e}", traceback.format_exc()))
        except OSError:
            pass  # the trainer is gone
        return
    # Finished cleanly, everything sent and the envs closed: exit without the interpreter's
    # teardown of torch (about 0.3 s per worker, which the trainer would otherwise wait for).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class ProcessesBackend:
    """Worker processes, supervised: a worker that raises, crashes or is killed is restarted
    (after `backend.restart_delay`, from the current global parameters, with new random streams) up
    to `backend.max_restarts` times; past that the run stops with a WorkerFailure."""

    def __init__(
        self,
        cfg: Config,
        store: SharedStore,
        env_fn: EnvFn | None = None,
        in_ray_actor: bool = False,
    ) -> None:
        # not inside a worker that is importing the user's script
        forkserver.refuse_unguarded_main()
        self.in_ray_actor = in_ray_actor  # a node group's workers: the main module is Ray's
        if env_fn is not None:
            check_picklable(env_fn)
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.ctx = forkserver.context()
        self.procs: dict[int, Any] = {}
        self.conns: dict[int, Any] = {}  # worker -> the receiving end of its pipe
        self.done: set[int] = set()
        self.budget = RestartBudget(cfg.backend.workers, cfg.backend.max_restarts)
        self.due: dict[int, float] = {}  # worker -> when to restart it
        # worker -> (its step count, when it last moved)
        self._seen: dict[int, tuple[int, float]] = {}

    @property
    def restarts(self) -> int:
        return self.budget.restarts

    def start(self) -> None:
        # a no-op when `backends.prepare` already started it
        forkserver.warm_up(main=not self.in_ray_actor)
        self.store.share_memory_()
        if self.cfg.optim.lock:
            self.store.lock = self.ctx.Lock()
        try:
            for i in range(self.cfg.backend.workers):
                self._spawn(i)
        except Exception as e:  # e.g. the fork server died (it prints why)
            raise WorkerFailure(
                0, f"the worker processes could not start ({type(e).__name__}: {e})"
            ) from e

    def _spawn(self, i: int) -> None:
        recv, send = self.ctx.Pipe(duplex=False)
        try:
            args = (self.cfg, i, self.store, send, self.env_fn, self.budget.failures[i])
            p = self.ctx.Process(target=worker_main, args=args, daemon=True, name=f"a3c-worker-{i}")
            with forkserver.main_left_out() if self.in_ray_actor else contextlib.nullcontext():
                p.start()
            self.procs[i], self.conns[i] = p, recv
            self._seen[i] = (int(self.store.counters["worker_steps"][i]), time.monotonic())
        finally:
            send.close()  # the child holds its own copy; EOF on recv then means the child is gone

    def _failed(self, i: int, message: str, tb: str = "") -> None:
        """Count a failure of worker i; schedule its restart, or raise once its budget is spent."""
        p = self.procs.pop(i, None)
        conn = self.conns.pop(i, None)
        if conn is not None:
            conn.close()
        if p is not None:
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        self.store.release_lock_of(i)  # a lock its holder can no longer release
        self.budget.failed(i, message, tb)
        self.due[i] = time.monotonic() + self.cfg.backend.restart_delay

    def _receive(self, timeout: float, out: list[WorkerReport], on_error: bool = True) -> None:
        """Read every message that is waiting (waiting up to `timeout` for the first)."""
        ready = mp_connection.wait(list(self.conns.values()), timeout=timeout)
        by_conn = {id(c): i for i, c in self.conns.items()}
        for conn in ready:
            self._read(by_conn[id(conn)], cast(mp_connection.Connection, conn), out, on_error)

    def _read(
        self, i: int, conn: mp_connection.Connection, out: list[WorkerReport], on_error: bool = True
    ) -> None:
        """Read what worker i has sent so far."""
        try:
            while conn.poll():
                item = conn.recv()
                if isinstance(item, WorkerReport):
                    out.append(item)
                elif item[0] == "done":
                    self.done.add(i)
                elif item[0] == "error" and on_error:
                    self._failed(i, item[2], item[3])
                    return
        except (EOFError, OSError):
            if i in self.done:  # finished and gone: stop listening to it
                self.conns.pop(i).close()
            # otherwise the worker died: its exit code is checked in poll()

    def poll(self, timeout: float) -> list[WorkerReport]:
        out: list[WorkerReport] = []
        if self.conns:
            self._receive(timeout, out)
        else:
            time.sleep(timeout)
        for i, p in list(self.procs.items()):
            if i in self.done or p.exitcode is None:
                continue
            if i in self.conns:
                # It may have sent its error (or its last reports) after the wait above returned:
                # read them before calling it a death, so the real message is the one reported.
                self._read(i, self.conns[i], out)
            if i in self.procs and i not in self.done:  # neither failed by message nor finished
                code = p.exitcode
                if code == forkserver.UNGUARDED_MAIN_EXIT:  # a restart cannot help
                    raise WorkerFailure(i, forkserver.UNGUARDED_MAIN)
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                self._failed(i, f"worker process died ({how})")
        self._kill_stuck()
        now = time.monotonic()
        for i, when in list(self.due.items()):
            if now >= when and not self.store.progress().stop:
                del self.due[i]
                self._spawn(i)
        return out

    def _kill_stuck(self) -> None:
        """A worker whose step counter has not moved for `backend.worker_timeout` seconds is alive
        but not working (an env that hangs keeps the process and its pipe alive): kill and restart
        it."""
        timeout = self.cfg.backend.worker_timeout
        if timeout is None:
            return
        now = time.monotonic()
        for i in list(self.procs):
            count, (seen, since) = int(self.store.counters["worker_steps"][i]), self._seen[i]
            if count != seen:
                self._seen[i] = (count, now)
            elif i not in self.done and now - since > timeout:
                self._failed(i, f"no progress for {timeout:g} s (stuck, e.g. in its env); killed")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[WorkerReport]:
        """Stop every worker: raise the flag, read their last reports while they finish (each
        finishes its current update), then kill any that has not (saying so)."""
        self.store.request_stop()
        self.due.clear()
        out: list[WorkerReport] = []
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in self.procs.values()) and time.monotonic() < deadline:
            self._receive(0.05, out, on_error=False)
        self._receive(0.0, out, on_error=False)
        for i, p in self.procs.items():
            if p.is_alive():
                log.warning(
                    "a3c: warning: worker %d did not stop within %g s (stuck, e.g. in its env); "
                    "killed it",
                    i,
                    timeout,
                )
                p.kill()
            p.join(timeout=5)
            self.store.release_lock_of(i)
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
        return out

    def all_done(self) -> bool:
        """Every worker finished its share (the step budget is spent) and none awaits a restart."""
        return not self.due and all(i in self.done for i in range(self.cfg.backend.workers))

    def alive(self) -> int:
        return sum(p.is_alive() for p in self.procs.values())

    def snapshot(self) -> dict[str, Tensor]:
        return self.store.state_dict()

    def lost_steps(self) -> int:
        return 0  # the store is the state itself: nothing is ever restored from a copy

    def evaluator(self, spec: EvalSpec) -> Evaluator:
        """A process of its own beside the workers, reading the store in shared memory."""
        return ProcessEvaluator(self.cfg, self.store, spec)


def check_picklable(env_fn: Any) -> None:
    """Worker processes receive the env factory pickled: a lambda or a local function cannot go."""
    try:
        pickle.dumps(env_fn)
    except Exception as e:  # pickling raises PicklingError, AttributeError or TypeError
        raise ConfigError(
            f"the processes backend sends the env factory to its worker processes, and {env_fn!r} "
            f"cannot be pickled ({e}): pass a module-level function or class or an env id, or use "
            "backend='serial' or 'ray'"
        ) from None
