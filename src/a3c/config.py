"""One validated, frozen configuration tree.

Every field has a default that works, a check and a one-line doc (which `a3c train --help` and the
README show). Hyperparameters are spelled as in Stable-Baselines3 (`n_steps`, `gamma`, `ent_coef`,
`vf_coef`, `max_grad_norm`, `learning_rate`) so results compare directly; the tutorial's beta is
`ent_coef`.

Keys are addressed as `section.field` (`algo.n_steps`); a bare field name (`n_steps`) is accepted
wherever it is unique across sections.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from a3c.errors import ConfigError

Check = Callable[[Any], str | None]


def _f(default: Any, doc: str, check: Check | None = None, factory: bool = False) -> Any:
    meta = {"doc": doc, "check": check}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _positive_int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else "must be an integer >= 1"


def _nonneg(v: Any) -> str | None:
    return None if _is_number(v) and v >= 0 and math.isfinite(v) else "must be a number >= 0"


def _positive(v: Any) -> str | None:
    return None if _is_number(v) and v > 0 and math.isfinite(v) else "must be a number > 0"


def _unit_open_closed(v: Any) -> str | None:
    return None if _is_number(v) and 0 < v <= 1 else "must be in (0, 1]"


def _unit_closed(v: Any) -> str | None:
    return None if _is_number(v) and 0 <= v <= 1 else "must be in [0, 1]"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"

    return check


def _optional(check: Check) -> Check:
    def inner(v: Any) -> str | None:
        return None if v is None else check(v)

    return inner


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _hidden(v: Any) -> str | None:
    ok = isinstance(v, tuple) and all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in v)
    return None if ok else "must be a list of integers >= 1 (may be empty)"


def _schedule_points(v: Any) -> str | None:
    ok = isinstance(v, tuple) and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(_is_number(x) and math.isfinite(x) and x >= 0 for x in p) for p in v
    )
    ok = ok and all(a[0] <= b[0] for a, b in zip(v, v[1:], strict=False))
    return None if ok else "must be a list of [step, value] pairs of numbers >= 0 with non-decreasing steps"


def _is_dict(v: Any) -> str | None:
    return None if isinstance(v, dict) else "must be a mapping"


def _is_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _finite(v: Any) -> str | None:
    return None if _is_number(v) and math.isfinite(v) else "must be a finite number"


@dataclass(frozen=True)
class EnvConfig:
    id: str = _f("CartPole-v1", "Gymnasium env id, or module:Class / module:make_fn for your own env.", _is_str)
    envs_per_worker: int = _f(8, "Envs each worker steps together with one batched forward pass.", _positive_int)
    kwargs: dict = _f(dict, "Keyword arguments passed to gymnasium.make (the zoo's --env-kwargs).", _is_dict, factory=True)
    max_episode_steps: int | None = _f(None, "Override the env's time limit (truncation, bootstrapped).", _optional(_positive_int))
    normalize_obs: bool = _f(False, "Normalise observations by a running mean and std shared by all workers.", lambda v: None if isinstance(v, bool) else "must be true or false")
    frame_skip: int = _f(4, "Atari: frames per agent step (max-pooled over the last two).", _positive_int)
    frame_stack: int = _f(4, "Atari: stacked frames per observation.", _positive_int)
    screen_size: int = _f(84, "Atari: observation size (square, grayscale).", _positive_int)
    noop_max: int = _f(30, "Atari: up to this many no-op actions at reset.", lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "must be an integer >= 0")
    episodic_life: bool = _f(True, "Atari: a lost life ends the training episode (reported returns stay whole games).", lambda v: None if isinstance(v, bool) else "must be true or false")
    clip_rewards: bool = _f(True, "Atari: train on sign(reward) (reported returns stay the real score).", lambda v: None if isinstance(v, bool) else "must be true or false")
    ale_vector: bool = _f(False, "Atari: step a worker's envs in ale-py's C++ AtariVectorEnv (the same frames as Gymnasium's wrappers, cheaper per step; env.kwargs limited to repeat_action_probability, full_action_space, max_num_frames_per_episode).", lambda v: None if isinstance(v, bool) else "must be true or false")


@dataclass(frozen=True)
class AlgoConfig:
    n_steps: int = _f(8, "Rollout length per update (the tutorial's n in eq. 1).", _positive_int)
    gamma: float = _f(0.99, "Discount factor.", _unit_open_closed)
    gae_lambda: float = _f(1.0, "GAE lambda; 1.0 gives the n-step advantage of eq. 1 exactly.", _unit_closed)
    ent_coef: float = _f(0.0, "Entropy bonus coefficient (the tutorial's beta).", _nonneg)
    ent_coef_schedule: tuple = _f((), "Piecewise-linear entropy coefficient over global steps, as [[step, value], ...]: ent_coef holds until the first point, the last value after the last (empty: ent_coef throughout).", _schedule_points)
    vf_coef: float = _f(0.5, "Weight of the value loss 1/2 A^2 (eq. 3) in the total loss.", _nonneg)
    reward_scale: float = _f(1.0, "Multiply training rewards by this (reported returns stay unscaled).", _positive)
    max_grad_norm: float | None = _f(0.5, "Clip gradients to this global norm (null: no clipping).", _optional(_positive))


@dataclass(frozen=True)
class OptimConfig:
    name: str = _f("rmsprop", "Shared optimizer: rmsprop (statistics shared; PyTorch's form, sqrt(g) + eps, g starting at 0), rmsprop_tf (TensorFlow's form, as in the A3C paper and SB3's RMSpropTFLike: sqrt(g + eps), g starting at 1), adam (shared) or sgd.", _one_of("rmsprop", "rmsprop_tf", "adam", "sgd"))
    learning_rate: float = _f(1e-3, "Initial learning rate (of the actor, and the critic unless set apart).", _nonneg)
    critic_learning_rate: float | None = _f(None, "Separate learning rate for the critic (null: same as learning_rate).", _optional(_nonneg))
    lr_schedule: str = _f("linear", "Per-worker learning-rate schedule over total_steps: linear (to 0) or constant.", _one_of("linear", "constant"))
    alpha: float = _f(0.99, "RMSprop smoothing constant of the squared-gradient average.", _unit_open_closed)
    eps: float = _f(1e-5, "Optimizer epsilon (RMSprop and Adam).", _positive)
    betas: tuple = _f((0.9, 0.999), "Adam betas.", lambda v: None if isinstance(v, tuple) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v) else "must be two numbers in [0, 1)")
    lock: bool = _f(False, "Apply updates under a lock (default: lock-free Hogwild updates).", lambda v: None if isinstance(v, bool) else "must be true or false")


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple = _f((64, 64), "Hidden layer sizes of the MLP (empty for a linear / tabular model).", _hidden)
    activation: str = _f("tanh", "Activation of the MLP: tanh or relu.", _one_of("tanh", "relu"))
    shared_encoder: bool = _f(False, "Share one MLP body between actor and critic (default: separate; image encoders, embeddings and the LSTM are always shared).", lambda v: None if isinstance(v, bool) else "must be true or false")
    tabular: str = _f("onehot", "Encoding of Discrete observations: onehot (a table) or embedding.", _one_of("onehot", "embedding"))
    embedding_dim: int = _f(32, "Size of the embedding when tabular=embedding.", _positive_int)
    cnn: str = _f("a3c", "Image encoder: a3c (Mnih et al. 2016: 16-32 conv, fc 256), nature (Mnih et al. 2015: 32-64-64 conv, fc 512) or universe (universe-starter-agent's four 32 3x3/2 convs for 42x42 frames, ELU, no fc).", _one_of("a3c", "nature", "universe"))
    lstm: bool = _f(False, "An LSTM core after the encoder; its state is carried across rollouts and reset at episode ends.", lambda v: None if isinstance(v, bool) else "must be true or false")
    lstm_size: int = _f(256, "Hidden size of the LSTM core.", _positive_int)
    keep_rollout_graph: bool = _f(False, "Keep the rollout's forward passes, with gradient, for the loss instead of re-evaluating the rollout in one batch: one forward pass fewer, but n_steps backward passes over narrow batches (slower on the 2-core reference machine; docs/architecture.md).", lambda v: None if isinstance(v, bool) else "must be true or false")
    gaussian: str = _f("state_independent", "Gaussian policy for Box actions: state_independent (learned log-std), softplus (the paper's variance head) or sde (state-dependent exploration, gSDE).", _one_of("state_independent", "softplus", "sde"))
    log_std_init: float = _f(0.0, "Initial log standard deviation of the Gaussian policy.", _finite)


@dataclass(frozen=True)
class RunConfig:
    workers: int = _f(2, "Number of asynchronous workers (default: 2).", _positive_int)
    backend: str = _f("processes", "Where workers run: processes (default), serial (deterministic emulation) or ray.", _one_of("processes", "serial", "ray"))
    ray_address: str | None = _f(None, "Ray cluster to join (auto or HOST:PORT); null starts a local Ray on 127.0.0.1.", _optional(_is_str))
    ray_sync_interval: float = _f(0.05, "Ray backend: seconds between a worker's round trips to the parameter server. The gradients computed in between travel together (each is still applied as its own update, in order) and the worker re-syncs its weights once per round trip; 0 = a round trip per update.", _nonneg)
    seed: int = _f(0, "Seed; each worker seeds its envs and RNGs from (seed, worker index).", lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "must be an integer >= 0")
    total_steps: int = _f(1_000_000, "Stop after this many global env steps (also the horizon of the lr schedule).", _positive_int)
    target_return: float | None = _f(None, "Stop once the mean return of the last return_window episodes reaches this (null: the env's reward_threshold if it has one).", _optional(_finite))
    stop_at_target: bool = _f(True, "Stop when the target return is reached.", lambda v: None if isinstance(v, bool) else "must be true or false")
    return_window: int = _f(100, "Episodes in the running mean return (return_mean).", _positive_int)
    max_time: float | None = _f(None, "Stop after this many seconds of wall time (null: no limit).", _optional(_positive))
    log_interval: int = _f(10_000, "Write a progress.csv row every this many global env steps.", _positive_int)
    max_restarts: int = _f(3, "Restart a failed worker (exception, crash, kill) up to this many times; then stop the run with a checkpoint.", lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "must be an integer >= 0")
    restart_delay: float = _f(0.5, "Seconds to wait before restarting a failed worker.", _nonneg)
    report_interval: float = _f(0.1, "Seconds between a worker's reports to the trainer.", _positive)
    train_while_starting: bool = _f(True, "Processes backend: while the worker processes start (the fork server's first start imports torch, about 1 s), the trainer trains as a stand-in for worker 0.", lambda v: None if isinstance(v, bool) else "must be true or false")
    checkpoint_interval_steps: int | None = _f(None, "Write a checkpoint every this many global env steps (null: by time only; one is always written at the end).", _optional(_positive_int))
    checkpoint_interval_s: float | None = _f(600.0, "Write a checkpoint every this many seconds of wall time (null: by steps only).", _optional(_positive))
    checkpoint_keep: int = _f(3, "Keep the newest this many checkpoints in run_dir/checkpoints/.", _positive_int)


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {
            s.name: {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(getattr(self, s.name)).items()}
            for s in dataclasses.fields(self)
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def replace(self, updates: Mapping[str, Any]) -> Config:
        """A new config with `updates` ({"algo.n_steps": 5, "gamma": 0.9, ...}) applied and checked."""
        data = self.to_dict()
        for key, value in updates.items():
            section, name = resolve_key(key)
            data[section][name] = value
        return from_dict(data)


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


def field_docs() -> list[tuple[str, Any, str]]:
    """(key, default, doc) for every field, in order: the source of --help and the README table."""
    out = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out.append((f"{section}.{f.name}", default, f.metadata["doc"]))
    return out


def resolve_key(key: str) -> tuple[str, str]:
    """`algo.n_steps` or a unique bare `n_steps` -> ("algo", "n_steps"); unknown keys raise."""
    if "." in key:
        section, _, name = key.partition(".")
        if section in SECTIONS and name in {f.name for f in dataclasses.fields(SECTIONS[section])}:
            return section, name
        raise ConfigError(f"unknown config key '{key}' (see `a3c train --help` for the keys)")
    matches = [s for s, cls in SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}]
    if len(matches) == 1:
        return matches[0], key
    if len(matches) > 1:
        raise ConfigError(f"ambiguous config key '{key}': write one of {', '.join(f'{s}.{key}' for s in matches)}")
    raise ConfigError(f"unknown config key '{key}' (see `a3c train --help` for the keys)")


def _coerce(section: str, f: dataclasses.Field, value: Any) -> Any:
    """Bring YAML/JSON values to the field's type: lists to tuples, ints to floats where a float is wanted."""
    if isinstance(value, list):  # pairs inside a list (a schedule's [step, value]) become tuples too
        value = tuple(tuple(_number_from_text(x) if isinstance(x, str) else x for x in v) if isinstance(v, list) else v for v in value)
    typ = str(f.type)
    if isinstance(value, str) and typ.startswith(("float", "int")):
        value = _number_from_text(value)  # YAML 1.1 reads 7e-4 and 1e6 as strings
    if typ.startswith("int") and isinstance(value, float) and value.is_integer():
        value = int(value)
    if typ.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    check = f.metadata.get("check")
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"invalid value for {section}.{f.name}: {value!r} {problem}")
    return value


def _number_from_text(text: str) -> Any:
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return text


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build and check a Config from nested ({"algo": {...}}) and/or dotted/bare keys."""
    if not isinstance(data, Mapping):
        raise ConfigError("a config must be a mapping of sections (env, algo, optim, model, run)")
    nested: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings, got {key!r}")
        if key in SECTIONS and isinstance(value, Mapping):
            for name, v in value.items():
                s, n = resolve_key(f"{key}.{name}")
                nested[s][n] = v
        else:
            s, n = resolve_key(key)
            nested[s][n] = value
    built = {}
    for section, cls in SECTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {name: _coerce(section, fields[name], v) for name, v in nested[section].items()}
        built[section] = cls(**kwargs)
    return Config(**built)


def parse_value(text: str) -> Any:
    """Parse a --set value as a YAML literal (numbers, true/false, null, lists); never evaluated as code."""
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
        resolve_key(key.strip())
        out[key.strip()] = parse_value(value)
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file with yaml.safe_load; a malformed file is a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"malformed config file {p}{line}: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"malformed config file {p}: expected a mapping of sections, got {type(data).__name__}")
    from_dict(data)  # check keys and values now, so the error names this file
    return data


MUJOCO = {
    "Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum",
    "InvertedPendulum", "Pusher", "Reacher", "Swimmer", "Walker2d",
}  # fmt: skip


def preset_for(env_id: str) -> tuple[str, dict[str, Any]]:
    """The preset (family, values) for an env id, from the data files in a3c/presets/.

    Each family file holds a `default` block and, like rl-baselines3-zoo's hyperparameter files,
    optional blocks keyed by env id (`Pendulum-v1`) or by env name without version (`Pendulum`) that
    override it.
    """
    family = env_family(env_id)
    text = resources.files("a3c.presets").joinpath(f"{family}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    values = _flatten(data.get("default") or {})
    name = env_id.split("/")[-1].split("-v")[0]
    for key in (name, env_id):
        values.update(_flatten(data.get(key) or {}))
    return family, values


def env_family(env_id: str) -> str:
    if env_id.startswith("ALE/"):
        return "atari"
    name = env_id.split("-v")[0]
    if name in {"CliffWalking", "CliffWalkingSlippery", "FrozenLake", "FrozenLake8x8", "Taxi"}:
        return "tabular"
    if name in MUJOCO:
        return "mujoco"
    return "classic_control"


def build_config(
    env_id: str | None = None,
    files: list[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    use_preset: bool = True,
) -> Config:
    """Defaults <- the env family's preset <- config files <- overrides (later wins)."""
    layers: list[Mapping[str, Any]] = []
    if env_id is not None and use_preset:
        layers.append(preset_for(env_id)[1])
    layers += [load_file(f) for f in files]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(_flatten(layer))  # only the keys a layer sets override the layers below
    if overrides:
        for key, value in overrides.items():
            s, n = resolve_key(key)
            merged[f"{s}.{n}"] = value
    if env_id is not None:
        merged["env.id"] = env_id
    return from_dict(merged)


def _flatten(layer: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in layer.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for name, v in value.items():
                s, n = resolve_key(f"{key}.{name}")
                out[f"{s}.{n}"] = v
        else:
            s, n = resolve_key(key)
            out[f"{s}.{n}"] = value
    return out
