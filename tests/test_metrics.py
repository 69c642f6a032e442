"""The metrics table: progress.csv columns, TensorBoard tags and the docs' list come from one
declaration; worker reports and Stats aggregate the per-update metrics it names; `a3c.io` writes
whole files atomically and JSON without NaN."""

from __future__ import annotations

import json
import math

import pytest

from a3c import io, metrics
from a3c.algo import LossTerms
from a3c.errors import first_line
from a3c.metrics import METRICS, PER_UPDATE_METRICS, PROGRESS_COLUMNS, Stats, WorkerReport


def test_progress_columns_and_tags_come_from_metrics():
    assert PROGRESS_COLUMNS == tuple(m.column for m in METRICS if m.file == metrics.PROGRESS)
    assert metrics.EVAL_COLUMNS == tuple(m.column for m in METRICS if m.file == metrics.EVAL)
    assert {m.file for m in METRICS} == {metrics.PROGRESS, metrics.EVAL}
    for columns in (PROGRESS_COLUMNS, metrics.EVAL_COLUMNS):
        assert len(set(columns)) == len(columns) and columns[0] == "steps"
    assert metrics.TENSORBOARD_TAGS == {
        m.column: m.tag for m in METRICS if m.tag is not None and m.file == metrics.PROGRESS
    }
    # the x axis of each file
    assert [m.column for m in METRICS if m.tag is None] == ["steps", "steps"]
    tags = [m.tag for m in METRICS if m.tag is not None]
    assert len(set(tags)) == len(tags), "each tag is named once"
    for m in METRICS:
        assert m.how in metrics.AGGREGATIONS and m.doc and "\n" not in m.doc, m
        group = ("rollout", "train", "time", "workers") if m.file == metrics.PROGRESS else ("eval",)
        assert m.tag is None or m.tag.split("/")[0] in group, m
    # eval.csv: the columns the evaluator reports, under Stable-Baselines3's EvalCallback names.
    assert metrics.EVAL_COLUMNS == (
        "steps",
        "wall_s",
        "mean",
        "std",
        "min",
        "max",
        "episodes",
        "mean_length",
        "duration_s",
    )
    assert (
        metrics.EVAL_TAGS["mean"] == "eval/mean_reward"
        and metrics.EVAL_TAGS["mean_length"] == "eval/mean_ep_length"
    )
    sb3 = {
        "return_mean": "rollout/ep_rew_mean",
        "length_mean": "rollout/ep_len_mean",
        "steps_per_s": "time/fps",
        "entropy_loss": "train/entropy_loss",
        "value_loss": "train/value_loss",
    }
    assert {k: metrics.TENSORBOARD_TAGS[k] for k in sb3} == sb3


def test_per_update_metrics_are_the_loss_terms_and_three_others():
    losses = [f for f in LossTerms._fields if f != "total"]
    assert list(metrics.LOSS_COLUMNS) == losses
    assert set(PER_UPDATE_METRICS) == {*losses, "grad_norm", "update_lag", "learning_rate"}
    assert "entropy" not in PROGRESS_COLUMNS and "entropy_loss" in PROGRESS_COLUMNS


def _report(
    worker: int, values: list[dict[str, float]], returns: list[float], lengths: list[int]
) -> WorkerReport:
    rep = WorkerReport(
        worker,
        steps=10 * len(values),
        updates=len(values),
        episode_returns=returns,
        episode_lengths=lengths,
    )
    for update in values:
        for name, value in update.items():
            rep.add(name, value)
    return rep


def test_stats_add_and_row_give_means_per_update():
    one = dict.fromkeys(PER_UPDATE_METRICS, 1.0) | {"policy_loss": 2.0, "update_lag": 3.0}
    two = dict.fromkeys(PER_UPDATE_METRICS, 3.0) | {"policy_loss": -1.0, "update_lag": 0.0}
    three = dict.fromkeys(PER_UPDATE_METRICS, 5.0) | {"policy_loss": 5.0, "update_lag": 6.0}
    a = _report(0, [one, two], returns=[1.0, 3.0], lengths=[10, 30])
    assert a.sums["policy_loss"] == 1.0 and a.sums["value_loss"] == 4.0
    b = _report(1, [three], returns=[5.0], lengths=[20])
    b.nonfinite_updates = 1
    stats = Stats(window=2)
    stats.add(a)
    stats.add(b)
    row = stats.row(wall_s=1.23456, workers_alive=2, worker_restarts=1)
    assert tuple(row) == PROGRESS_COLUMNS
    assert (
        row["steps"] == 30
        and row["updates"] == 3
        and row["nonfinite_updates"] == 1
        and row["episodes"] == 3
    )
    assert row["wall_s"] == 1.235 and row["workers_alive"] == 2 and row["worker_restarts"] == 1
    # The window holds the last 2 episodes: returns 3 and 5, lengths 30 and 20.
    assert row["return_mean"] == 4.0 and row["return_std"] == 1.0 and row["length_mean"] == 25.0
    assert row["policy_loss"] == pytest.approx((2 - 1 + 5) / 3) and row[
        "update_lag"
    ] == pytest.approx(3.0)
    assert (
        row["value_loss"]
        == row["entropy_loss"]
        == row["grad_norm"]
        == row["learning_rate"]
        == pytest.approx(3.0)
    )
    assert stats.return_mean == 4.0 and stats.window_full
    # The next interval starts empty: no updates, no means.
    again = stats.row(wall_s=2.0, workers_alive=2, worker_restarts=1)
    assert all(math.isnan(again[k]) for k in PER_UPDATE_METRICS) and again["updates"] == 3


def test_worker_report_refuses_an_unknown_metric():
    rep = WorkerReport(0)
    with pytest.raises(ValueError, match="not a per-update metric"):
        rep.add("entropy", 1.0)
    with pytest.raises(ValueError):
        rep.add("return_mean", 1.0)
    assert rep.sums == {}


@pytest.mark.parametrize("file", ["progress", "eval"])
def test_the_generated_table_has_a_row_per_column(file):
    table = metrics.markdown_table(file)
    assert table.splitlines()[0] == "| column | TensorBoard tag | meaning |"
    assert len(table.splitlines()) == 2 + len([m for m in METRICS if m.file == file])
    for m in (m for m in METRICS if m.file == file):
        assert f"| `{m.column}` |" in table


def test_io_writes_json_atomically_without_nan(tmp_path):
    path = tmp_path / "out.json"
    io.write_json_atomic(
        path,
        {
            "a": math.nan,
            "b": [1.5, math.inf, (2, 3)],
            "c": {"d": -math.inf},
            "p": tmp_path,
            "s": {4},
        },
    )
    text = path.read_text()
    assert text.endswith("}\n") and "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "a": None,
        "b": [1.5, None, [2, 3]],
        "c": {"d": None},
        "p": str(tmp_path),
        "s": [4],
    }
    io.write_text_atomic(path, "again\n")
    assert path.read_text() == "again\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"], "no temp file is left"
    with pytest.raises(FileNotFoundError):
        io.write_bytes_atomic(tmp_path / "missing" / "x.bin", b"x")
    assert (
        io.finite_or_none(2) == 2.0
        and io.finite_or_none(math.nan) is None
        and io.finite_or_none(True) is None
    )
    assert io.finite_or_none(None) is None and io.finite_or_none(-1.5) == -1.5


def test_first_line():
    assert first_line(ValueError("\n  first\nsecond\n")) == "first"
    assert first_line(KeyboardInterrupt()) == "KeyboardInterrupt"
