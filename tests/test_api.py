"""The Python API in Stable-Baselines3's habits: the README's example runs as written; save, load
and predict round-trip exactly; evaluating a solved CartPole agent gives a mean return >= 475."""

from __future__ import annotations

import os
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from a3c import A3C, run_checkpoints
from a3c.checkpoint import CheckpointError

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The README's Python block that shows learn, save, load, predict and evaluate."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "A3C.load(" in b and ".evaluate(" in b and ".predict(" in b]
    assert found, "README.md has no Python example of learn / save / load / predict / evaluate"
    return found[0]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Run the README's example as written, in a fresh directory (it trains CartPole to solved)."""
    where = tmp_path_factory.mktemp("readme")
    cwd = os.getcwd()
    os.chdir(where)
    try:
        namespace: dict = {"__name__": "__main__"}
        exec(compile(readme_example(), str(README), "exec"), namespace)
    finally:
        os.chdir(cwd)
    return where, namespace


def test_readme_example_solves_cartpole_and_evaluates_at_least_475(readme_run):
    where, ns = readme_run
    assert ns["summary"]["solved"] is True
    result = ns["result"]
    assert (
        result["episodes"] == 10
        and len(result["returns"]) == 10
        and result["deterministic"] is True
    )
    assert result["mean"] >= 475.0, result
    assert result["mean"] == pytest.approx(np.mean(result["returns"])) and result[
        "std"
    ] == pytest.approx(np.std(result["returns"]))
    assert (where / "cartpole-agent" / "tensors.safetensors").is_file()
    (run,) = (where / "runs").glob("CartPole-v1-*")  # learn()'s default run directory
    assert (run / "checkpoints" / "latest").is_file() and (run / "curves.png").is_file()


def _observations(agent: A3C, n: int = 600) -> np.ndarray:
    """Observations an agent meets (one episode of its own play), plus out-of-distribution ones."""
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=123)
    seen = []
    for _ in range(n // 2):
        seen.append(obs)
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    noise = np.random.default_rng(0).normal(0, 1.5, size=(n - len(seen), 4)).astype(np.float32)
    return np.concatenate([np.stack(seen), noise])


def test_save_load_predict_gives_identical_deterministic_actions(readme_run, tmp_path):
    where, ns = readme_run
    (run,) = (where / "runs").glob("CartPole-v1-*")
    from_run = A3C.load(run)  # the run's final checkpoint
    saved = ns["agent"]  # loaded from what the trained agent saved
    for p, q in zip(from_run.model.parameters(), saved.model.parameters(), strict=True):
        assert torch.equal(p, q), "save() writes the parameters the run ended with"
    obs = _observations(saved)
    actions, _ = saved.predict(obs, deterministic=True)
    assert actions.shape == (len(obs),) and set(np.unique(actions)) == {0, 1}
    saved.save(tmp_path / "again")
    again = A3C.load(tmp_path / "again")
    assert np.array_equal(again.predict(obs, deterministic=True)[0], actions)
    assert np.array_equal(from_run.predict(obs, deterministic=True)[0], actions)
    with torch.no_grad():
        torch.testing.assert_close(
            again.model(torch.as_tensor(obs))[0],
            saved.model(torch.as_tensor(obs))[0],
            rtol=0,
            atol=0,
        )
    assert again.num_timesteps == from_run.num_timesteps > 0


def test_a_trained_agent_in_memory_and_its_loaded_copy_act_alike(tmp_path):
    agent = A3C(
        "CartPole-v1", backend="serial", workers=2, seed=5, total_steps=6_000, normalize_obs=True
    )
    agent.learn(run_dir=tmp_path / "run", progress="none")
    path = agent.save(tmp_path / "agent")
    loaded = A3C.load(path)
    assert (
        torch.equal(loaded.obs_stats.table, agent.obs_stats.table)
        and loaded.obs_stats.table[:, 0].sum() > 0
    )
    obs = _observations(agent, 200)
    assert np.array_equal(
        loaded.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0]
    )
    # Stochastic actions come from the agent's own generator: the same seed, the same samples.
    a = A3C.load(path).predict(obs, deterministic=False)[0]
    b = A3C.load(path).predict(obs, deterministic=False)[0]
    assert np.array_equal(a, b) and not np.array_equal(
        a, loaded.predict(obs, deterministic=True)[0]
    )
    # Normalisation is part of the model: without it the same parameters act differently.
    loaded.obs_stats = None
    assert not np.array_equal(
        loaded.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0]
    )


def test_lstm_predict_carries_and_resets_its_state_and_round_trips(tmp_path):
    agent = A3C(
        "CartPole-v1",
        backend="serial",
        workers=1,
        seed=2,
        total_steps=1_000,
        lstm=True,
        lstm_size=16,
    )
    agent.learn(run_dir=tmp_path / "run", progress="none")
    loaded = A3C.load(agent.save(tmp_path / "agent"))
    obs = _observations(agent, 40)[:20].reshape(10, 2, 4)  # 10 steps of 2 envs
    states = [None, None]
    starts = np.array([True, True])
    for t in range(10):
        out = []
        for k, who in enumerate((agent, loaded)):
            action, states[k] = who.predict(
                obs[t], states[k], episode_start=starts, deterministic=True
            )
            out.append(action)
        assert np.array_equal(out[0], out[1])
        assert np.array_equal(states[0][0], states[1][0]) and states[0][0].shape == (2, 16)
        starts = np.array([False, t == 4])
    fresh = agent.predict(obs[9], None, deterministic=True)[1]
    reset = agent.predict(obs[9], states[0], episode_start=[True, True], deterministic=True)[1]
    assert np.array_equal(fresh[0], reset[0]) and not np.array_equal(states[0][0], reset[0])


def test_predict_takes_one_observation_or_a_batch_and_clips_box_actions():
    cartpole = A3C("CartPole-v1")
    action, state = cartpole.predict(np.zeros(4, np.float32), deterministic=True)
    assert state is None and action.shape == () and cartpole.action_space.contains(int(action))
    assert cartpole.predict(np.zeros((3, 4)), deterministic=True)[0].shape == (3,)
    with pytest.raises(ValueError, match="does not fit"):
        cartpole.predict(np.zeros(5))
    # samples fall outside [-2, 2]
    pendulum = A3C("Pendulum-v1", gaussian="state_independent", log_std_init=3.0)
    actions, _ = pendulum.predict(np.zeros((256, 3), np.float32))
    assert actions.shape == (256, 1) and actions.dtype == np.float32
    assert actions.min() == -2.0 and actions.max() == 2.0, "Box actions are clipped to the bounds"
    one, _ = pendulum.predict(np.zeros(3, np.float32), deterministic=True)
    assert one.shape == (1,) and pendulum.action_space.contains(one)


def test_load_refuses_an_override_that_changes_the_architecture(readme_run):
    where, _ = readme_run
    with pytest.raises(CheckpointError, match="another architecture"):
        A3C.load(where / "cartpole-agent", hidden=[8])
    agent = A3C.load(where / "cartpole-agent", backend="processes", workers=1)
    assert agent.config.backend.name == "processes"
    # as saved
    assert (
        run_checkpoints.find(where / "cartpole-agent").meta["config"]["backend"]["name"] == "serial"
    )
