"""The package as a user gets it: the wheel and sdist built from this source tree, the wheel
installed into a fresh venv outside the tree, and the `a3c` command run from there.

How the dependencies get into the fresh venv: a real `pip install -c constraints.txt WHEEL`, with
pip resolving the wheel's own requirements (the honest check that the metadata's dependencies are
right and complete), then `pip check`. On this project's machines pip reads wheels from local
folders and indexes (pip.conf: find-links /opt/wheels with the CPU torch, file:// indexes).
Measured there while another training run kept both cores busy: a fresh venv 4.5 s; the install
(38 distributions, torch 2.13.0+cpu among them) 61 s, then 40-65 s to delete the venv's 30,000
files. With `--no-compile` (no .pyc files; the test also sets PYTHONDONTWRITEBYTECODE, and each
command starts about 2 s slower) the install takes 27 s and leaves 22,000 files; in /dev/shm (see
_scratch_root) 18 s, and deleting them under a second. The whole module: about 65 s. A real install
is that cheap here, so the test needs neither a pre-filled cache nor a `--no-deps` install beside
the dev venv's site-packages (which would only check that the requirements are satisfiable, not
that pip resolves them).

The build runs with `--no-isolation` (nothing is downloaded: the dev extra brings setuptools>=77
and build) from the source tree in the default mode of `python -m build`: the sdist first, then the
wheel from the unpacked sdist, which proves that the sdist is complete enough to build. setuptools
refreshes src/a3c.egg-info in the tree (ignored by git, as an editable install's is); everything
else, the archives, the venv and the run directories, goes into one temporary folder outside the
tree, removed at the end even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "a3c"
VERSION = "0.1.0"


def _scratch_root() -> str | None:
    """/dev/shm where it has room, else the default temporary folder (None).

    The venv is 22,000 files, 700 MB. On disk, deleting it half a minute after pip wrote it (once
    the kernel has written the files back) took 34-40 s of the test's time; in memory (tmpfs) the
    install takes 18 s instead of 27 and the removal under a second."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4 * 2**30:
            return str(shm)
    except OSError:
        pass
    return None


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    """A temporary folder outside the source tree, removed afterwards whatever happened."""
    path = Path(tempfile.mkdtemp(prefix="a3c-package-test-", dir=_scratch_root())).resolve()
    try:
        assert not path.is_relative_to(ROOT), (
            f"the temporary folder {path} is inside the source tree"
        )
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dists(workspace: Path) -> dict[str, Path]:
    """{"wheel": ..., "sdist": ...} built from the source tree into workspace/dist."""
    out = workspace / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert [p.name for p in wheels] == [f"a3c-{VERSION}-py3-none-any.whl"]
    assert [p.name for p in sdists] == [f"a3c-{VERSION}.tar.gz"]
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _package_files() -> set[str]:
    """What the installed package needs: every module, preset and py.typed, relative to src/."""
    files = [*SRC.rglob("*.py"), *(SRC / "presets").glob("*.yaml"), SRC / "py.typed"]
    return {p.relative_to(SRC.parent).as_posix() for p in files if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_wheel_and_sdist_carry_what_the_package_needs(dists):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"a3c-{VERSION}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert _package_files() <= names, f"missing from the wheel: {sorted(_package_files() - names)}"
    assert {
        "a3c/presets/classic_control.yaml",
        "a3c/py.typed",
        "a3c/demos/cliff.py",
        "a3c/demos/cliff_cli.py",
        "a3c/__main__.py",
    } <= names
    assert f"{info}/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert "Requires-Dist: torch>=2.3" in metadata and "Classifier: Typing :: Typed" in metadata
    assert "a3c = a3c.cli:main" in entry_points

    with tarfile.open(dists["sdist"]) as sdist:
        top = f"a3c-{VERSION}/"
        members = {m.name.removeprefix(top) for m in sdist.getmembers()}
    needed = {
        "LICENSE",
        "README.md",
        "constraints.txt",
        "pyproject.toml",
        "MANIFEST.in",
        "tests/test_package.py",
    }
    needed |= {f"src/{name}" for name in _package_files()}
    assert needed <= members, f"missing from the sdist: {sorted(needed - members)}"


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{cmd} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_there(dists, workspace):
    venv, cwd = workspace / "venv", workspace / "user"
    cwd.mkdir()
    bin_dir, python = venv / "bin", str(venv / "bin" / "python")
    # The venv's own interpreter and command, with nothing of this checkout or of the dev venv.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    _run([sys.executable, "-m", "venv", str(venv)], cwd, env, timeout=120)
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "-c",
            str(ROOT / "constraints.txt"),
            str(dists["wheel"]),
        ],
        cwd,
        env,
        timeout=600,
    )
    _run([python, "-m", "pip", "check"], cwd, env, timeout=120)

    where = _run(
        [python, "-c", "import a3c; print(a3c.__file__); print(a3c.__version__)"],
        cwd,
        env,
        timeout=120,
    ).stdout.split()
    assert Path(where[0]).resolve().is_relative_to(venv.resolve()), (
        f"a3c imported from {where[0]}, not the fresh venv"
    )
    assert where[1] == VERSION

    assert shutil.which("a3c", path=env["PATH"]) == str(bin_dir / "a3c"), (
        "the venv's own a3c command"
    )
    assert _run(["a3c", "--version"], cwd, env, timeout=60).stdout == f"a3c {VERSION}\n"
    assert (
        _run([python, "-m", "a3c", "--version"], cwd, env, timeout=60).stdout == f"a3c {VERSION}\n"
    )

    train = _run(["a3c", "train", "CartPole-v1", "--total-steps", "20000"], cwd, env, timeout=300)
    run_dirs = list((cwd / "runs").glob("CartPole-v1-*"))
    assert len(run_dirs) == 1, train.stdout
    assert (run_dirs[0] / "progress.csv").is_file()
    summary = json.loads((run_dirs[0] / "summary.json").read_text())
    assert summary["steps"] >= 20000 or summary["stop_reason"] == "target_return", summary
    print(train.stdout.strip().splitlines()[-1])

    cliff = _run(["a3c", "cliff", "--episodes", "50"], cwd, env, timeout=300)
    assert "cliff: greedy return" in cliff.stdout
    assert len(list((cwd / "runs").glob("cliff-*/summary.json"))) == 1, cliff.stdout
    print(cliff.stdout.strip().splitlines()[-1])
