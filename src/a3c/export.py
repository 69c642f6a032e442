"""Export the acting path of a trained agent to ONNX or TorchScript, to run without a3c.

    agent.export("policy.onnx")                       # or format="torchscript"
    a3c export runs/cartpole --output policy.onnx     # the same from the command line

What is exported is a3c/acting_graph.py's: the observation as the env gives it in, the greedy
action (a Gaussian's mean clipped to the bounds) out. Beside the model, `<FILE>.json` records the
inputs and outputs (names, shapes, dtypes, in order), the action space and the env: what a program
needs to feed the graph (docs/export.md). The ONNX graph comes from PyTorch's recommended exporter
(`torch.onnx.export(..., dynamo=True)`) and is checked with `onnx.checker`; TorchScript is
`torch.jit.trace`'s. Either file is run once on a sample batch of another size than the trace's and
compared with the model before it is written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from a3c.acting_graph import ActingGraph, describe_space, ports, sample_inputs
from a3c.encoders import UserEncoder
from a3c.errors import A3CError, first_line
from a3c.io import write_json_atomic
from a3c.models import ActorCritic

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
SAMPLE_BATCH = 3  # the example batch the graph is traced with (any batch size runs it)


class ExportError(A3CError):
    """A model that cannot be exported (a user encoder the exporter cannot follow, a missing
    package)."""


def export(
    model: ActorCritic,
    action_space: gym.Space,
    path: str | Path,
    fmt: str = "onnx",
    *,
    obs_stats: tuple[Tensor, Tensor] | None = None,
    masks: bool = False,
    with_distribution: bool = False,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write the acting graph of `model` to `path` in `fmt` ("onnx" or "torchscript"), and its
    description to `path` + ".json"; returns the model's path. Raises ExportError."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: onnx or torchscript")
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder; --output names the file to write")
    graph = ActingGraph(model, action_space, obs_stats, masks, with_distribution).eval()
    inputs, outputs = ports(graph, action_space)
    example = sample_inputs(graph, inputs, SAMPLE_BATCH)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with torch.no_grad():
            if fmt == "onnx":
                _onnx(graph, example, inputs, outputs, tmp)
            else:
                _torchscript(graph, example, tmp)
            _check_parity(graph, fmt, tmp, inputs, outputs)
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(_why(model, fmt, e)) from None
    finally:
        tmp.unlink(missing_ok=True)
    description = {
        "format": fmt,
        "file": path.name,
        "inputs": inputs,
        "outputs": outputs,
        "action_space": describe_space(action_space),
        "deterministic": True,
        "normalized_observations": obs_stats is not None,
        **(info or {}),
    }
    write_json_atomic(Path(f"{path}.json"), description)
    return path


def _why(model: ActorCritic, fmt: str, e: BaseException) -> str:
    """One line for an export that failed: the user's encoder named when there is one."""
    while e.__cause__ is not None:  # the exporter wraps the reason; the innermost says it
        e = e.__cause__
    name = {"onnx": "ONNX", "torchscript": "TorchScript"}[fmt]
    what = (
        f"model.encoder '{model.encoder.name}'"
        if isinstance(model.encoder, UserEncoder)
        else "the model"
    )
    reason = first_line(e).split(". ")[0].rstrip(".")  # the exporters' messages run on
    return f"{what} cannot be exported to {name}: {type(e).__name__}: {reason}"


def _onnx(
    graph: ActingGraph, example: list[Tensor], inputs: list[dict], outputs: list[dict], to: Path
) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter's dependency)
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs the export extra ({e.name} is not installed): "
            "pip install 'a3c[export]'"
        ) from None
    batch = torch.export.Dim.DYNAMIC
    with _quiet_exporter():
        program = torch.onnx.export(
            graph,
            tuple(example),
            dynamo=True,
            input_names=[p["name"] for p in inputs],
            output_names=[p["name"] for p in outputs],
            dynamic_shapes=(tuple({0: batch} for _ in example),),  # forward(*inputs)
            external_data=False,
            verbose=False,
        )
    assert program is not None
    program.save(str(to), external_data=False)
    onnx.checker.check_model(str(to), full_check=True)


def _torchscript(graph: ActingGraph, example: list[Tensor], to: Path) -> None:
    with _quiet_exporter():
        # a trace that depends on the data (a user encoder's `if x.sum() > 0`) would be silently
        # wrong for other observations: refused instead
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(graph, tuple(example), check_trace=False)
        torch.jit.save(traced, str(to))


def _check_parity(
    graph: ActingGraph, fmt: str, path: Path, inputs: list[dict], outputs: list[dict]
) -> None:
    """Run the written file on a fresh batch (another size than the trace's) and compare with the
    model: a graph that diverges is never written."""
    example = sample_inputs(graph, inputs, SAMPLE_BATCH + 2, seed=1)
    expected = graph(*example)
    if fmt == "onnx":
        try:
            import onnxruntime  # type: ignore[import-untyped]
        except ImportError:
            return  # checked by onnx.checker; onnxruntime is for running it
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(
            None, {p["name"]: t.numpy() for p, t in zip(inputs, example, strict=True)}
        )
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            loaded = torch.jit.load(str(path))
        got = [t.numpy() for t in loaded(*example)]
    for port, want, have in zip(outputs, expected, got, strict=True):
        want_np = want.numpy()
        if have.shape != want_np.shape or not np.allclose(have, want_np, rtol=1e-4, atol=1e-5):
            raise ExportError(
                f"the exported {fmt} graph's '{port['name']}' differs from the model's on a "
                "sample batch: not written (a bug; please report it)"
            )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters print their progress to stdout and log what they skip and, on a failure, the
    whole traced graph; a command's output is its own (the failure is one line)."""
    logging.disable(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def export_agent(agent: Any, path: str | Path, fmt: str, with_distribution: bool) -> Path:
    """`A3C.export`: the agent's model with its observation statistics, an action-mask input when
    the env gives masks (and env.action_masks is on), and what the JSON should say of the run."""
    from a3c.envs import make_env_fn
    from a3c.masks import MaskReader
    from a3c.persistence import versions

    cfg = agent.config
    masks = False
    if cfg.env.action_masks and getattr(agent.model.policy_head, "mask_size", None):
        env = (agent.env_fn or make_env_fn(cfg.env))()
        try:
            _, info = env.reset(seed=cfg.run.seed)
            masks = MaskReader.provided(env, info)
        finally:
            env.close()
    stats = None if agent.obs_stats is None else agent.obs_stats.snapshot()
    info = {
        "env": cfg.to_dict()["env"],
        "steps": agent.num_timesteps,
        "checkpoint": None if agent.checkpoint_path is None else str(agent.checkpoint_path),
        "versions": versions(),
    }
    return export(
        agent.model,
        agent.action_space,
        path,
        fmt,
        obs_stats=None if stats is None else (stats.mean, stats.std),
        masks=masks,
        with_distribution=with_distribution,
        info=info,
    )
