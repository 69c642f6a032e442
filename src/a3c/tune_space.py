"""`a3c tune`'s search spaces: data a user can copy and edit (YAML), one default per env family
(a3c/presets/search/FAMILY.yaml), checked up front with the config's own checks.

    optim.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range (log scale)
    algo.n_steps: [5, 8, 16, 32, 64]                               # a choice
    model.hidden: [[64, 64], [128, 128]]                           # a choice of lists

A range with integer bounds samples integers. Any config key can be searched.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from a3c.config import Config, canonical_key
from a3c.errors import ConfigError, first_line

MAX_SPACE_BYTES = 1_000_000


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched key: a choice among `choices`, or a range [low, high] (`log` scale; integers
    when `integer`)."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws. Choices go to Optuna as JSON text (it takes only
        scalars), so a list such as [64, 64] can be one."""
        if self.choices is not None:
            picked = trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices])
            return json.loads(picked)
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def values(self) -> list[Any]:
        """The values the config must accept: every choice, or both bounds."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


def _number(text: Any, where: str) -> float:
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise ConfigError(f"{where} must be a number, got {text!r}")
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where} must be finite, got {text!r}")
    return value


def dimension(key: str, spec: Any, source: str) -> Dimension:
    """One entry of a search space, checked: a non-empty list, or a mapping with low < high."""
    where = f"{source}: {key}"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where} is an empty choice")
        return Dimension(key, choices=tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where} must be a list of choices or {{low, high, log}}, got {type(spec).__name__}"
        )
    unknown = set(spec) - {"low", "high", "log"}
    if unknown or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{where} takes low, high and log (optional), got {sorted(spec)}")
    low, high = _number(spec["low"], f"{where}.low"), _number(spec["high"], f"{where}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low:g}")
    integer = all(
        isinstance(spec[b], int) and not isinstance(spec[b], bool) for b in ("low", "high")
    )
    return Dimension(key, low=low, high=high, log=log, integer=integer)


def parse(data: Any, source: str) -> list[Dimension]:
    """A search space from its YAML data, each key checked against the config: the key must exist,
    and every choice (or both bounds) must be a valid value for it."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{source}: a search space is a mapping of config keys to their ranges")
    dims = []
    for key, spec in data.items():
        try:
            canonical = canonical_key(str(key))
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        dim = dimension(canonical, spec, source)
        for value in dim.values():
            try:
                Config().replace({canonical: int(value) if dim.integer else value})
            except ConfigError as e:
                raise ConfigError(f"{source}: {key}: {first_line(e)}") from None
        dims.append(dim)
    return dims


def load(path: str | Path) -> list[Dimension]:
    """A user's search space file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPACE_BYTES:
            raise ConfigError(f"--space {path} is larger than 1 MB: not a search space")
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"--space {path}: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--space {path} is not valid YAML: {first_line(e)}") from None
    return parse(data, str(path))


def default_text(family: str) -> str:
    """The default search space of an env family, as its YAML text."""
    return resources.files("a3c.presets.search").joinpath(f"{family}.yaml").read_text()


def default(family: str) -> list[Dimension]:
    return parse(yaml.safe_load(default_text(family)), f"the {family} search space")
