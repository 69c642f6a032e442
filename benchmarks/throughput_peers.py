"""Pong training throughput: a3c's Atari preset against the throughput peers a user picks for fast
CPU training, side by side in one run: Sample Factory's APPO and CleanRL-style PPO on EnvPool.

    .venv/bin/python benchmarks/throughput_peers.py \
        [--seconds 60] [--repeats 1] [--peers a3c sf envpool] [--out benchmarks/results]

The peers pin other versions than a3c (Sample Factory 2.1: Gymnasium 0.29 and numpy 1.x), so each
runs in a venv of its own, made by `tools/peer_venvs.sh sf|envpool` (`make peer-venvs`), never
committed (`--venvs`, default /work/venvs). A peer whose venv is missing is reported with the error.

* a3c: its Atari preset on ALE/Pong-v5 (2 workers x 4 envs, ale-py's AtariVectorEnv), run by
  pong_sb3.py's child in this venv (`pong_sb3.py --child a3c`).
* sf: Sample Factory's own Atari example (`benchmarks/peers/sf_pong.py`, which runs
  sf_examples.atari.train_atari on PongNoFrameskip-v4: its AtariWrapper-equivalent wrappers, its
  Atari defaults: rollout 128, batch 256, 4 epochs of 4 batches) with `--async_rl=True` (APPO:
  sampling and learning overlap; the example's default is synchronous PPO), 2 rollout workers (one
  a core) of 4 envs each in 2 splits (double-buffered sampling), on the CPU. Its frames are read
  from its log ("Total num frames", with frame skip 4: agent steps = frames / 4). Its env has no
  sticky actions (v4): that does not change a step's cost.
* envpool: `benchmarks/peers/cleanrl_ppo_envpool.py`, CleanRL's ppo_atari_envpool.py condensed (8
  envs x 128 steps, 4 epochs of 4 minibatches, Nature CNN) on EnvPool's Pong-v5 with sticky actions.

Each peer trains for --seconds in a fresh process (rotating order over --repeats); the rate is taken
over the steady part (from the first point after 20% of the run to the last). Reported: agent
steps/s (1 step = 4 frames) and the ratio to a3c. Outputs `throughput_peers.json` / `.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, machine, md_table, median, run_child, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
PEERS = ("a3c", "sf", "envpool")
FRAMES_PER_STEP = 4
SF_FRAMES = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*Total num frames: (\d+)")


def steady_rate(points: list[tuple[float, int]]) -> float | None:
    if len(points) < 2:
        return None
    t_end = points[-1][0]
    start = next((p for p in points if p[0] >= 0.2 * t_end and p is not points[-1]), points[0])
    return (points[-1][1] - start[1]) / max(points[-1][0] - start[0], 1e-9)


def run_a3c(seconds: float) -> dict[str, Any]:
    return run_child(
        [str(HERE / "pong_sb3.py"), "--child", "a3c", "--seconds", str(seconds)],
        timeout=seconds * 3 + 120,
    )


def run_envpool(seconds: float, venvs: Path) -> dict[str, Any]:
    python = venvs / "envpool" / "bin" / "python"
    if not python.exists():
        return {"error": f"no venv at {python.parent.parent}: run tools/peer_venvs.sh envpool"}
    proc = subprocess.run(
        [str(python), str(HERE / "peers" / "cleanrl_ppo_envpool.py"), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds * 3 + 120,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    out = json.loads(lines[-1])
    points = [tuple(p) for p in out.pop("points")]
    rate = steady_rate(points) or out["steps"] / out["wall_s"]
    return {**out, "steady_steps_per_s": rate}


def run_sf(seconds: float, venvs: Path) -> dict[str, Any]:
    """Sample Factory for `seconds` of its own clock (--train_for_seconds), stopped with SIGTERM to
    its process group if it lingers; the (time, frames) points come from its log lines."""
    python = venvs / "sf" / "bin" / "python"
    if not python.exists():
        return {"error": f"no venv at {python.parent.parent}: run tools/peer_venvs.sh sf"}
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            str(python),
            str(HERE / "peers" / "sf_pong.py"),
            "--env=atari_pong",
            "--experiment=throughput",
            f"--train_dir={d}",
            "--device=cpu",
            "--async_rl=True",
            "--num_workers=2",
            "--num_envs_per_worker=4",
            "--worker_num_splits=2",
            f"--train_for_seconds={seconds:.0f}",
            "--with_wandb=False",
            "--save_every_sec=100000",
            "--keep_checkpoints=1",
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd=ROOT,
        )
        lines: list[str] = []
        # type: ignore[union-attr]
        reader = threading.Thread(
            target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True
        )
        reader.start()
        # Its own --train_for_seconds did not stop it here (it ran on for minutes): it is stopped
        # `seconds` after its first frames (or after 120 s of start-up without any).
        deadline, started = time.monotonic() + seconds + 120, False
        while proc.poll() is None and time.monotonic() < deadline:
            if not started and any(
                m and int(m.group(2)) > 0 for m in map(SF_FRAMES.search, list(lines))
            ):
                # its log reports every 5 s
                started, deadline = (True, time.monotonic() + seconds + 6)
            time.sleep(0.5)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=5)
    pts = []
    for line in lines:
        m = SF_FRAMES.search(line)
        if m:
            t = (
                time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
                + int(m.group(1)[20:]) / 1000
            )
            pts.append((t, int(m.group(2))))
    pts = [(t - pts[0][0], f // FRAMES_PER_STEP) for t, f in pts if f > 0] if pts else []
    if len(pts) < 2:
        errors = [line.strip() for line in lines if "Error" in line or "error" in line]
        return {"error": (errors or [lines[-1].strip() if lines else "no output"])[-1][:300]}
    pts = [(t - pts[0][0], s) for t, s in pts]
    pts = [(t, s) for t, s in pts if t <= seconds + 5]
    return {
        "steps": pts[-1][1],
        "wall_s": pts[-1][0],
        "steady_steps_per_s": steady_rate(pts),
        "returncode": proc.returncode,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    p.add_argument("--venvs", type=Path, default=Path(os.environ.get("VENVS", "/work/venvs")))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    report: dict[str, Any] = {"machine": machine(), "seconds": args.seconds, "runs": []}
    peers = list(args.peers)
    for r in range(args.repeats):
        for peer in peers[r % len(peers) :] + peers[: r % len(peers)]:
            res = (
                run_a3c(args.seconds)
                if peer == "a3c"
                else run_sf(args.seconds, args.venvs)
                if peer == "sf"
                else run_envpool(args.seconds, args.venvs)
            )
            res.update(peer=peer, repeat=r)
            report["runs"].append(res)
            print(json.dumps(res), flush=True)
    rates = {
        peer: median([x.get("steady_steps_per_s") for x in report["runs"] if x["peer"] == peer])
        for peer in peers
    }
    errors = {
        peer: next((x["error"] for x in report["runs"] if x["peer"] == peer and "error" in x), None)
        for peer in peers
    }
    base = rates.get("a3c")
    rows = [
        [
            peer,
            rates[peer] or "-",
            rates[peer] * FRAMES_PER_STEP if rates[peer] else "-",
            rates[peer] / base if rates[peer] and base else "-",
            errors[peer] or "",
        ]
        for peer in peers
    ]
    report.update(median_steps_per_s=rates, errors=errors)
    md = "\n\n".join(
        [
            "### Pong throughput: a3c vs Sample Factory APPO vs CleanRL PPO on EnvPool "
            f"({args.repeats} x {args.seconds:.0f} s each, medians)",
            f"`benchmarks/throughput_peers.py --seconds {args.seconds:.0f} --repeats "
            f"{args.repeats}` on {report['machine']['date']}, {report['machine']['cpus']} CPUs, "
            f"commit {report['machine'].get('commit')}",
            md_table(["peer", "agent steps/s", "frames/s", "/ a3c", "error"], rows),
        ]
    )
    write_results(args.out, "throughput_peers", report, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
