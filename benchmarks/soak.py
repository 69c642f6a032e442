"""Soak: a long CartPole run on the processes backend with injected faults, watching every process.

    .venv/bin/python benchmarks/soak.py \
        [--minutes 30] [--kill-every 300] [--hang-at 450] [--out benchmarks/results]

The trainer runs in a child process (`a3c` with its defaults, 2 workers, no target, `--minutes` of
wall time). This parent
- kills one worker process (SIGKILL, alternating workers) every `--kill-every` seconds;
- makes one env hang for ever once, `--hang-at` seconds in (the first env past that time sleeps in
  `step`; the watchdog, `backend.worker_timeout` (60 s, `--worker-timeout`), must kill and restart
  its worker);
- samples the resident memory (VmRSS) of the trainer, the fork server and each worker every
  `--sample-every` seconds.
It reports the samples (a table), the restarts the run counted against the faults injected, and
any process left behind once the trainer has exited. Writes soak.json and soak.md in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, md_table, write_results  # noqa: E402

HANG_AT_ENV = "A3C_SOAK_HANG_AT"  # wall-clock time (epoch s) after which one env hangs
HANG_MARKER_ENV = "A3C_SOAK_HANG_MARKER"


class CartPoleHangsOnce:
    """CartPole whose first step after A3C_SOAK_HANG_AT (epoch seconds) sleeps for ever, in the
    first env of the whole run to get there (it creates the marker file)."""

    def __new__(cls, **kwargs: Any) -> Any:
        import gymnasium as gym

        class _Env(gym.Wrapper):
            def step(self, action: Any) -> Any:
                at, marker = (
                    float(os.environ.get(HANG_AT_ENV, "inf")),
                    os.environ.get(HANG_MARKER_ENV),
                )
                if time.time() >= at and marker:
                    try:
                        with open(marker, "x"):
                            pass
                        time.sleep(10**6)
                    except FileExistsError:
                        pass
                return self.env.step(action)

        return _Env(gym.make("CartPole-v1"))


def child(minutes: float, run_dir: str, worker_timeout: float) -> int:
    from a3c import A3C

    # the budget stops crash loops; here faults are injected
    agent = A3C(
        "soak:CartPoleHangsOnce",
        workers=2,
        seed=0,
        total_steps=10**10,
        target_return=None,
        max_time=minutes * 60,
        worker_timeout=worker_timeout,
        max_restarts=100,
    )
    summary = agent.learn(run_dir=run_dir, progress="none")
    print(
        "SOAK_SUMMARY "
        + json.dumps(
            {
                k: summary[k]
                for k in (
                    "steps",
                    "wall_s",
                    "stop_reason",
                    "worker_restarts",
                    "nonfinite_updates",
                    "episodes",
                )
            }
        ),
        flush=True,
    )
    return 0


def _status(pid: int) -> dict[str, str]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _tree(root: int) -> dict[str, int]:
    """role -> pid: the trainer, its fork server and the workers (children of the server)."""
    roles = {"trainer": root}
    for pid in _children(root):
        grand = _children(pid)
        name = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if Path(f"/proc/{pid}").exists()
            else ""
        )
        if "forkserver" in name or grand:
            roles["fork server"] = pid
            for k, w in enumerate(sorted(grand)):
                roles[f"worker process {k}"] = w
    return roles


def _rss_mb(pid: int) -> float | None:
    value = _status(pid).get("VmRSS")
    return None if value is None else int(value.split()[0]) / 1024


def _marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (
                    f"A3C_SOAK_MARK={mark}".encode() in (entry / "environ").read_bytes()
                    and _status(int(entry.name)).get("State", "")[:1] != "Z"
                ):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--kill-every", type=float, default=300.0, help="seconds between worker kills")
    p.add_argument(
        "--hang-at",
        type=float,
        default=450.0,
        help="seconds in, one env hangs for ever (once; between two kills)",
    )
    p.add_argument("--sample-every", type=float, default=60.0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument(
        "--worker-timeout",
        type=float,
        default=60.0,
        help="the run's backend.worker_timeout (its default: 60)",
    )
    p.add_argument("--child", nargs=2, metavar=("MINUTES", "RUN_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(float(args.child[0]), args.child[1], args.worker_timeout)
    tmp = Path(tempfile.mkdtemp(prefix="a3c-soak-"))
    mark = f"{os.getpid()}-{time.time()}"
    env = {
        **os.environ,
        HANG_AT_ENV: str(time.time() + args.hang_at),
        HANG_MARKER_ENV: str(tmp / "hung"),
        "A3C_SOAK_MARK": mark,
    }
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(args.minutes),
        str(tmp / "run"),
        "--worker-timeout",
        str(args.worker_timeout),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    start, kills, samples, next_kill, next_sample = time.monotonic(), 0, [], args.kill_every, 30.0
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            t = time.monotonic() - start
            roles = _tree(proc.pid)
            if t >= next_sample and _rss_mb(proc.pid) is not None:
                samples.append(
                    {"t_s": round(t), **{role: _rss_mb(pid) for role, pid in roles.items()}}
                )
                print(
                    f"[{t:6.0f}s] "
                    + "  ".join(
                        f"{k} {v:.0f} MB" for k, v in samples[-1].items() if k != "t_s" and v
                    ),
                    flush=True,
                )
                next_sample += args.sample_every
            if t >= next_kill and t < args.minutes * 60 - 30:
                workers = sorted(r for r in roles if r.startswith("worker process"))
                if workers:
                    victim = roles[workers[kills % len(workers)]]
                    os.kill(victim, signal.SIGKILL)
                    kills += 1
                    print(
                        f"[{t:6.0f}s] killed {workers[kills % len(workers) - 1]} (pid {victim})",
                        flush=True,
                    )
                next_kill += args.kill_every
        out = proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = next(
        (
            json.loads(line.split(" ", 1)[1])
            for line in out.splitlines()
            if line.startswith("SOAK_SUMMARY ")
        ),
        {},
    )
    time.sleep(5)
    left = _marked(mark)
    hung = (tmp / "hung").exists()
    result = {
        "benchmark": "soak",
        "machine": machine(),
        "minutes": args.minutes,
        "kill_every_s": args.kill_every,
        "hang_at_s": args.hang_at,
        "kills": kills,
        "hangs": int(hung),
        "summary": summary,
        "restarts_expected": kills + int(hung),
        "left_behind": left,
        "samples": samples,
        "exit_code": proc.returncode,
    }
    roles = list(dict.fromkeys(k for sample in samples for k in sample if k != "t_s"))
    table = md_table(
        ["t (s)", *[f"{r} RSS (MB)" for r in roles]],
        [[s["t_s"], *[s.get(r) for r in roles]] for s in samples],
    )
    md = (
        f"### Soak: {args.minutes:g} min of CartPole, processes backend\n\n`.venv/bin/python "
        f"benchmarks/soak.py --minutes {args.minutes:g}` on {result['machine'].get('date')}, "
        f"commit {result['machine'].get('commit')}\n\nFaults injected: {kills} worker kills "
        f"(SIGKILL, every {args.kill_every:g} s), {int(hung)} env hung for ever ({args.hang_at:g} "
        f"s in). Restarts counted by the run: {summary.get('worker_restarts')} (expected "
        f"{kills + int(hung)}). Stop: {summary.get('stop_reason')} after {summary.get('steps')} "
        f"steps; processes left behind: {len(left)}.\n\n{table}\n"
    )
    write_results(args.out, "soak", result, md)
    print(md)
    ok = summary.get("worker_restarts") == kills + int(hung) and not left and proc.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
