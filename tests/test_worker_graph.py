"""model.keep_rollout_graph: the kept graph pushes the same gradients as re-evaluating the rollout."""

from __future__ import annotations

import pytest
import torch

from a3c import A3C, build_config
from a3c.optim import GlobalParams
from a3c.worker import Worker


def _pushed_gradients(graph_rollout: bool, overrides: dict, updates: int = 3) -> list[torch.Tensor]:
    base = {"backend": "serial", "workers": 1, "seed": 3, "n_steps": 5, "envs_per_worker": 4, "keep_rollout_graph": graph_rollout}
    cfg = build_config("fake_envs:Pixels", overrides={**base, **overrides})
    torch.manual_seed(0)
    agent = A3C("fake_envs:Pixels", config=cfg)
    store = GlobalParams(agent.model, cfg.optim, 1, agent.n_actor)
    worker = Worker(cfg, 0, store)
    assert worker.graph_rollout == graph_rollout
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


def _keeps_graph(env_id: str, overrides: dict) -> bool:
    cfg = build_config(env_id, overrides={"backend": "serial", "workers": 1, **overrides})
    agent = A3C(env_id, config=cfg)
    return Worker(cfg, 0, GlobalParams(agent.model, cfg.optim, 1, agent.n_actor)).graph_rollout


def test_rollouts_are_re_evaluated_unless_the_graph_is_asked_for():
    assert not _keeps_graph("fake_envs:Pixels", {"envs_per_worker": 8})
    assert not _keeps_graph("CartPole-v1", {})
    assert _keeps_graph("fake_envs:Pixels", {"keep_rollout_graph": True})
