"""Configs from outside the program: YAML files, the env families' presets, --set values.

    build_config(env_id, files, overrides)   # defaults <- preset <- files <- overrides

The presets are data files in a3c/presets/ (one per env family), in the layout of a3c.config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from a3c.config import Config, canonical_key, flatten, from_dict
from a3c.errors import ConfigError


def parse_value(text: str) -> Any:
    """Parse a --set value as a YAML literal (numbers, true/false, null, lists); never evaluated as
    code."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{item}'")
        canonical_key(key.strip())
        out[key.strip()] = parse_value(value)
    return out


MAX_CONFIG_BYTES = 1 << 20


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file with yaml.safe_load; a malformed file is a ConfigError."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory")
    try:
        with open(p, "rb") as f:  # a bounded read: /dev/zero or a huge file is not a config
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {p} is larger than {MAX_CONFIG_BYTES >> 20} MB; a config is a few "
                "lines of YAML"
            )
        content = raw.decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
            f"{e.start})"
        ) from None
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(
            f"malformed config file {p}{line}: {getattr(e, 'problem', None) or e}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"malformed config file {p}: expected a mapping of sections, got {type(data).__name__}"
        )
    from_dict(data)  # check keys and values now, so the error names this file
    return data


MUJOCO = {
    "Ant",
    "HalfCheetah",
    "Hopper",
    "Humanoid",
    "HumanoidStandup",
    "InvertedDoublePendulum",
    "InvertedPendulum",
    "Pusher",
    "Reacher",
    "Swimmer",
    "Walker2d",
}


def preset_for(
    env_id: str, observation_space: gym.Space | None = None
) -> tuple[str, dict[str, Any]]:
    """The preset (family, {dotted key: value}) for an env id, from the data files in a3c/presets/.

    Each family file holds a `default` block and, like rl-baselines3-zoo's hyperparameter files,
    optional blocks keyed by env id (`Pendulum-v1`) or by env name without version (`Pendulum`) that
    override it.
    """
    family = env_family(env_id, observation_space)
    data = (
        yaml.safe_load(resources.files("a3c.presets").joinpath(f"{family}.yaml").read_text()) or {}
    )
    values = flatten(data.get("default") or {})
    name = env_id.split("/")[-1].split("-v")[0]
    for key in (name, env_id):
        values.update(flatten(data.get(key) or {}))
    return family, values


def env_family(env_id: str, observation_space: gym.Space | None = None) -> str:
    """The preset family of an env: by its id (Atari, MuJoCo, the tabular toy text envs), else by
    its observation space when known (images anywhere in it: image; Discrete: tabular), else
    classic_control (the library's defaults)."""
    if env_id.startswith("ALE/"):
        return "atari"
    name = env_id.split("-v")[0]
    if name in {"CliffWalking", "CliffWalkingSlippery", "FrozenLake", "FrozenLake8x8", "Taxi"}:
        return "tabular"
    if name in MUJOCO:
        return "mujoco"
    if observation_space is not None:
        if isinstance(observation_space, gym.spaces.Discrete):
            return "tabular"
        # Imported here: a3c.spaces imports torch, which `a3c --help` need not wait for.
        from a3c.spaces import is_image, leaves

        if any(is_image(space) for _, space in leaves(observation_space)):
            return "image"
    return "classic_control"


def build_config(
    env_id: str | None = None,
    files: Sequence[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    use_preset: bool = True,
    observation_space: gym.Space | None = None,
) -> Config:
    """Defaults <- the env family's preset <- config files <- overrides (later wins). The family
    comes from the env id, and from `observation_space` when the id does not decide it."""
    merged: dict[str, Any] = {}
    if env_id is not None and use_preset:
        merged.update(preset_for(env_id, observation_space)[1])
    for f in files:
        merged.update(flatten(load_file(f)))  # only the keys a layer sets override the layers below
    if overrides:
        merged.update(flatten(overrides))
    if env_id is not None:
        merged["env.id"] = env_id
    return from_dict(merged)
