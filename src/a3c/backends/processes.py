"""The processes backend (the default): one torch.multiprocessing worker per process.

The global parameters and the shared optimizer's statistics sit in shared memory; workers update
them lock-free (Hogwild) unless `optim.lock` is set. Workers start with the `spawn` context (never
fork a process that has torch threads), run one torch thread each, ignore Ctrl-C (the trainer stops
them through the shared stop flag), and send their reports and any exception, with its traceback,
through one queue. They are daemons: they die with the trainer.
"""

from __future__ import annotations

import os
import queue as queue_mod
import signal
import time
import traceback
from typing import Any

import torch
import torch.multiprocessing as mp

from a3c.backends import WorkerFailure
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.optim import GlobalParams
from a3c.worker import Worker, WorkerReport


def worker_main(cfg: Config, index: int, store: GlobalParams, reports: Any, env_fn: EnvFn | None) -> None:
    """Entry point of a worker process: update until told to stop or the step budget is spent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        import cv2  # noqa: F401  (only present with the Atari extra)

        cv2.setNumThreads(1)
    except ImportError:
        pass
    try:
        worker = Worker(cfg, index, store, env_fn)
        last = time.monotonic()
        while not store.should_stop() and store.global_steps() < cfg.run.total_steps:
            worker.update()
            now = time.monotonic()
            if now - last >= cfg.run.report_interval:
                reports.put(worker.take_report())
                last = now
        reports.put(worker.take_report())
        worker.close()
        reports.put(("done", index))
    except BaseException as e:  # noqa: BLE001 - every failure must reach the trainer
        reports.put(("error", index, f"{type(e).__name__}: {e}", traceback.format_exc()))


class ProcessesBackend:
    def __init__(self, cfg: Config, store: GlobalParams, env_fn: EnvFn | None = None) -> None:
        self.cfg, self.store, self.env_fn = cfg, store, env_fn
        self.ctx = mp.get_context("spawn")
        self.procs: list[Any] = []
        self.done: set[int] = set()

    def start(self) -> None:
        self.store.share_memory_()
        if self.cfg.optim.lock:
            self.store.lock = self.ctx.Lock()
        self.queue = self.ctx.Queue()
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
        try:
            for i in range(self.cfg.run.workers):
                p = self.ctx.Process(target=worker_main, args=(self.cfg, i, self.store, self.queue, self.env_fn), daemon=True, name=f"a3c-worker-{i}")
                p.start()
                self.procs.append(p)
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved

    def _handle(self, item: Any, out: list[WorkerReport]) -> None:
        if isinstance(item, WorkerReport):
            out.append(item)
        elif item[0] == "done":
            self.done.add(item[1])
        elif item[0] == "error":
            raise WorkerFailure(item[1], item[2], item[3])

    def poll(self, timeout: float) -> list[WorkerReport]:
        out: list[WorkerReport] = []
        try:
            self._handle(self.queue.get(timeout=timeout), out)
            while True:
                self._handle(self.queue.get_nowait(), out)
        except queue_mod.Empty:
            pass
        for i, p in enumerate(self.procs):
            if i not in self.done and p.exitcode is not None:
                # Exited without "done": give its last messages a moment to arrive, then fail.
                try:
                    while True:
                        self._handle(self.queue.get(timeout=0.5), out)
                except queue_mod.Empty:
                    pass
                if i not in self.done:
                    raise WorkerFailure(i, f"worker process died (exit code {p.exitcode})")
        return out

    def stop(self, timeout: float = 10.0) -> list[WorkerReport]:
        """Stop every worker: raise the flag, drain the queue while they finish, then make sure."""
        self.store.request_stop()
        out: list[WorkerReport] = []
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in self.procs) and time.monotonic() < deadline:
            try:
                item = self.queue.get(timeout=0.05)
                if isinstance(item, WorkerReport):
                    out.append(item)
            except queue_mod.Empty:
                pass
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        try:
            while True:
                item = self.queue.get_nowait()
                if isinstance(item, WorkerReport):
                    out.append(item)
        except (queue_mod.Empty, OSError, ValueError):
            pass
        self.queue.close()
        self.queue.join_thread()
        return out

    def alive(self) -> int:
        return sum(p.is_alive() for p in self.procs)
