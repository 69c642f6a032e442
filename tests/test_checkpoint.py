"""Checkpoints: the safe format (safetensors + JSON, never pickle), atomic writes, the newest K
kept, fallback from a corrupt newest checkpoint, and one-line errors (exit 2) for unusable ones."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from a3c import A3C, checkpoint, run_checkpoints
from a3c.checkpoint import CheckpointError

A3C_CLI = [sys.executable, "-m", "a3c.cli"]


class _Payload:
    """Unpickling this creates the marker file: the code a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tensors(workers: int = 2, n: int = 10, adam: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = {
        "params": torch.randn(n, generator=g),
        "counters.worker_steps": torch.tensor([100, 28] + [0] * (workers - 2), dtype=torch.int64),
        "counters.worker_updates": torch.tensor([5, 2] + [0] * (workers - 2), dtype=torch.int64),
        "counters.worker_nonfinite": torch.zeros(workers, dtype=torch.int64),
        "obs_stats": torch.rand(workers, 7, dtype=torch.float64, generator=g),
    }
    if adam:
        t |= {
            "optim.exp_avg": torch.randn(n, generator=g),
            "optim.exp_avg_sq": torch.rand(n, generator=g),
            "optim.step": torch.tensor([7.0], dtype=torch.float64),
        }
    return t


def _meta(steps: int = 128, n: int = 10) -> dict:
    return {"config": {}, "steps": steps, "episodes": 3, "updates": 7, "architecture": [["w", [n]]]}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A short serial CartPole run with a few checkpoints (the real format, written by the
    trainer)."""
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=2,
        seed=0,
        total_steps=4_000,
        log_interval=1_000,
        checkpoint_interval_steps=1_000,
    )
    agent.learn(run_dir=run_dir, progress="none")
    return run_dir


def _copy_latest(run_dir: Path, dest: Path) -> Path:
    ckpt = run_checkpoints.find(run_dir)
    shutil.copytree(ckpt.path, dest)
    return dest


# --- format and atomic writes ------------------------------------------------------------------


def test_round_trip_keeps_every_tensor_bit_for_bit(tmp_path):
    tensors = _tensors()
    path = checkpoint.write(tmp_path / "c", tensors, _meta())
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "tensors.safetensors"]
    ckpt = checkpoint.read(path)
    assert ckpt.tensors.keys() == tensors.keys()
    for k, v in tensors.items():
        assert ckpt.tensors[k].dtype == v.dtype and torch.equal(ckpt.tensors[k], v), k
    assert ckpt.meta["format"] == "a3c-checkpoint" and ckpt.meta["format_version"] == 1
    assert ckpt.steps == 128 and len(ckpt.meta["tensors_sha256"]) == 64
    data = (path / "tensors.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert json.loads(data[8 : 8 + n])["params"]["dtype"] == "F32", (
        "a plain safetensors header, no pickle"
    )


def test_run_checkpoints_keep_the_newest_k_and_point_latest_at_the_newest(tmp_path):
    # a killed writer's leftover
    (tmp_path / "checkpoints" / "step_000000000050.tmp").mkdir(parents=True)
    for steps in (128, 256, 384, 512, 640):
        t = _tensors()
        t["counters.worker_steps"] = torch.tensor([steps, 0])
        run_checkpoints.save_in_run(tmp_path, t, _meta(steps), keep=3)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_000000000384", "step_000000000512", "step_000000000640"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000000000640"
    assert run_checkpoints.find(tmp_path).steps == 640


def test_rewriting_a_checkpoint_replaces_it_and_never_clobbers_other_files(tmp_path):
    checkpoint.write(tmp_path / "c", _tensors(), _meta(128))
    t = _tensors()
    t["counters.worker_steps"] = torch.tensor([200, 56])
    checkpoint.write(tmp_path / "c", t, _meta(256))
    assert checkpoint.read(tmp_path / "c").steps == 256
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not an a3c checkpoint; not overwriting"):
        checkpoint.write(tmp_path / "notes", _tensors(), _meta())
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before_with_a_warning(
    trained_run, tmp_path, caplog
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    folder = run / "checkpoints"
    newest, before = (
        run_checkpoints.list_checkpoints(folder)[-1],
        run_checkpoints.list_checkpoints(folder)[-2],
    )
    data = (newest / "tensors.safetensors").read_bytes()
    (newest / "tensors.safetensors").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="a3c"):
        ckpt = run_checkpoints.find(run)
    assert ckpt.path == before
    assert any(
        "truncated" in r.getMessage() and "trying the checkpoint before" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(CheckpointError, match="truncated"):
        run_checkpoints.find(newest)  # a checkpoint named directly is never swapped for another


# --- what loading rejects ----------------------------------------------------------------------


def test_a_pickle_payload_is_rejected_without_running_it(tmp_path):
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists(), "the payload is live: unpickling it runs code"
    live.unlink()

    marker = tmp_path / "marker"
    path = checkpoint.write(tmp_path / "c", _tensors(), _meta())
    (path / "tensors.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="not a safetensors file .it looks like a pickle"):
        checkpoint.read(path)
    lone = tmp_path / "model.pkl"
    lone.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="is not an a3c checkpoint"):
        run_checkpoints.find(lone)
    assert not marker.exists(), "no code from a checkpoint may run"


def test_a_torch_save_zip_is_rejected(tmp_path):
    path = checkpoint.write(tmp_path / "c", _tensors(), _meta())
    with zipfile.ZipFile(path / "tensors.safetensors", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError, match="zip"):
        checkpoint.read(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda p: (p / "tensors.safetensors").write_bytes(
                (p / "tensors.safetensors").read_bytes()[:-9]
            ),
            "truncated",
        ),
        (
            lambda p: (p / "tensors.safetensors").write_bytes(
                (p / "tensors.safetensors").read_bytes()[:5]
            ),
            "truncated",
        ),
        (lambda p: (p / "meta.json").write_text('{"format": "a3c-checkpoint", '), "not valid JSON"),
        (lambda p: (p / "meta.json").unlink(), "has no meta.json"),
        (lambda p: (p / "tensors.safetensors").unlink(), "has no tensors.safetensors"),
        (lambda p: _edit_meta(p, format_version=2), "format version 2; this a3c reads version 1"),
        (lambda p: _edit_meta(p, format="something-else"), "does not say format"),
        (lambda p: _edit_meta(p, steps=999), "counters sum to 128 steps"),
        (lambda p: _edit_meta(p, architecture=[["w", [11]]]), "its architecture says 11"),
        (lambda p: _flip_last_byte(p / "tensors.safetensors"), "does not match its checksum"),
    ],
    ids=[
        "truncated-tail",
        "truncated-header",
        "bad-json",
        "no-meta",
        "no-tensors",
        "newer-format",
        "foreign-format",
        "counters",
        "size",
        "checksum",
    ],
)
def test_damaged_checkpoints_are_one_line_errors(tmp_path, damage, message):
    path = checkpoint.write(tmp_path / "c", _tensors(), _meta())
    damage(path)
    with pytest.raises(CheckpointError, match=message) as info:
        checkpoint.read(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("params", float("nan"), "non-finite parameters"),
        ("obs_stats", float("nan"), r"non-finite observation statistics \('obs_stats'\)"),
        (
            "optim.exp_avg_sq",
            float("inf"),
            r"non-finite optimizer statistics \('optim.exp_avg_sq'\)",
        ),
        ("optim.step", float("-inf"), r"non-finite optimizer statistics \('optim.step'\)"),
    ],
)
def test_non_finite_statistics_are_refused(tmp_path, key, value, message):
    tensors = _tensors()
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = value
    path = checkpoint.write(tmp_path / "c", tensors, _meta())  # a sound file: its checksum matches
    with pytest.raises(CheckpointError, match=message) as info:
        checkpoint.read(path)
    assert "\n" not in str(info.value)


def _edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_another_architecture_names_the_first_parameter_that_differs(trained_run):
    ckpt = run_checkpoints.find(trained_run)
    other = A3C("CartPole-v1", hidden=[32, 32])
    with pytest.raises(
        CheckpointError,
        match=r"another architecture: parameter 'pi_body.0.weight' is \[64, 4\] there, \[32, 4\] "
        r"here",
    ):
        checkpoint.check_architecture(ckpt, other.model)
    checkpoint.check_architecture(ckpt, A3C("CartPole-v1").model)  # the same architecture passes


# --- the command line --------------------------------------------------------------------------


def test_unusable_checkpoints_exit_2_with_one_line_and_run_no_code(trained_run, tmp_path):
    marker = tmp_path / "marker"
    pickled = _copy_latest(trained_run, tmp_path / "pickled")
    (pickled / "tensors.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    lone = tmp_path / "model.pkl"
    lone.write_bytes(pickle.dumps(_Payload(marker)))
    truncated = _copy_latest(trained_run, tmp_path / "truncated")
    data = (truncated / "tensors.safetensors").read_bytes()
    (truncated / "tensors.safetensors").write_bytes(data[: len(data) - 100])
    # Another architecture: a run whose latest checkpoint came from a run of a smaller model.
    small = A3C("CartPole-v1", backend="serial", workers=2, total_steps=500, hidden=[16])
    small.learn(run_dir=tmp_path / "small", progress="none")
    mixed = tmp_path / "mixed"
    shutil.copytree(trained_run, mixed)
    foreign = run_checkpoints.find(tmp_path / "small")
    shutil.copytree(foreign.path, mixed / "checkpoints" / "step_999999999999")
    (mixed / "checkpoints" / "latest").write_text("step_999999999999\n")
    # ... and a checkpoint whose recorded config says one model while its tensors hold another.
    relabeled = _copy_latest(tmp_path / "small", tmp_path / "relabeled")
    meta = json.loads((relabeled / "meta.json").read_text())
    meta["config"]["model"]["hidden"] = [64, 64]
    (relabeled / "meta.json").write_text(json.dumps(meta))

    cases = [
        (["eval", str(pickled)], "not a safetensors file (it looks like a pickle)"),
        (["eval", str(lone)], "is not an a3c checkpoint"),
        (["eval", str(truncated), "--episodes", "1"], "is truncated"),
        (
            ["train", "--resume", str(mixed)],
            "is for another architecture: parameter 'pi_body.0.weight' is [16, 4] there, [64, 4] "
            "here",
        ),
        (["eval", str(relabeled), "--episodes", "1"], "is for another architecture"),
    ]
    procs = [
        subprocess.Popen(
            [*A3C_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args, _ in cases
    ]
    try:
        for proc, (args, message) in zip(procs, cases, strict=True):
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 2, (args, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("a3c: error: "), (args, err)
            assert message in lines[0], (args, lines[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert not marker.exists(), "no code from a checkpoint may run"
    assert (mixed / "progress.csv").read_bytes() == (trained_run / "progress.csv").read_bytes(), (
        "a refused resume leaves the run alone"
    )
