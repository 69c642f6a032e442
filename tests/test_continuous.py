"""Gaussian policies for Box actions, action clipping, observation normalisation, a learning
test."""

from __future__ import annotations

import math

import fake_envs  # tests/fake_envs.py (conftest puts tests/ on sys.path)
import gymnasium as gym
import numpy as np
import pytest
import torch

from a3c import A3C, build_config, normalize
from a3c.config import ModelConfig
from a3c.heads import GaussianHead, gaussian_logp_entropy
from a3c.models import make_model
from a3c.normalize import ObservationStats
from a3c.store import SharedStore
from a3c.worker import Worker

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)  # 0.918939...


def test_gaussian_logp_and_entropy_by_hand():
    mean = torch.tensor([[0.0, 1.0]])
    std = torch.tensor([[1.0, 2.0]])
    a = torch.tensor([[0.0, 2.0]])
    logp, ent = gaussian_logp_entropy(mean, std, a)
    # dim 0: z = 0 -> -0.9189385; dim 1: z = 0.5 -> -0.125 - ln 2 - 0.9189385
    expected = -HALF_LOG_2PI + (-0.125 - math.log(2.0) - HALF_LOG_2PI)
    assert logp.item() == pytest.approx(expected, abs=1e-6)
    # entropy per dim: 1/2 + 1/2 ln(2 pi) + ln std
    assert ent.item() == pytest.approx((0.5 + HALF_LOG_2PI) * 2 + math.log(2.0), abs=1e-6)


def test_gaussian_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, std, a = (
        torch.randn(5, 3, generator=g),
        torch.rand(5, 3, generator=g) + 0.1,
        torch.randn(5, 3, generator=g),
    )
    ref = torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)
    logp, ent = gaussian_logp_entropy(mean, std, a)
    torch.testing.assert_close(logp, ref.log_prob(a))
    torch.testing.assert_close(ent, ref.entropy())


@pytest.mark.parametrize("kind", ["state_independent", "softplus"])
def test_gaussian_head_starts_at_log_std_init(kind):
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    model = make_model(
        gym.spaces.Box(-1, 1, (3,)), space, ModelConfig(gaussian=kind, log_std_init=-0.5)
    )
    assert isinstance(model.policy_head, GaussianHead)
    out, v, _ = model(torch.zeros(4, 3))
    assert out.shape == (4, 3, 2) and v.shape == (4,)
    torch.testing.assert_close(out[:, 1], torch.full((4, 2), math.exp(-0.5)), rtol=1e-4, atol=1e-4)
    if kind == "softplus":
        assert model.policy_head.var.weight.requires_grad  # the variance is state-dependent


def test_actions_are_clipped_for_the_env_but_logp_is_of_the_unclipped_sample():
    # A wide policy: most samples fall outside [-1, 1]; Target1D asserts that it receives clipped
    # actions.
    cfg = build_config(
        overrides={"backend": "serial", "workers": 1, "log_std_init": 1.5, "n_steps": 10}
    )
    cfg = cfg.replace({"env.id": "fake_envs:Target1D"})
    agent = A3C(fake_envs.Target1D, config=cfg)
    store = SharedStore.for_model(agent.model, cfg)
    worker = Worker(cfg, 0, store, fake_envs.Target1D)
    worker.update()
    stored = worker.act_buf
    assert (stored.abs() > 1.0).any(), "the rollout keeps the unclipped sample"
    assert store.progress().updates == 1


def test_observation_normalisation_statistics():
    stats = ObservationStats(2, 3)
    stats.update(0, torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))
    stats.update(1, torch.tensor([[[2.0, 2.0, 2.0]]]))
    mean, std = normalize.mean_std(stats.table)
    torch.testing.assert_close(mean, torch.tensor([2.0, 2.0, 2.0]))
    torch.testing.assert_close(
        std, torch.tensor([math.sqrt(2 / 3), 1e-4, math.sqrt(2 / 3)]), atol=1e-4, rtol=1e-4
    )
    x = stats.snapshot()(torch.tensor([[4.0, 2.0, 100.0]]))
    assert x[0, 0] == pytest.approx(2 / math.sqrt(2 / 3), rel=1e-4) and x[0, 2] == normalize.CLIP


@pytest.mark.parametrize("normalize_obs", [False, True])
def test_continuous_control_learns_a_1d_target(tmp_path, normalize_obs):
    """Target1D: standing still scores about -10; a good policy about -1.5."""
    agent = A3C(
        fake_envs.Target1D,
        backend="serial",
        workers=2,
        seed=0,
        total_steps=50_000,
        n_steps=5,
        learning_rate=3e-3,
        normalize_obs=normalize_obs,
        target_return=None,
        log_interval=10_000,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["return_mean"] >= -3.0
    if normalize_obs:
        mean, std = normalize.mean_std(agent.obs_stats.table)
        # target ~ U(-1, 1): std 0.577
        assert abs(float(mean[1])) < 0.2 and 0.4 < float(std[1]) < 0.75


def test_mujoco_inverted_pendulum_runs(tmp_path):
    pytest.importorskip("mujoco")
    agent = A3C(
        "InvertedPendulum-v5", backend="serial", workers=1, total_steps=3_000, log_interval=1_000
    )
    assert agent.config.env.normalize_obs  # from the MuJoCo preset
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["steps"] >= 3_000 and summary["episodes"] > 0
    assert summary["return_mean"] > 0


def test_gsde_noise_is_state_dependent_and_fixed_within_a_rollout():
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    model = make_model(
        gym.spaces.Box(-1, 1, (3,)),
        space,
        ModelConfig(gaussian="sde", log_std_init=-1.0, hidden=(4,)),
    )
    head = model.policy_head
    obs = torch.randn(5, 3)
    g = torch.Generator().manual_seed(0)
    head.resample(g)
    out1, _, _ = model(obs)
    out2, _, _ = model(obs)
    # same matrix: the same noise for the same state
    torch.testing.assert_close(out1[:, 2], out2[:, 2])
    h = model.pi_body(model.encoder(obs)).detach()
    torch.testing.assert_close(out1[:, 2], h @ head.noise_matrix)
    torch.testing.assert_close(out1[:, 1], torch.sqrt(h.pow(2) @ head.log_std.exp().pow(2) + 1e-6))
    a = head.sample(out1, g)
    torch.testing.assert_close(a, out1[:, 0] + out1[:, 2])
    head.resample(g)
    out3, _, _ = model(obs)
    assert not torch.allclose(out1[:, 2], out3[:, 2])  # a new rollout draws a new matrix
    # not trained, not in the flat vector
    assert "noise_matrix" not in dict(model.named_parameters())
