"""Checkpoints: tensors in safetensors, everything else in JSON; written atomically; never pickle.

A checkpoint is a directory:

    step_000000123456/
        tensors.safetensors  params                  float32 [N], model.ordered_parameters() order
                             optim.<name>            the shared optimizer's statistics (square_avg;
                                                     exp_avg, exp_avg_sq, step)
                             counters.worker_steps   int64 [workers] (also worker_updates,
                                                     worker_nonfinite): the schedule position
                             obs_stats               float64 [workers, 1 + 2 D], if normalising
        meta.json            format and version, library versions, the whole config, global steps,
                             episodes, updates, seed, resumes, wall time, the model's parameter
                             names and shapes, the size and SHA-256 of tensors.safetensors

A checkpoint is written as `NAME.tmp/` (each file fsynced), renamed into place, and the parent
fsynced: a reader sees a whole checkpoint or none (Sample Factory's habit); the files are written by
`a3c.io`. Where checkpoints sit in a run directory, and which one a run loads, is
`a3c.run_checkpoints`.

Loading never unpickles anything. The safetensors header is checked by hand (length, JSON, dtypes,
offsets inside the file) before the tensors are read, file sizes are capped, the checksum must
match, and every problem is a `CheckpointError`: one line for the user, exit code 2 from the CLI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from a3c.errors import A3CError, first_line
from a3c.io import fsync_dir, write_bytes_atomic, write_json_atomic

if TYPE_CHECKING:
    from a3c.models import ActorCritic

FORMAT = "a3c-checkpoint"
FORMAT_VERSION = 1
TENSORS = "tensors.safetensors"
META = "meta.json"
MAX_TENSOR_BYTES = 4 << 30  # far above any model this library builds (the Nature CNN is ~7 MB)
MAX_META_BYTES = 16 << 20
MAX_HEADER_BYTES = 16 << 20
# The only dtypes a3c writes: anything else is not one of our checkpoints.
_DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I64": (torch.int64, 8)}
_REQUIRED_META = {
    "config": dict,
    "steps": int,
    "episodes": int,
    "updates": int,
    "architecture": list,
}

log = logging.getLogger("a3c")


class CheckpointError(A3CError):
    """A checkpoint that cannot be used: missing, truncated, corrupt, not ours, or for another
    model."""


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, Tensor]
    meta: dict[str, Any]

    @property
    def steps(self) -> int:
        return int(self.meta["steps"])


# --- writing -----------------------------------------------------------------------------------


def write(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write a checkpoint directory at `path` atomically; an existing checkpoint there is
    replaced."""
    from safetensors.torch import save

    path = Path(path)
    if path.exists() and not (path.is_dir() and (path / META).exists()):
        raise CheckpointError(f"{path} exists and is not an a3c checkpoint; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = save(
        {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
        metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)},
    )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **meta,
        "tensors_bytes": len(blob),
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
    }
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    remove(tmp)  # left by a writer that was killed
    if path.exists():
        remove(old)  # a complete copy only while `path` is missing (see find)
    tmp.mkdir()
    try:
        write_bytes_atomic(tmp / TENSORS, blob)
        write_json_atomic(tmp / META, meta)
        # a directory cannot be renamed over a non-empty one: move the old one aside
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    # e.g. a full disk: nothing half-written stays (a kill leaves it to the next write)
    except BaseException:
        remove(tmp)
        raise
    fsync_dir(path.parent)
    remove(old)
    return path


def remove(path: Path) -> None:
    """Remove a file or directory tree if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- reading -----------------------------------------------------------------------------------


def read(path: str | Path) -> Checkpoint:
    """Read and check one checkpoint directory; never runs code from it."""
    path = Path(path)
    meta = _read_meta(path)
    tensors_path = path / TENSORS
    try:
        size = tensors_path.stat().st_size
    except OSError:
        raise CheckpointError(f"checkpoint {path} has no {TENSORS}") from None
    if size > MAX_TENSOR_BYTES:
        raise CheckpointError(
            f"checkpoint {path}: {TENSORS} is {size} bytes, over the {MAX_TENSOR_BYTES}-byte limit"
        )
    try:
        data = tensors_path.read_bytes()
    except OSError as e:  # e.g. pruned by a live trainer while we read
        raise CheckpointError(
            f"checkpoint {path}: cannot read {TENSORS} ({e.strerror or e})"
        ) from None
    tensors = parse_safetensors(data, f"checkpoint {path}")
    expected = meta.get("tensors_bytes")
    if isinstance(expected, int) and len(data) != expected:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {TENSORS} has {len(data)} bytes, {META} says {expected}"
        )
    digest = meta.get("tensors_sha256")
    if isinstance(digest, str) and hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {TENSORS} does not match its checksum in {META}"
        )
    _check_contents(path, tensors, meta)
    return Checkpoint(path, tensors, meta)


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META
    try:
        size = meta_path.stat().st_size
    except OSError:
        raise CheckpointError(f"{path} is not an a3c checkpoint: it has no {META}") from None
    if size > MAX_META_BYTES:
        raise CheckpointError(
            f"checkpoint {path}: {META} is {size} bytes, over the {MAX_META_BYTES}-byte limit"
        )
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise CheckpointError(
            f"checkpoint {path}: cannot read {META} ({e.strerror or e})"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"checkpoint {path}: {META} is not valid JSON ({first_line(e)})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an a3c checkpoint: {META} does not say format '{FORMAT}'"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"checkpoint {path}: {META} has no integer format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this a3c reads version "
            f"{FORMAT_VERSION} (upgrade a3c)"
        )
    if version < 1:
        raise CheckpointError(f"checkpoint {path} has an unknown format version {version}")
    for key, typ in _REQUIRED_META.items():
        value = meta.get(key)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise CheckpointError(f"checkpoint {path}: {META} lacks a valid '{key}'")
    for item in meta["architecture"]:
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], list)
        )
        if not ok or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in item[1]
        ):
            raise CheckpointError(f"checkpoint {path}: {META} has a malformed 'architecture'")
    return meta


def parse_safetensors(data: bytes, what: str) -> dict[str, Tensor]:
    """Check a safetensors blob's header by hand, then read it. A pickle, a zip (torch.save) or a
    truncated file is rejected before any tensor is built; nothing in the data is ever executed."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if len(data) < 8:
        raise CheckpointError(f"{what}: {TENSORS} is truncated ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > MAX_HEADER_BYTES or data[8:9] != b"{":
        kind = (
            " (it looks like a pickle)"
            if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
            else " (it looks like a zip / torch.save file)"
            if data[:2] == b"PK"
            else ""
        )
        raise CheckpointError(f"{what}: {TENSORS} is not a safetensors file{kind}")
    if 8 + n > len(data):
        raise CheckpointError(
            f"{what}: {TENSORS} is truncated (header of {n} bytes, file of {len(data)})"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{what}: {TENSORS} has a malformed header ({first_line(e)})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{what}: {TENSORS} has a malformed header")
    body = len(data) - 8 - n
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, stop) = entry["dtype"], entry["shape"], entry["data_offsets"]
            size = _DTYPES[dtype][1] * math.prod(int(d) for d in shape)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{what}: {TENSORS} has an unexpected entry '{key}'") from None
        if not (
            isinstance(begin, int)
            and isinstance(stop, int)
            and 0 <= begin <= stop
            and stop - begin == size
        ):
            raise CheckpointError(f"{what}: {TENSORS} has inconsistent offsets for '{key}'")
        end = max(end, stop)
    if end > body:
        raise CheckpointError(f"{what}: {TENSORS} is truncated ({body} of {end} data bytes)")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{what}: {TENSORS} was not written by a3c")
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{what}: {TENSORS} cannot be read ({first_line(e)})") from None


def _check_contents(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    params = tensors.get("params")
    if params is None or params.dtype != torch.float32 or params.dim() != 1:
        raise CheckpointError(f"checkpoint {path} has no float32 'params' vector")
    expected = sum(math.prod(shape) for _, shape in meta["architecture"])
    if params.numel() != expected:
        raise CheckpointError(
            f"checkpoint {path} is inconsistent: {params.numel()} parameters, its architecture "
            f"says {expected}"
        )
    if not bool(torch.isfinite(params).all()):
        raise CheckpointError(f"checkpoint {path} holds non-finite parameters")
    ema = tensors.get("ema")
    if ema is not None and (
        ema.dtype != torch.float32
        or ema.shape != params.shape
        or not bool(torch.isfinite(ema).all())
    ):
        raise CheckpointError(
            f"checkpoint {path} has an invalid moving average of its parameters ('ema')"
        )
    for key in sorted(k for k in tensors if k == "obs_stats" or k.startswith("optim.")):
        value = tensors[key]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            what = "observation statistics" if key == "obs_stats" else "optimizer statistics"
            raise CheckpointError(f"checkpoint {path} holds non-finite {what} ('{key}')")
    found = [
        tensors.get(f"counters.{k}") for k in ("worker_steps", "worker_updates", "worker_nonfinite")
    ]
    counters = [c for c in found if c is not None and c.dtype == torch.int64 and c.dim() == 1]
    if len(counters) != len(found) or any(c.numel() != counters[0].numel() for c in counters):
        raise CheckpointError(f"checkpoint {path} has no valid per-worker counters")
    if int(counters[0].sum()) != meta["steps"]:
        raise CheckpointError(
            f"checkpoint {path} is inconsistent: its counters sum to {int(counters[0].sum())} "
            f"steps, {META} says {meta['steps']}"
        )


# --- the model's architecture ------------------------------------------------------------------


def architecture(model: ActorCritic) -> list[list[Any]]:
    """[[parameter name, shape], ...] in the flat vector's order: what a checkpoint must match."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)], list(p.shape)] for p in model.ordered_parameters()]


def check_architecture(ckpt: Checkpoint, model: ActorCritic) -> None:
    """Raise a one-line CheckpointError unless the checkpoint's parameters fit `model`."""
    want, have = architecture(model), ckpt.meta["architecture"]
    if have == want:
        return
    here = dict((n, s) for n, s in want)
    there = dict((n, s) for n, s in have)
    for name, shape in have:
        if name not in here:
            detail = f"it has parameter '{name}' {shape}, which this model lacks"
            break
        if here[name] != shape:
            detail = f"parameter '{name}' is {shape} there, {here[name]} here"
            break
    else:
        missing = next((n for n, _ in want if n not in there), None)
        detail = (
            f"it lacks parameter '{missing}'" if missing else "its parameters are in another order"
        )
    raise CheckpointError(f"checkpoint {ckpt.path} is for another architecture: {detail}")
