"""The tutorial's practice script: asynchronous workers solve CliffWalking with shared tables.

    a3c cliff [--workers 3] [--backend processes|serial] [--episodes N] [--seed S]
              [--compare-workers 1,3]

    from a3c.demos import cliff
    result = cliff.run(workers=3, episodes=400, seed=0)
    result.greedy_return, result.reaches_goal, result.probs  # [48, 4] table of pi(a|s)

No second training loop: this is `a3c.A3C(env_id, ...).learn(...)` with a tabular model (one-hot
encoder, no hidden layer: the policy head's weight is the softmax table theta[s, a], the value
head's weight the table V[s], both starting at zero) and plain SGD with separate actor and critic
learning rates. Each worker pulls the global tables, collects an n-step rollout, computes the
advantages of eq. 1 and the gradients of eq. 2 (policy, with entropy bonus) and eq. 3 (1/2 A^2), and
pushes them: theta_global += actor_lr * grad_theta, V_global += critic_lr * grad_V
(optim.apply_update, "sgd").

The run directory gets the engine's files (config.json, progress.csv, episodes.csv) and the demo's:
returns.png (Figure 1 of the tutorial), policy_heatmap.png (Figure 2) and a summary.json that adds
the greedy evaluation and the final table of action probabilities to the trainer's summary.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from a3c.errors import ConfigError, EnvError

if TYPE_CHECKING:  # torch loads at the first run, not when `a3c --help` builds this demo's parser
    from a3c.models import ActorCritic

SHAPE = (4, 12)  # rows, columns of the grid; states are numbered row-major
START, GOAL = 36, 47  # bottom-left and bottom-right cells
CLIFF = tuple(range(37, 47))  # the bottom row between them
ACTIONS = ("up", "right", "down", "left")  # Gymnasium's CliffWalking action numbering
FALL_REWARD = -100.0  # a step into the cliff: -100 and back to the start (the episode goes on)
OPTIMAL_RETURN = -13.0  # along the cliff edge: 1 up, 11 right, 1 down
# the longest monotone path (along the top row): the bar a greedy policy must meet
SAFE_RETURN = -17.0

DEFAULT_WORKERS = 3
DEFAULT_EPISODES = 400
DEFAULT_SEED = 0
SMOOTHING = 25  # episodes in the moving average of the figures
# the linear lower panel of returns.png: where the learned policies sit
RETURNS_ZOOM = (-60.0, -10.0)

# The demo's hyperparameters, layered over the tabular preset (any config key; see docs/cliff.md
# for why each value). `run.total_steps` is set from the episode budget in `run`.
DEMO_CONFIG: dict[str, Any] = {
    "model.hidden": (),  # one-hot encoder + linear heads = the tutorial's tables
    "optim.name": "sgd",  # plain SGD: theta += lr * grad, no optimizer statistics
    "optim.learning_rate": 0.2,  # actor_lr
    "optim.critic_learning_rate": 0.25,  # critic_lr
    "optim.lr_schedule": "constant",
    "algo.n_steps": 5,
    "algo.gamma": 0.95,
    "algo.gae_lambda": 1.0,  # the n-step advantage of eq. 1 exactly
    "algo.ent_coef": 0.01,  # the tutorial's beta
    "algo.vf_coef": 1.0,  # so critic_lr is the step on 1/2 A^2 itself (eq. 3)
    # Clip by global norm: without it about 1 run in 6 collapsed (a -100 fall moves the start
    # state's logits by units in one step, the softmax saturates and its gradient vanishes).
    "algo.max_grad_norm": 2.0,
    "env.envs_per_worker": 1,  # one env per worker, as in the tutorial
    "env.max_episode_steps": 100,  # bounds early random episodes; truncation bootstraps from V
    "run.target_return": None,  # the budget is episodes: never stop on the return
    "log.log_interval": 200,  # progress rows (and the episode-budget check) every 200 global steps
    "run.return_window": SMOOTHING,
}


@dataclass
class CliffResult:
    """What `run` returns: the tables, the greedy evaluation, the files written."""

    run_dir: Path
    summary: dict[str, Any]  # also in run_dir/summary.json
    probs: np.ndarray  # [48, 4] pi(a|s), the softmax of the policy table
    values: np.ndarray  # [48] V(s)
    theta: np.ndarray  # [48, 4] the policy table (logits)
    path: list[int]  # states visited by the greedy policy from the start
    files: dict[str, Path] = field(default_factory=dict)  # figure name -> PNG
    compare: dict[int, Path] = field(default_factory=dict)  # workers -> run directory

    @property
    def greedy_return(self) -> float:
        return float(self.summary["greedy_return"])

    @property
    def reaches_goal(self) -> bool:
        return bool(self.summary["reaches_goal"])


def resolve_env_id() -> str:
    """The newest registered `CliffWalking-vN` (v1 on Gymnasium 1.x); never the slippery variant."""
    versions = [
        (int(m.group(1)), k) for k in gym.registry if (m := re.fullmatch(r"CliffWalking-v(\d+)", k))
    ]
    if not versions:
        raise EnvError("Gymnasium has no CliffWalking-vN registered (need gymnasium>=1.0)")
    return max(versions)[1]


def parse_worker_counts(text: str | Sequence[int] | None) -> list[int]:
    """`"1,3"` -> [1, 3]: distinct counts, each >= 1, in the order given (ConfigError otherwise)."""
    if text is None:
        return []
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    counts: list[int] = []
    for item in items:
        k = _as_int(item)
        if k is None:
            raise ConfigError(
                "--compare-workers expects worker counts separated by commas (e.g. 1,3), got "
                f"{text!r}"
            )
        if k < 1:
            raise ConfigError(f"--compare-workers: worker counts must be >= 1, got {k}")
        if k not in counts:
            counts.append(k)
    if len(counts) < 2:
        raise ConfigError(
            f"--compare-workers needs at least two different worker counts (e.g. 1,3), got {text!r}"
        )
    return counts


def _as_int(item: Any) -> int | None:
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    return int(item) if isinstance(item, str) and re.fullmatch(r"[+-]?\d+", item) else None


def tables(
    model: ActorCritic, n_states: int = SHAPE[0] * SHAPE[1], n_actions: int = len(ACTIONS)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta [S, A], pi [S, A], V [S]) read from a tabular ActorCritic's head weights."""
    import torch

    from a3c.heads import CategoricalHead

    head = model.policy_head
    if not isinstance(head, CategoricalHead):
        raise RuntimeError(f"not a tabular model: its policy head is a {type(head).__name__}")
    w = head.weight.detach()
    v = model.value_head.weight.detach()
    if tuple(w.shape) != (n_actions, n_states) or tuple(v.shape) != (1, n_states):
        raise RuntimeError(
            f"not a tabular model: policy head {list(w.shape)}, value head {list(v.shape)} "
            f"(expected [{n_actions}, {n_states}] and [1, {n_states}])"
        )
    theta = w.T.contiguous()
    return theta.numpy().copy(), torch.softmax(theta, dim=1).numpy(), v[0].numpy().copy()


def greedy_rollout(
    theta: np.ndarray, env_id: str | None = None, max_steps: int = 100
) -> tuple[float, bool, list[int]]:
    """Follow argmax_a theta[s, a] from the start in a fresh (deterministic) env.

    Returns (return, reaches_goal, visited states). reaches_goal: the goal was reached within
    max_steps and no step fell into the cliff (a reward of -100).
    """
    env = gym.make(env_id or resolve_env_id())
    try:
        s, _ = env.reset(seed=0)
        s = int(s)
        path, total, fell = [s], 0.0, False
        for _ in range(max_steps):
            s, r, terminated, truncated, _ = env.step(int(np.argmax(theta[s])))
            s = int(s)
            total += float(r)
            fell |= float(r) <= FALL_REWARD
            path.append(s)
            if terminated or truncated:
                break
        return total, bool(s == GOAL and not fell), path
    finally:
        env.close()


def _episode_budget_callback(episodes: int) -> Callable[[Mapping[str, Any]], bool | None]:
    def callback(row: Mapping[str, Any]) -> bool | None:
        return False if row["episodes"] >= episodes else None

    return callback


def _train(
    workers: int,
    backend: str,
    episodes: int,
    seed: int,
    run_dir: Path,
    overrides: Mapping[str, Any],
    progress: str,
) -> tuple[Any, dict[str, Any]]:
    from a3c.agent import A3C

    config = {**DEMO_CONFIG, **dict(overrides)}
    max_len = config.get("env.max_episode_steps") or DEMO_CONFIG["env.max_episode_steps"]
    # A hard step cap a little above the episode budget (no episode is longer than max_len): the
    # episode callback normally stops first. The lr schedule, if linear, anneals over this horizon.
    config.setdefault("run.total_steps", episodes * max_len + 1000)
    agent = A3C(resolve_env_id(), workers=workers, backend=backend, seed=seed, **config)
    summary = agent.learn(
        run_dir=run_dir, callback=_episode_budget_callback(episodes), progress=progress
    )
    return agent, summary


def run(
    workers: int = DEFAULT_WORKERS,
    backend: str = "processes",
    episodes: int = DEFAULT_EPISODES,
    seed: int = DEFAULT_SEED,
    run_dir: str | Path | None = None,
    compare_workers: str | Sequence[int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: str = "none",
    plots: bool = True,
) -> CliffResult:
    """Train the tabular actor-critic on CliffWalking, evaluate its greedy policy, draw the figures.

    Args:
      workers: asynchronous workers of the main run.
      backend: "processes" (default) or "serial" (deterministic for a seed).
      episodes: the budget: training stops once the workers have finished this many episodes.
      seed: seed of the run (each worker derives its own from (seed, worker index)).
      run_dir: where to write; default runs/cliff-DATE-TIME.
      compare_workers: e.g. "1,3": also run the same budget with each count (in run_dir/workers-K,
        the main run is reused for its own count) and draw compare_workers.png.
      overrides: config keys over DEMO_CONFIG, e.g. {"algo.n_steps": 10}.
      progress: the trainer's console output: "none", "lines", "bar" or "auto".
      plots: write the PNGs (set False to skip matplotlib).
    """
    _check_int("--workers", workers, 1)
    _check_int("--episodes", episodes, 1)
    _check_int("--seed", seed, 0)
    if backend not in ("processes", "serial"):
        raise ConfigError(f"--backend must be processes or serial, got {backend!r}")
    counts = parse_worker_counts(compare_workers)
    from a3c.config import resolve_key
    from a3c.runlog import default_run_dir

    # unknown keys fail now
    overrides = {".".join(resolve_key(k)): v for k, v in dict(overrides or {}).items()}
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir("cliff")
    max_len = int(overrides.get("env.max_episode_steps") or DEMO_CONFIG["env.max_episode_steps"])

    start = time.monotonic()
    agent, train_summary = _train(workers, backend, episodes, seed, run_dir, overrides, progress)
    theta, probs, values = tables(agent.model)
    greedy_return, reaches_goal, path = greedy_rollout(theta, agent.config.env.id, max_len)
    wall = time.monotonic() - start  # training (process start-up included) + evaluation

    files: dict[str, Path] = {}
    if plots:
        files.update(_draw(run_dir, probs, path, greedy_return, workers, seed))
    summary = {
        **train_summary,
        "stop_reason": "episodes"
        if train_summary.get("stop_reason") == "callback"
        else train_summary.get("stop_reason"),
        "greedy_return": greedy_return,
        "reaches_goal": reaches_goal,
        "episodes": int(train_summary["episodes"]),
        "episode_budget": episodes,
        "wall_s": round(wall, 3),
        "train_wall_s": train_summary.get("wall_s"),
        "workers": workers,
        "greedy_path": path,
        "optimal_return": OPTIMAL_RETURN,
        "safe_return": SAFE_RETURN,
        "grid_shape": list(SHAPE),
        "actions": list(ACTIONS),
        "action_probs": np.round(probs, 6).tolist(),
        "values": np.round(values, 4).tolist(),
        "files": {k: p.name for k, p in files.items()},
    }
    _write_summary(run_dir, summary)
    result = CliffResult(run_dir, summary, probs, values, theta, path, files)
    if counts and summary["stop_reason"] != "interrupted":
        _compare(result, counts, workers, backend, episodes, seed, overrides, progress, plots)
    return result


def _write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    from a3c.io import write_json_atomic  # non-finite numbers become null

    write_json_atomic(run_dir / "summary.json", summary)


def _compare(
    result: CliffResult,
    counts: list[int],
    workers: int,
    backend: str,
    episodes: int,
    seed: int,
    overrides: dict[str, Any],
    progress: str,
    plots: bool,
) -> None:
    """The same budget with each worker count (the main run reused for its own), and
    compare_workers.png."""
    run_dir, summary = result.run_dir, result.summary
    runs: dict[int, Path] = {}
    for k in counts:
        if k == workers:
            runs[k] = run_dir
            continue
        sub = run_dir / f"workers-{k}"
        _train(k, backend, episodes, seed, sub, overrides, progress)
        runs[k] = sub
    result.compare = runs
    if plots:
        from a3c import plots as plotting

        fig = plotting.compare_workers_figure(
            {
                f"{k} worker{'s' if k > 1 else ''}": plotting.load_episodes(p)
                for k, p in runs.items()
            },
            window=SMOOTHING,
            optimal_return=OPTIMAL_RETURN,
            zoom=RETURNS_ZOOM,
            title=f"CliffWalking: aggregate return with {', '.join(map(str, counts))} workers, "
            f"{episodes} episodes each ({backend}, seed {seed})",
        )
        result.files["compare_workers"] = plotting.save_figure(fig, run_dir / "compare_workers.png")
    summary["compare_workers"] = {str(k): str(p) for k, p in runs.items()}
    summary["files"] = {k: p.name for k, p in result.files.items()}
    _write_summary(run_dir, summary)


def _draw(
    run_dir: Path, probs: np.ndarray, path: list[int], greedy_return: float, workers: int, seed: int
) -> dict[str, Path]:
    from a3c import plots as plotting

    data = plotting.load_episodes(run_dir / "episodes.csv")
    out = {}
    fig = plotting.returns_figure(
        data,
        window=SMOOTHING,
        optimal_return=OPTIMAL_RETURN,
        zoom=RETURNS_ZOOM,
        title=f"CliffWalking: episode returns of {workers} asynchronous "
        f"worker{'s' if workers > 1 else ''} (seed {seed})",
    )
    out["returns"] = plotting.save_figure(fig, run_dir / "returns.png")
    fig = plotting.policy_heatmap_figure(
        probs,
        SHAPE,
        ACTIONS,
        path=path,
        hazards=CLIFF,
        marks={START: ("S", "start"), GOAL: ("G", "goal")},
        terminal=(GOAL,),
        title=f"Global policy after training: pi(a | cell); greedy path return {greedy_return:g} "
        f"(optimal {OPTIMAL_RETURN:g})",
    )
    out["policy_heatmap"] = plotting.save_figure(fig, run_dir / "policy_heatmap.png")
    return out


def _check_int(flag: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{flag} must be an integer >= {low}, got {value!r}")
