"""The Atari pipeline on real ALE games: shapes, real scores, end-of-life and clipping for training
only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")

from a3c import A3C, build_config  # noqa: E402
from a3c.ale_batch import AleVectorBatch  # noqa: E402
from a3c.encoders import ConvEncoder  # noqa: E402
from a3c.env_batch import EnvBatch  # noqa: E402
from a3c.envs import make_env_batch, make_env_fn  # noqa: E402
from a3c.errors import EnvError  # noqa: E402
from a3c.models import make_model  # noqa: E402

# Gymnasium's wrappers rather than the Atari preset's AtariVectorEnv, for the tests of that path.
GYM_WRAPPERS = {"env.atari.ale_vector": False}


def test_pong_pipeline_shapes_and_model():
    cfg = build_config("ALE/Pong-v5")
    batch = EnvBatch(make_env_fn(cfg.env), 2, [1, 2])
    assert batch.obs.shape == (2, 4, 84, 84) and batch.obs.dtype == np.uint8
    model = make_model(batch.observation_space, batch.action_space, cfg.model)
    assert isinstance(model.encoder, ConvEncoder) and model.vf_body is None  # one shared encoder
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, reward, *_ = batch.step(rng.integers(0, batch.action_space.n, 2))
        assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0}
    out, v, _ = model(torch.from_numpy(obs))
    assert out.shape == (2, 6) and v.shape == (2,)
    nature = make_model(
        batch.observation_space, batch.action_space, cfg.model.__class__(cnn="nature")
    )
    assert nature.encoder.out_dim == 512
    batch.close()


def test_the_universe_encoder_on_42x42_frames():
    """universe-starter-agent's network: four padded 3x3/2 convs take 42x42 to 21, 11, 6, 3."""
    enc = ConvEncoder((4, 42, 42), "universe")
    convs = [m for m in enc.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (32, (3, 3), (2, 2), (1, 1))
    ] * 4
    assert sum(isinstance(m, torch.nn.ELU) for m in enc.convs) == 4
    assert isinstance(enc.fc, torch.nn.Identity) and enc.out_dim == 3 * 3 * 32  # no fc layer
    frames = torch.randint(0, 256, (5, 4, 42, 42), dtype=torch.uint8)
    assert enc(frames).shape == (5, 288)
    # universe-starter-agent's whole model: one 42x42 frame, the encoder, an LSTM 256.
    over = {
        "env.atari.screen_size": 42,
        "env.atari.frame_stack": 1,
        "model.cnn": "universe",
        "model.lstm": True,
    }
    cfg = build_config("ALE/Pong-v5", overrides=over)
    batch = EnvBatch(make_env_fn(cfg.env), 1, [3])
    model = make_model(batch.observation_space, batch.action_space, cfg.model)
    assert model.core.input_size == 288 and model.core.hidden_size == 256
    out, v, state = model(torch.from_numpy(batch.obs), model.initial_state(1))
    assert (
        batch.obs.shape == (1, 1, 42, 42)
        and out.shape == (1, 6)
        and v.shape == (1,)
        and state[0].shape == (1, 256)
    )
    batch.close()


def test_the_base_envs_observation_type_does_not_change_the_preprocessed_frames():
    """The base env is made with grayscale observations (AtariPreprocessing reads the screen from
    the emulator itself); an RGB base env must give the very same frames and rewards."""
    gray = EnvBatch(make_env_fn(build_config("ALE/Pong-v5", overrides=GYM_WRAPPERS).env), 1, [5])
    rgb = EnvBatch(
        make_env_fn(
            build_config(
                "ALE/Pong-v5", overrides={**GYM_WRAPPERS, "env.kwargs": {"obs_type": "rgb"}}
            ).env
        ),
        1,
        [5],
    )
    assert (
        gray.envs[0].unwrapped._obs_type == "grayscale" and rgb.envs[0].unwrapped._obs_type == "rgb"
    )
    np.testing.assert_array_equal(gray.obs, rgb.obs)
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = rng.integers(0, 6, 1)
        g, rg = gray.step(a), rgb.step(a)
        np.testing.assert_array_equal(g[0], rg[0])
        np.testing.assert_array_equal(g[1], rg[1])
    assert gray.obs.any()
    gray.close()
    rgb.close()


@pytest.mark.parametrize("ale_vector", [False, True])
def test_reported_returns_are_real_whole_game_scores(ale_vector):
    """SpaceInvaders: invaders are worth 5-30 points and the player has 3 lives. Training sees
    clipped rewards and an episode end per lost life; the reported episode is the whole game's real
    score."""
    cfg = build_config("ALE/SpaceInvaders-v5", overrides={"env.atari.ale_vector": ale_vector})
    batch = make_env_batch(make_env_fn(cfg.env), 1, [0])
    assert isinstance(batch, AleVectorBatch if ale_vector else EnvBatch)
    rng = np.random.default_rng(0)
    train_rewards, train_ends, steps = [], 0, 0
    while not batch.finished and steps < 5_000:
        _, reward, terminated, truncated, _ = batch.step(rng.integers(0, batch.action_space.n, 1))
        train_rewards.append(float(reward[0]))
        train_ends += int(terminated[0] or truncated[0])
        steps += 1
    ((score, length),) = batch.take_finished()
    assert set(train_rewards) <= {-1.0, 0.0, 1.0}, "training rewards are clipped"
    assert train_ends >= 3, "each lost life ends a training episode"
    # The whole game: our steps, plus (Gymnasium's wrappers) the one no-op step each life-loss reset
    # plays to continue it; AtariVectorEnv goes on without one.
    assert length == steps + (0 if ale_vector else train_ends - 1), (
        "the reported episode is the whole game"
    )
    assert score > sum(train_rewards) > 0, "the reported return is the real (unclipped) score"
    batch.close()


def test_ale_vector_steps_the_same_frames_rewards_and_ends_as_gymnasiums_wrappers():
    """With no random no-ops and no sticky actions both are deterministic: the same actions must
    give the same stacked frames, rewards, ends, truncation finals and game scores, through a
    time-limit truncation (500 agent steps) and the reset after it."""
    overrides = {
        "env.atari.noop_max": 0,
        "env.kwargs": {"repeat_action_probability": 0.0},
        "env.max_episode_steps": 2000,
    }
    gym_batch = make_env_batch(
        make_env_fn(build_config("ALE/Pong-v5", overrides={**overrides, **GYM_WRAPPERS}).env),
        2,
        [1, 2],
    )
    ale_batch = make_env_batch(
        make_env_fn(
            build_config("ALE/Pong-v5", overrides={**overrides, "env.atari.ale_vector": True}).env
        ),
        2,
        [3, 4],
    )
    assert isinstance(gym_batch, EnvBatch) and isinstance(ale_batch, AleVectorBatch)
    assert (
        gym_batch.observation_space == ale_batch.observation_space
        and gym_batch.action_space == ale_batch.action_space
    )
    np.testing.assert_array_equal(gym_batch.obs, ale_batch.obs)
    rng = np.random.default_rng(0)
    truncations = rewards = 0
    for _ in range(1_100):
        a = rng.integers(0, 6, 2)
        g, v = gym_batch.step(a), ale_batch.step(a)
        for x, y in zip(g[:4], v[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        assert [i for i, _ in g[4]] == [i for i, _ in v[4]]
        for (_, x), (_, y) in zip(g[4], v[4], strict=True):
            np.testing.assert_array_equal(x, y)
        truncations += len(v[4])
        rewards += int(np.abs(v[1]).sum())
    assert truncations == 4 and rewards > 0
    assert gym_batch.take_finished() == ale_batch.take_finished() != []
    gym_batch.close()
    ale_batch.close()


def test_ale_vector_rejects_what_it_cannot_do():
    with pytest.raises(EnvError, match="ALE/<Game>-v5 envs only"):
        make_env_fn(build_config("CartPole-v1", overrides={"env.atari.ale_vector": True}).env)
    with pytest.raises(EnvError, match=r"not \['mode'\]"):
        make_env_fn(
            build_config(
                "ALE/Pong-v5", overrides={"env.atari.ale_vector": True, "env.kwargs": {"mode": 1}}
            ).env
        )


@pytest.mark.parametrize("ale_vector", [False, True])
def test_short_atari_training_run_reports_real_scores(tmp_path, ale_vector):
    agent = A3C(
        "ALE/Pong-v5",
        backend="serial",
        workers=1,
        envs_per_worker=2,
        total_steps=400,
        log_interval=200,
        ale_vector=ale_vector,
    )
    summary = agent.learn(run_dir=tmp_path / "run", progress="none")
    assert summary["steps"] >= 400 and summary["updates"] > 0


@pytest.mark.parametrize("ale_vector", [False, True])
def test_games_that_need_fire_start_again_after_a_lost_life(ale_vector):
    """Breakout's ball comes back only after FIRE: a policy that never presses it (always NOOP) must
    still lose its 5 lives and end the game within a few hundred steps (without FIRE after a lost
    life it would wait for the 108k-frame limit), and the score is the whole game's."""
    cfg = build_config("ALE/Breakout-v5", overrides={"env.atari.ale_vector": ale_vector})
    batch = make_env_batch(make_env_fn(cfg.env), 1, [0])
    steps, ends = 0, 0
    while not batch.finished and steps < 3_000:
        _, _, terminated, truncated, _ = batch.step(np.zeros(1, dtype=np.int64))
        ends += int(terminated[0] or truncated[0])
        steps += 1
    assert batch.finished, f"no game ended in {steps} steps of NOOP"
    ((score, length),) = batch.take_finished()
    assert ends == 5 and not truncated[0], "five lives lost, each a training episode end"
    assert length < 2_000 and score >= 0
    batch.close()
    off = make_env_batch(
        make_env_fn(
            build_config(
                "ALE/Breakout-v5",
                overrides={"env.atari.ale_vector": ale_vector, "env.atari.fire_reset": False},
            ).env
        ),
        1,
        [0],
    )
    for _ in range(1_000):
        off.step(np.zeros(1, dtype=np.int64))
    assert not off.finished, "without FIRE the game waits"
    off.close()


@pytest.mark.parametrize("ale_vector", [False, True])
def test_a_forced_fire_is_what_the_rollout_stores(ale_vector):
    """The batch says which steps it will play FIRE whatever the agent drew (a game's first step,
    the first after a lost life), and the worker stores FIRE there: the policy gradient of that step
    is FIRE's, the action that made the transition."""
    from a3c.worker import Worker

    cfg = build_config(
        "ALE/Breakout-v5",
        overrides={"env.atari.ale_vector": ale_vector, "env.envs_per_worker": 2, "algo.n_steps": 5},
    )
    batch = make_env_batch(make_env_fn(cfg.env), 2, [0, 1])
    noop = torch.zeros(2, dtype=torch.int64)
    assert batch.played(noop).tolist() == [1, 1], "a game's first step plays FIRE"
    batch.step(np.zeros(2, dtype=np.int64))
    assert batch.played(noop).tolist() == [0, 0], "then the agent's actions"
    lost = 0
    for _ in range(3_000):  # NOOP until a life is lost: the next step is FIRE again
        _, _, terminated, _, _ = batch.step(np.zeros(2, dtype=np.int64))
        if terminated.any():
            lost = int(np.flatnonzero(terminated)[0])
            break
    # AtariVectorEnv plays it on the next step; Gymnasium's path already did, inside the reset that
    # follows a lost life (EpisodicLife steps NOOP there, which FireReset turns into FIRE).
    assert batch.played(noop)[lost].item() == (1 if ale_vector else 0)
    batch.close()
    unforced = make_env_batch(
        make_env_fn(
            build_config(
                "ALE/Pong-v5",
                overrides={"env.atari.ale_vector": ale_vector, "env.atari.fire_reset": False},
            ).env
        ),
        1,
        [0],
    )
    assert unforced.played(noop[:1]).tolist() == [0]
    unforced.close()

    from a3c.store import SharedStore

    store = SharedStore.for_model(
        make_model(batch.observation_space, batch.action_space, cfg.model), cfg
    )
    worker = Worker(cfg, 0, store)
    try:
        worker.update()
        assert worker.act_buf[0].tolist() == [1, 1], "the first step of each game is stored as FIRE"
    finally:
        worker.envs.close()


def test_fire_reset_gives_the_same_frames_on_both_paths():
    """Breakout, deterministic (no no-ops, no sticky actions): the FIRE at reset and after lost
    lives gives the same frames, rewards and ends through Gymnasium's wrappers and
    AtariVectorEnv."""
    overrides = {
        "env.atari.noop_max": 0,
        "env.kwargs": {"repeat_action_probability": 0.0},
        "env.atari.episodic_life": False,
    }
    gym_batch = make_env_batch(
        make_env_fn(build_config("ALE/Breakout-v5", overrides={**overrides, **GYM_WRAPPERS}).env),
        1,
        [1],
    )
    ale_batch = make_env_batch(
        make_env_fn(
            build_config(
                "ALE/Breakout-v5", overrides={**overrides, "env.atari.ale_vector": True}
            ).env
        ),
        1,
        [3],
    )
    np.testing.assert_array_equal(gym_batch.obs, ale_batch.obs)
    rng = np.random.default_rng(0)
    for _ in range(600):
        a = rng.choice([0, 2, 3], 1)  # never FIRE: only the pipeline fires
        g, v = gym_batch.step(a), ale_batch.step(a)
        for x, y in zip(g[:4], v[:4], strict=True):
            np.testing.assert_array_equal(x, y)
    assert gym_batch.take_finished() == ale_batch.take_finished() != []
    gym_batch.close()
    ale_batch.close()
