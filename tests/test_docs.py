"""The documentation stays true to the code: the generated reference tables hold every config key
and metric, every `a3c` command shown in the README and docs/ parses with the real command line (its
`--set` keys and values included), and the getting-started page's commands and Python example run as
written. `make docs` builds the site with warnings as errors."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docs_hooks  # noqa: E402

PAGES = sorted((ROOT / "docs").rglob("*.md"))
A3C_BIN = Path(sys.executable).with_name("a3c")


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def _commands(path: Path) -> list[str]:
    """The `a3c ...` commands of a page's bash blocks (a line ending in a backslash continues on the
    next), without their comments."""
    out = []
    for block in _blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split("  #")[0].split())
            if line.startswith("a3c "):
                out.append(line)
    return out


def _inline_commands(path: Path) -> list[str]:
    """The `a3c train ...` / `a3c eval ...` commands written inline in a page's text."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    spans = (
        " ".join(s.split()) for s in re.findall(r"`(a3c (?:train|eval|plot|cliff) [^`]+)`", text)
    )
    return [s for s in spans if not _placeholder(s)]


def _placeholder(command: str) -> bool:
    """A command written with placeholders (`--seed S`, `RUN_DIR`, `...`): a pattern, not a
    command."""
    tokens = [t.split("=")[-1] for t in command.split()]
    return "..." in command or any(re.fullmatch(r"[A-Z][A-Z_0-9|]*", t) for t in tokens)


def test_config_reference_is_generated_with_every_key():
    from a3c.config import NOT_LEARNING, field_docs

    page = (ROOT / "docs" / "configuration.md").read_text()
    assert "<!-- a3c:config -->" in page
    text = docs_hooks.expand(page)
    for key, default, doc in field_docs():
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        name = "<code>" + ".<wbr>".join(key.split(".")) + "</code>"  # breaks only after a dot
        note = " *(not learning)*" if key in NOT_LEARNING else ""
        row = f"| {name} | `{shown}` | {doc.replace('|', chr(92) + '|')}{note} |"
        assert row in text, f"the generated reference lacks the row for {key}: {row}"
    assert "| key | default | meaning |" in text


def test_run_directory_page_gets_both_metrics_tables():
    from a3c import metrics

    text = docs_hooks.expand((ROOT / "docs" / "run_directory.md").read_text())
    for file in ("progress", "eval"):
        assert metrics.markdown_table(file) in text


def test_every_marker_expands_and_help_fits_80_columns():
    for page in PAGES:
        text = docs_hooks.expand(page.read_text())
        assert "<!-- a3c:" not in text, page
    shown = docs_hooks.command_help("train")
    assert "--set KEY=VALUE" in shown and "algo.n_steps" in shown
    assert max(len(line) for line in shown.splitlines()) <= 80


def _shown_commands() -> list[tuple[str, str]]:
    found = [
        (p.relative_to(ROOT).as_posix(), c)
        for p in [ROOT / "README.md", *PAGES]
        for c in _commands(p)
    ]
    found += [
        (p.relative_to(ROOT).as_posix(), c)
        for p in [ROOT / "README.md", *PAGES]
        for c in _inline_commands(p)
    ]
    return [(where, c) for where, c in found if not _placeholder(c)]


def test_the_docs_show_commands():
    pages = {where for where, _ in _shown_commands()}
    assert {"README.md", "docs/getting_started.md", "docs/checkpoints.md", "docs/cliff.md"} <= pages


@pytest.mark.parametrize(
    "where,command", _shown_commands(), ids=lambda v: v if "/" not in v and " " not in v else None
)
def test_every_command_shown_parses(where, command):
    """Flags, choices and types through the real parser; `--set` keys and values through the
    config."""
    from a3c.cli import build_parser
    from a3c.config import Config
    from a3c.configfile import parse_assignments

    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code == 0 and {"--help", "--version"} & set(argv):
            return
        pytest.fail(f"{where}: `{command}` does not parse (exit {e.code})")
    assignments = getattr(args, "assignments", None)
    if assignments:
        Config().replace(parse_assignments(assignments))


def _run(command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [str(A3C_BIN), *shlex.split(command)[1:]]
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_readme_quick_start_is_run_by_the_getting_started_test():
    """The README's quick start is a part of the getting-started page's commands, which run
    below."""
    readme = [
        c for c in _commands(ROOT / "README.md") if "--help" not in c and "--version" not in c
    ]
    assert readme and set(readme) <= set(_commands(ROOT / "docs" / "getting_started.md"))


@pytest.mark.slow
def test_getting_started_runs_as_written(tmp_path):
    page = ROOT / "docs" / "getting_started.md"
    commands = _commands(page)
    assert commands[0] == "a3c train CartPole-v1 --run-dir runs/cartpole"
    for command in commands:
        done = _run(command, tmp_path)
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stderr[-2000:]}"

    runs = tmp_path / "runs"
    first = json.loads((runs / "cartpole" / "summary.json").read_text())
    assert first["solved"] is True and first["solved_return_mean"] >= 475
    result = json.loads((runs / "cartpole" / "eval.json").read_text())
    # The run stops on its training window's mean; its final parameters, taken from asynchronous
    # workers, play greedily from about 200 to 500 (196 seen). An untrained agent plays 10-30.
    assert result["episodes"] == 20 and result["mean"] >= 150, result
    assert (runs / "cartpole" / "curves.png").stat().st_size > 10_000
    assert json.loads((runs / "cartpole" / "policy.onnx.json").read_text())["format"] == "onnx"

    (cliff,) = (runs).glob("cliff-*/summary.json")
    # the optimal path is -13, random play far worse
    assert json.loads(cliff.read_text())["greedy_return"] >= -17

    long = json.loads((runs / "long" / "summary.json").read_text())
    assert long["stop_reason"] == "max_time" and 20 <= long["wall_s"] < 40, long
    steps = [
        int(line.split(",")[0])
        for line in (runs / "long" / "progress.csv").read_text().splitlines()[1:]
    ]
    assert steps == sorted(steps) and len(steps) >= 2

    (python,) = [b for b in _blocks(page, "python") if "A3C.load(" in b]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {"__name__": "__main__"}
        exec(compile(python, str(page), "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert namespace["result"]["mean"] >= 150
    assert (
        namespace["summary"]["stop_reason"] == "total_steps"
        and namespace["summary"]["steps"] >= 20_000
    )


def test_readme_is_a_users_guide():
    """Short, and free of the project's history: no issue numbers, commit hashes or sessions."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert not re.search(
        r"\bissues? \d+|\bcommit "
        r"[0-9a-f]{7}|\bsession\b|\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b",
        text,
        flags=re.I,
    )
    for link in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert (ROOT / link).exists(), f"README links to a missing file: {link}"


def test_code_blocks_fit_the_page_at_1280_pixels():
    """At a 1280-pixel window a code block shows 76 columns, and the copy button covers the end of
    its first line past 70: longer lines would hide under it or need scrolling. Terminal output
    (```text, 80 columns as `--help` prints it) may scroll."""
    long = []
    for path in sorted((ROOT / "docs").rglob("*.md")):
        fence, first = None, False
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fence = None if fence is not None else line.lstrip()[3:].strip()
                first = fence is not None
                continue
            if fence is not None and fence != "text" and len(line) > (70 if first else 76):
                long.append(f"{path.relative_to(ROOT)}:{i} ({len(line)})")
            first = False
    assert not long, f"code lines too long for the page: {long}"
