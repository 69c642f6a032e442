"""A training session: start a backend, consume its reports, log, checkpoint, stop, summarise.

    session = TrainingSession(config, store, env_fn, rundir, record, target=475.0)
    summary = session.run()        # start(), then step() until a stop rule fires, then finish()

Stops on the first of: the target return (mean of the last `return_window` episodes), an
evaluation's target (`eval.target_mean`), the step budget, the wall-time budget, a callback
returning False, a worker failure, Ctrl-C or SIGTERM (the rules: a3c/stopping.py). The backend
hosts the evaluator beside its workers (`Backend.evaluator`); a3c/eval_log.py decides when it
plays, and keeps the best. Every stop writes a checkpoint and summary.json; checkpoints are also
written every `checkpoint_interval_steps` global steps and/or `checkpoint_interval_s` seconds. All
periodic work is due by one helper (a3c/periodic.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from a3c import run_checkpoints
from a3c.backends import make_backend
from a3c.callbacks import CallbackError, CallbackLike, CallbackStop, Hooks
from a3c.checkpoint import Checkpoint
from a3c.config import Config
from a3c.envs import EnvFn
from a3c.errors import A3CError, RunFailure, first_line
from a3c.eval_log import EvalLog
from a3c.evaluation import EvalSpec
from a3c.metrics import Stats, WorkerReport
from a3c.periodic import Every
from a3c.persistence import checkpoint_meta, segment_seed, versions
from a3c.runlog import Console, RunDir
from a3c.signals import sigterm_raises, time_limit
from a3c.stopping import NonFinite, stop_rule, stopped_by
from a3c.store import SharedStore

log = logging.getLogger("a3c")
POLL_S = 0.05


@dataclasses.dataclass
class Summary:
    """The result of a session (also summary.json)."""

    steps: int
    wall_s: float
    episodes: int
    return_mean: float
    target_return: float | None
    solved: bool
    solved_steps: int | None
    solved_return_mean: float | None
    stop_reason: str
    updates: int
    nonfinite_updates: int
    nonfinite_steps: int
    worker_restarts: int
    env_id: str
    workers: int
    backend: str
    seed: int
    resumes: int
    resumed_from_steps: int | None
    checkpoint: str | None
    error: str | None
    eval: dict[str, Any] | None  # evaluations during training (EvalLog.summary); None: off
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TrainingSession:
    """One segment of a run: from a fresh or resumed store to a final checkpoint and summary.

    `run_dir` is created (or, with `resumed`, the checkpoint a resumed run continues from,
    reopened); `record` is the static part of a checkpoint's meta.json
    (persistence.static_record)."""

    def __init__(
        self,
        config: Config,
        store: SharedStore,
        env_fn: EnvFn,
        run_dir: Path,
        record: dict[str, Any],
        *,
        target: float | None,
        resumed: Checkpoint | None = None,
        reopen: bool = False,
        callback: CallbackLike | None = None,
        progress: str = "auto",
        evaluation: EvalSpec | None = None,
    ) -> None:
        self.cfg, self.store, self.record = config, store, record
        self.target, self.resumed, self.hooks = target, resumed, Hooks(callback)
        self.resumes = 0 if resumed is None else int(resumed.meta.get("resumes", 0)) + 1
        # A resumed run's workers draw new random streams, so the lost work is not replayed
        # identically.
        worker_cfg = (
            config
            if self.resumes == 0
            else config.replace({"run.seed": segment_seed(config.run.seed, self.resumes)})
        )
        # checks what it can before anything is written
        self.backend = make_backend(worker_cfg, store, env_fn)
        if resumed is None and not reopen:
            rundir = RunDir(run_dir)
        else:  # a resumed run: from its checkpoint, or from scratch if it never completed one
            steps = 0 if resumed is None else resumed.steps
            rundir = RunDir(run_dir, resume_steps=steps)  # refuses a run a live trainer holds
            run_checkpoints.set_aside_newer(run_dir, steps)
        self.rundir = rundir
        self.stats = Stats(config.run.return_window)
        wall_before = 0.0
        if resumed is not None:
            t = resumed.tensors
            self.stats.restore(
                steps=resumed.steps,
                episodes=int(resumed.meta["episodes"]),
                updates=int(t["counters.worker_updates"].sum()),
                nonfinite=int(t["counters.worker_nonfinite"].sum()),
                recent=rundir.recent_episodes(config.run.return_window),
                nonfinite_steps=int(resumed.meta.get("nonfinite_steps", 0)),
            )
            wall_before = float(resumed.meta.get("wall_s", 0.0))
        self.console = Console(config.run.total_steps, progress)
        self.evals, self.eval_spec = (
            EvalLog(config, rundir, self.console, record, self.resumes, self.stats.steps),
            evaluation,
        )
        # wall time continues from the checkpoint's
        self.start_time = time.monotonic() - wall_before
        lg, steps = config.log, self.stats.steps
        self.rows = Every(lg.log_interval, start_steps=steps)
        self.checkpoints = Every(
            lg.checkpoint_interval_steps, lg.checkpoint_interval_s, start_steps=steps
        )
        self.logged_steps = self.stats.steps if resumed is not None else -1
        self.started = False
        self.solved_at: tuple[int, float] | None = (
            None  # (steps, window mean) when it met the target
        )
        self.last_checkpoint: Path | None = None
        self.last_meta: dict[str, Any] = {}
        self.final_state: dict[str, Tensor] = {}
        self.nonfinite_streak = 0  # non-finite updates since the last finite one
        self.problems: list[str] = []  # what went wrong while finishing (a full disk, ...)
        self.late_error: CallbackError | None = None  # a callback that raised while finishing

    def elapsed(self) -> float:
        return time.monotonic() - self.start_time

    def run(self) -> Summary:
        """The training loop: start, step until a stop rule fires, finish (whatever stopped it)."""
        reason = "total_steps"
        error: BaseException | None = None
        try:
            with _one_torch_thread(), sigterm_raises() as reinstall, time_limit(self._time_left()):
                found = self.start()
                reinstall()  # a backend may install its own handler as it starts (Ray does)
                while found is None:
                    found = self.step()
                    reinstall()
                reason = found
        except BaseException as e:  # the stop reason; an error is recorded and raised again below
            reason, error = stopped_by(e)
        finally:
            summary = self.finish(reason, error)
        if error is not None or self.late_error is not None:
            raise error or self.late_error  # type: ignore[misc]
        return summary

    def _time_left(self) -> float | None:
        """Seconds until `run.max_time`, plus a second's grace: the stop rule normally fires first,
        the alarm only when a backend call hangs."""
        max_time = self.cfg.run.max_time
        return None if max_time is None else max(max_time - self.elapsed(), 0.0) + 1.0

    def start(self) -> str | None:
        """Start the workers; a resumed run with nothing left to do (solved, out of time) starts
        none."""
        self.rundir.write_config(self.cfg.to_dict())
        if self.resumed is not None and (reason := self._stop_reason()) is not None:
            return reason
        self.started = True
        self.backend.start()
        if self.evals.on:  # beside the workers: the processes backend's store is shared by now
            self.evals.start(self.backend.evaluator(self.eval_spec or EvalSpec.probe(self.cfg)))
        info = {"run_dir": self.rundir.path, "config": self.cfg.to_dict()}
        self.hooks.training_start({**info, "steps": self.stats.steps})
        return None

    def step(self) -> str | None:
        """One poll of the backend: add its reports, log and checkpoint when due; the stop reason or
        None."""
        for rep in self.backend.poll(timeout=POLL_S):
            self._add(rep)
        # work lost with a restored state is not counted as done
        self.stats.steps -= self.backend.lost_steps()
        if self.rows.due(self.stats.steps):
            self._log_row(self.backend.alive())
            self.rows.done(self.stats.steps)
        if self.checkpoints.due(self.stats.steps):  # frequencies count global env steps, or seconds
            self.rundir.flush_episodes()
            self.last_checkpoint = self._save(self.backend.snapshot())
            self.checkpoints.done(self.stats.steps)
            self.hooks.checkpoint(self.last_checkpoint)
        for row, is_new_best in self.evals.step(self.stats, self.elapsed()):
            self.hooks.evaluation(row, is_new_best)
        reason = self._stop_reason()
        if reason is None and self.backend.all_done():
            reason = "total_steps"
        return reason

    def finish(self, reason: str, error: BaseException | None) -> Summary:
        """Stop the evaluator and the workers, take their last reports, write the final checkpoint
        and summary.json."""
        # first: the Ray backend's stop shuts down the Ray that its actor lives in
        self.evals.stop()
        self.problems.extend(self.evals.problems)
        if self.started:
            try:
                for rep in self.backend.stop():
                    self._add(rep, check=False)
            # stopping must not lose the run: the store has the state as last seen
            except Exception as e:
                log.warning("a3c: warning: the workers did not stop cleanly (%s)", first_line(e))
        self.final_state = self.backend.snapshot()
        # The shared counters are authoritative (a killed worker's last steps were never reported).
        self.stats.steps = max(
            self.stats.steps, int(self.final_state["counters.worker_steps"].sum())
        )
        self._finishing(
            "the last progress row",
            lambda: self._log_row(0) if self.stats.steps != self.logged_steps else None,
        )
        self.console.close()
        # The end-of-run checkpoint, whatever the stop (a worker failure or Ctrl-C included).
        self._finishing(
            "the final checkpoint",
            lambda: setattr(
                self, "last_checkpoint", self._save(self.final_state, stop_reason=reason)
            ),
        )
        final = self.last_checkpoint
        if final is not None and self.last_meta.get("stop_reason") == reason:
            self._finishing("", lambda: self.hooks.checkpoint(final, False))
        error = error or self.late_error
        if isinstance(error, RunFailure):  # said now: the final checkpoint was just tried
            error.args = (f"{error}; {self._last_good()}",)
        summary = self._summary(reason, error)
        self._finishing("", lambda: self.hooks.training_end(summary.to_dict()))
        if self.late_error is not None and error is None:  # on_training_end raised
            summary.error = str(self.late_error)
        if self.problems and summary.error is None:
            summary.error = "; ".join(self.problems)
        self._finishing("summary.json", lambda: self.rundir.write_summary(summary.to_dict()))
        self._finishing("the run directory's files", self.rundir.close)
        if self.problems and summary.error is None:
            summary.error = "; ".join(self.problems)
        return summary

    def _finishing(self, what: str, do: Callable[[], object]) -> None:
        """One step of finishing: a failure (a full disk) is a warning, and the next step is
        tried."""
        try:
            do()
        except CallbackStop:
            pass
        except CallbackError as e:  # a user's callback raised while the run finished
            self.late_error = self.late_error or e
        except (OSError, A3CError, NonFinite) as e:
            message = f"could not write {what}: {e}"
            self.problems.append(message)
            log.warning("a3c: warning: %s", message)

    def _stop_reason(self) -> str | None:
        latest = None if self.evals.latest is None else self.evals.latest.mean
        reason = stop_rule(
            self.stats, self.cfg.run, self.target, self.elapsed(), latest, self.cfg.eval.target_mean
        )
        if reason == "target_return" and self.solved_at is None:
            self.solved_at = (self.stats.steps, self.stats.return_mean)
        return reason

    def _add(self, rep: WorkerReport, check: bool = True) -> None:
        self.stats.add(rep)
        self.rundir.write_episodes(rep, self.stats.steps, self.elapsed())
        if not check:
            return
        self.nonfinite_streak = (
            rep.nonfinite_updates if rep.updates else self.nonfinite_streak + rep.nonfinite_updates
        )
        if self.nonfinite_streak >= self.cfg.run.max_nonfinite_updates:
            raise NonFinite(
                f"{self.nonfinite_streak} non-finite updates in a row (run.max_nonfinite_updates)"
            )

    def _last_good(self) -> str:
        """Where a failed run can be resumed from, said once the final checkpoint was tried."""
        if self.last_checkpoint is None:
            return "no checkpoint was written"
        return f"the last checkpoint is {self.last_checkpoint} (a3c train --resume continues)"

    def _log_row(self, alive: int) -> None:
        row = self.stats.row(self.elapsed(), alive, self.backend.restarts)
        self.logged_steps = self.stats.steps
        self.rundir.write_row(row)
        self.console.update(row)
        self.hooks.progress(row)

    def _save(self, state: dict[str, Tensor], **extra: Any) -> Path:
        """A checkpoint of `state`, which must be finite: nothing non-finite reaches a
        checkpoint."""
        bad = [
            k
            for k, v in state.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if bad:
            raise NonFinite(
                f"the global state is no longer finite ({', '.join(bad)}): not checkpointed"
            )
        meta = checkpoint_meta(
            self.record,
            state,
            episodes=self.stats.episodes,
            return_mean=self.stats.return_mean,
            wall_s=self.elapsed(),
            resumes=self.resumes,
            nonfinite_steps=self.stats.nonfinite_steps,
            **extra,
        )
        path = run_checkpoints.save_in_run(
            self.rundir.path, state, meta, self.cfg.log.checkpoint_keep
        )
        self.last_meta = meta
        return path

    def _summary(self, reason: str, error: BaseException | None) -> Summary:
        stats, target, cfg = self.stats, self.target, self.cfg
        solved_now = target is not None and stats.window_full and stats.return_mean >= target
        return Summary(
            steps=stats.steps,
            wall_s=round(self.elapsed(), 3),
            episodes=stats.episodes,
            return_mean=stats.return_mean,
            target_return=target,
            solved=self.solved_at is not None or solved_now,
            solved_steps=None if self.solved_at is None else self.solved_at[0],
            solved_return_mean=None if self.solved_at is None else self.solved_at[1],
            stop_reason=reason,
            updates=stats.updates,
            nonfinite_updates=stats.nonfinite,
            nonfinite_steps=stats.nonfinite_steps,
            worker_restarts=self.backend.restarts,
            env_id=cfg.env.id,
            workers=cfg.backend.workers,
            backend=cfg.backend.name,
            seed=cfg.run.seed,
            resumes=self.resumes,
            resumed_from_steps=None if self.resumed is None else self.resumed.steps,
            checkpoint=None if self.last_checkpoint is None else str(self.last_checkpoint),
            error=None if error is None else str(error),
            eval=self.evals.summary(),
            versions=versions(),
        )


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One torch thread, as in every worker: the serial backend trains in this process, and a
    second intra-op thread on a busy machine costs far more than it gains (30x measured)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
