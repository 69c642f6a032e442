"""Export (a3c/export.py): onnxruntime and TorchScript give A3C.predict's greedy actions on 1,000
observations from each model family's env, at batch 1 and batch 7, and its logits / means within
1e-5; the LSTM state carries over 50 steps; the CLI and the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime
import pytest
import torch

from a3c import A3C
from a3c.envs import make_env_fn
from a3c.normalize import ObservationStats

STEPS = 1000


class PixelsHWC(gym.Env):
    """84x84 RGB uint8 frames, channels-last: the paper's CNN reads them transposed."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def _agent(env: str, **kw) -> A3C:
    agent = A3C(env, backend="serial", workers=1, **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the near-uniform start (no greedy ties), at the init's scale
        for p in agent.model.parameters():
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.1
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return agent


def _streams(agent: A3C, batch: int, steps: int, seed: int = 0) -> list[dict]:
    """`steps` steps of `batch` envs (random valid actions, as a3c builds the env): per step the
    observations, the masks (if any) and which rows start an episode."""
    envs = [make_env_fn(agent.config.env)() for _ in range(batch)]
    for i, env in enumerate(envs):
        env.action_space.seed(seed + i)
    firsts = [env.reset(seed=seed + i) for i, env in enumerate(envs)]
    obs, infos = [o for o, _ in firsts], [info for _, info in firsts]
    starts = [True] * batch
    out = []
    for _ in range(steps):
        masks = [info.get("action_mask") for info in infos]
        out.append({"obs": list(obs), "masks": masks, "starts": list(starts)})
        for i, env in enumerate(envs):
            mask = masks[i]
            action = env.action_space.sample(
                mask=mask.astype(np.int8) if mask is not None else None
            )
            obs[i], _, term, trunc, infos[i] = env.step(action)
            starts[i] = term or trunc
            if starts[i]:
                obs[i], infos[i] = env.reset()
    for env in envs:
        env.close()
    return out


def _stack(rows: list) -> object:
    """A batch in the env's own structure: Dict / Tuple leaves with a leading batch dimension."""
    if isinstance(rows[0], dict):
        return {k: _stack([r[k] for r in rows]) for k in rows[0]}
    if isinstance(rows[0], tuple):
        return tuple(_stack([r[i] for r in rows]) for i in range(len(rows[0])))
    return np.stack([np.asarray(r) for r in rows])


def _feed(spec: dict, batch: object, masks: np.ndarray | None, state) -> list[np.ndarray]:
    """The exported graph's inputs, in the order of its JSON: the leaves by name (obs.KEY)."""
    feed = []
    for port in spec["inputs"]:
        name = port["name"]
        if name == "action_mask":
            feed.append(masks.astype(bool))
        elif name.startswith("state_"):
            feed.append(state["hc".index(name[-1])])
        else:
            value = batch
            for key in name.split(".")[1:]:
                value = value[int(key) if isinstance(value, tuple) else key]
            feed.append(np.asarray(value, dtype=port["dtype"]))
    return feed


class Runner:
    """The exported files of one agent, run as a user would: onnxruntime, torch.jit.load."""

    def __init__(self, agent: A3C, tmp: Path) -> None:
        self.onnx = agent.export(tmp / "policy.onnx", with_distribution=True)
        self.ts = agent.export(tmp / "policy.pt", format="torchscript", with_distribution=True)
        self.spec = json.loads(Path(f"{self.onnx}.json").read_text())
        assert json.loads(Path(f"{self.ts}.json").read_text())["inputs"] == self.spec["inputs"]
        self.session = onnxruntime.InferenceSession(str(self.onnx))
        self.module = torch.jit.load(str(self.ts))
        self.names = [p["name"] for p in self.spec["outputs"]]

    def run(self, feed: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        names = [p["name"] for p in self.spec["inputs"]]
        ort = self.session.run(None, dict(zip(names, feed, strict=True)))
        with torch.no_grad():
            ts = [t.numpy() for t in self.module(*[torch.as_tensor(x) for x in feed])]
        return [dict(zip(self.names, outs, strict=True)) for outs in (ort, ts)]


def _reference(agent: A3C, batch: object, masks, state) -> tuple[np.ndarray, np.ndarray]:
    """The model's own policy output (masked) for a batch, as predict computes it."""
    obs_t, _ = agent.policy._obs_tensor(batch)
    state_t = None if state is None else tuple(torch.as_tensor(s) for s in state)
    with torch.no_grad():
        out, _, _ = agent.model(obs_t, state_t)
        if masks is not None:
            out = agent.model.policy_head.apply_mask(out, torch.as_tensor(masks.astype(bool)))
    return out.numpy(), out[:, 0].numpy()


def _check(agent: A3C, runner: Runner, steps: list[dict], batch: int) -> None:
    """Every observation of `steps` (a stream per row) through predict and both exports."""
    recurrent = agent.model.recurrent
    gaussian = isinstance(agent.action_space, gym.spaces.Box)
    rows = [
        (s["obs"][r], s["masks"][r], s["starts"][r]) for s in steps for r in range(len(s["obs"]))
    ]
    chunks = (
        [rows[t * batch : (t + 1) * batch] for t in range(len(steps))]
        if recurrent  # one step of every stream at a time
        else [rows[i : i + batch] for i in range(0, len(rows), batch)]
    )
    state = None
    size = 0 if not recurrent else agent.model.core.hidden_size
    exported = [np.zeros((batch, size), np.float32)] * 2
    for chunk in chunks:
        obs = _stack([o for o, _, _ in chunk])
        masks = None if chunk[0][1] is None else np.stack([m for _, m, _ in chunk])
        starts = np.array([s for _, _, s in chunk], np.float32)
        if recurrent:  # a new episode starts from a zero state, in the exported graph too
            exported = [x * (1.0 - starts[:, None]) for x in exported]
        ref_state = None if state is None else tuple(s * (1.0 - starts[:, None]) for s in state)
        want, new_state = agent.predict(
            obs,
            state=state,
            episode_start=starts if recurrent else None,
            deterministic=True,
            action_masks=masks,
        )
        out, mean = _reference(agent, obs, masks, ref_state if recurrent else None)
        feed = _feed(runner.spec, obs, masks, exported)
        for got in runner.run(feed):
            if gaussian:
                np.testing.assert_allclose(got["action"], want, atol=1e-5)
                np.testing.assert_allclose(got["mean"], mean, atol=1e-5)
            else:
                np.testing.assert_array_equal(got["action"], want)
                np.testing.assert_allclose(got["logits"], out, atol=1e-5)
            assert got["action"].dtype == want.dtype and got["action"].shape == want.shape
        if recurrent:
            ort_next = runner.run(feed)[0]
            np.testing.assert_allclose(ort_next["next_state_h"], new_state[0], atol=1e-5)
            exported = [ort_next["next_state_h"], ort_next["next_state_c"]]
        state = new_state


FAMILIES = {
    "mlp": ("CartPole-v1", {}),
    "cnn_uint8_hwc": ("test_export:PixelsHWC", {"model.cnn": "a3c"}),
    "atari_pong": ("ALE/Pong-v5", {}),  # the preset: 4 stacked 84x84 frames, the paper's CNN
    "dict": ("space_envs:DictCue", {}),
    "tuple": ("space_envs:NestedTupleCue", {}),
    "multidiscrete": ("space_envs:MultiDiscreteActionCue", {}),
    "multibinary": ("space_envs:MultiBinaryActionCue", {}),
    "gaussian": ("Pendulum-v1", {}),
    "masks_taxi": ("Taxi-v4", {}),
    "tabular": ("FrozenLake-v1", {}),  # the tabular preset: one-hot tables
    "embedding": ("FrozenLake-v1", {"model.tabular": "embedding", "model.hidden": [16]}),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_exports_act_as_predict_at_batch_1_and_7(family, tmp_path):
    env, kw = FAMILIES[family]
    agent = _agent(env, **kw)
    runner = Runner(agent, tmp_path)
    if family == "masks_taxi":
        assert runner.spec["inputs"][-1]["name"] == "action_mask"
    steps = _streams(agent, 1, STEPS)
    _check(agent, runner, steps, 1)
    _check(agent, runner, steps, 7)


def test_the_lstm_state_carries_over_50_steps(tmp_path):
    agent = _agent("CartPole-v1", **{"model.lstm": True})
    runner = Runner(agent, tmp_path)
    assert [p["name"] for p in runner.spec["outputs"]][-2:] == ["next_state_h", "next_state_c"]
    _check(agent, runner, _streams(agent, 1, 50), 1)
    _check(agent, runner, _streams(agent, 7, 50, seed=10), 7)


@pytest.mark.parametrize("env", ["CartPole-v1", "space_envs:dict_cartpole"])
def test_normalised_observations_are_frozen_into_the_graph(env, tmp_path):
    agent = _agent(env, **{"env.normalize_obs": True})
    steps = _streams(agent, 1, STEPS)
    stats = ObservationStats(1, agent.model.layout.size)
    packed = np.stack([agent.model.layout.pack(s["obs"][0]) for s in steps])
    stats.update(0, torch.as_tensor(packed) * 3.0 + 1.0)  # a mean and std far from (0, 1)
    agent.obs_stats = stats
    runner = Runner(agent, tmp_path)
    assert runner.spec["normalized_observations"] is True
    _check(agent, runner, steps, 1)
    _check(agent, runner, steps, 7)


A3C_BIN = Path(sys.executable).with_name("a3c")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "export.md"


def _doc_example(marker: str) -> str:
    """The docs' complete example: the python block that imports `marker`."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    return next(b for b in blocks if f"import {marker}" in b and "env.step" in b)


def _greedy_return(agent: A3C) -> float:
    """What the docs' loop prints, played with A3C.predict."""
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, term, trunc, _ = env.step(action.item())
        total, done = total + float(reward), term or trunc
    return total


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    agent = A3C("CartPole-v1", backend="serial", workers=1, total_steps=3000, target_return=None)
    agent.learn(run_dir=run, progress="none")
    return run, agent


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(A3C_BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_cli_exports_a_run_directory_and_says_what_it_wrote(cartpole_run, tmp_path):
    run, _ = cartpole_run
    out = _cli("export", str(run))
    assert out.returncode == 0, out.stderr
    assert (run / "policy.onnx").is_file() and out.stdout.count("\n") == 1
    assert "onnx policy of the latest checkpoint" in out.stdout and "policy.onnx.json" in out.stdout
    spec = json.loads((run / "policy.onnx.json").read_text())
    assert [p["name"] for p in spec["inputs"]] == ["obs"]
    assert spec["inputs"][0] == {"name": "obs", "shape": ["batch", 4], "dtype": "float32"}
    assert spec["outputs"] == [{"name": "action", "shape": ["batch"], "dtype": "int64"}]
    assert spec["action_space"] == {"type": "Discrete", "dtype": "int64", "n": 2, "start": 0}
    assert spec["env"]["id"] == "CartPole-v1" and spec["steps"] >= 3000
    ts = _cli("export", str(run), "--output", str(tmp_path / "p.pt"))  # the format from the suffix
    assert ts.returncode == 0, ts.stderr
    assert json.loads((tmp_path / "p.pt.json").read_text())["format"] == "torchscript"


@pytest.mark.parametrize(
    "args,says",
    [
        (["{missing}"], "no such checkpoint or run directory"),
        (["{run}", "--output", "{tmp}/no/such/folder/p.onnx"], "does not exist"),
        (["{run}", "--output", "{tmp}"], "is a directory"),
        (["{run}", "--checkpoint", "step_7"], "step_7"),
    ],
)
def test_cli_bad_export_input_is_one_line(cartpole_run, tmp_path, args, says):
    run, _ = cartpole_run
    fill = {"missing": str(tmp_path / "missing"), "run": str(run), "tmp": str(tmp_path)}
    out = _cli("export", *[a.format(**fill) for a in args])
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("a3c: error:") and out.stderr.count("\n") == 1, out.stderr
    assert says in out.stderr


class Branchy(torch.nn.Module):
    """An encoder whose forward branches on the data: no exporter can follow it."""

    out_dim = 8

    def __init__(self, observation_space) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 8)

    def forward(self, x):
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_encoder_that_cannot_be_exported_is_one_line_naming_it(fmt, tmp_path):
    from a3c.export import ExportError

    agent = A3C("CartPole-v1", encoder=Branchy)
    with pytest.raises(ExportError, match=r"model.encoder 'test_export:Branchy' cannot be") as e:
        agent.export(tmp_path / "p", format=fmt)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())  # nothing written


def test_onnx_without_the_export_extra_says_what_to_install(monkeypatch, tmp_path):
    from a3c.export import ExportError

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` fails
    with pytest.raises(ExportError, match=r"pip install 'a3c\[export\]'"):
        A3C("CartPole-v1").export(tmp_path / "p.onnx")


def test_the_docs_onnx_example_runs_in_a_venv_without_torch(cartpole_run, tmp_path):
    run, agent = cartpole_run
    agent.export(tmp_path / "policy.onnx")
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "onnxruntime", "gymnasium", "numpy"],
        check=True,
        timeout=600,
    )
    no_torch = (
        "import importlib.util as u; assert not u.find_spec('torch') and not u.find_spec('a3c')"
    )
    subprocess.run([str(python), "-c", no_torch], check=True, timeout=60)
    (tmp_path / "play.py").write_text(_doc_example("onnxruntime"))
    out = subprocess.run(
        [str(python), "play.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"return {_greedy_return(agent)}"


def test_the_docs_torchscript_example_runs_without_a3c(cartpole_run, tmp_path):
    _, agent = cartpole_run
    agent.export(tmp_path / "policy.pt", format="torchscript")
    code = _doc_example("torch") + "\nimport sys\nassert 'a3c' not in sys.modules\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"return {_greedy_return(agent)}"
