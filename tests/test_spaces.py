"""Every observation and action space a3c supports: the agent learns a small env of each
(tests/space_envs.py), the distributions match hand values, masked actions are never taken, image
layouts agree, and a user's encoder trains, saves and loads in a fresh process."""

from __future__ import annotations

import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import space_envs
import torch

from a3c import A3C
from a3c.config import ModelConfig
from a3c.encoders import ConvEncoder
from a3c.errors import ConfigError
from a3c.heads import (
    MASKED_LOGIT,
    BernoulliHead,
    CategoricalHead,
    MultiCategoricalHead,
    categorical_sample,
    masked,
)
from a3c.models import make_model
from a3c.spaces import ObsLayout

LEARNED = 7.0  # of space_envs.LENGTH = 8; random play earns 8 x the chance of guessing (2.7 to 4)
FAST = dict(
    backend="serial",
    workers=2,
    target_return=None,
    checkpoint_interval_s=None,
    log_interval=5000,
    max_time=120,
)


# --- learning: one small env per space -----------------------------------------------------------


@pytest.mark.parametrize(
    "env_id, settings",
    [
        ("space_envs:DictCue", {}),  # Dict of Discrete, Box and MultiBinary
        ("space_envs:NestedTupleCue", {}),  # Tuple inside a Tuple, MultiDiscrete inside
        ("space_envs:MultiDiscreteObsCue", {}),
        ("space_envs:MultiBinaryObsCue", {}),
        ("space_envs:MultiDiscreteActionCue", {}),
        ("space_envs:MaskedCue", {}),  # action_masks() method; an invalid action raises in the env
        ("space_envs:MaskedCueInfo", {}),  # info["action_mask"]
        # MiniGrid-like 7x7x3 grid, text dropped
        ("space_envs:GridDict", {"env.obs_keys": ["image", "direction"]}),
        ("space_envs:SideImage", {}),  # 3x32x32 uint8, channels first
        ("space_envs:SideImageHWC", {}),  # 32x32x3, channels last
    ],
)
def test_agent_learns_each_space(env_id, settings, tmp_path):
    # Stops once the training mean of 100 episodes reaches 7.5 (30k steps at most); the greedy
    # evaluation afterwards is what the test asserts.
    agent = A3C(env_id, **{**FAST, "target_return": 7.5, **settings})
    summary = agent.learn(total_steps=30_000, progress="none", run_dir=tmp_path / "run")
    assert summary["worker_restarts"] == 0  # a masked env raises on an invalid action
    assert agent.evaluate(episodes=20)["mean"] >= LEARNED, summary


def test_agent_learns_multibinary_actions(tmp_path):
    agent = A3C("space_envs:MultiBinaryActionCue", **FAST)
    agent.learn(total_steps=40_000, progress="none", run_dir=tmp_path / "run")
    assert agent.evaluate(episodes=20)["mean"] >= 6.5  # random play: 4 (1/3 per bit right of 3)


def test_images_and_structured_observations_get_settings_from_their_spaces():
    image = A3C("space_envs:SideImage", backend="serial")
    # presets/image.yaml
    assert (image.config.optim.name, image.config.algo.ent_coef) == ("adam", 0.01)
    grid = A3C("space_envs:GridDict", backend="serial", obs_keys=["image", "direction"])
    # keys sorted: direction, image
    assert grid.config.algo.ent_coef == 0.01 and isinstance(
        grid.model.encoder.parts[1], ConvEncoder
    )
    vector = A3C("space_envs:DictCue", backend="serial")
    assert vector.config.algo.ent_coef == 0.0  # no image: the library's defaults
    mine = A3C("space_envs:SideImage", backend="serial", learning_rate=3e-3)
    assert mine.config.optim.learning_rate == 3e-3  # the user's settings stay on top


def test_lstm_and_normalisation_with_a_dict_observation(tmp_path):
    agent = A3C("space_envs:DictCue", **FAST, lstm=True, lstm_size=16)
    agent.learn(total_steps=2_000, progress="none", run_dir=tmp_path / "lstm")
    layout, obs = agent.model.layout, [agent.observation_space.sample() for _ in range(6)]
    packed = torch.as_tensor(np.stack([layout.pack(o) for o in obs]))
    # The fused unroll over a packed rollout [T=6, B=1] equals stepping the core one observation at
    # a time.
    out, _, _ = agent.model.unroll(packed.view(6, 1, -1), None, torch.zeros(5, 1))
    state, stepped = None, []
    for o in obs:
        action, state = agent.predict(o, state, deterministic=True)
        stepped.append(int(action))
    assert stepped == out.argmax(-1).tolist() and state is not None and state[0].shape == (1, 16)
    vec = A3C("space_envs:dict_cartpole", **FAST, normalize_obs=True)
    vec.learn(total_steps=4_000, progress="none", run_dir=tmp_path / "norm")
    assert vec.obs_stats is not None and vec.obs_stats.dim == vec.model.layout.size == 4
    std = vec.obs_stats.snapshot().std
    assert bool((std > 0.005).all()) and float(std[3]) > 0.1  # every column seen; theta_dot moves
    with pytest.raises(ConfigError, match="observation key '1.0' is Discrete"):
        A3C("space_envs:NestedTupleCue", **FAST, normalize_obs=True)._obs_dim()


def test_serial_runs_with_packed_observations_and_masks_are_reproducible(tmp_path):
    params = []
    for i in range(2):
        agent = A3C("space_envs:MaskedCue", **{**FAST, "seed": 3})
        agent.learn(total_steps=3_000, progress="none", run_dir=tmp_path / f"r{i}")
        params.append(torch.nn.utils.parameters_to_vector(agent.model.parameters()))
    assert torch.equal(params[0], params[1])


# --- distributions against hand values ---------------------------------------------------------


def test_multicategorical_log_prob_and_entropy_by_hand():
    head = MultiCategoricalHead(1, gym.spaces.MultiDiscrete([2, 3]))
    # p = [1/4, 3/4], [1/4, 1/4, 1/2]
    out = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0, math.log(2.0)]])
    logp, entropy = head.logp_entropy(out, torch.tensor([[1, 2]]))
    assert logp.item() == pytest.approx(math.log(3 / 4) + math.log(1 / 2), abs=1e-6)
    h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    h2 = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert entropy.item() == pytest.approx(h1 + h2, abs=1e-6)
    assert head.to_env(torch.tensor([[1, 2]])).tolist() == [[1, 2]]


def test_bernoulli_log_prob_and_entropy_by_hand():
    head = BernoulliHead(1, gym.spaces.MultiBinary(2))
    out = torch.tensor([[math.log(3.0), 0.0]])  # p = 3/4 and 1/2
    logp, entropy = head.logp_entropy(out, torch.tensor([[0.0, 1.0]]))
    assert logp.item() == pytest.approx(math.log(1 / 4) + math.log(1 / 2), abs=1e-6)
    assert entropy.item() == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) + math.log(2), abs=1e-6
    )
    assert head.sample(out, deterministic=True).tolist() == [[1.0, 0.0]]  # logit 0 is not > 0


def test_masked_categorical_log_prob_and_entropy_by_hand():
    head = CategoricalHead(1, gym.spaces.Discrete(4), tabular=False)
    mask = torch.tensor([[True, False, True, False]])
    out = masked(torch.tensor([[0.0, 5.0, math.log(3.0), 9.0]]), mask)  # valid: p = [1/4, 3/4]
    logp, entropy = head.logp_entropy(out, torch.tensor([2]))
    assert logp.item() == pytest.approx(math.log(3 / 4), abs=1e-6)
    assert entropy.item() == pytest.approx(
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6
    )
    assert math.isfinite(entropy.item()) and out[0, 1].item() == MASKED_LOGIT


def test_a_masked_action_is_never_sampled_nor_chosen_greedily():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[10.0, 0.0, -3.0, 8.0]]).repeat(20_000, 1)  # the best two are masked
    mask = torch.tensor([False, True, True, False]).repeat(20_000, 1)
    draws = categorical_sample(masked(logits, mask), g)
    assert set(draws.unique().tolist()) == {1, 2}
    assert masked(logits, mask).argmax(-1).eq(1).all()
    head = MultiCategoricalHead(1, gym.spaces.MultiDiscrete([2, 2]))
    md = masked(torch.zeros(5_000, 4), torch.tensor([True, False, False, True]).repeat(5_000, 1))
    assert head.sample(md, g).tolist() == [[0, 1]] * 5_000
    assert head.sample(md, deterministic=True).tolist() == [[0, 1]] * 5_000


def test_predict_takes_action_masks_and_dict_observations():
    agent = A3C("space_envs:MaskedCue", backend="serial")
    obs = np.full(4, 0.5, np.float32)
    for _ in range(50):
        action, _ = agent.predict(obs, action_masks=np.array([0, 0, 1, 0]))
        assert action == 2
    batch, _ = agent.predict(
        np.stack([obs, obs]),
        action_masks=np.array([[1, 0, 0, 0], [0, 0, 0, 1]]),
        deterministic=True,
    )
    assert batch.tolist() == [0, 3]
    with pytest.raises(ValueError, match="no valid action"):
        agent.predict(obs, action_masks=np.zeros(4))
    grid = A3C("space_envs:DictCue", backend="serial")
    one = grid.observation_space.sample()
    assert np.asarray(grid.predict(one)[0]).shape == ()
    many = {k: np.stack([np.asarray(v)] * 3) for k, v in one.items()}
    assert grid.predict(many, deterministic=True)[0].shape == (3,)


def test_an_env_mask_with_no_valid_action_is_an_env_error(tmp_path):
    from a3c.errors import A3CError, RunFailure

    # up front, when the agent probes the env (its first reset), before any worker starts
    for backend in ("serial", "processes"):
        with pytest.raises(
            (A3CError, RunFailure),
            match=r"env NoValidAction gave an action mask with no valid action: \[0, 0, 0, 0\]",
        ):
            agent = A3C(
                "space_envs:NoValidAction", **{**FAST, "max_restarts": 0, "backend": backend}
            )
            agent.learn(total_steps=1_000, progress="none", run_dir=tmp_path / backend)


# --- layouts and encoders ----------------------------------------------------------------------


def test_hwc_and_chw_images_give_the_same_encoder_output():
    torch.manual_seed(0)
    chw = ConvEncoder((3, 32, 32), "auto")
    hwc = ConvEncoder((32, 32, 3), "auto")
    hwc.load_state_dict(chw.state_dict())
    assert hwc.hwc and not chw.hwc and chw.kind == "small"
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(chw(x), hwc(x.permute(0, 2, 3, 1).contiguous()), atol=1e-6)
    stated = ConvEncoder((3, 32, 32), "auto", layout="hwc")
    assert stated.hwc  # model.image_layout overrides the detection
    assert ConvEncoder((4, 84, 84), "auto").kind == "a3c"  # Atari frames: the paper's network


def test_packed_layout_round_trip():
    space = gym.spaces.Dict(
        {
            "b": gym.spaces.Tuple(
                (gym.spaces.Discrete(3, start=1), gym.spaces.Box(0, 255, (2, 2, 1), np.uint8))
            ),
            "a": gym.spaces.MultiBinary(2),
        }
    )
    layout = ObsLayout(space)
    obs = space.sample()
    packed, single = layout.pack_batch(obs)
    assert single and packed.shape == (1, 2 + 1 + 4) and packed.dtype == np.float32
    back = layout.unpack(torch.as_tensor(packed))
    assert back["a"].tolist() == [obs["a"].tolist()] and back["b"][0].tolist() == [obs["b"][0]]
    assert back["b"][0].dtype == torch.int64 and back["b"][1].shape == (1, 2, 2, 1)
    assert torch.equal(back["b"][1][0], torch.as_tensor(obs["b"][1], dtype=torch.float32))


def test_models_build_for_every_supported_pair_of_spaces():
    obs_spaces = [
        gym.spaces.Discrete(5),
        gym.spaces.Box(-1, 1, (3,)),
        gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
        gym.spaces.MultiDiscrete([2, 3]),
        gym.spaces.MultiBinary(4),
        gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(-1, 1, (2,)))),
    ]
    act_spaces = [
        gym.spaces.Discrete(3),
        gym.spaces.MultiDiscrete([2, 2]),
        gym.spaces.MultiBinary(3),
        gym.spaces.Box(-1, 1, (2,)),
    ]
    for o in obs_spaces:
        for a in act_spaces:
            model, layout = make_model(o, a, ModelConfig()), ObsLayout(o)
            batch = np.stack([layout.pack(o.sample()) for _ in range(3)]).astype(layout.np_dtype)
            with torch.no_grad():
                out, v, _ = model(torch.as_tensor(batch))
                actions = model.policy_head.sample(out)
            assert v.shape == (3,) and np.asarray(model.policy_head.to_env(actions)).shape[0] == 3


# --- the user's own network --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_a_user_encoder_trains_saves_and_loads_in_a_fresh_process(backend, tmp_path):
    agent = A3C(
        "space_envs:DictCue",
        encoder=space_envs.CueEncoder,
        encoder_kwargs={"features_dim": 8},
        **{**FAST, "backend": backend},
    )
    assert (
        agent.config.model.encoder == "space_envs:CueEncoder" and agent.model.encoder.out_dim == 8
    )
    agent.learn(total_steps=30_000, progress="none", run_dir=tmp_path / "run")
    assert agent.evaluate(episodes=20)["mean"] >= LEARNED
    path = agent.save(tmp_path / "agent")
    code = (
        f"from a3c import A3C; a = A3C.load({str(path)!r}); print(a.config.model.encoder, "
        "a.evaluate(episodes=20)['mean'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    name, mean = out.stdout.split()
    assert name == "space_envs:CueEncoder" and float(mean) >= LEARNED


def test_a_user_factory_without_a_size_is_measured_and_a_missing_module_is_named(tmp_path):
    agent = A3C(
        "CartPole-v1", encoder="space_envs:make_vector_encoder", encoder_kwargs={"width": 8}, **FAST
    )
    assert agent.model.encoder.out_dim == 8  # found by a forward pass
    agent.learn(total_steps=2_000, progress="none", run_dir=tmp_path / "run")
    path = agent.save(tmp_path / "agent")
    # tests/ not on the path: space_envs is gone
    env = {"PYTHONPATH": "", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "a3c.cli", "eval", str(path), "--episodes", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "a3c: error: cannot import the module 'space_envs' of model.encoder "
        "'space_envs:make_vector_encoder': No module named 'space_envs'"
    ]


def test_a_run_with_masks_and_a_dict_observation_resumes(tmp_path):
    run = tmp_path / "run"
    A3C("space_envs:MaskedCue", **{**FAST, "checkpoint_interval_steps": 2_000}).learn(
        total_steps=4_000, progress="none", run_dir=run
    )
    agent = A3C.resume(run, total_steps=8_000)
    summary = agent.learn(progress="none")
    assert summary["steps"] >= 8_000 and summary["worker_restarts"] == 0
    grid = A3C("space_envs:GridDict", **{**FAST, "env.obs_keys": ["image", "direction"]})
    grid.learn(total_steps=2_000, progress="none", run_dir=tmp_path / "grid")
    again = A3C.resume(tmp_path / "grid", total_steps=3_000)
    assert (
        again.config.env.obs_keys == ("image", "direction")
        and again.learn(progress="none")["steps"] >= 3_000
    )


def test_a_multibinary_mask_fixes_the_entries_with_one_valid_value():
    head = BernoulliHead(1, gym.spaces.MultiBinary(3))
    # free, must be 1, must be 0
    mask = torch.tensor([[True, True, False, True, True, False]]).repeat(2_000, 1)
    out = head.apply_mask(torch.zeros(2_000, 3), mask)
    draws = head.sample(out, torch.Generator().manual_seed(0))
    assert draws[:, 1].eq(1).all() and draws[:, 2].eq(0).all() and 0.4 < draws[:, 0].mean() < 0.6
    logp, entropy = head.logp_entropy(out[:1], torch.tensor([[1.0, 1.0, 0.0]]))
    assert logp.item() == pytest.approx(
        math.log(0.5), abs=1e-6
    ) and entropy.item() == pytest.approx(math.log(2), abs=1e-6)
    assert head.sample(out[:1], deterministic=True).tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize(
    ("space", "mask", "ok"),
    [
        (gym.spaces.MultiBinary(2), [1, 0, 0, 1], True),
        (gym.spaces.MultiBinary(2), [1, 0, 0, 0], False),  # entry 1 may be neither 0 nor 1
        (gym.spaces.MultiDiscrete([2, 3]), [1, 0, 0, 0, 0], False),
        (gym.spaces.Discrete(3), [0, 0, 1], True),
    ],
)
def test_every_dimension_of_a_mask_needs_a_valid_choice(space, mask, ok):
    """MultiBinary as MultiDiscrete and Discrete: an entry whose two choices are both masked is
    the same env error, naming the env."""
    from a3c.errors import EnvError
    from a3c.masks import MaskReader

    class Env(gym.Env):
        observation_space, action_space = gym.spaces.Discrete(1), space

        def action_masks(self):
            return np.array(mask)

    reader = MaskReader(Env(), space)
    if ok:
        assert reader.read({}).tolist() == [bool(m) for m in mask]
    else:
        with pytest.raises(EnvError, match="gave an action mask with no valid action in one of"):
            reader.read({})
