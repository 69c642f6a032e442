"""A run directory and what is written into it: config.json, progress.csv, episodes.csv, summary.json;
and the console.

Metrics aggregate `WorkerReport`s; a progress.csv row is written every `log_interval` global env
steps (a frequency counts global steps, never calls per worker). On a terminal a progress bar shows
the run; elsewhere one plain line per row.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from a3c.errors import ConfigError
from a3c.worker import WorkerReport

PROGRESS_COLUMNS = [
    "steps", "wall_s", "episodes", "return_mean", "return_std", "length_mean", "entropy", "grad_norm",
    "policy_loss", "value_loss", "learning_rate", "steps_per_s", "update_lag", "updates",
    "nonfinite_updates", "workers_alive",
]  # fmt: skip


EPISODE_COLUMNS = ["worker", "steps", "wall_s", "return", "length"]


class Stats:
    """Running totals and the current log interval's sums, fed by worker reports."""

    def __init__(self, window: int) -> None:
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.window = window
        self.steps = self.episodes = self.updates = self.nonfinite = 0
        self._sums: dict[str, float] = {}
        self._n = 0
        self._last_steps, self._last_time = 0, time.monotonic()

    def add(self, rep: WorkerReport) -> None:
        self.steps += rep.steps
        self.updates += rep.updates
        self.nonfinite += rep.nonfinite_updates
        self.episodes += len(rep.episode_returns)
        self.returns.extend(rep.episode_returns)
        self.lengths.extend(rep.episode_lengths)
        for key in ("policy_loss", "value_loss", "entropy", "grad_norm", "update_lag", "learning_rate"):
            self._sums[key] = self._sums.get(key, 0.0) + getattr(rep, key)
        self._n += rep.updates

    @property
    def return_mean(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else math.nan

    @property
    def window_full(self) -> bool:
        return len(self.returns) >= self.window

    def row(self, wall_s: float, workers_alive: int) -> dict[str, Any]:
        now = time.monotonic()
        dt = now - self._last_time
        rate = (self.steps - self._last_steps) / dt if dt > 0 else math.nan
        self._last_steps, self._last_time = self.steps, now
        n = max(self._n, 1)
        mean = self.return_mean
        std = math.sqrt(sum((r - mean) ** 2 for r in self.returns) / len(self.returns)) if self.returns else math.nan
        row = {
            "steps": self.steps,
            "wall_s": round(wall_s, 3),
            "episodes": self.episodes,
            "return_mean": mean,
            "return_std": std,
            "length_mean": sum(self.lengths) / len(self.lengths) if self.lengths else math.nan,
            **{k: (self._sums.get(k, 0.0) / n if self._n else math.nan) for k in ("entropy", "grad_norm", "policy_loss", "value_loss", "learning_rate", "update_lag")},
            "steps_per_s": round(rate, 1),
            "updates": self.updates,
            "nonfinite_updates": self.nonfinite,
            "workers_alive": workers_alive,
        }
        self._sums, self._n = {}, 0
        return row


def default_run_dir(env_id: str, root: str | Path = "runs") -> Path:
    name = env_id.replace("/", "_").replace(":", "_")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file, fsync, then rename over the target: readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class RunDir:
    """Creates the run directory (refusing one that already holds a run) and writes its files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if (self.path / "progress.csv").exists() or (self.path / "summary.json").exists():
            raise ConfigError(f"run directory {self.path} already holds a run; choose another --run-dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create run directory {self.path}: {e.strerror or e}") from None
        self._csv_file = open(self.path / "progress.csv", "w", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.DictWriter(self._csv_file, fieldnames=PROGRESS_COLUMNS)
        self._csv.writeheader()
        self._csv_file.flush()
        self._episodes_file = open(self.path / "episodes.csv", "w", newline="")  # noqa: SIM115
        self._episodes = csv.writer(self._episodes_file)
        self._episodes.writerow(EPISODE_COLUMNS)

    def write_episodes(self, rep: WorkerReport, steps: int, wall_s: float) -> None:
        """One row per finished episode (like SB3's Monitor files); `steps` is the global count."""
        for ret, length in zip(rep.episode_returns, rep.episode_lengths, strict=True):
            self._episodes.writerow([rep.worker, steps, round(wall_s, 3), ret, length])

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.path / "config.json", config)

    def write_row(self, row: dict[str, Any]) -> None:
        self._csv.writerow({k: row.get(k) for k in PROGRESS_COLUMNS})
        self._csv_file.flush()

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / "summary.json", {k: _clean(v) for k, v in summary.items()})

    def close(self) -> None:
        self._csv_file.close()
        self._episodes_file.close()


class Console:
    """A rich progress bar on a terminal; one plain line per progress row otherwise (or nothing)."""

    def __init__(self, total_steps: int, mode: str = "auto") -> None:
        self.mode = ("bar" if sys.stdout.isatty() else "lines") if mode == "auto" else mode
        self._progress = None
        if self.mode == "bar":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]a3c"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), transient=False,
            )  # fmt: skip
            self._task = self._progress.add_task("train", total=total_steps, info="")
            self._progress.start()

    def update(self, row: dict[str, Any]) -> None:
        info = f"return {row['return_mean']:.1f}  {row['steps_per_s']:.0f} steps/s  episodes {row['episodes']}"
        if self._progress is not None:
            self._progress.update(self._task, completed=row["steps"], info=info)
        elif self.mode == "lines":
            print(f"steps {row['steps']:>9}  wall {row['wall_s']:7.1f}s  {info}", flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
