"""The eight sections of the configuration: env (with env.atari), algo, optim, model, run, log,
eval and backend, one frozen dataclass each.

Every field has a default that works, a check (`a3c.checks`), a one-line doc (`a3c train --help`;
the reasoning is in docs/configuration.md) and a `learning` flag, False for settings that do not
change what a run learns. `a3c.config` puts the sections together into one `Config` and reads keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from a3c import checks
from a3c.checks import Check, boolean, integer, mapping, number, one_of, optional, text
from a3c.errors import ConfigError


def _f(
    default: Any, doc: str, check: Check | None = None, factory: bool = False, learning: bool = True
) -> Any:
    meta = {"doc": doc, "check": check, "learning": learning}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def section_field(cls: type, primary: str | None = None) -> Any:
    """A field holding a whole section (`primary`: the field the section's bare name sets)."""
    return field(default_factory=cls, metadata={"section": cls, "primary": primary})


STEPS = 10**15  # more global env steps than any run takes: a larger count can only be a mistake
SIZE = 65_536  # the largest layer, LSTM or embedding size


@dataclass(frozen=True)
class AtariConfig:
    frame_skip: int = _f(
        4, "Frames per agent step (max-pooled over the last two).", integer(1, 1000)
    )
    frame_stack: int = _f(4, "Stacked frames per observation.", integer(1, 1000))
    screen_size: int = _f(84, "Observation size (square, grayscale).", integer(1, 4096))
    noop_max: int = _f(30, "Up to this many no-op actions at reset.", integer(0, 100_000))
    episodic_life: bool = _f(
        True, "A lost life ends the training episode (reported returns stay whole games).", boolean
    )
    clip_rewards: bool = _f(
        True, "Train on sign(reward) (reported returns stay the real score).", boolean
    )
    ale_vector: bool = _f(
        False,
        "Step a worker's envs in ale-py's C++ AtariVectorEnv (takes few env.kwargs).",
        boolean,
    )
    fire_reset: bool = _f(
        True,
        "Games whose action 1 is FIRE: press it at a game's start and after each lost life.",
        boolean,
    )


@dataclass(frozen=True)
class EnvConfig:
    id: str = _f(
        "CartPole-v1", "Gymnasium env id, or module:Class / module:make_fn for your own env.", text
    )
    envs_per_worker: int = _f(
        8, "Envs each worker steps together with one batched forward pass.", integer(1, 4096)
    )
    kwargs: dict = _f(
        dict,
        "Keyword arguments passed to gymnasium.make (the zoo's --env-kwargs).",
        mapping,
        factory=True,
    )
    max_episode_steps: int | None = _f(
        None,
        "Override the env's time limit (truncation, bootstrapped).",
        optional(integer(1, STEPS)),
    )
    normalize_obs: bool = _f(
        False, "Normalise observations by a running mean and std shared by all workers.", boolean
    )
    obs_keys: tuple = _f(
        (),
        "Dict observations: the keys to keep, e.g. [image, direction] (empty: all).",
        checks.names,
    )
    action_masks: bool = _f(
        True,
        "Use the env's action masks (an action_masks() method or info['action_mask']).",
        boolean,
    )
    atari: AtariConfig = section_field(AtariConfig)


@dataclass(frozen=True)
class AlgoConfig:
    n_steps: int = _f(
        8, "Rollout length per update (the tutorial's n in eq. 1).", integer(1, 100_000)
    )
    gamma: float = _f(0.99, "Discount factor.", number(0, 1, lo_open=True))
    gae_lambda: float = _f(
        1.0, "GAE lambda; 1.0 gives the n-step advantage of eq. 1 exactly.", number(0, 1)
    )
    ent_coef: float = _f(0.0, "Entropy bonus coefficient (the tutorial's beta).", number(lo=0))
    ent_coef_schedule: tuple = _f(
        (),
        "Piecewise-linear ent_coef over global steps, [[step, value], ...] (empty: none).",
        checks.schedule_points,
    )
    vf_coef: float = _f(
        0.5, "Weight of the value loss 1/2 A^2 (eq. 3) in the total loss.", number(lo=0)
    )
    reward_scale: float = _f(
        1.0,
        "Multiply training rewards by this (reported returns stay unscaled).",
        number(lo=0, lo_open=True),
    )
    max_grad_norm: float | None = _f(
        0.5,
        "Clip gradients to this global norm (null: no clipping).",
        optional(number(lo=0, lo_open=True)),
    )


@dataclass(frozen=True)
class OptimConfig:
    name: str = _f(
        "rmsprop",
        "Shared optimizer: rmsprop, rmsprop_tf (the A3C paper's form), adam or sgd.",
        one_of("rmsprop", "rmsprop_tf", "adam", "sgd"),
    )
    learning_rate: float = _f(
        1e-3, "Initial learning rate (of the actor, and the critic unless set apart).", number(lo=0)
    )
    critic_learning_rate: float | None = _f(
        None,
        "Separate learning rate for the critic (null: same as learning_rate).",
        optional(number(lo=0)),
    )
    lr_schedule: str = _f(
        "linear",
        "Per-worker learning-rate schedule over total_steps: linear (to 0) or constant.",
        one_of("linear", "constant"),
    )
    alpha: float = _f(
        0.99,
        "RMSprop smoothing constant of the squared-gradient average.",
        number(0, 1, lo_open=True),
    )
    eps: float = _f(1e-5, "Optimizer epsilon (RMSprop and Adam).", number(lo=0, lo_open=True))
    betas: tuple = _f((0.9, 0.999), "Adam betas.", checks.betas)
    lock: bool = _f(
        False, "Apply updates under a lock (default: lock-free Hogwild updates).", boolean
    )
    shared_statistics: bool = _f(
        True,
        "Workers share one copy of the optimizer statistics (false: each keeps its own).",
        boolean,
    )


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple = _f(
        (64, 64),
        "Hidden layer sizes of the MLP (empty for a linear / tabular model).",
        checks.int_list(1, SIZE),
    )
    activation: str = _f("tanh", "Activation of the MLP: tanh or relu.", one_of("tanh", "relu"))
    shared_encoder: bool = _f(
        False, "Share one MLP body between actor and critic (default: separate).", boolean
    )
    tabular: str = _f(
        "onehot",
        "Encoding of Discrete observations: onehot (a table) or embedding.",
        one_of("onehot", "embedding"),
    )
    embedding_dim: int = _f(32, "Size of the embedding when tabular=embedding.", integer(1, SIZE))
    cnn: str = _f(
        "auto",
        "Image encoder: auto (by size), a3c (Mnih et al. 2016), nature (2015), universe or small.",
        one_of("auto", "a3c", "nature", "universe", "small"),
    )
    image_layout: str = _f(
        "auto",
        "Layout of image observations: auto (detected), chw or hwc.",
        one_of("auto", "chw", "hwc"),
    )
    encoder: str | None = _f(
        None,
        "Your own encoder, module:Class or module:make_fn (null: the built-in ones).",
        optional(checks.entry),
    )
    encoder_kwargs: dict = _f(dict, "Keyword arguments for model.encoder.", mapping, factory=True)
    lstm: bool = _f(
        False,
        "An LSTM core after the encoder, carried across rollouts, reset at episode ends.",
        boolean,
    )
    lstm_size: int = _f(256, "Hidden size of the LSTM core.", integer(1, SIZE))
    gaussian: str = _f(
        "state_independent",
        "Gaussian policy for Box actions: state_independent, softplus or sde (gSDE).",
        one_of("state_independent", "softplus", "sde"),
    )
    log_std_init: float = _f(
        0.0, "Initial log standard deviation of the Gaussian policy.", number()
    )


@dataclass(frozen=True)
class RunConfig:
    seed: int = _f(
        0,
        "Seed; each worker seeds its envs and RNGs from (seed, worker index).",
        integer(0, 2**63 - 1),
    )
    total_steps: int = _f(
        1_000_000,
        "Stop after this many global env steps (also the lr schedule's horizon).",
        integer(1, STEPS),
    )
    max_time: float | None = _f(
        None,
        "Stop after this many seconds of wall time (null: no limit).",
        optional(number(lo=0, lo_open=True)),
        learning=False,
    )
    target_return: float | str | None = _f(
        "auto",
        "Stop once return_mean reaches this: a number, auto (the env's threshold) or null.",
        checks.target_value,
        learning=False,
    )
    return_window: int = _f(
        100, "Episodes in the running mean return (return_mean).", integer(1, 10**7), learning=False
    )
    max_nonfinite_updates: int = _f(
        100,
        "Stop the run after this many non-finite updates in a row.",
        integer(1, 10**9),
        learning=False,
    )


@dataclass(frozen=True)
class LogConfig:
    log_interval: int = _f(
        10_000,
        "Write a progress.csv row every this many global env steps.",
        integer(1, STEPS),
        learning=False,
    )
    checkpoint_interval_steps: int | None = _f(
        None,
        "Write a checkpoint every this many global env steps (null: by time only).",
        optional(integer(1, STEPS)),
        learning=False,
    )
    checkpoint_interval_s: float | None = _f(
        600.0,
        "Write a checkpoint every this many seconds of wall time (null: by steps only).",
        optional(number(lo=0, lo_open=True)),
        learning=False,
    )
    checkpoint_keep: int = _f(
        3,
        "Keep the newest this many checkpoints in run_dir/checkpoints/.",
        integer(1, 10_000),
        learning=False,
    )


@dataclass(frozen=True)
class EvalConfig:
    interval_steps: int | None = _f(
        None,
        "Evaluate every this many global env steps (null: not by steps).",
        optional(integer(1, STEPS)),
        learning=False,
    )
    interval_s: float | None = _f(
        None,
        "Evaluate every this many seconds of wall time (null: not by time).",
        optional(number(lo=0, lo_open=True)),
        learning=False,
    )
    episodes: int = _f(
        10,
        "Whole episodes per evaluation (real returns: Atari whole games, unclipped).",
        integer(1, 10**6),
        learning=False,
    )
    deterministic: bool = _f(
        True, "Evaluate the greedy policy (false: sample actions).", boolean, learning=False
    )
    target_mean: float | None = _f(
        None,
        "Stop the run once an evaluation's mean return reaches this (null: never).",
        optional(number()),
        learning=False,
    )
    timeout: float | None = _f(
        60.0,
        "Restart an evaluator that makes no env step for this many seconds (null: never).",
        optional(number(lo=0, lo_open=True)),
        learning=False,
    )
    ema_steps: int | None = _f(
        None,
        "Evaluate a moving average of the parameters over this many env steps (null: off).",
        optional(integer(1, STEPS)),
        learning=False,
    )
    env_kwargs: dict = _f(
        dict,
        "Keyword arguments of the evaluation env, over env.kwargs.",
        mapping,
        factory=True,
        learning=False,
    )

    def __post_init__(self) -> None:
        if self.target_mean is not None and self.interval_steps is None and self.interval_s is None:
            raise ConfigError(
                "eval.target_mean needs evaluations: set eval.interval_steps or eval.interval_s "
                "(--eval-interval)"
            )


@dataclass(frozen=True)
class BackendConfig:
    name: str = _f(
        "processes",
        "Where workers run: processes (default), serial (deterministic emulation) or ray.",
        one_of("processes", "serial", "ray"),
    )
    workers: int = _f(2, "Number of asynchronous workers (default: 2).", integer(1, 4096))
    max_restarts: int = _f(
        3,
        "Restart a failed worker up to this many times, then stop with a checkpoint.",
        integer(0, 10**6),
        learning=False,
    )
    restart_delay: float = _f(
        0.5, "Seconds to wait before restarting a failed worker.", number(lo=0), learning=False
    )
    worker_timeout: float | None = _f(
        60.0,
        "Restart a worker that makes no update for this many seconds (null: never).",
        optional(number(lo=0, lo_open=True)),
        learning=False,
    )
    report_interval: float = _f(
        0.1,
        "Seconds between a worker's reports to the trainer.",
        number(lo=0, lo_open=True),
        learning=False,
    )
    ray_address: str | None = _f(
        None,
        "Ray cluster to join (auto or HOST:PORT); null starts a local Ray on 127.0.0.1.",
        optional(text),
        learning=False,
    )
    ray_workers_per_node: int | None = _f(
        None,
        "Ray: workers per node group (null: one group per node, workers split by its CPUs).",
        optional(integer(1, 4096)),
        learning=False,
    )
    ray_sync_interval_s: float | None = _f(
        None,
        "Ray: seconds between a node's syncs with the global store (null: by the model's size).",
        optional(number(lo=0.001, hi=3600)),
    )
    ray_store_shards: int | None = _f(
        None,
        "Ray: store actors the global parameters are sharded over (null: by the model's size).",
        optional(integer(1, 1024)),
        learning=False,
    )
    ray_sync_dtype: str = _f(
        "int8",
        "Ray: how parameter changes travel: int8 (~1/4 of float32's bytes), bfloat16 or float32.",
        one_of("int8", "bfloat16", "float32"),
    )
