from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml

from a3c.config import (
    NOT_LEARNING,
    RESUMABLE_SECTIONS,
    Config,
    ConfigError,
    canonical_key,
    field_docs,
    from_dict,
    from_recorded,
    resolve_key,
    resolve_target,
    resumable,
)
from a3c.configfile import build_config, env_family, parse_assignments, preset_for

# Config().to_dict() of the previous layout (five sections), as a run directory's config.json and a
# checkpoint's meta["config"] recorded it.
OLD_LAYOUT = {
    "env": {
        "id": "CartPole-v1",
        "envs_per_worker": 8,
        "kwargs": {},
        "max_episode_steps": None,
        "normalize_obs": False,
        "frame_skip": 4,
        "frame_stack": 4,
        "screen_size": 84,
        "noop_max": 30,
        "episodic_life": True,
        "clip_rewards": True,
        "ale_vector": False,
    },
    "algo": {
        "n_steps": 8,
        "gamma": 0.99,
        "gae_lambda": 1.0,
        "ent_coef": 0.0,
        "ent_coef_schedule": [],
        "vf_coef": 0.5,
        "reward_scale": 1.0,
        "max_grad_norm": 0.5,
    },
    "optim": {
        "name": "rmsprop",
        "learning_rate": 0.001,
        "critic_learning_rate": None,
        "lr_schedule": "linear",
        "alpha": 0.99,
        "eps": 1e-05,
        "betas": [0.9, 0.999],
        "lock": False,
    },
    "model": {
        "hidden": [64, 64],
        "activation": "tanh",
        "shared_encoder": False,
        "tabular": "onehot",
        "embedding_dim": 32,
        "cnn": "a3c",
        "lstm": False,
        "lstm_size": 256,
        "keep_rollout_graph": False,
        "gaussian": "state_independent",
        "log_std_init": 0.0,
    },
    "run": {
        "workers": 2,
        "backend": "processes",
        "ray_address": None,
        "ray_sync_interval": 0.05,
        "seed": 0,
        "total_steps": 1000000,
        "target_return": None,
        "stop_at_target": True,
        "return_window": 100,
        "max_time": None,
        "log_interval": 10000,
        "max_restarts": 3,
        "restart_delay": 0.5,
        "report_interval": 0.1,
        "train_while_starting": True,
        "checkpoint_interval_steps": None,
        "checkpoint_interval_s": 600.0,
        "checkpoint_keep": 3,
    },
}


def test_defaults_are_valid_and_documented():
    cfg = from_dict({})
    assert cfg == Config()
    for key, _, doc in field_docs():
        assert doc and (doc.endswith(".") or doc.endswith(")")), key


def test_every_field_doc_is_one_short_line():
    for key, _, doc in field_docs():
        assert "\n" not in doc and len(doc) <= 90, (key, len(doc))


def test_the_layout():
    sections = {}
    for key, _, _ in field_docs():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, []).append(name)
    assert list(sections) == [
        "env",
        "env.atari",
        "algo",
        "optim",
        "model",
        "run",
        "log",
        "eval",
        "backend",
    ]
    assert sections["env.atari"] == [
        "frame_skip",
        "frame_stack",
        "screen_size",
        "noop_max",
        "episodic_life",
        "clip_rewards",
        "ale_vector",
        "fire_reset",
    ]
    assert sections["run"] == [
        "seed",
        "total_steps",
        "max_time",
        "target_return",
        "return_window",
        "max_nonfinite_updates",
    ]
    assert sections["log"] == [
        "log_interval",
        "checkpoint_interval_steps",
        "checkpoint_interval_s",
        "checkpoint_keep",
    ]
    assert sections["eval"] == [
        "interval_steps",
        "interval_s",
        "episodes",
        "deterministic",
        "target_mean",
        "timeout",
        "ema_steps",
        "env_kwargs",
    ]
    assert sections["backend"] == [
        "name",
        "workers",
        "max_restarts",
        "restart_delay",
        "worker_timeout",
        "report_interval",
        "ray_address",
        "ray_workers_per_node",
        "ray_sync_interval_s",
        "ray_store_shards",
        "ray_sync_dtype",
    ]
    data = Config().to_dict()
    assert data["env"]["atari"]["frame_skip"] == 4 and data["backend"]["name"] == "processes"
    assert from_dict(json.loads(Config().to_json())) == Config()


def test_bare_and_dotted_keys_resolve():
    assert resolve_key("n_steps") == ("algo", "n_steps")
    assert resolve_key("optim.learning_rate") == ("optim", "learning_rate")
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve_key("algo.learning_rate")
    for bare, key in [
        ("workers", "backend.workers"),
        ("frame_skip", "env.atari.frame_skip"),
        ("seed", "run.seed"),
        ("log_interval", "log.log_interval"),
        ("ale_vector", "env.atari.ale_vector"),
    ]:
        assert canonical_key(bare) == key
    assert canonical_key("env.atari.noop_max") == "env.atari.noop_max"
    with pytest.raises(
        ConfigError, match="ambiguous config key 'name': write one of optim.name, backend.name"
    ):
        canonical_key("name")


def test_nested_atari_keys():
    cfg = Config().replace({"env.atari.frame_skip": 2, "frame_stack": 3})
    assert cfg.env.atari.frame_skip == 2 and cfg.env.atari.frame_stack == 3
    cfg = from_dict({"env": {"envs_per_worker": 2, "atari": {"screen_size": 42}}})
    assert cfg.env.atari.screen_size == 42 and cfg.env.envs_per_worker == 2
    assert from_dict({"env.atari": {"noop_max": 0}}).env.atari.noop_max == 0
    with pytest.raises(
        ConfigError, match="invalid value for env.atari.frame_skip: 0 must be an integer >= 1"
    ):
        Config().replace({"frame_skip": 0})


def test_backend_primary_field(tmp_path):
    assert from_dict({"backend": "serial"}).backend.name == "serial"
    assert Config().replace({"backend": "ray"}).backend.name == "ray"
    assert from_dict({"backend": {"name": "serial", "workers": 3}}).backend.workers == 3
    assert (
        build_config("CartPole-v1", overrides={"backend": "serial", "workers": 1}).backend
        == from_dict({"backend.name": "serial", "backend.workers": 1}).backend
    )
    assert parse_assignments(["backend=ray"]) == {"backend": "ray"}
    f = tmp_path / "c.yaml"
    f.write_text("backend: serial\n")
    assert build_config("CartPole-v1", [f]).backend.name == "serial"
    with pytest.raises(
        ConfigError,
        match="invalid value for backend.name: 'threads' must be one of processes, serial, ray",
    ):
        from_dict({"backend": "threads"})


@pytest.mark.parametrize(
    "key", ["run.workers", "env.frame_skip", "run.stop_at_target", "model.keep_rollout_graph"]
)
def test_keys_of_the_earlier_layout_are_unknown_keys(key):
    with pytest.raises(ConfigError, match=f"^unknown config key '{key}'".replace(".", r"\.")):
        Config().replace({key: 2})


def test_target_return_auto_number_null():
    assert Config().run.target_return == "auto"
    assert resolve_target("auto", 475.0) == 475.0
    assert resolve_target("auto", None) is None
    assert resolve_target(None, 475.0) is None
    assert resolve_target(200, 475.0) == 200.0
    assert Config().replace({"target_return": 200}).run.target_return == 200.0
    assert Config().replace(parse_assignments(["run.target_return=null"])).run.target_return is None
    assert (
        Config().replace(parse_assignments(["run.target_return=auto"])).run.target_return == "auto"
    )
    for bad in ["soon", float("inf"), True]:
        with pytest.raises(ConfigError, match="run.target_return"):
            Config().replace({"target_return": bad})


def test_a_recorded_config_of_the_earlier_layout_gets_one_line():
    with pytest.raises(ConfigError) as e:
        from_recorded(OLD_LAYOUT)
    assert "development version of a3c before 0.1.0" in str(e.value) and "\n" not in str(e.value)


def test_recorded_layout_passes_through():
    for cfg in (Config(), Config().replace({"target_return": None, "workers": 3, "frame_skip": 2})):
        assert from_recorded(cfg.to_dict()) == cfg


def test_not_learning_and_resumable():
    assert NOT_LEARNING == {
        "run.max_time",
        "run.target_return",
        "run.return_window",
        "run.max_nonfinite_updates",
        "log.log_interval",
        "log.checkpoint_interval_steps",
        "log.checkpoint_interval_s",
        "log.checkpoint_keep",
        "backend.report_interval",
        "backend.max_restarts",
        "backend.restart_delay",
        "backend.worker_timeout",
        "backend.ray_address",
        "backend.ray_workers_per_node",
        "backend.ray_store_shards",
        "eval.interval_steps",
        "eval.interval_s",
        "eval.episodes",
        "eval.deterministic",
        "eval.target_mean",
        "eval.timeout",
        "eval.ema_steps",
        "eval.env_kwargs",
    }
    assert RESUMABLE_SECTIONS == ("run", "log", "eval", "backend")
    assert (
        resumable("total_steps")
        and resumable("backend.workers")
        and resumable("backend")
        and resumable("log.checkpoint_keep")
    )
    assert resumable("eval.target_mean") and resumable("eval.env_kwargs")
    assert (
        not resumable("run.seed")
        and not resumable("n_steps")
        and not resumable("env.atari.frame_skip")
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "n_steps",
            1e30,
            "invalid value for algo.n_steps: 1000000000000000019884624838656 must be an integer "
            "in [1, 100000]",
        ),
        ("n_steps", 100_001, "must be an integer in [1, 100000]"),
        ("n_steps", 0, "invalid value for algo.n_steps: 0 must be an integer >= 1"),
        ("envs_per_worker", 4097, "in [1, 4096]"),
        (
            "workers",
            5000,
            "invalid value for backend.workers: 5000 must be an integer in [1, 4096]",
        ),
        ("lstm_size", 65_537, "in [1, 65536]"),
        ("hidden", [64, 10**6], "model.hidden"),
        ("embedding_dim", 10**5, "in [1, 65536]"),
        ("seed", 2**63, "run.seed"),
        ("seed", -1, "must be an integer >= 0"),
        ("total_steps", "1e16", "run.total_steps"),
        ("checkpoint_keep", 10_001, "in [1, 10000]"),
        ("lock", "yes", "must be true or false"),
        ("gamma", 1.5, "must be in (0, 1]"),
        ("eval.episodes", 0, "invalid value for eval.episodes: 0 must be an integer >= 1"),
        (
            "eval.interval_steps",
            0,
            "invalid value for eval.interval_steps: 0 must be an integer >= 1",
        ),
        ("eval.interval_s", -5, "invalid value for eval.interval_s: -5.0 must be a number > 0"),
        ("eval.timeout", 0, "invalid value for eval.timeout: 0.0 must be a number > 0"),
        (
            "eval.target_mean",
            "high",
            "invalid value for eval.target_mean: 'high' must be a finite number",
        ),
        (
            "eval.target_mean",
            400,
            "eval.target_mean needs evaluations: set eval.interval_steps or eval.interval_s",
        ),
        ("eval.env_kwargs", [1], "invalid value for eval.env_kwargs: (1,) must be a mapping"),
    ],
)
def test_bounds(key, value, message):
    with pytest.raises(ConfigError) as e:
        Config().replace({key: value})
    assert message in str(e.value)


def test_large_but_sane_values_pass():
    cfg = Config().replace(
        {"n_steps": 100_000, "seed": 2**63 - 1, "total_steps": "1e9", "workers": 4096}
    )
    assert cfg.run.total_steps == 10**9 and cfg.backend.workers == 4096


def test_set_values_are_literals_never_code():
    values = parse_assignments(
        [
            "n_steps=5",
            "gamma=0.9",
            "lock=true",
            "hidden=[32, 32]",
            "max_grad_norm=null",
            "id=__import__('os')",
        ]
    )
    assert values["n_steps"] == 5 and values["gamma"] == 0.9 and values["lock"] is True
    assert values["hidden"] == [32, 32] and values["max_grad_norm"] is None
    assert values["id"] == "__import__('os')"  # a string, not evaluated


def test_layers_override_in_order(tmp_path):
    f1, f2 = tmp_path / "a.yaml", tmp_path / "b.yaml"
    f1.write_text("algo: {n_steps: 3, gamma: 0.9}\nenv: {atari: {frame_skip: 3}}\n")
    f2.write_text("n_steps: 4\n")
    cfg = build_config("CartPole-v1", [f1, f2], {"algo.gamma": 0.95})
    assert cfg.algo.n_steps == 4 and cfg.algo.gamma == 0.95 and cfg.env.atari.frame_skip == 3
    assert cfg.env.id == "CartPole-v1"


def test_presets_follow_the_env_family():
    assert env_family("CliffWalking-v1") == "tabular"
    assert env_family("ALE/Pong-v5") == "atari"
    assert build_config("CliffWalking-v1").model.hidden == ()
    assert build_config("CartPole-v1").model.hidden == (64, 64)
    pong = build_config("ALE/Pong-v5")
    assert (
        pong.env.atari.ale_vector
        and pong.env.envs_per_worker == 4
        and pong.log.log_interval == 50_000
    )
    # Evaluation during training: off by default, on in the Atari (every 5-10 minutes) and MuJoCo
    # presets.
    assert (
        build_config("CartPole-v1").eval.interval_steps is None
        and build_config("CartPole-v1").eval.interval_s is None
    )
    assert (
        300 <= pong.eval.interval_s <= 600 and pong.eval.episodes == 10 and pong.eval.deterministic
    )
    assert build_config("HalfCheetah-v5").eval.interval_steps == 50_000


@pytest.mark.parametrize("family", ["atari", "classic_control", "mujoco", "tabular"])
def test_every_preset_file_loads(family):
    data = (
        yaml.safe_load(resources.files("a3c.presets").joinpath(f"{family}.yaml").read_text()) or {}
    )
    for block in data.values():
        from_dict(block or {})
    env_id = {
        "atari": "ALE/Pong-v5",
        "classic_control": "Pendulum-v1",
        "mujoco": "InvertedPendulum-v5",
        "tabular": "Taxi-v3",
    }[family]
    assert preset_for(env_id)[0] == family
    build_config(env_id)


def test_config_is_frozen_and_checked():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.algo.n_steps = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="algo.gae_lambda"):
        cfg.replace({"gae_lambda": 1.5})
    assert cfg.replace({"n_steps": 2}).algo.n_steps == 2


def test_replace_does_not_share_mutable_values():
    cfg = Config().replace({"env.kwargs": {"a": 1}})
    other = cfg.replace({"n_steps": 3})
    other.env.kwargs["a"] = 2
    assert cfg.env.kwargs == {"a": 1}


@pytest.mark.parametrize("bad", [[[2, 0.1], [1, 0.0]], [[1, -0.1]], [[1]], [1, 2], "fast"])
def test_entropy_schedule_is_checked(bad):
    with pytest.raises(ConfigError, match="algo.ent_coef_schedule"):
        Config().replace({"ent_coef_schedule": bad})


def test_entropy_schedule_reads_from_set_and_round_trips():
    # YAML 1.1 reads 6e6 as a string; it must still mean six million
    cfg = Config().replace(
        parse_assignments(["algo.ent_coef_schedule=[[6e6, 0.01], [10_000_000, 0.001]]"])
    )
    assert cfg.algo.ent_coef_schedule == ((6e6, 0.01), (1e7, 0.001))
    assert from_dict(json.loads(cfg.to_json())).algo.ent_coef_schedule == cfg.algo.ent_coef_schedule
