"""One validated, frozen configuration tree, `Config`, of the sections in `a3c.config_sections`
(env with env.atari, algo, optim, model, run, log, eval and backend), and its keys.

Keys are `section.field`, `env.atari.field`, or a bare field name where unique; `backend` alone is
its primary field backend.name. Values are coerced to the field's type and checked; unknown keys
are refused. Configs that runs recorded load through `from_recorded`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from a3c import checks
from a3c.config_sections import (
    AlgoConfig,
    AtariConfig,
    BackendConfig,
    EnvConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    section_field,
)
from a3c.errors import ConfigError

__all__ = [
    "AlgoConfig",
    "AtariConfig",
    "BackendConfig",
    "Config",
    "EnvConfig",
    "EvalConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
]


@dataclass(frozen=True)
class Config:
    env: EnvConfig = section_field(EnvConfig)
    algo: AlgoConfig = section_field(AlgoConfig)
    optim: OptimConfig = section_field(OptimConfig)
    model: ModelConfig = section_field(ModelConfig)
    run: RunConfig = section_field(RunConfig)
    log: LogConfig = section_field(LogConfig)
    eval: EvalConfig = section_field(EvalConfig)
    backend: BackendConfig = section_field(BackendConfig, primary="name")

    def to_dict(self) -> dict[str, Any]:
        """Nested dicts of plain values (tuples as lists), `env.atari` included."""
        return _as_dict(self)

    def to_flat(self) -> dict[str, Any]:
        """{dotted key: value} for every leaf."""
        return {key: _plain(functools.reduce(getattr, key.split("."), self)) for key in LEAVES}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def replace(self, updates: Mapping[str, Any]) -> Config:
        """A new config with `updates` ({"algo.n_steps": 5, "gamma": 0.9, ...}) applied and
        checked."""
        flat = self.to_flat()
        flat.update(flatten(updates))
        return from_dict(flat)


def _as_dict(obj: Any) -> dict[str, Any]:
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return {k: _as_dict(v) if dataclasses.is_dataclass(v) else _plain(v) for k, v in values.items()}


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else copy.deepcopy(v) if isinstance(v, dict) else v


def _walk(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    for f in dataclasses.fields(cls):
        yield prefix + f.name, f
        if f.metadata.get("section"):
            yield from _walk(f.metadata["section"], f"{prefix}{f.name}.")


SECTIONS: dict[str, type] = {
    k: f.metadata["section"] for k, f in _walk(Config) if f.metadata.get("section")
}
LEAVES: dict[str, dataclasses.Field] = {
    k: f for k, f in _walk(Config) if not f.metadata.get("section")
}
PRIMARY: dict[str, str] = {
    k: f"{k}.{f.metadata['primary']}" for k, f in _walk(Config) if f.metadata.get("primary")
}
_BARE: dict[str, list[str]] = {}
for _key in LEAVES:
    _BARE.setdefault(_key.rsplit(".", 1)[-1], []).append(_key)

# Settings that do not change what a run learns (runs differing only in these and in run.seed are
# seeds of one setup), and the sections a resumed run may change (all but run.seed).
NOT_LEARNING: frozenset[str] = frozenset(k for k, f in LEAVES.items() if not f.metadata["learning"])
RESUMABLE_SECTIONS = ("run", "log", "eval", "backend")


def canonical_key(key: str) -> str:
    """The dotted key of a leaf from it, a unique bare name or `backend`; unknown keys raise."""
    if key in LEAVES:
        return key
    if key in PRIMARY:
        return PRIMARY[key]
    matches = _BARE.get(key, []) if "." not in key else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"ambiguous config key '{key}': write one of {', '.join(matches)}")
    raise ConfigError(f"unknown config key '{key}' (see `a3c train --help` for the keys)")


def resolve_key(key: str) -> tuple[str, str]:
    """`n_steps` -> ("algo", "n_steps"); `frame_skip` -> ("env", "atari.frame_skip")."""
    section, _, name = canonical_key(key).partition(".")
    return section, name


def resumable(key: str) -> bool:
    """Whether a resumed run may change `key`: any key of run, log, eval and backend except
    run.seed."""
    key = canonical_key(key)
    return key.split(".", 1)[0] in RESUMABLE_SECTIONS and key != "run.seed"


def resolve_target(
    target_return: float | str | None, reward_threshold: float | None
) -> float | None:
    """The return to stop at: the number, the env's reward_threshold for "auto", None for null."""
    value = reward_threshold if target_return == "auto" else target_return
    return None if value is None else float(value)


def field_docs() -> list[tuple[str, Any, str]]:
    """(key, default, doc) for every leaf, in order: the source of --help and
    docs/configuration.md."""
    return [
        (
            k,
            f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default,
            f.metadata["doc"],
        )
        for k, f in LEAVES.items()
    ]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections and/or dotted or bare keys -> {dotted key: value}; keys are checked."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            "a config must be a mapping of sections (env, algo, optim, model, run, log, eval, "
            "backend)"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings, got {key!r}")
        path = prefix + key
        if path in SECTIONS and isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        else:
            out[canonical_key(path)] = value
    return out


def _coerce(key: str, f: dataclasses.Field, value: Any) -> Any:
    """Bring YAML/JSON values to the field's type: lists to tuples, ints to floats where a float is
    wanted."""
    # pairs inside a list (a schedule's [step, value]) become tuples too
    if isinstance(value, list):
        value = tuple(
            tuple(_number_from_text(x) if isinstance(x, str) else x for x in v)
            if isinstance(v, list)
            else v
            for v in value
        )
    typ = str(f.type)
    if isinstance(value, str) and typ.startswith(("float", "int")):
        value = _number_from_text(value)  # YAML 1.1 reads 7e-4 and 1e6 as strings
    if typ.startswith("int") and isinstance(value, float) and value.is_integer():
        value = int(value)  # 1e30 becomes a 31-digit int here: the upper bounds refuse it
    if typ.startswith("float") and checks.is_int(value):
        value = float(value)
    check = f.metadata.get("check")
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"invalid value for {key}: {value!r} {problem}")
    return value


def _number_from_text(s: str) -> Any:
    try:
        return float(s.replace("_", ""))
    except ValueError:
        return s


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build and check a Config from nested ({"algo": {...}}) and/or dotted/bare keys."""
    return _build(Config, "", flatten(data))


def _build(cls: type, prefix: str, flat: Mapping[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.metadata.get("section"):
            kwargs[f.name] = _build(f.metadata["section"], key + ".", flat)
        elif key in flat:
            kwargs[f.name] = _coerce(key, f, flat[key])
    return cls(**kwargs)


# Keys only the layout before 0.1.0's sections (env.atari, log, backend) wrote: a recorded config
# holding one gets one line saying so, not a list of unknown keys.
_EARLIER_LAYOUT = {
    "run": ("workers", "backend", "stop_at_target"),
    "env": ("frame_skip",),
    "model": ("keep_rollout_graph",),
}


def from_recorded(data: Mapping[str, Any]) -> Config:
    """A Config from a run directory's config.json or a checkpoint's meta["config"]."""
    if isinstance(data, Mapping) and any(
        isinstance(data.get(section), Mapping) and any(k in data[section] for k in keys)
        for section, keys in _EARLIER_LAYOUT.items()
    ):
        raise ConfigError(
            "it was written by a development version of a3c before 0.1.0 (its config has the "
            "earlier layout, without the env.atari, log and backend sections), which this a3c "
            "does not read"
        )
    return from_dict(data)
