"""`--help` of every command, as a user reads it in an 80-column terminal (a subprocess with
COLUMNS=80), and `python -m a3c` as the same command as `a3c`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from a3c import __version__
from a3c.cli import build_parser
from a3c.helptext import fill

ENV = {**os.environ, "COLUMNS": "80"}


def _commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command of the parser, subcommands of subcommands too: (words...) -> its parser."""
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(words: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
        found[words] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk((*words, name), child)

    walk((), build_parser())
    return found


COMMANDS = _commands()


def test_the_commands_are_the_ones_documented():
    assert set(COMMANDS) == {
        (),
        ("train",),
        ("eval",),
        ("plot",),
        ("export",),
        ("tune",),
        ("cliff",),
    }


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=lambda w: " ".join(("a3c", *w)))
def test_help_fits_80_columns_and_names_every_option(words):
    result = subprocess.run(
        [sys.executable, "-m", "a3c", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"usage: {' '.join(('a3c', *words))} "), text[:80]
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, "lines over 80 columns:\n" + "\n".join(long)
    for action in COMMANDS[words]._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action.choices:
                assert f"    {choice} " in text, f"command {choice} not listed"
            continue
        assert action.help and action.help.strip(), (
            f"{action.option_strings or action.dest} has no help"
        )
        for option in action.option_strings:
            assert option in text, f"{option} not in the help"
        if not action.option_strings:
            assert str(action.metavar or action.dest) in text


def test_every_option_says_what_it_takes():
    """An option that takes a value shows a short metavar (N, FILE, ...) or its choices, never
    argparse's upper-cased dest (WORKERS, RUN_DIR) that says nothing more than the flag."""
    for words, parser in COMMANDS.items():
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and action.choices is None:
                assert action.metavar is not None, (
                    f"a3c {' '.join(words)} {action.option_strings[0]}"
                )


@pytest.mark.parametrize("module", ["a3c", "a3c.cli"])
def test_python_m_a3c_is_the_a3c_command(module):
    version = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60
    )
    assert (version.returncode, version.stdout) == (0, f"a3c {__version__}\n")
    for argv, error in [
        (["train", "--no-such-flag"], "a3c: error: unrecognized arguments: --no-such-flag"),
        (
            ["train", "--workers", "x"],
            "a3c train: error: argument --workers: invalid int value: 'x'",
        ),
    ]:
        bad = subprocess.run(
            [sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=60
        )
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.startswith("usage: a3c ") and bad.stderr.splitlines()[-1] == error, (
            bad.stderr
        )
        assert "__main__" not in bad.stderr and "cli.py" not in bad.stderr


def test_fill_keeps_layout_and_fits_any_width():
    text = (
        "A paragraph that is long enough\nto be re-flowed as one.\n\nexamples:\n  a3c train "
        "CartPole-v1 --workers 2 --seed 3\n  key = 1\n      a doc line that wraps under its "
        "indentation"
    )
    lines = fill(text, 30)
    assert all(len(line) <= 30 for line in lines), lines
    assert lines[:3] == ["A paragraph that is long", "enough to be re-flowed as one.", ""]
    assert lines[3:6] == ["examples:", "  a3c train CartPole-v1", "      --workers 2 --seed 3"]
    assert lines[6:] == ["  key = 1", "      a doc line that wraps", "      under its indentation"]
    assert fill("  a3c-run/with-hyphens-that-stays-whole", 10) == [
        "  a3c-run/with-hyphens-that-stays-whole"
    ]
