"""Storage faults: a writer killed at any step of a checkpoint, a full disk (ENOSPC, simulated by a
patched `os` inside a3c.io and a3c.checkpoint), a read-only directory. Every command ends in one
line and no traceback, and what was complete before the fault stays loadable."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import a3c.checkpoint
import a3c.io
from a3c import A3C, checkpoint, cli, evaluation, run_checkpoints
from a3c.errors import ConfigError
from a3c.io import write_json_atomic

A3C_CLI = [sys.executable, "-m", "a3c.cli"]
TIMEOUT_S = 120
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Crash(BaseException):
    """The process dies here (a BaseException: no `except OSError` on the way takes it)."""


class Faults:
    """Counts the steps of a write through the patched `os` and fails at step `at` (None: never)."""

    STEPS = frozenset({"open", "fdopen", "fsync", "replace"})

    def __init__(
        self, at: int | None = None, error: BaseException | None = None, only: str | None = None
    ) -> None:
        self.at, self.error, self.only = at, error, only
        self.events: list[str] = []

    def tick(self, event: str) -> bool:
        """Record a step; whether it is the one that fails."""
        if self.only is not None and f".{self.only}" not in event:
            return False
        self.events.append(event)
        return self.at is not None and len(self.events) - 1 == self.at

    def fail(self) -> None:
        raise self.error if self.error is not None else Crash()


class FaultyOS:
    """`os` as a module sees it, with the write steps counted by `faults` (and failing there)."""

    def __init__(self, faults: Faults, label: str) -> None:
        self._faults, self._label = faults, label

    def __getattr__(self, name: str):
        real = getattr(os, name)
        if name not in Faults.STEPS:
            return real

        def step(*args, **kwargs):
            detail = f"{Path(args[0]).name}->{Path(args[1]).name}" if name == "replace" else ""
            if self._faults.tick(f"{self._label}.{name}({detail})"):
                self._faults.fail()
            result = real(*args, **kwargs)
            return _FaultyFile(result, self._faults, self._label) if name == "fdopen" else result

        return step


class _FaultyFile:
    """A file whose write is a step: at the failing one, half the data is written, then it fails."""

    def __init__(self, f, faults: Faults, label: str) -> None:
        self._f, self._faults, self._label = f, faults, label

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def write(self, data: bytes) -> int:
        if self._faults.tick(f"{self._label}.write"):
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            self._faults.fail()
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)


@contextlib.contextmanager
def faulty(monkeypatch, faults: Faults):
    with monkeypatch.context() as m:
        m.setattr(a3c.io, "os", FaultyOS(faults, "io"))
        m.setattr(a3c.checkpoint, "os", FaultyOS(faults, "checkpoint"))
        yield faults


def _tensors(steps: int, marker: float = 0.0) -> dict[str, torch.Tensor]:
    return {
        "params": torch.full((10,), marker),
        "counters.worker_steps": torch.tensor([steps, 0], dtype=torch.int64),
        "counters.worker_updates": torch.tensor([1, 0], dtype=torch.int64),
        "counters.worker_nonfinite": torch.zeros(2, dtype=torch.int64),
        "optim.square_avg": torch.zeros(10),
    }


def _save(run: Path, steps: int, marker: float = 0.0) -> Path:
    meta = {
        "config": {},
        "steps": steps,
        "episodes": 1,
        "updates": 1,
        "architecture": [["w", [10]]],
    }
    return run_checkpoints.save_in_run(run, _tensors(steps, marker), meta, keep=3)


def _leftovers(run: Path) -> list[str]:
    return sorted(
        p.name for p in (run / "checkpoints").iterdir() if p.name.endswith((".tmp", ".old"))
    )


# --- a checkpoint interrupted at every step of its write ----------------------------------------


@pytest.mark.parametrize("full_disk", [False, True], ids=["killed", "enospc"])
@pytest.mark.parametrize("same_step", [False, True], ids=["new-step", "same-step-replace"])
def test_a_checkpoint_interrupted_at_any_step_leaves_the_newest_complete_one(
    tmp_path, monkeypatch, same_step, full_disk
):
    def prepare(run: Path) -> None:
        _save(run, 128, marker=1.0)
        if same_step:
            _save(run, 256, marker=2.0)

    new_steps = 256 if same_step else 384
    dry = tmp_path / "dry"
    prepare(dry)
    with faulty(monkeypatch, Faults()) as counted:
        _save(dry, new_steps, marker=3.0)
    name = run_checkpoints.name_for(new_steps)
    commit = counted.events.index(f"checkpoint.replace({name}.tmp->{name})")
    assert len(counted.events) > commit + 3, counted.events  # steps after it: the fsync, `latest`
    for k in range(len(counted.events)):
        run = tmp_path / f"k{k}"
        prepare(run)
        failed = True
        if full_disk:  # an error, not a kill: the writer cleans up (a folder's fsync may ignore it)
            with faulty(monkeypatch, Faults(at=k, error=ENOSPC)), contextlib.suppress(OSError):
                _save(run, new_steps, marker=3.0)
                failed = False
            assert [n for n in _leftovers(run) if not n.endswith(".old")] == [], (
                k,
                counted.events[k],
            )
        else:
            with faulty(monkeypatch, Faults(at=k)), pytest.raises(Crash):
                _save(run, new_steps, marker=3.0)
        ckpt = run_checkpoints.find(run)
        if k > commit or not failed:
            expected = (new_steps, 3.0)
        else:
            expected = (256, 2.0) if same_step else (128, 1.0)
        assert (ckpt.steps, float(ckpt.tensors["params"][0])) == expected, (
            k,
            counted.events[k],
            ckpt.path,
        )
        _save(run, 512)  # the next write leaves nothing of the killed one behind
        assert _leftovers(run) == [], (k, counted.events[k])
        assert run_checkpoints.find(run).steps == 512
        assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith("latest.")]


def test_the_newest_complete_checkpoint_wins_over_what_latest_names(tmp_path):
    _save(tmp_path, 128)
    _save(tmp_path, 256)
    # killed before `latest` moved
    (tmp_path / "checkpoints" / "latest").write_text("step_000000000128\n")
    assert run_checkpoints.find(tmp_path).steps == 256


def test_stale_tmp_and_old_entries_are_gone_after_the_next_write(tmp_path):
    folder = tmp_path / "checkpoints"
    _save(tmp_path, 128)
    (folder / "step_000000000064.tmp").mkdir()
    (folder / "step_000000000064.tmp" / "tensors.safetensors").write_bytes(b"half")
    (folder / "step_000000000128.old").mkdir()  # beside a complete step_128
    (folder / "latest.123-abcd1234.tmp").write_text("step_")
    _save(tmp_path, 256)
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in folder.iterdir()) == [
        "latest",
        "step_000000000128",
        "step_000000000256",
    ]
    # write() on its own cleans its name's leftovers too
    lone = tmp_path / "agent"
    checkpoint.write(
        lone,
        _tensors(128),
        {"config": {}, "steps": 128, "episodes": 1, "updates": 1, "architecture": [["w", [10]]]},
    )
    (tmp_path / "agent.tmp").mkdir()
    (tmp_path / "agent.old").mkdir()
    checkpoint.write(
        lone,
        _tensors(128, 5.0),
        {"config": {}, "steps": 128, "episodes": 1, "updates": 1, "architecture": [["w", [10]]]},
    )
    assert not (tmp_path / "agent.tmp").exists() and not (tmp_path / "agent.old").exists()
    assert float(checkpoint.read(lone).tensors["params"][0]) == 5.0


# --- a full disk -------------------------------------------------------------------------------


def test_write_json_atomic_keeps_the_previous_file_when_the_disk_fills_up(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"steps": 1})
    with faulty(monkeypatch, Faults()) as counted:
        write_json_atomic(tmp_path / "other.json", {"steps": 2})
    assert (
        "io.write" in counted.events and "io.replace(other.json->other.json)" not in counted.events
    )
    for k in range(len(counted.events)):
        with faulty(monkeypatch, Faults(at=k, error=ENOSPC)):
            try:
                write_json_atomic(path, {"steps": 2, "k": k})
            except OSError as e:
                assert e.errno == errno.ENOSPC
        content = json.loads(path.read_text())  # never a 0-byte or half file
        assert content in ({"steps": 1}, {"steps": 2, "k": k}), (k, counted.events[k])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json", "summary.json"], (
            "no temp file left"
        )
        write_json_atomic(path, {"steps": 1})


@pytest.fixture(scope="module")
def agent_checkpoint(tmp_path_factory) -> Path:
    """An untrained CartPole agent's checkpoint (serial backend: no processes)."""
    return A3C("CartPole-v1", backend="serial", workers=1).save(
        tmp_path_factory.mktemp("agent") / "ckpt"
    )


@pytest.fixture
def no_episodes(monkeypatch):
    """evaluation.evaluate fails the test if an episode would be played."""

    def refuse(*args, **kwargs):
        raise AssertionError("an episode was played before the output was checked")

    monkeypatch.setattr(evaluation, "evaluate", refuse)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("a3c: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_eval_refuses_a_missing_output_folder_before_playing(
    agent_checkpoint, tmp_path, capsys, no_episodes
):
    out = tmp_path / "no-such-folder" / "eval.json"
    assert cli.main(["eval", str(agent_checkpoint), "--episodes", "1", "--output", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"its folder {out.parent} does not exist" in line
    assert not out.parent.exists(), "a missing --output folder is an error, not created"
    assert cli.main(["eval", str(agent_checkpoint), "--output", str(tmp_path)]) == 2
    assert "is a directory" in _one_error_line(capsys.readouterr().err)


def test_eval_prints_its_results_when_the_disk_fills_up_after_playing(
    agent_checkpoint, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "eval.json"
    with faulty(monkeypatch, Faults(at=0, error=ENOSPC, only="fsync")):
        code = cli.main(["eval", str(agent_checkpoint), "--episodes", "2", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "mean return" in captured.out and "over 2 episodes" in captured.out
    line = _one_error_line(captured.err)
    assert f"cannot write {out}: No space left on device" in line
    assert list(tmp_path.iterdir()) == [], "neither eval.json nor a temp file"


def _fake_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "progress.csv").write_text("steps,wall_s,return_mean\n100,1.0,10.0\n200,2.0,20.0\n")
    return path


def test_plot_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    run = _fake_run(tmp_path / "run")
    with faulty(monkeypatch, Faults(at=0, error=ENOSPC, only="write")):
        code = cli.main(["plot", str(run)])
    assert code == 2
    assert f"cannot write {run / 'curves.png'}: No space left on device" in _one_error_line(
        capsys.readouterr().err
    )
    assert sorted(p.name for p in run.iterdir()) == ["progress.csv"]


def test_enospc_while_a_run_writes_progress_csv_exits_1_and_keeps_its_checkpoints(
    tmp_path, capsys, monkeypatch
):
    from a3c.runlog import RunDir

    run = tmp_path / "run"
    write_row, rows = RunDir.write_row, []

    def filling_up(self, row):
        rows.append(row)
        if len(rows) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / "progress.csv"))
        write_row(self, row)

    monkeypatch.setattr(RunDir, "write_row", filling_up)
    argv = [
        "train",
        "CartPole-v1",
        "--backend",
        "serial",
        "--workers",
        "1",
        "--total-steps",
        "20000",
        "--run-dir",
        str(run),
        "--progress",
        "none",
        "--set",
        "log.log_interval=500",
        "--set",
        "log.checkpoint_interval_steps=500",
    ]
    assert cli.main(argv) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert (
        line
        == f"a3c: error: No space left on device: {run / 'progress.csv'} (the run directory keeps "
        "what was complete)"
    )
    assert run_checkpoints.find(run).steps >= 1000, "the checkpoints written before the fault load"
    assert A3C.load(run).num_timesteps >= 1000


def test_enospc_on_summary_json_exits_1_and_the_final_checkpoint_loads(
    tmp_path, capsys, monkeypatch
):
    import a3c.runlog

    run = tmp_path / "run"

    def filling_up(path, data):
        if Path(path).name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write_json_atomic(path, data)

    monkeypatch.setattr(a3c.runlog, "write_json_atomic", filling_up)
    argv = [
        "train",
        "CartPole-v1",
        "--backend",
        "serial",
        "--workers",
        "1",
        "--total-steps",
        "1000",
        "--run-dir",
        str(run),
        "--progress",
        "none",
    ]
    assert cli.main(argv) == 1
    assert "No space left on device: " in _one_error_line(capsys.readouterr().err)
    assert json.loads((run / "config.json").read_text())["env"]["id"] == "CartPole-v1"
    assert run_checkpoints.find(run).steps >= 1000 and not (run / "summary.json").exists()


def test_a_run_directory_that_cannot_be_opened_is_a_config_error_and_unlocked(
    tmp_path, monkeypatch
):
    import a3c.runlog
    from a3c.runlog import RunDir

    def no_events(path, resume_steps):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path / "events.out.tfevents"))

    monkeypatch.setattr(a3c.runlog, "_summary_writer", no_events)
    with pytest.raises(
        ConfigError, match="cannot write run directory .*: No space left on device"
    ) as info:
        RunDir(tmp_path / "run")
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    RunDir(tmp_path / "run2").close()
    (tmp_path / "run" / "progress.csv").unlink()
    (tmp_path / "run" / "episodes.csv").unlink()
    RunDir(tmp_path / "run").close()  # the failed attempt let go of the lock


# --- a read-only directory ---------------------------------------------------------------------


@pytest.fixture
def read_only():
    """Make a folder read-only: chmod for a normal user; as root (where chmod does not stop writes)
    a read-only bind mount of it onto itself, or the test is skipped."""
    mounted: list[Path] = []
    chmodded: list[Path] = []

    def make(path: Path) -> Path:
        if os.geteuid() != 0:
            for p in [path, *path.rglob("*")]:
                p.chmod(0o555 if p.is_dir() else 0o444)
                chmodded.append(p)
            return path
        bind = subprocess.run(
            ["mount", "--bind", str(path), str(path)], capture_output=True, text=True, timeout=30
        )
        if bind.returncode != 0:
            pytest.skip(
                "running as root, where chmod does not stop writes, and no bind mount here "
                f"({bind.stderr.strip()})"
            )
        mounted.append(path)
        ro = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if ro.returncode != 0:
            pytest.skip(
                "running as root, where chmod does not stop writes, and no read-only remount "
                f"here ({ro.stderr.strip()})"
            )
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False)
    for path in chmodded:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*A3C_CLI, *args], capture_output=True, text=True, timeout=TIMEOUT_S)


def test_eval_refuses_a_read_only_output_before_playing(
    agent_checkpoint, tmp_path, capsys, no_episodes, read_only
):
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(folder)
    assert cli.main(["eval", str(agent_checkpoint), "--output", str(folder / "eval.json")]) == 2
    assert f"cannot write into {folder}" in _one_error_line(capsys.readouterr().err)
    ckpt = tmp_path / "ckpt"
    checkpoint.write(ckpt, *_agent_state(agent_checkpoint))
    read_only(ckpt)
    assert cli.main(["eval", str(ckpt)]) == 2  # the default output, eval.json beside the checkpoint
    assert f"eval.json {ckpt / 'eval.json'}: cannot write into {ckpt}" in _one_error_line(
        capsys.readouterr().err
    )


def _agent_state(path: Path) -> tuple[dict, dict]:
    ckpt = checkpoint.read(path)
    return ckpt.tensors, {
        k: v
        for k, v in ckpt.meta.items()
        if k not in ("format", "format_version", "tensors_bytes", "tensors_sha256")
    }


def test_plot_of_a_read_only_run_or_into_a_read_only_folder_is_one_line(tmp_path, read_only):
    run = read_only(_fake_run(tmp_path / "run"))
    result = _cli("plot", str(run))
    assert result.returncode == 2, result.stderr
    assert "curves.png" in _one_error_line(result.stderr) and "cannot write into" in result.stderr
    out = read_only(_fake_run(tmp_path / "out-folder"))
    result = _cli("plot", str(_fake_run(tmp_path / "writable")), "--out", str(out / "curves.png"))
    assert result.returncode == 2, result.stderr
    assert f"--out {out / 'curves.png'}: cannot write into {out}" in _one_error_line(result.stderr)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("short") / "run"
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=1,
        total_steps=1000,
        log_interval=500,
        checkpoint_interval_steps=500,
    )
    agent.learn(run_dir=run, progress="none")
    return run


def test_resume_of_a_read_only_run_and_a_run_under_a_read_only_folder(
    short_run, tmp_path, read_only
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    read_only(run)
    result = _cli("train", "--resume", str(run), "--total-steps", "3000", "--backend", "serial")
    assert result.returncode == 2, result.stderr
    assert (
        f"cannot write run directory {run}: Read-only file system" in _one_error_line(result.stderr)
        or os.geteuid() != 0
    )
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before, "a refused resume changes nothing"
    result = _cli("train", "CartPole-v1", "--backend", "serial", "--run-dir", str(run / "sub"))
    assert result.returncode == 2, result.stderr
    assert f"cannot create run directory {run / 'sub'}" in _one_error_line(result.stderr)
    assert A3C.load(run).num_timesteps == run_checkpoints.find(short_run).steps, (
        "what was complete stays loadable"
    )
