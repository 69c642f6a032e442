"""Event callbacks (a3c/callbacks.py): the order of the events on a short run, the built-in stops,
and a callback that raises: one line naming it, a final checkpoint, the summary."""

from __future__ import annotations

import json

import pytest

from a3c import A3C, Callback, CallbackError, StopAtThreshold, StopOnNoImprovement
from a3c.errors import ConfigError

SHORT = dict(
    backend="serial",
    workers=2,
    target_return=None,
    log_interval=1_000,
    max_time=120,
)


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_training_start(self, info):
        self.events.append(("start", info["steps"], str(info["run_dir"])))

    def on_progress(self, row):
        self.events.append(("progress", row["steps"]))

    def on_evaluation(self, result, is_new_best):
        self.events.append(("evaluation", result["steps"], result["mean"], is_new_best))

    def on_checkpoint(self, path):
        self.events.append(("checkpoint", path.name))

    def on_training_end(self, summary):
        self.events.append(("end", summary["stop_reason"], summary["steps"]))


def test_events_arrive_in_order_on_a_short_run(tmp_path):
    rec = Recorder()
    agent = A3C(
        "fake_envs:FixedLength",
        total_steps=6_000,
        checkpoint_interval_steps=2_000,
        checkpoint_interval_s=None,
        **SHORT,
        **{"eval.interval_steps": 2_000, "eval.episodes": 2},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none", callback=rec)
    kinds = [e[0] for e in rec.events]
    assert rec.events[0] == ("start", 0, str(tmp_path / "run"))
    assert kinds[-2:] == ["checkpoint", "end"] and kinds.count("start") == kinds.count("end") == 1
    assert rec.events[-1] == ("end", "total_steps", summary["steps"])
    final = rec.events[-2][1]
    assert (tmp_path / "run" / "checkpoints" / final).is_dir() and final == (
        json.loads((tmp_path / "run" / "summary.json").read_text())["checkpoint"].split("/")[-1]
    )
    progress = [e[1] for e in rec.events if e[0] == "progress"]
    assert len(progress) >= 5 and progress == sorted(progress)
    assert kinds.count("checkpoint") >= 3  # 2k, 4k (6k may be the final one)
    evals = [e for e in rec.events if e[0] == "evaluation"]
    # FixedLength pays 7 per episode whatever the policy: the first is the best, a tie is not new
    assert len(evals) >= 2 and [e[3] for e in evals] == [True] + [False] * (len(evals) - 1)
    assert all(e[2] == 7.0 for e in evals)
    # the rows that the callback saw are progress.csv's
    rows = (tmp_path / "run" / "progress.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == progress


def test_stop_on_no_improvement_stops_after_n_evaluations_without_a_new_best(tmp_path):
    rec = Recorder()
    agent = A3C(
        "fake_envs:FixedLength",
        total_steps=1_000_000,
        **SHORT,
        **{"eval.interval_steps": 1_000, "eval.episodes": 1},
    )
    summary = agent.learn(
        run_dir=tmp_path / "run", progress="none", callback=[rec, StopOnNoImprovement(patience=3)]
    )
    evals = [e for e in rec.events if e[0] == "evaluation"]
    # the first is the best; the next 3 bring none: stopped at the 4th
    assert summary["stop_reason"] == "callback" and len(evals) == 4, evals
    assert summary["eval"]["evaluations"] == 4 and summary["steps"] < 100_000
    assert summary["checkpoint"] is not None


def test_stop_at_threshold_on_the_training_return(tmp_path):
    agent = A3C("fake_envs:FixedLength", total_steps=1_000_000, **SHORT)
    summary = agent.learn(
        run_dir=tmp_path / "run", progress="none", callback=StopAtThreshold(7.0, on="return")
    )
    assert summary["stop_reason"] == "callback" and summary["steps"] <= 2_000


def test_a_function_of_the_row_still_works(tmp_path):
    seen: list[int] = []

    def stop_after_two(row):
        seen.append(row["steps"])
        return len(seen) < 2

    agent = A3C("fake_envs:FixedLength", total_steps=1_000_000, **SHORT)
    summary = agent.learn(run_dir=tmp_path / "run", progress="none", callback=stop_after_two)
    assert summary["stop_reason"] == "callback" and len(seen) == 2


class Boom(Callback):
    def on_progress(self, row):
        if row["steps"] >= 2_000:
            raise ValueError("boom\nand a second line")


def test_a_raising_callback_stops_with_one_line_a_checkpoint_and_a_summary(tmp_path):
    run = tmp_path / "run"
    agent = A3C("fake_envs:FixedLength", total_steps=1_000_000, **SHORT)
    with pytest.raises(CallbackError) as e:
        agent.learn(run_dir=run, progress="none", callback=[Recorder(), Boom()])
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("the callback Boom.on_progress raised ValueError: boom; ")
    assert "the last checkpoint is" in message
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "callback_error" and summary["error"] == message
    loaded = A3C.load(run)  # the final checkpoint
    assert loaded.num_timesteps == summary["steps"] >= 2_000


def test_a_raising_on_training_end_is_recorded_and_raised(tmp_path):
    class EndBoom(Callback):
        def on_training_end(self, summary):
            raise RuntimeError("no")

    agent = A3C("fake_envs:FixedLength", total_steps=2_000, **SHORT)
    with pytest.raises(CallbackError, match=r"EndBoom.on_training_end raised RuntimeError: no"):
        agent.learn(run_dir=tmp_path / "run", progress="none", callback=EndBoom())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "total_steps" and "EndBoom" in summary["error"]


@pytest.mark.parametrize(
    "bad,says",
    [
        (42, "callback must be a Callback"),
        (lambda: StopOnNoImprovement(patience=0), "patience must be >= 1"),
        (lambda: StopAtThreshold(1.0, on="eval"), "on is 'evaluation' or 'return'"),
    ],
)
def test_bad_callbacks_are_config_errors(bad, says, tmp_path):
    agent = A3C("fake_envs:FixedLength", total_steps=1_000, **SHORT)
    with pytest.raises(ConfigError, match=says):
        agent.learn(
            run_dir=tmp_path / "run", progress="none", callback=bad() if callable(bad) else bad
        )


def test_a_slow_callback_does_not_stop_the_worker_processes(tmp_path):
    """The trainer runs the callback between its polls; the worker processes step meanwhile."""
    import time

    class Slow(Callback):
        def __init__(self) -> None:
            self.rows: list[int] = []

        def on_progress(self, row):
            self.rows.append(row["steps"])
            time.sleep(1.0)
            return len(self.rows) < 3

    slow = Slow()
    agent = A3C(
        "CartPole-v1",
        workers=2,
        target_return=None,
        log_interval=500,
        total_steps=10_000_000,
        max_time=120,
    )
    agent.learn(run_dir=tmp_path / "run", progress="none", callback=slow)
    # (the last row, written as the run stops, comes to the callback too)
    jumps = [b - a for a, b in zip(slow.rows[:3], slow.rows[1:3], strict=False)]
    # a second of 2 workers at thousands of steps/s, not the 500 of one row
    assert len(jumps) == 2 and min(jumps) > 2_000, slow.rows
