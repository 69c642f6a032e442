"""Where do whole Pong runs part? The phases of each run's training curve, from its progress.csv.

A Pong run's training mean leaves the random plateau (-21), passes a stretch of long rallies that
neither side wins, and climbs to a shelf. For each progress.csv given (by default every run logged
in docs/ as pong_runN_progress.csv), this prints the agent steps and minutes at which the 100-game
training mean first passes -15, -5 and +10, the length in steps of the rally stretch (from -5 to
+10), and, over that stretch, the median update lag, entropy, agent steps/s and training-game
length: the logged quantities that could tell a quick stretch from a slow one.

    .venv/bin/python benchmarks/pong_phases.py [PROGRESS.csv|RUN_DIR ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from a3c.errors import A3CError
from a3c.plots.data import _progress_rows  # its checks give a bad file a one-line error

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (-15.0, -5.0, 10.0)


def _number(row: dict, *keys: str) -> float | None:
    """The first of `keys` that the row has a value for (older runs logged `entropy`)."""
    for key in keys:
        if row.get(key) not in (None, ""):
            return float(row[key])
    return None


def phases(path: Path) -> dict:
    """The crossing points of one run's training mean and the medians over its rally stretch."""
    if path.is_dir():
        path = path / "progress.csv"
    rows = _progress_rows(path)
    # benchmarks/records/pong/pong_runN_progress.csv is run N; a run directory's progress.csv is
    # named for the directory.
    name = (
        path.parent.name if path.name == "progress.csv" else path.name.removesuffix("_progress.csv")
    )
    crossings = {
        level: next((r for r in rows if r["return_mean"] and float(r["return_mean"]) > level), None)
        for level in LEVELS
    }
    out = {
        "run": name,
        "crossings": {
            f"{level:+g}": None
            if r is None
            else {"steps": float(r["steps"]), "minutes": round(float(r["wall_s"]) / 60, 1)}
            for level, r in crossings.items()
        },
    }
    start, end = crossings[-5.0], crossings[10.0]
    if start is None:
        return out
    first, last = float(start["steps"]), float((end or rows[-1])["steps"])
    stretch = [r for r in rows if first <= float(r["steps"]) <= last]
    out["rally_steps"] = None if end is None else last - first

    def median(*keys: str, absolute: bool = False) -> float | None:
        values = [v for v in (_number(r, *keys) for r in stretch) if v is not None]
        return (
            round(statistics.median(abs(v) if absolute else v for v in values), 3)
            if values
            else None
        )

    out["rally_median"] = {
        "update_lag": median("update_lag"),
        "entropy": median("entropy_loss", "entropy", absolute=True),
        "steps_per_s": median("steps_per_s"),
        "game_length": median("length_mean"),
    }
    return out


def _row(r: dict) -> str:
    """One run's line of the table."""

    def cell(level: str) -> str:
        c = r["crossings"][level]
        return "-" if c is None else f"{c['steps'] / 1e6:.2f}M/{c['minutes']:.0f}m"

    def median(key: str, spec: str) -> str:
        value = r.get("rally_median", {}).get(key)
        return "-" if value is None else format(value, spec)

    rally = r.get("rally_steps")
    return (
        f"{r['run'].removeprefix('pong_'):<10}{cell('-15'):>13}{cell('-5'):>13}{cell('+10'):>14}"
        f"{'-' if rally is None else f'{rally / 1e6:.2f}M':>8}{median('update_lag', '.2f'):>7}"
        f"{median('entropy', '.2f'):>9}{median('steps_per_s', '.0f'):>9}"
        f"{median('game_length', '.0f'):>8}"
    )


def _order(path: Path) -> tuple:
    number = re.search(r"run(\d+)", path.name)
    return (int(number.group(1)) if number else 0, path.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "progress",
        nargs="*",
        type=Path,
        help="progress.csv files or run directories (default: "
        "benchmarks/records/pong/pong_runN_progress.csv)",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    paths = args.progress or sorted(
        (
            p
            for p in (ROOT / "benchmarks" / "records" / "pong").glob("pong_run*_progress.csv")
            if re.fullmatch(r"pong_run\d+_progress\.csv", p.name)
        ),
        key=_order,
    )
    try:
        results = [phases(p) for p in paths]
    except (A3CError, ValueError, KeyError) as e:
        print(f"pong_phases: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{'run':<10}{'-15 at':>13}{'-5 at':>13}{'+10 at':>14}{'rally':>8}{'lag':>7}"
        f"{'entropy':>9}{'steps/s':>9}{'length':>8}"
    )
    for r in results:
        print(_row(r))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
