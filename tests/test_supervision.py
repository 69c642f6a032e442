"""Worker supervision: a failed worker is restarted and the run goes on; one that keeps failing
stops the run with a clear message and a usable checkpoint."""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import signal

import fake_envs  # tests/fake_envs.py
import pytest

from a3c import A3C
from a3c.backends import WorkerFailure


def _rows(run_dir):
    with open(run_dir / "progress.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("backend", ["processes", "serial"])
def test_an_env_that_raises_once_is_a_restart_not_a_crash(tmp_path, backend, caplog):
    marker = tmp_path / "raised"
    agent = A3C(
        "fake_envs:CartPoleRaisesOnce",
        backend=backend,
        workers=2,
        seed=0,
        total_steps=40_000,
        target_return=None,
        log_interval=5_000,
        restart_delay=0.1,
        **{"env.kwargs": {"marker": str(marker)}},
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert marker.exists(), "the env did raise"
    assert summary["stop_reason"] == "total_steps" and summary["steps"] >= 40_000
    assert summary["worker_restarts"] == 1
    assert int(_rows(tmp_path / "run")[-1]["worker_restarts"]) == 1
    assert "a3c: warning: worker" in caplog.text and "env crashed once" in caplog.text


def test_a_worker_killed_mid_run_is_restarted_and_the_run_solves(tmp_path):
    killed = []

    def kill_one_worker(row):
        if not killed and row["steps"] >= 20_000:
            child = mp.active_children()[0]  # the trainer's spawned workers
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)

    agent = A3C(
        "CartPole-v1",
        workers=2,
        seed=1,
        total_steps=500_000,
        target_return=300.0,
        max_time=150,
        log_interval=5_000,
        restart_delay=0.1,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none", callback=kill_one_worker)
    assert killed, "a worker was killed"
    assert summary["worker_restarts"] >= 1
    assert (
        summary["solved"]
        and summary["solved_return_mean"] >= 300.0
        and summary["return_mean"] >= 200.0
    )
    steps = [int(r["steps"]) for r in _rows(tmp_path / "run")]
    assert steps == sorted(steps)


@pytest.mark.parametrize("backend", ["processes", "serial"])
def test_a_worker_that_keeps_failing_stops_the_run_with_a_usable_checkpoint(tmp_path, backend):
    agent = A3C(
        fake_envs.RaisesOnStep,
        backend=backend,
        workers=2,
        max_restarts=2,
        restart_delay=0.05,
        total_steps=10**6,
    )
    with pytest.raises(WorkerFailure, match="boom from the env.*restart budget of 2 spent"):
        agent.learn(run_dir=tmp_path / "run", progress="none")
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # both workers fail
    assert summary["stop_reason"] == "worker_failure" and summary["worker_restarts"] >= 2
    loaded = A3C.load(tmp_path / "run", env=fake_envs.RaisesOnStep)  # the checkpoint is usable
    action, _ = loaded.predict([0.0, 0.0], deterministic=True)
    assert int(action) in (0, 1)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def test_workers_and_their_fork_server_exit_when_the_trainer_is_killed(tmp_path):
    """SIGKILL of the trainer alone (no chance to clean up): its workers, and the fork server they
    were forked from, notice and exit by themselves; nothing is left running."""
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    code = (
        "from a3c import A3C; A3C('CartPole-v1', workers=2, total_steps=10**8, "
        "target_return=None).learn(run_dir=%r, progress='none')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code % str(run_dir)], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # trainer, server, 2 workers
        while not (run_dir / "progress.csv").exists() or len(_group_members(proc.pid)) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group_members(proc.pid) == [], "processes outlived their trainer"
    finally:
        if _group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=30)


def test_a_script_without_the_main_guard_gets_a_clear_failure_not_restarts(tmp_path):
    """Workers import the main script; one that trains at import would train again in each worker.
    The workers refuse at once, and the trainer stops with the reason rather than restarting
    them."""
    import json
    import subprocess
    import sys

    script = tmp_path / "train_unguarded.py"
    run_dir = tmp_path / "run"
    script.write_text(
        "from a3c import A3C\nA3C('CartPole-v1', workers=2, total_steps=10**8, "
        f"target_return=None).learn(run_dir={str(run_dir)!r}, progress='none')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if _group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 1
    assert (
        "a3c: error: your script started training when a worker process imported it: put the code "
        'that trains under `if __name__ == "__main__":`' in err
    )
    assert "RuntimeError" not in err, (
        "multiprocessing's own bootstrapping error is not what the user sees"
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "worker_failure" and summary["worker_restarts"] == 0
    assert "if __name__" in summary["error"]
    assert not list(tmp_path.glob("run*/**/run")), "no worker made a run directory of its own"


def test_a_node_groups_workers_start_without_the_main_script(tmp_path):
    """Inside a Ray actor the main script is Ray's worker script, which would import Ray into every
    worker (a slower worker, with some 30,000 more objects). A worker started with the main module
    left out does not run the script; the control does."""
    import subprocess
    import sys

    marker = tmp_path / "imported"
    script = tmp_path / "starter.py"
    script.write_text(
        "import time\n"
        "if __name__ == '__mp_main__':\n"
        f"    open({str(marker)!r}, 'a').write('x')\n"
        "if __name__ == '__main__':\n"
        "    import sys\n"
        "    from a3c import forkserver\n"
        "    forkserver.warm_up(main=False)\n"
        "    for left_out in sys.argv[1:]:\n"
        "        p = forkserver.context().Process(target=time.sleep, args=(0,))\n"
        "        if left_out == '1':\n"
        "            with forkserver.main_left_out():\n"
        "                p.start()\n"
        "        else:\n"
        "            p.start()\n"
        "        p.join(timeout=60)\n"
        "        assert p.exitcode == 0, p.exitcode\n"
        "    assert sys.modules['__main__'].__file__ == __file__\n"
    )

    def imports(*left_out: str) -> int:
        marker.unlink(missing_ok=True)
        subprocess.run([sys.executable, str(script), *left_out], check=True, timeout=120)
        return len(marker.read_text()) if marker.exists() else 0

    assert imports("1", "1") == 0
    assert imports("0", "1") == 1
