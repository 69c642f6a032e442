"""Shared helpers of the benchmark scripts: machine description, tables, medians, child
processes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def source_state() -> dict[str, Any] | None:
    """The git commit of the a3c sources and whether src/ has uncommitted changes (with a hash)."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD", "--", "src")
        untracked = git("ls-files", "--others", "--exclude-standard", "--", "src").strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    dirty = bool(diff or untracked)
    digest = hashlib.sha256((diff + untracked).encode()).hexdigest()[:12] if dirty else None
    return {"commit": commit, "src_dirty": dirty, "src_diff_sha256_12": digest}


def machine() -> dict[str, Any]:
    import gymnasium
    import torch

    import a3c

    info = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "a3c": a3c.__version__,
        "loadavg_before": os.getloadavg(),
    }
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return info


def median(values: list[float | None], unsolved_as_inf: bool = False) -> float | None:
    """Median; None entries are dropped, or count as +inf (not solved) when unsolved_as_inf (the
    median is then None if it is +inf)."""
    xs = (
        [math.inf if v is None else v for v in values]
        if unsolved_as_inf
        else [v for v in values if v is not None]
    )
    if not xs:
        return None
    m = statistics.median(xs)
    return m if math.isfinite(m) else None


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; floats shown with a precision that suits their size."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run `python THIS_SCRIPT ARGS` in a fresh process group; its last stdout line is JSON."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=ROOT,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"timed out after {timeout} s"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (err.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def write_results(out_dir: Path, name: str, report: dict[str, Any], markdown: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown + "\n")
