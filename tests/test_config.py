from __future__ import annotations

import json

import pytest

from a3c.config import (
    Config,
    ConfigError,
    build_config,
    env_family,
    field_docs,
    from_dict,
    parse_assignments,
    resolve_key,
)


def test_defaults_are_valid_and_documented():
    cfg = from_dict({})
    assert cfg == Config()
    for key, _, doc in field_docs():
        assert doc and doc.endswith(".") or doc.endswith(")"), key


def test_bare_and_dotted_keys_resolve():
    assert resolve_key("n_steps") == ("algo", "n_steps")
    assert resolve_key("optim.learning_rate") == ("optim", "learning_rate")
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve_key("algo.learning_rate")


def test_set_values_are_literals_never_code():
    values = parse_assignments(["n_steps=5", "gamma=0.9", "lock=true", "hidden=[32, 32]", "max_grad_norm=null", "id=__import__('os')"])
    assert values["n_steps"] == 5 and values["gamma"] == 0.9 and values["lock"] is True
    assert values["hidden"] == [32, 32] and values["max_grad_norm"] is None
    assert values["id"] == "__import__('os')"  # a string, not evaluated


def test_layers_override_in_order(tmp_path):
    f1, f2 = tmp_path / "a.yaml", tmp_path / "b.yaml"
    f1.write_text("algo: {n_steps: 3, gamma: 0.9}\n")
    f2.write_text("n_steps: 4\n")
    cfg = build_config("CartPole-v1", [f1, f2], {"algo.gamma": 0.95})
    assert cfg.algo.n_steps == 4 and cfg.algo.gamma == 0.95
    assert cfg.env.id == "CartPole-v1"


def test_presets_follow_the_env_family():
    assert env_family("CliffWalking-v1") == "tabular"
    assert env_family("ALE/Pong-v5") == "atari"
    assert build_config("CliffWalking-v1").model.hidden == ()
    assert build_config("CartPole-v1").model.hidden == (64, 64)


def test_config_is_frozen_and_checked():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.algo.n_steps = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="algo.gae_lambda"):
        cfg.replace({"gae_lambda": 1.5})
    assert cfg.replace({"n_steps": 2}).algo.n_steps == 2


@pytest.mark.parametrize("bad", [[[2, 0.1], [1, 0.0]], [[1, -0.1]], [[1]], [1, 2], "fast"])
def test_entropy_schedule_is_checked(bad):
    with pytest.raises(ConfigError, match="algo.ent_coef_schedule"):
        Config().replace({"ent_coef_schedule": bad})


def test_entropy_schedule_reads_from_set_and_round_trips():
    # YAML 1.1 reads 6e6 as a string; it must still mean six million
    cfg = Config().replace(parse_assignments(["algo.ent_coef_schedule=[[6e6, 0.01], [10_000_000, 0.001]]"]))
    assert cfg.algo.ent_coef_schedule == ((6e6, 0.01), (1e7, 0.001))
    assert from_dict(json.loads(cfg.to_json())).algo.ent_coef_schedule == cfg.algo.ent_coef_schedule
