"""Whole files written atomically, and JSON that is always valid (standard library only).

An atomic write goes to a temp file in the target's folder (a unique name, so two writers never
share one), is flushed and fsynced, renamed over the target with os.replace, and the folder is
fsynced: a reader sees the old file or the new one, never half of one, even after a crash.

    write_json_atomic(run_dir / "summary.json", summary)   # NaN and inf become null
"""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = [
    "finite_or_none",
    "fsync_dir",
    "json_default",
    "probe_writable",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so a rename inside it survives a crash (a no-op where directories cannot
    be opened: the rename is atomic there all the same)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def probe_writable(folder: str | os.PathLike[str]) -> None:
    """Raise the OSError a write into `folder` would meet (missing, not a directory, read-only, no
    permission): an empty temp file is created and removed. A full disk may still refuse the
    data."""
    probe = Path(folder) / f".a3c-probe.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666))
    probe.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, os.replace, fsync
    the folder); returns the path. On an error the temp file is removed and the target untouched."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    # os.open rather than tempfile.mkstemp: the file gets the umask's permissions, not 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as JSON to `path` atomically: indent 2, a trailing newline, non-finite floats as
    null (JSON has no NaN or inf), tuples and sets as lists, anything else as its str()."""
    text = json.dumps(_jsonable(data), indent=2, default=json_default, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def json_default(o: Any) -> Any:
    """`default=` for json.dump: tuples and sets become lists, anything else its str()."""
    if isinstance(o, tuple | set | frozenset):
        return list(o)
    return str(o)


def finite_or_none(x: Any) -> float | None:
    """`x` as a float if it is a finite real number (not a bool), else None."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _jsonable(o: Any) -> Any:
    """A copy of `o` with non-finite floats replaced by None, tuples and sets by lists (json.dump
    calls `default` only for the types it cannot write, and it writes NaN as an invalid `NaN`)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple | set | frozenset):
        return [_jsonable(v) for v in o]
    return o
