"""Benchmark: a3c against Stable-Baselines3 A2C on CartPole-v1 (time to solve, throughput).

Usage (from the repository root):

    .venv/bin/python benchmarks/cartpole_sb3.py [--seeds 5] [--out benchmarks/results] [--quick]

For every seed (0..N-1) the script runs, each in a fresh Python subprocess so that interpreter
start-up and imports are paid the same way by both peers:

* a3c with its defaults and 2 workers:
  `A3C("CartPole-v1", seed=s, workers=2, total_steps=500_000).learn(run_dir=..., progress="none")`.
  Time to solve is the summary's `wall_s` (from the start of learn() until the mean of the last 100
  episode returns reaches 475) and `steps`, when `solved` is True.
* SB3 A2C with the rl-baselines3-zoo CartPole-v1 hyperparameters: 8 envs (make_vec_env,
  DummyVecEnv), "MlpPolicy", ent_coef 0.0, everything else SB3's defaults, seed s, device cpu. A
  callback stops it as soon as the mean of the last 100 episode returns reaches 475 (cap: 1M steps);
  the time from the start of learn() and model.num_timesteps at that moment are recorded.
  The SB3 process runs one torch thread by default (`--sb3-threads`, 0 for torch's default of one
  per core): for this tiny MLP that is SB3's fastest setting, like a3c's one thread per worker,
  and on a busy 2-core machine torch's default threads contend badly (several times slower).

The a3c and SB3 runs are interleaved seed by seed (the order alternates from seed to seed) so that
noise on a shared machine hits both alike. The parent also times each subprocess as a whole
(start-up-inclusive wall time).

Outputs: a table on stdout, `<out>/cartpole_sb3.json` (every run, the medians, the ratios against
the targets) and `<out>/cartpole_sb3.md` (a Markdown snippet for the benchmarks page).

Internal mode: `--one {a3c,sb3} SEED [--run-dir DIR]` runs a single training and prints one line
`BENCH_RESULT {json}`; the parent uses it. This module imports only the standard library at top
level: the fork server that a3c's workers are forked from imports it (as `__mp_main__`). a3c's
time includes starting that server (it starts at the beginning of learn()).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import md_table, median, source_state  # noqa: E402

ENV_ID = "CartPole-v1"
TARGET_RETURN = 475.0
RETURN_WINDOW = 100
A3C_WORKERS = 2
A3C_TOTAL_STEPS = 500_000
SB3_MAX_STEPS = 1_000_000
SB3_N_ENVS = 8
RESULT_PREFIX = "BENCH_RESULT "
ALGOS = ("a3c", "sb3")

# Targets of the issue.
TARGET_TIME_RATIO = 1 / 3  # a3c median time to solve / SB3 median time to solve <= this
TARGET_THROUGHPUT_RATIO = 4.0  # a3c median throughput / SB3 median throughput >= this


# --------------------------------------------------------------------------------------------
# Child mode: one training run, reported as one JSON line on stdout.
# --------------------------------------------------------------------------------------------


def run_a3c(seed: int, run_dir: Path) -> dict[str, Any]:
    """Train a3c with its defaults and 2 workers; return the summary plus throughput figures."""
    from a3c import A3C

    agent = A3C(ENV_ID, seed=seed, workers=A3C_WORKERS, total_steps=A3C_TOTAL_STEPS)
    t0 = time.monotonic()
    summary = agent.learn(run_dir=run_dir, progress="none")
    learn_call_s = time.monotonic() - t0
    rates = _progress_rates(run_dir / "progress.csv")
    steps, wall = int(summary["steps"]), float(summary["wall_s"])
    solved = bool(summary["solved"])
    return {
        "algo": "a3c",
        "seed": seed,
        "solved": solved,
        "steps": steps,
        "time_to_solve_s": wall if solved else None,
        "steps_to_solve": steps if solved else None,
        "learn_wall_s": wall,
        "learn_call_s": round(learn_call_s, 3),
        "return_mean": _finite_or_none(summary.get("return_mean")),
        "stop_reason": summary.get("stop_reason"),
        "throughput": steps / wall if wall > 0 else None,
        "throughput_csv_median": statistics.median(rates) if rates else None,
        "episodes": summary.get("episodes"),
        "updates": summary.get("updates"),
        "nonfinite_updates": summary.get("nonfinite_updates"),
    }


def run_sb3(seed: int, threads: int) -> dict[str, Any]:
    """Train SB3 A2C (zoo CartPole-v1 hyperparameters) until solved or SB3_MAX_STEPS.

    `threads` > 0 sets torch's intra-op threads (0 keeps torch's default, one per core).
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class StopAtTarget(BaseCallback):
        """Stops training the moment the mean of the last 100 episode returns reaches the target.

        SB3 calls on_step() right after env.step() and only then adds the finished episodes to
        model.ep_info_buffer, so the episodes that just ended (in `infos`) are added here too:
        the check sees exactly the buffer as it is after this step.
        """

        def __init__(self) -> None:
            super().__init__()
            self.t0 = 0.0
            self.solve_s: float | None = None
            self.solve_steps: int | None = None
            self.return_mean: float | None = None

        def _on_step(self) -> bool:
            returns = [float(ep["r"]) for ep in self.model.ep_info_buffer]
            returns += [
                float(info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info
            ]
            returns = returns[-RETURN_WINDOW:]
            if len(returns) < RETURN_WINDOW:
                return True
            self.return_mean = sum(returns) / len(returns)
            if self.return_mean >= TARGET_RETURN:
                self.solve_s = time.monotonic() - self.t0
                self.solve_steps = self.model.num_timesteps
                return False
            return True

    env = make_vec_env(ENV_ID, n_envs=SB3_N_ENVS, seed=seed)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu", verbose=0)
    callback = StopAtTarget()
    callback.t0 = t0 = time.monotonic()
    model.learn(total_timesteps=SB3_MAX_STEPS, callback=callback)
    learn_s = time.monotonic() - t0
    env.close()
    solved = callback.solve_s is not None
    steps = int(model.num_timesteps)
    if not solved and len(model.ep_info_buffer) > 0:
        callback.return_mean = sum(float(ep["r"]) for ep in model.ep_info_buffer) / len(
            model.ep_info_buffer
        )
    return {
        "algo": "sb3",
        "seed": seed,
        "solved": solved,
        "steps": steps,
        "time_to_solve_s": round(callback.solve_s, 3) if callback.solve_s is not None else None,
        "steps_to_solve": callback.solve_steps,
        "learn_wall_s": round(learn_s, 3),
        "learn_call_s": round(learn_s, 3),
        "return_mean": callback.return_mean,
        "stop_reason": "target_return" if solved else "total_steps",
        "throughput": steps / learn_s if learn_s > 0 else None,
        "throughput_csv_median": None,
        "torch_threads": torch.get_num_threads(),
    }


def _progress_rates(path: Path) -> list[float]:
    """The finite, positive steps_per_s values of a progress.csv."""
    rates: list[float] = []
    if not path.exists():
        return rates
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                v = float(row.get("steps_per_s") or "nan")
            except ValueError:
                continue
            if math.isfinite(v) and v > 0:
                rates.append(v)
    return rates


def _finite_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def child_main(algo: str, seed: int, run_dir: str | None, sb3_threads: int) -> int:
    """Entry point of `--one`: run one training and print its result line."""
    if algo == "a3c":
        if run_dir is None:
            raise SystemExit("--one a3c needs --run-dir")
        result = run_a3c(seed, Path(run_dir))
    else:
        result = run_sb3(seed, sb3_threads)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# Parent mode: launch the runs, aggregate, report.
# --------------------------------------------------------------------------------------------


def launch(
    algo: str, seed: int, run_dir: Path | None, sb3_threads: int, timeout: float
) -> dict[str, Any]:
    """Run `--one algo seed` in a fresh process (own process group); time it as a whole."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", algo, str(seed)]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    if algo == "sb3":
        cmd += ["--sb3-threads", str(sb3_threads)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        # Timeout or Ctrl-C: end the whole group we started (the child and its a3c workers).
        _kill_group(proc)
        raise
    process_s = time.monotonic() - t0
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(err.strip().splitlines()[-20:])
        raise RuntimeError(f"{algo} seed {seed} failed (exit code {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["process_wall_s"] = round(process_s, 3)
    return result


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-algorithm medians.

    Time and steps to solve count an unsolved run as +inf (the median is None if it is +inf).
    """
    med: dict[str, dict[str, Any]] = {}
    for algo in ALGOS:
        rs = [r for r in runs if r["algo"] == algo]
        med[algo] = {
            "runs": len(rs),
            "solved": sum(bool(r["solved"]) for r in rs),
            "time_to_solve_s": median([r["time_to_solve_s"] for r in rs], unsolved_as_inf=True),
            "time_to_solve_s_solved_only": median([r["time_to_solve_s"] for r in rs]),
            "steps_to_solve": median([r["steps_to_solve"] for r in rs], unsolved_as_inf=True),
            "process_wall_s": median([r["process_wall_s"] for r in rs]),
            "throughput": median([r["throughput"] for r in rs]),
            "throughput_csv_median": median([r["throughput_csv_median"] for r in rs]),
        }
    return med


def ratios(med: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's three figures, each with its target and whether it is met."""
    a, s = med["a3c"], med["sb3"]
    t_ratio = (
        a["time_to_solve_s"] / s["time_to_solve_s"]
        if a["time_to_solve_s"] and s["time_to_solve_s"]
        else None
    )
    p_ratio = (
        a["process_wall_s"] / s["process_wall_s"]
        if a["process_wall_s"] and s["process_wall_s"]
        else None
    )
    thr = a["throughput"] / s["throughput"] if a["throughput"] and s["throughput"] else None
    return {
        "time_to_solve_ratio": t_ratio,
        "time_to_solve_ratio_target": f"<= {TARGET_TIME_RATIO:.4f} (1/3)",
        "time_to_solve_ratio_met": t_ratio is not None and t_ratio <= TARGET_TIME_RATIO,
        "a3c_seeds_solved": f"{a['solved']}/{a['runs']}",
        "a3c_seeds_solved_target": f"{a['runs']}/{a['runs']} within {A3C_TOTAL_STEPS} steps",
        "a3c_seeds_solved_met": a["solved"] == a["runs"],
        "throughput_ratio": thr,
        "throughput_ratio_target": f">= {TARGET_THROUGHPUT_RATIO:g}",
        "throughput_ratio_met": thr is not None and thr >= TARGET_THROUGHPUT_RATIO,
        "process_wall_ratio_info": p_ratio,
    }


def machine_info() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "gymnasium": version("gymnasium"),
        "stable_baselines3": version("stable-baselines3"),
        "a3c": version("a3c"),
        "a3c_source": source_state(),
    }


def _fmt(x: Any, spec: str = ".1f") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def runs_table(runs: list[dict[str, Any]]) -> list[list[str]]:
    head = [
        "algo",
        "seed",
        "solved",
        "steps to solve",
        "time to solve (s)",
        "final return",
        "process wall (s)",
        "steps/s",
        "steps/s (csv median)",
    ]
    rows = [head]
    for r in sorted(runs, key=lambda r: (ALGOS.index(r["algo"]), r["seed"])):
        rows.append(
            [
                r["algo"],
                str(r["seed"]),
                _fmt(r["solved"]),
                _fmt(r["steps_to_solve"]),
                _fmt(r["time_to_solve_s"]),
                _fmt(r["return_mean"]),
                _fmt(r["process_wall_s"]),
                _fmt(r["throughput"], ".0f"),
                _fmt(r["throughput_csv_median"], ".0f"),
            ]
        )
    return rows


def medians_table(med: dict[str, dict[str, Any]]) -> list[list[str]]:
    head = [
        "",
        "solved",
        "median steps to solve",
        "median time to solve (s)",
        "median process wall (s)",
        "median steps/s",
        "median steps/s (csv)",
    ]
    rows = [head]
    names = {"a3c": f"a3c ({A3C_WORKERS} workers)", "sb3": f"SB3 A2C ({SB3_N_ENVS} envs)"}
    for algo in ALGOS:
        m = med[algo]
        rows.append(
            [
                names[algo],
                f"{m['solved']}/{m['runs']}",
                _fmt(m["steps_to_solve"], ".0f"),
                _fmt(m["time_to_solve_s"]),
                _fmt(m["process_wall_s"]),
                _fmt(m["throughput"], ".0f"),
                _fmt(m["throughput_csv_median"], ".0f"),
            ]
        )
    return rows


def ratios_table(rat: dict[str, Any]) -> list[list[str]]:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        ["figure", "value", "target", "status"],
        [
            "a3c / SB3 median time to solve",
            _fmt(rat["time_to_solve_ratio"], ".3f"),
            "<= 0.333",
            met(rat["time_to_solve_ratio_met"]),
        ],
        [
            f"a3c seeds solved within {A3C_TOTAL_STEPS:,} steps",
            rat["a3c_seeds_solved"],
            rat["a3c_seeds_solved_target"].split()[0],
            met(rat["a3c_seeds_solved_met"]),
        ],
        [
            "a3c / SB3 median throughput",
            _fmt(rat["throughput_ratio"], ".2f") + ("x" if rat["throughput_ratio"] else ""),
            ">= 4x",
            met(rat["throughput_ratio_met"]),
        ],
        [
            "a3c / SB3 median process wall (incl. start-up)",
            _fmt(rat["process_wall_ratio_info"], ".3f"),
            "-",
            "info",
        ],
    ]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md(rows: list[list[str]]) -> str:
    return md_table(rows[0], rows[1:])


def _source_note(machine: dict[str, Any]) -> str:
    src = machine.get("a3c_source")
    if not src:
        return ""
    note = f" (commit {src['commit'][:10]}"
    if src["src_dirty"]:
        note += f", src/ modified, diff {src['src_diff_sha256_12']}"
    return note + ")"


def markdown(report: dict[str, Any]) -> str:
    """A Markdown snippet for the benchmarks page: command, date, machine, the tables."""
    m = report["machine"]
    machine = (
        f"Date: {report['date']}. Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, "
        f"torch {m['torch']}, gymnasium {m['gymnasium']}, stable-baselines3 "
        f"{m['stable_baselines3']}, a3c {m['a3c']}{_source_note(m)}."
    )
    threads = report["settings"]["sb3"]["torch_threads"]
    setup = (
        f"a3c: defaults, {A3C_WORKERS} workers (one torch thread each), budget "
        f"{A3C_TOTAL_STEPS:,} steps. SB3 A2C: rl-baselines3-zoo CartPole-v1 hyperparameters "
        f"({SB3_N_ENVS} envs, MlpPolicy, ent_coef 0.0, otherwise SB3 defaults), torch threads: "
        f"{threads}, cap {SB3_MAX_STEPS:,} steps. Solved: mean return of the last {RETURN_WINDOW} "
        f"episodes >= {TARGET_RETURN:g}. Time to solve is measured from the start of learn(); "
        "process wall time includes interpreter start-up and imports (each run is a fresh "
        "process). Throughput: env steps / learn() wall time. Medians over seeds; an unsolved "
        "run counts as never solving."
    )
    if not report["a3c_source_same_for_all_runs"]:
        setup += " Warning: the a3c sources changed between runs of this benchmark."
    parts = [
        f"### CartPole-v1: a3c vs Stable-Baselines3 A2C, {len(report['seeds'])} seed(s)",
        "",
        "```",
        report["command"],
        "```",
        "",
        machine,
        "",
        setup,
        "",
        _md(medians_table(report["medians"])),
        "",
        _md(ratios_table(report["ratios"])),
        "",
        "<details><summary>Every run</summary>",
        "",
        _md(runs_table(report["runs"])),
        "",
        "</details>",
        "",
    ]
    return "\n".join(parts)


def parent_main(args: argparse.Namespace) -> int:
    seeds = list(range(1 if args.quick else args.seeds))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="a3c-bench-"))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    command = ".venv/bin/python benchmarks/cartpole_sb3.py " + shlex.join(sys.argv[1:])
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    t_start = time.monotonic()
    try:
        for seed in seeds:
            # Alternate the order so neither peer always runs first after the other.
            for algo in ALGOS if seed % 2 == 0 else ALGOS[::-1]:
                run_dir = work / f"a3c-seed{seed}" if algo == "a3c" else None
                print(
                    f"[{time.monotonic() - t_start:7.1f}s] {algo} seed {seed} ...",
                    end=" ",
                    flush=True,
                )
                src = source_state() if algo == "a3c" else None
                r = launch(algo, seed, run_dir, args.sb3_threads, args.timeout)
                if algo == "a3c":
                    r["a3c_source"] = src
                runs.append(r)
                print(
                    f"solved={r['solved']} steps={r['steps']} "
                    f"time_to_solve={_fmt(r['time_to_solve_s'])}s "
                    f"process={r['process_wall_s']:.1f}s steps/s={_fmt(r['throughput'], '.0f')}",
                    flush=True,
                )
                if args.keep_runs and run_dir is not None:
                    shutil.copytree(run_dir, out / "runs" / stamp / run_dir.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = aggregate(runs)
    rat = ratios(med)
    sources = {json.dumps(r.get("a3c_source"), sort_keys=True) for r in runs if r["algo"] == "a3c"}
    if len(sources) > 1:
        print("warning: the a3c sources changed during the benchmark (see a3c_source per run)")
    report: dict[str, Any] = {
        "benchmark": "cartpole_sb3",
        "command": command,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "total_wall_s": round(time.monotonic() - t_start, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": machine_info(),
        "seeds": seeds,
        "settings": {
            "env_id": ENV_ID,
            "target_return": TARGET_RETURN,
            "return_window": RETURN_WINDOW,
            "a3c": {
                "workers": A3C_WORKERS,
                "total_steps": A3C_TOTAL_STEPS,
                "torch_threads_per_worker": 1,
                "other": "library defaults",
            },
            "sb3": {
                "algo": "A2C",
                "policy": "MlpPolicy",
                "n_envs": SB3_N_ENVS,
                "vec_env": "DummyVecEnv",
                "ent_coef": 0.0,
                "max_steps": SB3_MAX_STEPS,
                "device": "cpu",
                "torch_threads": args.sb3_threads or "torch default",
                "other": "SB3 defaults",
            },
        },
        "a3c_source_same_for_all_runs": len(sources) <= 1,
        "runs": runs,
        "medians": med,
        "ratios": rat,
    }
    json_path, md_path = out / "cartpole_sb3.json", out / "cartpole_sb3.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    print()
    print(text_table(runs_table(runs)))
    print()
    print(text_table(medians_table(med)))
    print()
    print(text_table(ratios_table(rat)))
    print()
    print(f"wrote {json_path} and {md_path} ({report['total_wall_s']:.0f} s in all)")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default: 5)")
    p.add_argument("--quick", action="store_true", help="smoke check: one seed")
    p.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="results directory (default: benchmarks/results)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds before a single run is killed (default: 1800)",
    )
    p.add_argument(
        "--keep-runs",
        action="store_true",
        help="copy the a3c run directories into <out>/runs/<timestamp>/",
    )
    p.add_argument(
        "--sb3-threads",
        type=int,
        default=1,
        help="torch threads of the SB3 process; 0: torch's default, one per core (default: 1)",
    )
    p.add_argument("--one", nargs=2, metavar=("ALGO", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.sb3_threads < 0:
        p.error("--sb3-threads must be >= 0")
    if args.one is not None and (args.one[0] not in ALGOS or not args.one[1].isdigit()):
        p.error("--one takes ALGO SEED with ALGO in a3c, sb3 and SEED an integer >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        return child_main(args.one[0], int(args.one[1]), args.run_dir, args.sb3_threads)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
