"""Evaluation during training, the session's side: when an evaluation is due, and what becomes of
its result (eval.csv, TensorBoard's eval/ scalars, the console, checkpoints/best/, the eval target).

    evals = EvalLog(cfg, rundir, console, record, resumes, steps)   # off without eval.interval_*
    evals.start(backend.evaluator(spec))   # the backend places and supervises its evaluator
    evals.step(stats, elapsed)             # at every poll: ask when due, take what came back
    evals.stop(); evals.summary()

An evaluation is due every `eval.interval_steps` global env steps (as reported, as every frequency
counts them) and/or every `eval.interval_s` seconds. One runs at a time: one that falls due while
the previous plays waits for it to finish. The best evaluation so far (the highest mean; a tie
keeps the earlier) has its state written as checkpoints/best/ in the checkpoint format, with the
evaluation in its meta.json (`eval`); a resumed run reads it back, and a new evaluation must beat
it to replace it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from a3c import checkpoint, run_checkpoints
from a3c.checkpoint import CheckpointError
from a3c.config import Config
from a3c.errors import first_line
from a3c.evaluation import EvalResult, Evaluator
from a3c.metrics import Stats
from a3c.periodic import Every
from a3c.persistence import checkpoint_meta
from a3c.runlog import Console, RunDir

log = logging.getLogger("a3c")


class EvalLog:
    """When to evaluate, and what to do with the results; does nothing when evaluation is off."""

    def __init__(
        self,
        cfg: Config,
        rundir: RunDir,
        console: Console,
        record: dict[str, Any],
        resumes: int,
        steps: int,
    ) -> None:
        self.cfg, self.rundir, self.console, self.record, self.resumes = (
            cfg,
            rundir,
            console,
            record,
            resumes,
        )
        e = cfg.eval
        self.on = e.interval_steps is not None or e.interval_s is not None
        self.evaluator: Evaluator | None = None
        self.latest: EvalResult | None = None
        self.best_mean: float | None = None
        self.best_steps: int | None = None
        self.count = (
            0  # evaluations of the whole run (a resumed run's eval.csv keeps the earlier ones)
        )
        self.problems: list[str] = []
        self.due = Every(e.interval_steps, e.interval_s, start_steps=steps)
        if self.on:
            self.count = rundir.open_eval()
            if rundir.resume_steps is not None:
                self._read_best()

    @property
    def best_dir(self) -> Path:
        return self.rundir.path / run_checkpoints.CHECKPOINTS / run_checkpoints.BEST

    def _read_best(self) -> None:
        """A resumed run keeps its best so far (an unreadable one is replaced by the next
        evaluation)."""
        path = run_checkpoints.best_path(self.rundir.path)
        if path is None:
            return
        try:
            meta = checkpoint.read(path).meta
            self.best_mean, self.best_steps = float(meta["eval"]["mean"]), int(meta["steps"])
        except (CheckpointError, KeyError, TypeError, ValueError) as e:
            log.warning(
                "a3c: warning: the best checkpoint %s cannot be read (%s); the next evaluation "
                "replaces it",
                path,
                first_line(e),
            )

    def start(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        evaluator.start()

    def step(self, stats: Stats, elapsed: float) -> list[tuple[dict[str, Any], bool]]:
        """Ask for an evaluation when one is due (and none is under way); take the finished ones:
        their rows, each with whether it is the new best."""
        if self.evaluator is None:
            return []
        if self.due.due(stats.steps) and self.evaluator.request(elapsed):
            self.due.done(stats.steps)
        return [(result.row(), self._take(result, stats)) for result in self.evaluator.poll()]

    def _take(self, result: EvalResult, stats: Stats) -> bool:
        """Record an evaluation (and keep it as the best if it is); whether it is the new best."""
        self.latest, self.count = result, self.count + 1
        new_best = False
        if not math.isfinite(result.mean):  # a NaN or infinite reward in an episode
            log.warning(
                "a3c: warning: the evaluation at %d steps has a non-finite mean (%s): recorded, "
                "never kept as the best",
                result.steps,
                result.mean,
            )
        elif self.best_mean is None or result.mean > self.best_mean:
            new_best = self._save_best(result, stats)
        self.rundir.write_eval(result.row())
        self.console.evaluated(result.row(), self.best_mean)
        return new_best

    def _save_best(self, result: EvalResult, stats: Stats) -> bool:
        """checkpoints/best/ from the evaluated state (which must be finite), atomically; whether
        it was written."""
        bad = [
            k
            for k, v in result.state.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if bad:
            log.warning(
                "a3c: warning: the evaluated state is not finite (%s): not kept as the best",
                ", ".join(bad),
            )
            return False
        meta = checkpoint_meta(
            self.record,
            result.state,
            episodes=stats.episodes,
            return_mean=stats.return_mean,
            wall_s=result.wall_s,
            resumes=self.resumes,
            eval=result.row(),
            best=True,
        )
        if self.best_dir.exists() and not (self.best_dir / checkpoint.META).is_file():
            # an unreadable best/ (its meta.json lost) is replaced, not refused at every evaluation
            checkpoint.remove(self.best_dir)
        try:
            checkpoint.write(self.best_dir, result.state, meta)
        except (OSError, CheckpointError) as e:  # a full disk: the run goes on, the summary says so
            self.problems.append(f"could not write {self.best_dir}: {e}")
            log.warning("a3c: warning: %s", self.problems[-1])
            return False
        self.best_mean, self.best_steps = result.mean, result.steps
        return True

    def stop(self) -> None:
        """Stop the evaluator (an evaluation under way is abandoned); never raises."""
        if self.evaluator is None:
            return
        try:
            self.evaluator.stop()
        except Exception as e:
            log.warning("a3c: warning: the evaluator did not stop cleanly (%s)", first_line(e))

    def summary(self) -> dict[str, Any] | None:
        """summary.json's `eval`: None when evaluation is off."""
        if not self.on:
            return None
        latest = None if self.latest is None else self.latest.row()
        best_mean = (
            None if self.best_mean is None or not math.isfinite(self.best_mean) else self.best_mean
        )
        return {
            "evaluations": self.count,
            "latest": latest,
            "best_mean": best_mean,
            "best_steps": self.best_steps,
            "best_checkpoint": str(self.best_dir) if self.best_mean is not None else None,
            "target_mean": self.cfg.eval.target_mean,
            "restarts": 0 if self.evaluator is None else self.evaluator.restarts,
        }
