"""The processes backend (the default): one torch.multiprocessing worker per process.

The global parameters and the shared optimizer's statistics sit in shared memory; workers update
them lock-free (Hogwild) unless `optim.lock` is set. Workers are forked from a clean fork server
that has torch and a3c imported (`a3c.forkserver`; never a fork of the trainer, which may hold torch
threads), run one torch thread each, ignore Ctrl-C (the trainer stops them through the shared stop
flag), and send their reports and any exception, with its traceback, through a pipe of their own
(not one shared queue: a worker killed while writing to a shared queue holds its lock for ever and
stalls the others). They are daemons and watch their trainer: they die with it. A failed worker is
restarted (issue 6): see `ProcessesBackend`.

Starting: the first workers wait for the fork server to import torch (about 0.9 s on a 2-core
machine), a long time in a run that lasts seconds. So `start()` forks them from a background thread,
and until they are all started the trainer itself trains as a stand-in for worker 0 (a `Worker` of
its own, with streams no worker process uses), on the core the server's import leaves free; then it
closes the stand-in (its unfinished episodes are not reported) and supervises the processes as usual.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing import connection as mp_connection
from typing import Any

import torch
import torch.multiprocessing as mp

from a3c import forkserver
from a3c.backends import RestartBudget, WorkerFailure
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.optim import GlobalParams
from a3c.worker import Worker, WorkerReport

# The stand-in's random streams: an incarnation of worker 0 that no restart reaches.
STAND_IN_INCARNATION = 2**31 - 1


def worker_main(cfg: Config, index: int, store: GlobalParams, conn: Any, env_fn: EnvFn | None, incarnation: int = 0) -> None:
    """Entry point of a worker process: update until told to stop, the step budget is spent, or the
    trainer is gone (a worker never outlives its trainer, even one killed with SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        import cv2  # only present with the Atari extra

        cv2.setNumThreads(1)
    except ImportError:
        pass
    trainer = mp.parent_process()  # the trainer (for a forked worker too: its sentinel is the trainer's)
    try:
        worker = Worker(cfg, index, store, env_fn, incarnation)
        last = time.monotonic()
        while not store.should_stop() and store.global_steps() < cfg.run.total_steps:
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
    except BaseException as e:  # noqa: BLE001 - every failure must reach the trainer
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
    (after `backend.restart_delay`, from the current global parameters, with new random streams) up to
    `backend.max_restarts` times; past that the run stops with a WorkerFailure."""

    def __init__(self, cfg: Config, store: GlobalParams, env_fn: EnvFn | None = None) -> None:
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.ctx = forkserver.context()
        self.procs: dict[int, Any] = {}
        self.done: set[int] = set()
        self.budget = RestartBudget(cfg.backend.workers, cfg.backend.max_restarts)
        self.due: dict[int, float] = {}  # worker -> when to restart it
        self.stand_in: Worker | None = None  # the trainer's own worker while the processes start
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._stand_in_tried = False

    def start(self) -> None:
        forkserver.warm_up()  # a no-op when the agent already started it
        self.store.share_memory_()
        if self.cfg.optim.lock:
            self.store.lock = self.ctx.Lock()
        self.conns: dict[int, Any] = {}  # worker -> the receiving end of its pipe
        # Fork the workers from a thread (each start waits for the fork server) and train meanwhile.
        self._starting = threading.Thread(target=self._spawn_all, name="a3c-start-workers", daemon=True)
        self._starting.start()

    def _spawn_all(self) -> None:
        try:
            for i in range(self.cfg.backend.workers):
                self._spawn(i)
        except BaseException as e:  # noqa: BLE001 - raised again in the trainer's thread (poll)
            self._start_error = e

    def _train_while_starting(self, timeout: float) -> list[WorkerReport]:
        """Updates of the stand-in for up to `timeout` seconds, or until the workers are started.
        A stand-in that raises is a failure of worker 0 (counted, with its warning) and is not
        replaced: worker 0's process is on its way."""
        assert self._starting is not None
        deadline = time.monotonic() + timeout
        try:
            if self.stand_in is None and not self._stand_in_tried:
                self._stand_in_tried = True
                self.stand_in = Worker(self.cfg, 0, self.store, self.env_fn, STAND_IN_INCARNATION)
            while self.stand_in is not None and self._starting.is_alive() and time.monotonic() < deadline:
                if self.store.should_stop() or self.store.global_steps() >= self.cfg.run.total_steps:
                    break
                self.stand_in.update()
        except Exception as e:  # noqa: BLE001 - supervised like any worker's error
            out = self._close_stand_in()
            self.budget.failed(0, f"{type(e).__name__}: {e}", traceback.format_exc())
            return out
        if self.stand_in is None or time.monotonic() < deadline:
            self._starting.join(max(0.0, deadline - time.monotonic()))
        return self._take_stand_in_report()

    def _take_stand_in_report(self) -> list[WorkerReport]:
        if self.stand_in is None:
            return []
        rep = self.stand_in.take_report()
        return [rep] if rep.steps or rep.episode_returns else []

    def _close_stand_in(self) -> list[WorkerReport]:
        out = self._take_stand_in_report()
        stand_in, self.stand_in = self.stand_in, None
        if stand_in is not None:
            try:
                stand_in.close()
            except Exception:  # noqa: BLE001 - a broken env may fail to close too
                pass
        return out

    def _finish_starting(self) -> list[WorkerReport]:
        """Once the workers are started (or the start failed): the stand-in's last report, and
        the start's error raised here, in the trainer's thread."""
        if self._starting is None:
            return []
        self._starting.join()
        self._starting = None
        out = self._close_stand_in()
        if self._start_error is not None:  # e.g. the fork server died (it prints why)
            e = self._start_error
            raise WorkerFailure(0, f"the worker processes could not start ({type(e).__name__}: {e})") from e
        return out

    def _spawn(self, i: int) -> None:
        recv, send = self.ctx.Pipe(duplex=False)
        try:
            args = (self.cfg, i, self.store, send, self.env_fn, self.budget.failures[i])
            p = self.ctx.Process(target=worker_main, args=args, daemon=True, name=f"a3c-worker-{i}")
            p.start()
            self.procs[i], self.conns[i] = p, recv
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
        self.budget.failed(i, message, tb)
        self.due[i] = time.monotonic() + self.cfg.backend.restart_delay

    def _receive(self, timeout: float, out: list[WorkerReport], on_error: bool = True) -> None:
        """Read every message that is waiting (waiting up to `timeout` for the first)."""
        ready = mp_connection.wait(list(self.conns.values()), timeout=timeout)
        by_conn = {id(c): i for i, c in self.conns.items()}
        for conn in ready:
            self._read(by_conn[id(conn)], conn, out, on_error)

    def _read(self, i: int, conn: mp_connection.Connection, out: list[WorkerReport], on_error: bool = True) -> None:
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
        if self._starting is not None:
            if self._starting.is_alive():
                return self._train_while_starting(timeout)
            return self._finish_starting()
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
        now = time.monotonic()
        for i, when in list(self.due.items()):
            if now >= when and not self.store.should_stop():
                del self.due[i]
                self._spawn(i)
        return out

    def stop(self, timeout: float = 10.0) -> list[WorkerReport]:
        """Stop every worker: raise the flag, read their last reports while they finish, then make sure."""
        self.store.request_stop()
        self.due.clear()
        out: list[WorkerReport] = []
        try:
            out += self._finish_starting()  # workers still starting see the stop flag and finish at once
        except BaseException as e:  # noqa: BLE001 - stopping anyway; stop the workers that did start
            print(f"a3c: warning: starting the workers failed: {e}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in self.procs.values()) and time.monotonic() < deadline:
            self._receive(0.05, out, on_error=False)
        self._receive(0.0, out, on_error=False)
        for p in self.procs.values():
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
        return out

    def all_done(self) -> bool:
        """Every worker finished its share (the step budget is spent) and none awaits a restart."""
        return not self.due and all(i in self.done for i in range(self.cfg.backend.workers))

    def alive(self) -> int:
        if self._starting is not None:  # the thread is still adding to self.procs
            return int(self.stand_in is not None)
        return sum(p.is_alive() for p in self.procs.values())
