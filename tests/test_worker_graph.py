"""Image models keep the rollout's graph for the loss: the same gradients as re-evaluating it."""

from __future__ import annotations

import pytest
import torch

from a3c import A3C, build_config
from a3c.optim import GlobalParams
from a3c.worker import Worker


def _pushed_gradients(graph_rollout: bool, overrides: dict, updates: int = 3) -> list[torch.Tensor]:
    cfg = build_config("fake_envs:Pixels", overrides={"backend": "serial", "workers": 1, "seed": 3, "n_steps": 5, "envs_per_worker": 4, **overrides})
    torch.manual_seed(0)
    agent = A3C("fake_envs:Pixels", config=cfg)
    store = GlobalParams(agent.model, cfg.optim, 1, agent.n_actor)
    worker = Worker(cfg, 0, store)
    worker.graph_rollout = graph_rollout
    pushed: list[torch.Tensor] = []
    store.push = lambda grad, *a, **k: pushed.append(grad.clone()) or 0
    ended = truncated = 0
    for _ in range(updates):
        worker.update()
        ended += int(worker.end_np.sum())
        truncated += int((worker.end_np - worker.term_np).sum())
    assert ended > 0 and truncated > 0, "the rollouts must cross episode ends and time-limit truncations"
    return pushed


@pytest.mark.parametrize("overrides", [{}, {"lstm": True, "lstm_size": 16}], ids=["feed-forward", "lstm"])
def test_graph_rollout_pushes_the_gradients_of_the_re_evaluated_rollout(overrides):
    kept = _pushed_gradients(True, overrides)
    again = _pushed_gradients(False, overrides)
    assert len(kept) == len(again) == 3
    for a, b in zip(kept, again, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_image_models_keep_the_graph_and_small_models_do_not():
    cfg = build_config("fake_envs:Pixels", overrides={"backend": "serial", "workers": 1})
    agent = A3C("fake_envs:Pixels", config=cfg)
    assert Worker(cfg, 0, GlobalParams(agent.model, cfg.optim, 1, agent.n_actor)).graph_rollout
    cfg = build_config("CartPole-v1", overrides={"backend": "serial", "workers": 1})
    agent = A3C("CartPole-v1", config=cfg)
    assert not Worker(cfg, 0, GlobalParams(agent.model, cfg.optim, 1, agent.n_actor)).graph_rollout
