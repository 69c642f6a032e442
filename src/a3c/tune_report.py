"""What `a3c tune` writes into the study directory: trials.csv, best.yaml (the best trial's
hyperparameters, which `a3c train ENV --config best.yaml` takes as it is), study.json, and the
plots Optuna draws (optimisation history, parameter importances) as PNG."""

from __future__ import annotations

import csv
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import yaml

from a3c.io import write_json_atomic, write_text_atomic
from a3c.tune_space import Dimension

log = logging.getLogger("a3c")
COLUMNS = ["number", "state", "value", "steps", "wall_s", "pruned_at", "reason", "run_dir"]


def trial_line(t: Any) -> str:
    """One line for a finished trial, as `a3c tune` prints it."""
    state = t.state.name.lower()
    head = f"trial {t.number}: {state}"
    if state == "complete":
        head += f", value {t.value:.2f}"
    elif state == "pruned":
        head += f" at {t.user_attrs.get('pruned_at', '?')} steps"
    elif t.user_attrs.get("reason"):
        head += f": {t.user_attrs['reason']}"
    # the keys' last parts where they are unique (learning_rate, n_steps): trials.csv has them whole
    hp = t.user_attrs.get("hyperparameters", {})
    names = [k.rpartition(".")[2] for k in hp]
    short = dict(zip(hp, names if len(set(names)) == len(names) else list(hp), strict=True))
    params = " ".join(f"{short[k]}={_short(v)}" for k, v in hp.items())
    wall = t.user_attrs.get("wall_s")
    return f"{head}{'' if wall is None else f' in {wall:.0f}s'}: {params}"


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v).replace(" ", "")


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"optim.learning_rate": x} -> {"optim": {"learning_rate": x}} (a config file's layout)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


def space_yaml(dims: list[Dimension]) -> str:
    """The search space the study used, as a file `--space` takes."""
    data: dict[str, Any] = {}
    for d in dims:
        if d.choices is not None:
            data[d.key] = list(d.choices)
        else:
            low, high = (int(d.low), int(d.high)) if d.integer else (d.low, d.high)  # type: ignore[arg-type]
            data[d.key] = {"low": low, "high": high, **({"log": True} if d.log else {})}
    return "# the search space of this study (a3c tune --space takes it)\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=None
    )


LEARNING = ("env.", "algo.", "optim.", "model.")


def write(
    study: Any, directory: Path, dims: list[Dimension], env_id: str, fixed: dict[str, Any]
) -> dict[str, Any]:
    """trials.csv, best.yaml, study.json and the plots; the report as a dict. best.yaml holds the
    best trial's hyperparameters and the learning settings fixed for every trial (`fixed`'s env,
    algo, optim and model keys), not the budget or the backend."""
    trials = study.get_trials(deepcopy=False)
    keys = [d.key for d in dims]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS + keys)
    for t in trials:
        hp = t.user_attrs.get("hyperparameters", {})
        row = [
            t.number,
            t.state.name.lower(),
            "" if t.value is None else t.value,
            t.user_attrs.get("steps", ""),
            t.user_attrs.get("wall_s", ""),
            t.user_attrs.get("pruned_at", ""),
            t.user_attrs.get("reason", ""),
            t.user_attrs.get("run_dir", ""),
        ]
        w.writerow(row + [_cell(hp.get(k, "")) for k in keys])
    write_text_atomic(directory / "trials.csv", buf.getvalue())
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    best = max(complete, key=lambda t: t.value) if complete else None
    report: dict[str, Any] = {
        "study": study.study_name,
        "env_id": env_id,
        "trials": counts,
        "best": None,
        "directory": str(directory),
    }
    if best is not None:
        hp = best.user_attrs.get("hyperparameters", {})
        kept = {k: v for k, v in fixed.items() if k.startswith(LEARNING)}
        header = (
            f"# a3c tune: the best trial of study '{study.study_name}' on {env_id}: trial "
            f"{best.number}, value {best.value:.2f} (final greedy evaluation mean).\n"
            f"# a3c train {env_id} --config best.yaml\n"
        )
        write_text_atomic(
            directory / "best.yaml",
            header + yaml.safe_dump(nested({**kept, **hp}), default_flow_style=None),
        )
        report["best"] = {
            "number": best.number,
            "value": best.value,
            "hyperparameters": hp,
            "run_dir": best.user_attrs.get("run_dir"),
            "config": str(directory / "best.yaml"),
        }
    report["plots"] = plots(study, directory, len(complete))
    write_json_atomic(directory / "study.json", report)
    return report


def _cell(v: Any) -> Any:
    return yaml.safe_dump(v, default_flow_style=True).strip() if isinstance(v, list) else v


def plots(study: Any, directory: Path, complete: int) -> list[str]:
    """Optuna's optimisation history and parameter importances as PNG (importances need two
    complete trials); the files written."""
    if complete < 1:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []
    drawers: list[tuple[str, Any]] = [("history.png", ovm.plot_optimization_history)]
    if complete >= 2:
        drawers.append(("importances.png", ovm.plot_param_importances))
    for name, draw in drawers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig: Any = draw(study).figure
                fig.set_size_inches(8, 5)
                fig.tight_layout()
                fig.savefig(directory / name, dpi=100)
                plt.close(fig)
            written.append(str(directory / name))
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. no variation to rank
            log.warning("a3c: warning: %s not drawn (%s)", name, e)
    return written
