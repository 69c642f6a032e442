"""A run directory and what is written into it: config.json, progress.csv, episodes.csv, eval.csv,
summary.json, TensorBoard event files; and the console.

`a3c.metrics.Stats` aggregates the workers' reports; a progress.csv row (the columns of
`a3c.metrics.METRICS`) is written every `log_interval` global env steps (a frequency counts global
steps, never calls per worker), and the same row goes to TensorBoard as scalars under the metrics'
tags (rollout/, train/, time/, workers/) against the global step. Whole files are written by
`a3c.io`. On a terminal a progress bar shows the run; elsewhere one plain line per row.

A resumed run reopens its directory: progress.csv, episodes.csv and eval.csv keep their rows up to
the checkpoint's step (rows of the work lost after it are cut off, so steps never go backwards) and
are appended to; TensorBoard purges its events past that step.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a3c.errors import ConfigError, first_line
from a3c.io import write_json_atomic
from a3c.metrics import EVAL_COLUMNS, EVAL_TAGS, PROGRESS_COLUMNS, TENSORBOARD_TAGS, WorkerReport

EPISODE_COLUMNS = ["worker", "steps", "wall_s", "return", "length"]

log = logging.getLogger("a3c")


def default_run_dir(env_id: str, root: str | Path = "runs") -> Path:
    name = env_id.replace("/", "_").replace(":", "_")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path


class RunDir:
    """Creates the run directory (refusing one that already holds a run) and writes its files.

    With `resume_steps`, reopens an existing run directory to continue it from the checkpoint at
    that global step: its CSV files are cut back to that step and appended to.
    """

    def __init__(
        self, path: str | Path, resume_steps: int | None = None, tensorboard: bool = True
    ) -> None:
        self.path = Path(path)
        self._lock: Any = None
        self._csv_file: Any = None
        self._episodes_file: Any = None
        self._eval_file: Any = None
        self._tb: Any = None
        self.resume_steps = resume_steps
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(
                f"run directory {self.path} exists and is not a directory; choose another run "
                "directory"
            )
        if resume_steps is None:
            if (self.path / "progress.csv").exists() or (self.path / "summary.json").exists():
                raise ConfigError(
                    f"run directory {self.path} already holds a run; choose another run directory "
                    "(or resume it: a3c train --resume DIR, A3C.resume(DIR))"
                )
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(
                    f"cannot create run directory {self.path}: {e.strerror or e}"
                ) from None
        elif not (self.path / "config.json").is_file():
            raise ConfigError(f"{self.path} is not a run directory (it has no config.json)")
        try:
            self._open(resume_steps, tensorboard)
        except (OSError, ConfigError) as e:
            self.close()
            if isinstance(e, ConfigError):
                raise
            where = f" ({e.filename})" if e.filename else ""
            raise ConfigError(
                f"cannot write run directory {self.path}: {e.strerror or e}{where}"
            ) from None

    def _open(self, resume_steps: int | None, tensorboard: bool) -> None:
        """Lock the directory, open (or on resume cut back and reopen) its CSV files, TensorBoard's
        writer."""
        self._lock = _lock_run(self.path)
        mode = "w" if resume_steps is None else "a"
        if resume_steps is not None:
            truncate_csv(self.path / "progress.csv", PROGRESS_COLUMNS, resume_steps)
            truncate_csv(self.path / "episodes.csv", EPISODE_COLUMNS, resume_steps)
        self._csv_file = open(self.path / "progress.csv", mode, newline="")  # closed in close()
        self._csv = csv.DictWriter(self._csv_file, fieldnames=PROGRESS_COLUMNS)
        self._episodes_file = open(self.path / "episodes.csv", mode, newline="")
        self._episodes = csv.writer(self._episodes_file)
        if resume_steps is None:
            self._csv.writeheader()
            self._episodes.writerow(EPISODE_COLUMNS)
        self._csv_file.flush()
        self._episodes_file.flush()
        self._tb = _summary_writer(self.path, resume_steps) if tensorboard else None

    def recent_episodes(self, n: int) -> list[tuple[float, int]]:
        """The last `n` (return, length) pairs of episodes.csv (to refill the return window on
        resume)."""
        out: deque[tuple[float, int]] = deque(maxlen=n)
        try:
            with open(self.path / "episodes.csv", newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        out.append((float(row["return"]), int(row["length"])))
                    except (TypeError, ValueError, KeyError):
                        continue
        except OSError:
            pass
        return list(out)

    def write_episodes(self, rep: WorkerReport, steps: int, wall_s: float) -> None:
        """One row per finished episode (like SB3's Monitor files); `steps` is the global count."""
        for ret, length in zip(rep.episode_returns, rep.episode_lengths, strict=True):
            self._episodes.writerow([rep.worker, steps, round(wall_s, 3), ret, length])

    def flush_episodes(self) -> None:
        self._episodes_file.flush()

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.path / "config.json", config)

    def write_row(self, row: dict[str, Any]) -> None:
        self._csv.writerow({k: row.get(k) for k in PROGRESS_COLUMNS})
        self._csv_file.flush()
        self._episodes_file.flush()  # episodes.csv is as fresh as progress.csv when a run is killed
        if self._tb is not None:
            step = int(row["steps"])
            for key, tag in TENSORBOARD_TAGS.items():
                value = row.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(tag, value, step)

    def open_eval(self) -> int:
        """Open eval.csv (on resume cut back to the checkpoint's step and appended to); returns the
        number of rows it keeps."""
        path = self.path / "eval.csv"
        if self.resume_steps is not None:
            truncate_csv(path, EVAL_COLUMNS, self.resume_steps)
        # closed in close()
        self._eval_file = open(path, "w" if self.resume_steps is None else "a", newline="")
        self._eval = csv.DictWriter(self._eval_file, fieldnames=EVAL_COLUMNS)
        if self.resume_steps is None:
            self._eval.writeheader()
            self._eval_file.flush()
            return 0
        with open(path, newline="") as f:
            return sum(1 for _ in csv.DictReader(f))

    def write_eval(self, row: dict[str, Any]) -> None:
        """One eval.csv row (EVAL_COLUMNS), and its TensorBoard scalars (eval/) at its step."""
        self._eval.writerow({k: row.get(k) for k in EVAL_COLUMNS})
        self._eval_file.flush()
        if self._tb is not None:
            for key, tag in EVAL_TAGS.items():
                value = row.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(tag, value, int(row["steps"]))

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / "summary.json", summary)  # NaN and inf become null

    def close(self) -> None:
        # the lock last: releases it
        for f in (self._csv_file, self._episodes_file, self._eval_file, self._tb, self._lock):
            if f is not None:
                f.close()


def _lock_run(path: Path) -> Any:
    """Hold an exclusive lock on run_dir/.lock while a trainer writes the run, so a `--resume` of a
    run that is still going is refused. The OS drops the lock when the process dies (kill -9
    too)."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        return None
    f = open(path / ".lock", "a+")  # closed in close()
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip()
        f.close()
        raise ConfigError(
            f"run directory {path} is in use by another a3c "
            f"process{f' (pid {owner})' if owner else ''}"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _summary_writer(path: Path, resume_steps: int | None) -> Any:
    """A TensorBoard SummaryWriter into the run directory (CSV is written regardless)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    # tensorboard is a core dependency; a broken install only loses the events
    except ImportError as e:
        log.warning("a3c: warning: no TensorBoard events (%s); progress.csv is complete", e)
        return None
    # purge_step: events at or past it (written after the checkpoint by a killed run) are hidden.
    purge = None if resume_steps is None else resume_steps + 1
    try:
        return SummaryWriter(log_dir=str(path), flush_secs=10, purge_step=purge)
    except OSError:
        raise
    except Exception as e:  # TensorBoard wraps some file errors in its own types
        raise ConfigError(f"cannot write TensorBoard events into {path}: {first_line(e)}") from None


def truncate_csv(path: Path, columns: Sequence[str], max_steps: int) -> None:
    """Keep the header and the complete rows with steps <= max_steps (rows are in step order); cut
    the file after them. A missing or headerless file gets a header."""
    columns = list(columns)
    try:
        f = open(path, "r+b")
    except FileNotFoundError:
        with open(path, "w", newline="") as out:
            csv.writer(out).writerow(columns)
        return
    with f:
        data = f.read()
        header, sep, _ = data.partition(b"\n")
        if not sep or header.decode(errors="replace").strip().split(",") != columns:
            if data.strip():
                raise ConfigError(
                    f"{path} does not have the columns this a3c writes; cannot append to it"
                )
            f.seek(0)
            f.truncate()
            f.write((",".join(columns) + "\r\n").encode())
            return
        col = columns.index("steps")
        keep = len(header) + 1
        while keep < len(data):
            end = data.find(b"\n", keep)
            if end < 0:  # a partial last line, cut by a kill
                break
            fields = data[keep:end].decode(errors="replace").strip().split(",")
            try:
                if int(fields[col]) > max_steps:
                    break
            except (IndexError, ValueError):
                break
            keep = end + 1
        f.truncate(keep)


class Console:
    """A rich progress bar on a terminal; one plain line per progress row otherwise (or nothing)."""

    def __init__(self, total_steps: int, mode: str = "auto", console: Any = None) -> None:
        self.mode = ("bar" if sys.stdout.isatty() else "lines") if mode == "auto" else mode
        self._progress = None
        self._eval = ""  # the latest evaluation's mean, for the bar and the lines
        self.total = _short_count(total_steps)
        if self.mode == "bar":
            self._progress = _progress_bar(console)
            self._task = self._progress.add_task(
                "train", total=total_steps, info="", done=f"0/{self.total}"
            )
            self._progress.start()

    def evaluated(self, row: dict[str, Any], best: float | None) -> None:
        """An evaluation's result: its mean goes into the bar's info, and a line of its own."""
        self._eval = f"  eval {row['mean']:.1f}"
        if self.mode == "lines":
            print(
                f"eval  steps {row['steps']:>9}  mean {row['mean']:.1f} +/- {row['std']:.1f} over "
                f"{row['episodes']} episodes  ({row['duration_s']:.1f}s)  "
                f"best {'-' if best is None else f'{best:.1f}'}",
                flush=True,
            )

    def update(self, row: dict[str, Any]) -> None:
        info = (
            f"return {row['return_mean']:.1f}  {row['steps_per_s']:.0f} steps/s  episodes "
            f"{row['episodes']}{self._eval}"
        )
        if self._progress is not None:
            done = f"{_short_count(row['steps'])}/{self.total}"
            self._progress.update(self._task, completed=row["steps"], info=info, done=done)
        elif self.mode == "lines":
            print(f"steps {row['steps']:>9}  wall {row['wall_s']:7.1f}s  {info}", flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _progress_bar(console: Any = None) -> Any:
    """The bar: `a3c`, the bar, steps as 1.2M/16M, the elapsed time, then the latest row's figures.
    In a narrow terminal (80 columns) the bar gives way first and the figures are cut at their end
    with an ellipsis; the step counts are never cut."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    return Progress(
        TextColumn("[bold]a3c", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[done]}", table_column=Column(no_wrap=True, min_width=11)),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
        TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
        transient=False,
        console=console,
    )


def _short_count(n: int) -> str:
    """999, 174.1k, 1.23M, 16M: a step count in at most 6 characters."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            value = n / size
            text = f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.3g}"
            return text + unit
    return str(n)
