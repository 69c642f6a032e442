"""The `--help` of the command line: a formatter that fits the terminal, and the long texts.

argparse wraps option help to the terminal ($COLUMNS) by itself, but a description or epilog is
either re-flowed into one paragraph (which loses the layout of examples and key lists) or, with
RawDescriptionHelpFormatter, printed as written (which overflows a narrow terminal). HelpFormatter
keeps the layout and still fits the width: text is split into blocks at blank lines; lines that
start at column 0 are prose, re-flowed to the width; an indented line is kept as written when it
fits, else wrapped under its own indentation (an example command `a3c ...` 4 columns deeper, so
that its continuation does not read as another command). Words are never broken.
"""

from __future__ import annotations

import argparse
import json
import textwrap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs wrapped to the terminal width with their layout kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(fill(text, width, indent)) + "\n"

    def _split_lines(self, text: str, width: int) -> list[str]:
        # An option's help, as argparse wraps it, but a path like runs/ENV_ID-DATE-TIME stays whole.
        return textwrap.wrap(
            " ".join(text.split()), width, break_long_words=False, break_on_hyphens=False
        )


def fill(text: str, width: int, indent: str = "") -> list[str]:
    """The lines of `text` laid out as HelpFormatter does (module docstring), each <= width."""
    out: list[str] = []
    prose: list[str] = []

    def wrap(words: str, lead: str, hang: str) -> None:
        out.extend(
            textwrap.wrap(
                words,
                width,
                initial_indent=indent + lead,
                subsequent_indent=indent + hang,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [indent + lead]
        )

    for line in text.strip("\n").splitlines():
        stripped = line.strip()
        if prose and (not stripped or line[:1].isspace()):
            wrap(" ".join(prose), "", "")
            prose = []
        if not stripped:
            out.append("")
        elif not line[:1].isspace():
            prose.append(stripped)
        else:
            lead = line[: len(line) - len(line.lstrip())]
            wrap(stripped, lead, lead + ("    " if stripped.startswith("a3c ") else ""))
    if prose:
        wrap(" ".join(prose), "", "")
    return out


TOP_EPILOG = """\
Run `a3c COMMAND --help` for the options of a command; `python -m a3c` is the same command.

examples:
  a3c train CartPole-v1 --run-dir runs/cp
  a3c eval runs/cp
  a3c plot runs/cp
  a3c cliff
"""


def config_epilog() -> str:
    """The epilog of `a3c train --help`: every config key with its default and doc, then how
    presets, resume and evaluation during training work, then examples."""
    from a3c.config import field_docs

    lines = [
        "config keys (--set KEY=VALUE; a bare name works where it is unique; "
        "docs/configuration.md):"
    ]
    for key, default, doc in field_docs():
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        lines += [f"  {key} = {shown}", f"      {doc}"]
    lines += [
        "",
        "presets: the env family's preset (a3c/presets/*.yaml) is applied first, then --config "
        "files",
        "in order, then --set values, then the explicit flags above.",
        "",
        "resume: `a3c train --resume RUN_DIR` continues a stopped or killed run from its latest",
        "checkpoint (RUN_DIR/checkpoints/): counters, optimizer statistics, the learning-rate",
        "schedule and wall time carry on, and progress.csv / episodes.csv are appended to (rows "
        "past",
        "the checkpoint, the lost work, are cut off). Only run.*, log.*, eval.* and backend.*",
        "settings other than the seed may change (--total-steps, --max-time, --target-return,",
        "--workers, --backend, --ray-address, --eval-interval, --target-eval-return,",
        "--set run.KEY=VALUE, --set log.KEY=VALUE, --set eval.KEY=VALUE, --set backend.KEY=VALUE).",
        "",
        "evaluation during training (off by default; on in the Atari and MuJoCo presets): every",
        "eval.interval_steps global steps and/or eval.interval_s seconds an evaluator beside the",
        "workers plays eval.episodes greedy episodes with the current global parameters; the "
        "results",
        "go to eval.csv, TensorBoard eval/ and summary.json, and the best evaluation's state to",
        "checkpoints/best/ (docs/evaluation.md).",
        "",
        "examples:",
        "  a3c train CartPole-v1",
        "  a3c train CartPole-v1 --workers 2 --seed 3 --set n_steps=5",
        "  a3c train CartPole-v1 --set optim.learning_rate=7e-4 --config my.yaml",
        "  a3c train Acrobot-v1 --backend serial --total-steps 200000",
        "  a3c train CartPole-v1 --set log.checkpoint_interval_steps=20000",
        "  a3c train CartPole-v1 --target-return null \\",
        "      --eval-interval 20000 --target-eval-return 500",
        "  a3c train --resume runs/cp --total-steps 2000000",
    ]
    return "\n".join(lines)


EVAL_EPILOG = """\
RUN_DIR evaluates the run's best checkpoint (checkpoints/best/, kept by evaluations during
training) if it has one, else its newest complete checkpoint by step (an unreadable newest one
falls back to the one before, with a warning); --checkpoint picks one: best, latest, or a path (or
a name in RUN_DIR/checkpoints/). The output says which it used. CHECKPOINT is a checkpoint
directory (RUN_DIR/checkpoints/step_N, or one written by A3C.save).

Returns are real: for Atari whole games, unclipped, with the training preprocessing otherwise.
Writes eval.json (mean, std, min, max, every return and length) into RUN_DIR or CHECKPOINT unless
--output says otherwise (its folder must exist); where the results cannot be written is an error
before any episode is played.

examples:
  a3c eval runs/cartpole
  a3c eval runs/cartpole --checkpoint latest --episodes 100
  a3c eval runs/cartpole/checkpoints/step_000000150016 --stochastic
  a3c eval runs/cartpole --episodes 3 --video videos/
      (--video needs the video extra: pip install 'a3c[video]')
"""

EXPORT_EPILOG = """\
The exported graph takes the observation as the env gives it (a Dict or Tuple observation as one
input per leaf, obs.KEY) and returns the greedy action as the env takes it (a Box action: the
Gaussian's mean clipped to the bounds). Inside it: pixel scaling, one-hot encodings and the run's
observation normalisation. An env that gives action masks adds an action_mask input; an LSTM model
takes state_h and state_c (zeros at an episode's start) and returns next_state_h and next_state_c.
FILE.json lists the inputs and outputs in order with their shapes and dtypes, the action space and
the env's settings (its wrappers, e.g. Atari's preprocessing, are the program's to apply).

The file is checked before it is written: run on a sample batch, it must give the model's outputs.

examples:
  a3c export runs/cartpole
  a3c export runs/cartpole --output cartpole.pt
  a3c export runs/pong --checkpoint latest --output pong.onnx --with-distribution
      (onnx needs the export extra: pip install 'a3c[export]')
"""

PLOT_EPILOG = """\
Draws mean return (the last return_window episodes) against global env steps and against wall
time, and each evaluation's mean (eval.csv, dashed with markers) where a run has them. Runs whose
configs differ only by seed (and by budget, target or logging settings) are one group: their mean
with a min-max band. The default output is RUN_DIR/curves.png for one run and ./curves.png for
several.

examples:
  a3c plot runs/cartpole
  a3c plot runs/cp-seed0 runs/cp-seed1 runs/cp-seed2 --out cartpole.png
"""
