"""Hyperparameter search with Optuna: `a3c tune` and `a3c.tune.tune`.

    from a3c.tune import tune
    result = tune("CartPole-v1", trials=30, budget_steps=200_000)   # study in runs/tune-...
    # a3c train CartPole-v1 --config runs/tune-.../best.yaml

Each trial is a training run with hyperparameters drawn from a search space (a3c/tune_space.py),
evaluated by the periodic evaluator: every evaluation is reported to Optuna as an intermediate value
(an event callback, a3c/callbacks.py), so the pruner stops bad trials early. A trial that runs its
budget is evaluated once more on its final parameters, with more episodes (`final_episodes`, 20)
than the pruner's evaluations: that mean is the trial's value, less of a lucky draw than one short
evaluation.

The study lives in a storage: by default a journal file in the study's directory (nothing to
install or start), so that running the same command again resumes it; an RDB URL (SQLite,
PostgreSQL, MySQL) or a shared journal file lets several `a3c tune` processes, on one machine or
many, work on one study. `--trials N` is the study's total: each process stops once the study has N
trials. A trial that fails (a bad combination, a crashed env, non-finite training) is recorded as
failed with its one-line reason and the study goes on; Ctrl-C or SIGTERM stops the study, the
running trial marked failed ("interrupted"), and the report is written (a3c/tune_report.py).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from a3c import tune_report, tune_space
from a3c.callbacks import Callback
from a3c.errors import A3CError, ConfigError, first_line
from a3c.signals import Terminated, sigterm_raises

log = logging.getLogger("a3c")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")
JOURNAL = "study.journal"


@dataclasses.dataclass
class TuneOptions:
    """What `a3c tune` was asked for (the CLI's flags, `tune()`'s arguments)."""

    env_id: str
    trials: int
    budget_steps: int | None = None
    budget_s: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None
    study: str | None = None
    jobs: int = 1
    space: str | None = None
    study_dir: str | None = None
    evaluations: int = 10
    eval_episodes: int = 5
    final_episodes: int = 20
    startup_trials: int = 5
    seed: int = 0
    timeout_s: float | None = None
    config_files: list[str | Path] = dataclasses.field(default_factory=list)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        if self.budget_steps is None and self.budget_s is None:
            raise ConfigError("a trial needs a budget: --budget-steps S and/or --budget-s T")
        if self.budget_steps is not None and self.budget_steps < 1:
            raise ConfigError(f"--budget-steps must be >= 1, got {self.budget_steps}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ConfigError(f"--budget-s must be > 0, got {self.budget_s}")
        for name, value, lo in (
            ("--jobs", self.jobs, 1),
            ("--evaluations", self.evaluations, 1),
            ("--eval-episodes", self.eval_episodes, 1),
            ("--final-episodes", self.final_episodes, 1),
            ("--startup-trials", self.startup_trials, 0),
        ):
            if value < lo:
                raise ConfigError(f"{name} must be >= {lo}, got {value}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"--study-time must be > 0, got {self.timeout_s}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler is one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner is one of {', '.join(PRUNERS)}, got {self.pruner!r}")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("a3c tune needs Optuna: pip install 'a3c[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a3c prints one line per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


class Pruning(Callback):
    """Each evaluation to Optuna as an intermediate value; stops the run when the pruner says."""

    def __init__(self, trial: Any) -> None:
        self.trial, self.evaluations = trial, 0
        self.pruned_at: int | None = None

    def on_evaluation(self, result: dict[str, Any], is_new_best: bool) -> bool | None:
        mean = result["mean"]
        if not math.isfinite(mean):
            return None  # recorded in eval.csv; Optuna takes finite values only
        self.evaluations += 1
        # the step is the evaluation's index: trials compare at the same point of their budget
        # (the same env steps, or the same seconds with --budget-s)
        self.trial.report(float(mean), step=self.evaluations)
        if self.trial.should_prune():
            self.pruned_at = int(result["steps"])
            return False
        return None


class Study:
    """One process's part of a study: its trials, one after another, until the study has enough."""

    def __init__(
        self, opts: TuneOptions, directory: Path, dims: list[tune_space.Dimension], helper: int = 0
    ) -> None:
        # each process of a study samples from its own stream (--jobs: helpers 1, 2, ...)
        self.opts, self.dir, self.dims, self.seed = opts, directory, dims, opts.seed + 7919 * helper
        self.optuna = _optuna()
        self.storage = open_storage(opts, directory)
        self.study = self.optuna.create_study(
            study_name=study_name(opts),
            storage=self.storage,
            sampler=self._sampler(),
            pruner=self._pruner(),
            direction="maximize",
            load_if_exists=True,
        )
        recorded = self.study.user_attrs.get("env_id")
        if recorded is not None and recorded != opts.env_id:
            raise ConfigError(
                f"study '{self.study.study_name}' tunes {recorded}, not {opts.env_id}"
            )
        if recorded is None:
            self.study.set_user_attr("env_id", opts.env_id)

    def _sampler(self) -> Any:
        s, seed = self.optuna.samplers, self.seed
        if self.opts.sampler == "random":
            return s.RandomSampler(seed=seed)
        return s.TPESampler(seed=seed, n_startup_trials=max(self.opts.startup_trials, 1))

    def _pruner(self) -> Any:
        p = self.optuna.pruners
        if self.opts.pruner == "median":
            warmup = max(self.opts.evaluations // 3, 0)
            return p.MedianPruner(n_startup_trials=self.opts.startup_trials, n_warmup_steps=warmup)
        if self.opts.pruner == "halving":
            return p.SuccessiveHalvingPruner()
        return p.NopPruner()

    def fail_abandoned(self) -> None:
        """Trials left running by a process of this machine that is gone (killed) are failed."""
        host = socket.gethostname()
        for t in self.study.get_trials(deepcopy=False):
            if t.state.name != "RUNNING" or t.user_attrs.get("host") != host:
                continue
            pid = t.user_attrs.get("pid")
            if pid is None or (pid != os.getpid() and _alive(int(pid))):
                continue
            self._fail(t.number, "interrupted (its process stopped)")

    def _fail(self, number: int, reason: str) -> None:
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        self.storage.set_trial_user_attr(trial_id, "reason", reason)
        self.storage.set_trial_state_values(trial_id, self.optuna.trial.TrialState.FAIL)

    def run(self) -> None:
        done = self.optuna.study.MaxTrialsCallback(self.opts.trials, states=None)
        if len(self.study.get_trials(deepcopy=False)) >= self.opts.trials:
            return
        self.study.optimize(
            self.objective,
            callbacks=[done, _say],
            catch=(Exception,),
            gc_after_trial=True,
            timeout=self.opts.timeout_s,
        )

    def objective(self, trial: Any) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = {d.key: d.suggest(trial) for d in self.dims}
        trial.set_user_attr("hyperparameters", params)
        run_dir = self.dir / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            return self._train(trial, params, run_dir)
        except (KeyboardInterrupt, self.optuna.TrialPruned):
            raise
        except Exception as e:  # the study goes on; the trial is failed with its reason
            reason = (
                f"{type(e).__name__}: {first_line(e)}" if not isinstance(e, A3CError) else str(e)
            )
            trial.set_user_attr("reason", reason)
            raise

    def _train(self, trial: Any, params: dict[str, Any], run_dir: Path) -> float:
        from a3c.agent import A3C

        o = self.opts
        # evaluations by steps when the budget is in steps, else by time
        every_steps = None if o.budget_steps is None else max(o.budget_steps // o.evaluations, 1)
        every_s = None if o.budget_s is None or every_steps else o.budget_s / o.evaluations
        settings = {
            **o.overrides,
            **params,
            "run.seed": o.seed + trial.number,
            "run.total_steps": o.budget_steps or 10**15,
            "run.max_time": o.budget_s,
            "run.target_return": None,
            "eval.episodes": o.eval_episodes,
            "eval.interval_steps": every_steps,
            "eval.interval_s": every_s,
            "log.checkpoint_keep": 1,
        }
        agent = A3C(o.env_id, config_files=o.config_files, **settings)
        pruning = Pruning(trial)
        summary = agent.learn(run_dir=run_dir, progress="none", callback=pruning)
        trial.set_user_attr("steps", summary["steps"])
        trial.set_user_attr("wall_s", summary["wall_s"])
        if summary["stop_reason"] in ("interrupted", "terminated"):
            trial.set_user_attr("reason", f"interrupted ({summary['stop_reason']})")
            raise KeyboardInterrupt
        if pruning.pruned_at is not None:
            trial.set_user_attr("pruned_at", pruning.pruned_at)
            raise self.optuna.TrialPruned(f"pruned at {pruning.pruned_at} steps")
        if summary.get("error"):
            raise A3CError(summary["error"])
        final = agent.evaluate(episodes=o.final_episodes, seed=o.seed + 10_000 + trial.number)
        if not math.isfinite(final["mean"]):
            raise A3CError(f"the final evaluation's mean is not finite ({final['mean']})")
        trial.set_user_attr("final_eval", {k: final[k] for k in ("mean", "std", "episodes")})
        return float(final["mean"])

    def stop_running(self, why: str) -> None:
        """This process's running trial (if Optuna left one) is failed with `why`."""
        for t in self.study.get_trials(deepcopy=False):
            if t.state.name == "RUNNING" and t.user_attrs.get("pid") == os.getpid():
                self._fail(t.number, why)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _say(study: Any, t: Any) -> None:
    """One line per finished trial."""
    print(tune_report.trial_line(t), flush=True)


def study_name(opts: TuneOptions) -> str:
    return opts.study or "a3c-" + opts.env_id.replace("/", "_").replace(":", "_")


def open_storage(opts: TuneOptions, directory: Path) -> Any:
    """The study's storage: an RDB URL, a journal file, or the study directory's journal."""
    optuna = _optuna()
    where = opts.storage
    if where is not None and "://" in where:
        try:
            return optuna.storages.RDBStorage(where, heartbeat_interval=60, grace_period=180)
        except Exception as e:  # a bad URL, a missing driver, a server that is not there
            raise ConfigError(f"--storage {where}: {type(e).__name__}: {first_line(e)}") from None
    path = Path(where) if where is not None else directory / JOURNAL
    from optuna.storages.journal import JournalFileBackend

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as e:
        raise ConfigError(f"the study's journal {path}: {e.strerror or e}") from None


def _study_dir(opts: TuneOptions) -> Path:
    if opts.study_dir:
        return Path(opts.study_dir)
    return Path("runs") / f"tune-{study_name(opts).removeprefix('a3c-')}"


def tune(env_id: str, trials: int, **options: Any) -> dict[str, Any]:
    """Run (or resume) a study of `trials` trials on `env_id`; returns its report (also
    STUDY_DIR/study.json). Options are TuneOptions' fields: budget_steps, budget_s, sampler,
    pruner, storage, study, jobs, space, study_dir, evaluations, eval_episodes, final_episodes,
    startup_trials, seed, timeout_s (no trial starts after it), config_files, overrides (config
    keys fixed for every trial)."""
    opts = TuneOptions(env_id, trials, **options)
    opts.check()
    dims = _dimensions(opts)
    directory = _study_dir(opts)
    directory.mkdir(parents=True, exist_ok=True)
    study = Study(opts, directory, dims)
    study.fail_abandoned()
    (directory / "space.yaml").write_text(tune_report.space_yaml(dims))
    helpers = _start_helpers(opts, directory) if opts.jobs > 1 else []
    stopped = None
    started = time.monotonic()
    try:
        with sigterm_raises():
            study.run()
    except KeyboardInterrupt:
        stopped = "interrupted"
    except Terminated:
        stopped = "terminated"
    finally:
        _stop_helpers(helpers, stopped is not None)
        if stopped is not None:
            study.stop_running(f"interrupted ({stopped})")
    from a3c.config import canonical_key

    fixed = {canonical_key(k): v for k, v in opts.overrides.items()}
    report = tune_report.write(study.study, directory, dims, opts.env_id, fixed)
    report.update(stopped=stopped, wall_s=round(time.monotonic() - started, 1))
    return report


def _dimensions(opts: TuneOptions) -> list[tune_space.Dimension]:
    """The search space, and a first check of the env and the fixed settings (one line now, not a
    failed trial each)."""
    from a3c.agent import A3C
    from a3c.configfile import env_family

    agent = A3C(opts.env_id, config_files=opts.config_files, **opts.overrides)
    if opts.space is not None:
        return tune_space.load(opts.space)
    return tune_space.default(env_family(opts.env_id, agent.observation_space))


def _start_helpers(opts: TuneOptions, directory: Path) -> list[Any]:
    """`--jobs J`: J - 1 more processes on the same storage (each trial trains in the main thread
    of its process, as the signals and the time limit need)."""
    import multiprocessing

    from a3c.configfile import build_config

    backend = build_config(opts.env_id, opts.config_files, opts.overrides).backend
    workers = 1 if backend.name == "serial" else backend.workers
    cores = os.cpu_count() or 1
    if workers * opts.jobs > cores:
        log.warning(
            "a3c: warning: --jobs %d trials x %d workers = %d processes on %d cores share them "
            "(set workers=%d with --set, or fewer --jobs)",
            opts.jobs,
            workers,
            workers * opts.jobs,
            cores,
            max(cores // opts.jobs, 1),
        )
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_helper, args=(opts, directory, i), daemon=False)
        for i in range(1, opts.jobs)
    ]
    for p in procs:
        p.start()
    return procs


def _helper(opts: TuneOptions, directory: Path, index: int) -> None:
    study = Study(opts, directory, _dimensions(opts), helper=index)
    try:
        with sigterm_raises():
            study.run()
    except (KeyboardInterrupt, Terminated):
        study.stop_running("interrupted")


def _stop_helpers(procs: list[Any], interrupted: bool) -> None:
    for p in procs:
        if interrupted and p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
            p.join(timeout=10)
