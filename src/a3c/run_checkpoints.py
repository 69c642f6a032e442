"""The checkpoints of a run directory: `checkpoints/step_N/`, `latest` and `best/`.

In a run directory checkpoints (`a3c.checkpoint`'s format) sit in `checkpoints/`, named by
zero-padded global step; the newest `log.checkpoint_keep` are kept and `checkpoints/latest` names
the newest (for people and tools: loading takes the newest complete checkpoint by step).
`checkpoints/best/`, the state of the best evaluation during training, is apart: never rotated
away, and never taken for the newest. The next write removes what a killed writer left (`*.tmp`,
`*.old`), and a newest checkpoint that cannot be read falls back to the one before, with a warning.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from torch import Tensor

from a3c.checkpoint import META, TENSORS, Checkpoint, CheckpointError, read, remove, write
from a3c.io import write_text_atomic

log = logging.getLogger("a3c")

LATEST = "latest"
CHECKPOINTS = "checkpoints"
BEST = "best"  # checkpoints/best/: the state of the best evaluation so far, never rotated away
_NAME = re.compile(r"^step_(\d{12,})$")


def name_for(steps: int) -> str:
    return f"step_{steps:012d}"


def save_in_run(
    run_dir: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any], keep: int
) -> Path:
    """Write run_dir/checkpoints/step_N, point `latest` at it, and keep only the newest `keep`."""
    folder = Path(run_dir) / CHECKPOINTS
    path = write(folder / name_for(int(meta["steps"])), tensors, meta)
    write_text_atomic(folder / LATEST, path.name + "\n")
    for old in list_checkpoints(folder)[:-keep]:
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    # A killed writer's leftovers: NAME.tmp/ directories, `latest`'s temp files, NAME.old/ copies.
    for stale in [*folder.glob("*.tmp"), *folder.glob("*.old")]:
        if stale.name != BEST + ".old" or (folder / BEST).exists():  # else the best's only copy
            remove(stale)
    return path


def best_path(run_dir: str | Path) -> Path | None:
    """run_dir/checkpoints/best/, or the complete copy that a writer killed while replacing it
    left (best.old/); None if the run has neither."""
    folder = Path(run_dir) / CHECKPOINTS
    return next((p for p in (folder / BEST, folder / f"{BEST}.old") if (p / META).is_file()), None)


def set_aside_newer(run_dir: str | Path, steps: int) -> list[Path]:
    """On resume from step `steps`: rename checkpoints past it (unreadable ones, or the resumed run
    would prune its own) to NAME.unused, so the resumed run's checkpoints are the newest."""
    moved = []
    for path in list_checkpoints(Path(run_dir) / CHECKPOINTS):
        if _step_of(path) > steps:
            target = path.with_name(path.name + ".unused")
            if target.exists():
                shutil.rmtree(target)
            os.replace(path, target)
            moved.append(target)
    return moved


def list_checkpoints(folder: Path, with_old: bool = False) -> list[Path]:
    """Checkpoint directories in `folder`, oldest first (by step). `with_old` adds the NAME.old/ a
    writer killed while replacing NAME left behind, where NAME itself is missing."""
    if not folder.is_dir():
        return []
    entries = {p.name: p for p in folder.iterdir() if p.is_dir()}
    found = [p for name, p in entries.items() if _NAME.match(name)]
    if with_old:
        found += [
            p
            for name, p in entries.items()
            if name.endswith(".old") and _NAME.match(name[:-4]) and name[:-4] not in entries
        ]
    return sorted(found, key=_step_of)


def _step_of(path: Path) -> int:
    m = _NAME.match(path.name.removesuffix(".old"))
    return int(m.group(1)) if m else -1


def find(path: str | Path) -> Checkpoint:
    """Load a checkpoint from a checkpoint directory, or the newest readable one of a run directory.

    A run directory gives its newest complete checkpoint by step, whatever `latest` says (a writer
    killed between the checkpoint and `latest` loses nothing); one that cannot be read is skipped
    with a warning for the one before. A checkpoint directory named directly is read as is.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint or run directory: {path}")
    if path.is_file():
        if path.name in (TENSORS, META):
            return read(path.parent)
        # Never opened: a3c checkpoints are directories, and a lone file (a pickle, a .pt) is not
        # one.
        raise CheckpointError(
            f"{path} is not an a3c checkpoint (a checkpoint is a directory holding {META} and "
            f"{TENSORS})"
        )
    if (path / META).exists() or (path / TENSORS).exists():
        return read(path)
    folder = path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path
    candidates = list(reversed(list_checkpoints(folder, with_old=True)))
    if not candidates and (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} is a run with no checkpoint yet: a run writes one every "
            "log.checkpoint_interval_s (600 s by default) and when it stops; wait for it, or stop "
            "the run (Ctrl-C or kill writes one)"
        )
    if not candidates:
        raise CheckpointError(
            f"{path} holds no checkpoint (neither a checkpoint directory nor a run directory with "
            f"{CHECKPOINTS}/)"
        )
    first_error: CheckpointError | None = None
    for candidate in candidates:
        try:
            ckpt = read(candidate)
        except CheckpointError as e:
            first_error = first_error or e
            log.warning("a3c: warning: %s; trying the checkpoint before it", e)
            continue
        return ckpt
    raise CheckpointError(f"no readable checkpoint in {folder}: {first_error}")
