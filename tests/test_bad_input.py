"""Bad input, refused up front: the command line in a subprocess, one line `a3c: error: ...` on
stderr, exit code 2, never a traceback, and no run started. Every case fails in the CLI's set-up."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

A3C = [sys.executable, "-m", "a3c.cli"]
TIMEOUT_S = 60
SERIAL = ["--backend", "serial"]

# (arguments, fragment of the message); {ws} is a folder of prepared inputs, {run} a fresh run dir.
CASES = [
    # env ids and env code
    (
        ["train", "broken_at_import:Env"],
        "cannot import the module 'broken_at_import' of env id 'broken_at_import:Env': "
        "RuntimeError: the user's module is broken",
    ),
    (
        ["train", "broken_syntax:Env"],
        "cannot import the module 'broken_syntax' of env id 'broken_syntax:Env': SyntaxError",
    ),
    (
        ["train", "fake_envs:RaisesInInit"],
        "cannot build env 'fake_envs:RaisesInInit' with kwargs {}: RuntimeError: cannot open the "
        "simulator",
    ),
    (["train", "fake_envs:make_raising_env"], "ValueError: no such level"),
    (["train", ":"], "invalid env id ':'"),
    (["train", ":Class"], "invalid env id ':Class'"),
    (["train", "fake_envs:"], "invalid env id 'fake_envs:'"),
    (["train", "fake_envs:NotThere"], "module 'fake_envs' has no 'NotThere'"),
    (["train", "fake_envs:NOT_CALLABLE"], "is not a class or function that builds an env"),
    (["train", "fake_envs:NoSpaces"], "the env NoSpaces has no observation_space"),
    (["train", "fake_envs:NotAnEnv"], "did not return a gymnasium.Env (got NotAnEnv)"),
    (
        ["train", "fake_envs:TinyPixels", "--set", "model.cnn=a3c"],
        "image observations of shape (4, 7, 7) are too small for model.cnn=a3c",
    ),
    (
        ["train", "space_envs:SequenceObs"],
        "the observation is a Sequence space, which a3c cannot encode",
    ),
    (["train", "space_envs:GraphObs"], "the observation is a Graph space, which a3c cannot encode"),
    (["train", "space_envs:TupleActions"], "unsupported action space Tuple"),
    (
        ["train", "space_envs:MaskedBoxActions"],
        "the env provides action masks, which a3c applies to Discrete, MultiDiscrete and "
        "MultiBinary actions",
    ),
    (
        ["train", "space_envs:GridDict", "--set", "env.obs_keys=[image,compass]"],
        "env.obs_keys names ['compass'], which",
    ),
    (
        ["train", "CartPole-v1", "--set", "env.obs_keys=[image]"],
        "env.obs_keys selects keys of Dict observations",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.encoder=no_such_module:Encoder"],
        "cannot import the module 'no_such_module' of model.encoder",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.encoder=space_envs:Nope"],
        "module 'space_envs' has no 'Nope' (model.encoder",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.encoder=space_envs"],
        "invalid value for model.encoder",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.encoder=space_envs:GridEncoder"],
        "model.encoder 'space_envs:GridEncoder' with encoder_kwargs {} raised",
    ),
    (
        [
            "train",
            "CartPole-v1",
            "--set",
            "model.encoder=space_envs:make_vector_encoder",
            "--set",
            "model.encoder_kwargs={depth: 3}",
        ],
        "raised TypeError",
    ),
    (
        [
            "train",
            "space_envs:GridDict",
            "--set",
            "env.obs_keys=[image,direction]",
            "--set",
            "env.normalize_obs=true",
        ],
        "env.normalize_obs needs vector observations",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.image_layout=wide"],
        "invalid value for model.image_layout",
    ),
    (
        ["train", "fake_envs:TinyPixels", "--set", "model.cnn=nature"],
        "too small for model.cnn=nature",
    ),
    (
        [
            "train",
            "fake_envs:BigPixels",
            "--workers",
            "2",
            "--set",
            "n_steps=100000",
            "--set",
            "envs_per_worker=4096",
        ],
        "the rollout buffers would need 11569.0 GB per worker (n_steps 100000 x envs_per_worker "
        "4096 x observation (4, 84, 84) uint8), 23137.9 GB for 2 workers; this machine has",
    ),
    # config files
    (
        ["train", "CartPole-v1", "--config", "{ws}/latin1.yaml"],
        "latin1.yaml is not UTF-8 text (byte 0xe9",
    ),
    (["train", "CartPole-v1", "--config", "{ws}"], "is a directory"),
    (["train", "CartPole-v1", "--config", "{ws}/missing.yaml"], "cannot read config file"),
    (
        ["train", "CartPole-v1", "--config", "{ws}/list.yaml"],
        "expected a mapping of sections, got list",
    ),
    (["train", "CartPole-v1", "--config", "{ws}/syntax.yaml"], "malformed config file"),
    # flags and --set values
    (
        ["train", "CartPole-v1", "--seed", str(2**64)],
        "invalid value for run.seed: 18446744073709551616",
    ),
    (["train", "CartPole-v1", "--seed", "-1"], "invalid value for run.seed: -1"),
    (["train", "CartPole-v1", "--set", "n_steps=1e30"], "must be an integer in [1, 100000]"),
    (
        ["train", "CartPole-v1", "--set", "algo.n_steps=1000000000"],
        "algo.n_steps: 1000000000 must be an integer in [1, 100000]",
    ),
    (["train", "CartPole-v1", "--total-steps", "0"], "run.total_steps: 0 must be an integer >= 1"),
    (["train", "CartPole-v1", "--workers", "0"], "backend.workers: 0 must be an integer"),
    (
        ["train", "CartPole-v1", "--workers", "100000"],
        "backend.workers: 100000 must be an integer in [1, 4096]",
    ),
    (["train", "CartPole-v1", "--max-time", "-1"], "invalid value for run.max_time: -1.0"),
    (["train", "CartPole-v1", "--set", "model.hidden=[0]"], "invalid value for model.hidden"),
    (
        ["train", "CartPole-v1", "--set", "env.kwargs=notadict"],
        "invalid value for env.kwargs: 'notadict'",
    ),
    (["train", "CartPole-v1", "--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
    (["train", "CartPole-v1", "--set", "run.workers=2"], "unknown config key 'run.workers'"),
    (["train", "CartPole-v1", "--run-dir", "{ws}/a_file"], "exists and is not a directory"),
    (["train", "CartPole-v1", "--run-dir", ""], "run_dir is empty"),
    # the user's encoder, probed on a batch of sample observations
    (
        ["train", "CartPole-v1", "--set", "model.encoder=space_envs:WrongWidthEncoder"],
        "model.encoder 'space_envs:WrongWidthEncoder' returned 4 features per observation, but "
        "declares 8",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.encoder=space_envs:OneDimEncoder"],
        "returned shape [4] for a batch of 3 observations",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.encoder=space_envs:OneRowEncoder"],
        "returned shape [1, 4] for a batch of 3 observations",
    ),
    (
        ["train", "CartPole-v1", "--set", "model.encoder=space_envs:IntegerEncoder"],
        "returned a torch.int64 tensor; an encoder returns floats",
    ),
    # the env against its declared spaces, at its first reset and step
    (
        ["train", "space_envs:WrongShape"],
        "env WrongShape at its first reset: the observation has shape (1,), its space",
    ),
    (
        ["train", "space_envs:WrongShape", "--set", "env.kwargs={shape: [2, 2]}"],
        "the observation has shape (2, 2)",
    ),
    (
        ["train", "space_envs:WrongShape", "--set", "env.kwargs={shape: [4], array_reward: true}"],
        "env WrongShape at its first step: the reward is ndarray of shape (1,), not a number",
    ),
    (
        ["train", "CartPole-v1", "--config", "/dev/zero"],
        "config file /dev/zero is larger than 1 MB",
    ),
    (["train", "--resume", "{ws}/missing"], "is not a run directory"),
    # evaluation during training
    (
        ["train", "CartPole-v1", "--target-eval-return", "400"],
        "eval.target_mean needs evaluations: set eval.interval_steps or eval.interval_s "
        "(--eval-interval)",
    ),
    (
        ["train", "CartPole-v1", "--eval-interval", "0"],
        "invalid value for eval.interval_steps: 0 must be an integer >= 1",
    ),
    (
        ["train", "CartPole-v1", "--set", "eval.episodes=0"],
        "invalid value for eval.episodes: 0 must be an integer >= 1",
    ),
    (
        ["train", "CartPole-v1", "--set", "eval.interval_s=-1"],
        "invalid value for eval.interval_s: -1.0 must be a number > 0",
    ),
    (
        ["train", "CartPole-v1", "--set", "eval.env_kwargs=3"],
        "invalid value for eval.env_kwargs: 3 must be a mapping",
    ),
    # eval
    (["eval", "{ws}", "--episodes", "0"], "--episodes must be >= 1, got 0"),
    (["eval", "{ws}", "--episodes", "-3"], "--episodes must be >= 1, got -3"),
    (["eval", "{ws}/missing"], "no such checkpoint or run directory"),
    (["eval", "{ws}/a_file"], "is not an a3c checkpoint"),
    (["eval", "{ws}/pickled"], "holds no checkpoint"),
    (
        ["eval", "{ws}/run_without_best", "--checkpoint", "best"],
        "run_without_best has no best checkpoint (checkpoints/best/ is kept by evaluations "
        "during training",
    ),
    (
        ["eval", "{ws}/run_without_best", "--checkpoint", "step_000000000001"],
        "no such checkpoint: step_000000000001 (neither a path nor a name in",
    ),
    (
        ["eval", "{ws}/a_checkpoint", "--checkpoint", "latest"],
        "a_checkpoint is not a run directory: a checkpoint ('latest') is picked from a run "
        "directory's checkpoints/",
    ),
    # plot
    (["plot", "{ws}/pickled"], "is not a run directory (it has no progress.csv)"),
    (["plot", "{ws}/latin1_run"], "latin1_run/progress.csv is not UTF-8 text"),
    (["plot", "{ws}/columns_run"], "columns_run/progress.csv: it has no return_mean column"),
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Inputs the cases name: broken env modules, bad config files, a file, a pickle, bad runs."""
    ws = tmp_path_factory.mktemp("bad-input")
    (ws / "broken_at_import.py").write_text('raise RuntimeError("the user\'s module is broken")\n')
    (ws / "broken_syntax.py").write_text("class Env(:\n    pass\n")
    (ws / "latin1.yaml").write_bytes("algo:\n  n_steps: 5  # d\xe9j\xe0 vu\n".encode("latin-1"))
    (ws / "list.yaml").write_text("- just\n- a list\n")
    (ws / "syntax.yaml").write_text("algo: {n_steps: [1, 2\n")
    (ws / "a_file").write_text("not a run\n")
    (ws / "pickled").mkdir()
    (ws / "pickled" / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    (ws / "latin1_run").mkdir()
    (ws / "latin1_run" / "progress.csv").write_bytes(
        "steps,wall_s,return_mean\n1,0.5,1.0\n\xff\xfe\n".encode("latin-1")
    )
    (ws / "run_without_best" / "checkpoints").mkdir(parents=True)
    (ws / "a_checkpoint").mkdir()
    (ws / "a_checkpoint" / "meta.json").write_text("{}\n")
    (ws / "columns_run").mkdir()
    (ws / "columns_run" / "progress.csv").write_text("steps,wall_s,reward\n1,0.5,1.0\n")
    return ws


def _run(args: list[str], ws: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ws), str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
        ),
    }
    return subprocess.run(
        [*A3C, *args], capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=ws
    )


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args, message, ws, tmp_path):
    run_dir = tmp_path / "run"
    argv = [a.replace("{ws}", str(ws)) for a in args]
    if argv[0] == "train":
        argv += (
            SERIAL
            if "--resume" in argv
            else [*SERIAL, *([] if "--run-dir" in argv else ["--run-dir", str(run_dir)])]
        )
    result = _run(argv, ws)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("a3c: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert not run_dir.exists(), "bad input must not start a run"


def test_the_table_is_long_enough():
    assert len(CASES) >= 30
