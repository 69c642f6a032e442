"""The cliff demo (issue 3): tabular gradients by hand, serial determinism, a short learning run,
the files it writes, its command line and its plotting helpers."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from a3c import algo, plots
from a3c.configfile import build_config
from a3c.demos import cliff, cliff_cli
from a3c.errors import ConfigError
from a3c.heads import categorical_logp_entropy
from a3c.models import make_model
from a3c.optim import apply_update

N_STATES, N_ACTIONS = 48, 4


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="a3c")
    sub = p.add_subparsers(dest="command", required=True)
    cliff_cli.add_parser(sub)
    return p


def tabular_model():
    cfg = build_config(cliff.resolve_env_id(), overrides=cliff.DEMO_CONFIG)
    return cfg, make_model(gym.spaces.Discrete(N_STATES), gym.spaces.Discrete(N_ACTIONS), cfg.model)


# --- the tables and their gradients -------------------------------------------------------------


def test_demo_model_is_two_zero_tables():
    _, model = tabular_model()
    assert [tuple(p.shape) for p in model.ordered_parameters()] == [
        (N_ACTIONS, N_STATES),
        (1, N_STATES),
    ]
    theta, probs, values = cliff.tables(model)
    assert theta.shape == (N_STATES, N_ACTIONS) and not theta.any()
    np.testing.assert_allclose(probs, 0.25)
    assert values.shape == (N_STATES,) and not values.any()


def hand_gradients(theta, v, s_t, a_t, g_t, beta):
    """The tutorial's ascent directions, written like the formulas, one transition at a time:
    grad_theta[s] += A (onehot(a) - pi(.|s)) + beta dH/dtheta[s],
    dH/dtheta_j = -pi_j (log pi_j + H);
    grad_V[s] += A  (= -d/dV 1/2 A^2),  with A = G - V(s); both averaged over the N transitions."""
    n = len(s_t)
    g_theta, g_v = np.zeros_like(theta), np.zeros_like(v)
    for s, a, g in zip(s_t, a_t, g_t, strict=True):
        pi = np.exp(theta[s] - theta[s].max())
        pi /= pi.sum()
        adv = g - v[s]
        onehot = np.eye(N_ACTIONS)[a]
        entropy = -(pi * np.log(pi)).sum()
        g_theta[s] += (adv * (onehot - pi) + beta * (-pi * (np.log(pi) + entropy))) / n
        g_v[s] += adv / n
    return g_theta, g_v


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_tabular_gradients_equal_hand_derived(beta):
    _, model = tabular_model()
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(N_STATES, N_ACTIONS))
    v = rng.normal(scale=5.0, size=N_STATES)
    with torch.no_grad():
        model.policy_head.weight.copy_(torch.as_tensor(theta.T))
        model.value_head.weight.copy_(torch.as_tensor(v[None]))
    s_t = [36, 24, 24, 25, 13, 36, 47]  # repeats: contributions of one state add up
    a_t = [0, 1, 1, 3, 2, 1, 0]
    g_t = [-5.0, -3.5, 2.0, -100.0, -1.0, -20.0, 0.5]  # value targets (n-step returns of eq. 1)

    out = model(torch.tensor(s_t))
    logits, values = out[0], out[1]
    adv = torch.tensor(g_t) - values.detach()
    logp, entropy = categorical_logp_entropy(logits, torch.tensor(a_t))
    loss = algo.a3c_loss(logp, entropy, values, adv, ent_coef=beta, vf_coef=1.0)
    grad_w, grad_v = torch.autograd.grad(loss.total, model.ordered_parameters())

    want_theta, want_v = hand_gradients(theta, v, s_t, a_t, g_t, beta)
    # The loss is minimised, so its gradient is minus the ascent direction of the tutorial.
    np.testing.assert_allclose(-grad_w.T.double().numpy(), want_theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(-grad_v[0].double().numpy(), want_v, rtol=1e-5, atol=1e-6)
    assert np.abs(want_theta).sum() > 1.0 and np.abs(want_v).sum() > 1.0  # a non-trivial case


def test_sgd_push_is_the_tutorials_update():
    """theta_global += actor_lr * grad_theta and V_global += critic_lr * grad_V, lrs kept apart."""
    cfg, model = tabular_model()
    n_actor = sum(p.numel() for p in model.actor_parameters())
    flat = torch.randn(n_actor + N_STATES)
    before = flat.clone()
    # the objective's gradient; the engine pushes the loss's, -ascent
    ascent = torch.randn_like(flat)
    actor_lr, critic_lr = cfg.optim.learning_rate, cfg.optim.critic_learning_rate
    assert (cfg.optim.name, actor_lr != critic_lr) == ("sgd", True)
    apply_update("sgd", flat, -ascent, {}, cfg.optim, actor_lr, critic_lr, n_actor)
    torch.testing.assert_close(flat[:n_actor], before[:n_actor] + actor_lr * ascent[:n_actor])
    torch.testing.assert_close(flat[n_actor:], before[n_actor:] + critic_lr * ascent[n_actor:])


# --- greedy evaluation --------------------------------------------------------------------------


def path_table(moves: str) -> np.ndarray:
    """A policy table that follows `moves` (letters u/r/d/l) from the start."""
    theta = np.zeros((N_STATES, N_ACTIONS))
    step = {"u": (-1, 0), "r": (0, 1), "d": (1, 0), "l": (0, -1)}
    r, c = divmod(cliff.START, 12)
    for m in moves:
        theta[r * 12 + c, "urdl".index(m)] = 5.0
        r, c = r + step[m][0], c + step[m][1]
    return theta


def test_greedy_rollout_scores_paths():
    ret, ok, path = cliff.greedy_rollout(path_table("u" + "r" * 11 + "d"))
    assert (ret, ok, path[0], path[-1], len(path)) == (-13.0, True, cliff.START, cliff.GOAL, 14)
    ret, ok, _ = cliff.greedy_rollout(path_table("uuu" + "r" * 11 + "ddd"))
    assert (ret, ok) == (-17.0, True)
    # Into the cliff: back to the start, and the table there points into the cliff again.
    ret, ok, path = cliff.greedy_rollout(path_table("r"), max_steps=5)
    assert (ret, ok, path) == (-500.0, False, [36] * 6)


# --- training runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`a3c cliff` on the serial backend with a small budget, through the sub-command's parser."""
    run_dir = tmp_path_factory.mktemp("cliff") / "run"
    args = parser().parse_args(
        [
            "cliff",
            "--backend",
            "serial",
            "--episodes",
            "250",
            "--seed",
            "0",
            "--run-dir",
            str(run_dir),
        ]
    )
    code = args.func(args)
    return code, run_dir


def test_demo_learns_a_safe_path(cli_run):
    code, run_dir = cli_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert code == 0
    assert summary["reaches_goal"] is True
    assert summary["greedy_return"] >= cliff.SAFE_RETURN
    assert summary["greedy_path"][0] == cliff.START and summary["greedy_path"][-1] == cliff.GOAL
    assert not set(summary["greedy_path"]) & set(cliff.CLIFF)


def test_demo_writes_its_files(cli_run):
    _, run_dir = cli_run
    for name in (
        "config.json",
        "progress.csv",
        "episodes.csv",
        "summary.json",
        "returns.png",
        "policy_heatmap.png",
    ):
        assert (run_dir / name).is_file(), name
    for name in ("returns.png", "policy_heatmap.png"):
        data = (run_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("greedy_return", "reaches_goal", "episodes", "wall_s", "workers", "action_probs"):
        assert key in summary, key
    probs = np.array(summary["action_probs"])
    assert probs.shape == (N_STATES, N_ACTIONS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (
        summary["workers"] == 3
        and summary["episodes"] >= 250
        and summary["stop_reason"] == "episodes"
    )
    episodes = plots.load_episodes(run_dir)
    assert len(episodes) == summary["episodes"] and episodes.workers == [0, 1, 2]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optim"]["name"] == "sgd" and config["model"]["hidden"] == []


def test_serial_backend_reproduces_the_tables(tmp_path):
    a = cliff.run(backend="serial", episodes=40, seed=3, run_dir=tmp_path / "a", plots=False)
    b = cliff.run(backend="serial", episodes=40, seed=3, run_dir=tmp_path / "b", plots=False)
    c = cliff.run(backend="serial", episodes=40, seed=4, run_dir=tmp_path / "c", plots=False)
    assert np.abs(a.theta).max() > 0.1 and np.abs(a.values).max() > 1.0  # it did learn something
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.summary["steps"] == b.summary["steps"]
    assert not np.array_equal(a.theta, c.theta)  # and the seed matters


def test_compare_workers_on_processes(tmp_path):
    """The default backend end to end, and --compare-workers: the main run is reused for its
    count."""
    result = cliff.run(
        workers=2,
        backend="processes",
        episodes=20,
        seed=0,
        run_dir=tmp_path / "run",
        compare_workers="1,2",
    )
    assert set(result.compare) == {1, 2}
    assert result.compare[2] == tmp_path / "run"
    assert (tmp_path / "run" / "workers-1" / "episodes.csv").is_file()
    assert len(plots.load_episodes(tmp_path / "run" / "workers-1")) >= 20
    assert (tmp_path / "run" / "compare_workers.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["compare_workers"].keys() == {"1", "2"} and summary["backend"] == "processes"


# --- command line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers must be an integer >= 1"),
        (["--episodes", "0"], "--episodes must be an integer >= 1"),
        (["--compare-workers", "abc"], "--compare-workers expects worker counts"),
        (["--compare-workers", "3"], "at least two different worker counts"),
        (["--compare-workers", "0,3"], "worker counts must be >= 1"),
        (["--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
        (["--set", "algo.gamma=2"], "algo.gamma"),
    ],
)
def test_bad_input_is_a_config_error(argv, message, tmp_path):
    args = parser().parse_args(["cliff", *argv, "--run-dir", str(tmp_path / "run")])
    with pytest.raises(ConfigError, match=re.escape(message)):
        cliff_cli.main(args)
    assert not (tmp_path / "run" / "progress.csv").exists()


def test_cli_reports_bad_input_in_one_line(tmp_path):
    """Through `a3c` itself (a subprocess, as a user runs it): exit code 2 and one line."""
    cmd = [
        sys.executable,
        "-m",
        "a3c.cli",
        "cliff",
        "--compare-workers",
        "abc",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "a3c: error: --compare-workers expects worker counts separated by commas (e.g. 1,3), got "
        "'abc'"
    ]


def test_help_lists_every_option():
    sub = argparse.ArgumentParser(prog="a3c").add_subparsers()
    text = cliff_cli.add_parser(sub).format_help()
    for option in (
        "--workers",
        "--backend",
        "--episodes",
        "--seed",
        "--run-dir",
        "--compare-workers",
        "--set",
        "examples:",
    ):
        assert option in text, option


# --- plotting helpers ---------------------------------------------------------------------------


def test_moving_average_is_a_trailing_mean():
    np.testing.assert_allclose(plots.moving_average([1, 2, 3, 4, 5], 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(plots.moving_average([4.0, -2.0, 7.0], 10), [4.0, 1.0, 3.0])
    with pytest.raises(ValueError):
        plots.moving_average([1.0], 0)


def test_heatmap_rejects_a_table_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"probs must be \[48, 4\]"):
        plots.policy_heatmap_figure(np.full((47, 4), 0.25), cliff.SHAPE, cliff.ACTIONS)
