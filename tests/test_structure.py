"""The shape of the code: modules and functions small enough to read, nothing that names a file
outside the repository, no lint suppressions for rules the project does not check."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "a3c"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# The rules ruff checks (pyproject.toml [tool.ruff.lint] select): a `noqa` for any other is dead.
SELECTED = ("E", "F", "W", "I", "B", "UP")


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_80_lines():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_nothing_names_a_file_outside_the_repository():
    files = [*_sources(), *(ROOT / "docs").glob("*.md"), ROOT / "README.md", *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").glob("*.py")]
    pattern = re.compile(r"shared/(DESIGN|STYLE|CONVENTIONS)|\.\./shared")
    hits = [str(p.relative_to(ROOT)) for p in files if p != Path(__file__) and pattern.search(p.read_text())]
    assert not hits, f"files naming documents outside the repository: {hits}"


def test_noqa_comments_name_only_rules_ruff_checks():
    dead = []
    for path in [*_sources(), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for prefix, number in re.findall(r"noqa: ?([A-Z]+)([0-9]+)", line):
                if prefix not in SELECTED:
                    dead.append(f"{path.relative_to(ROOT)}:{i}: {prefix}{number}")
    assert not dead, f"noqa codes for rules ruff does not select: {dead}"


def test_the_command_line_imports_without_torch():
    """`a3c --help`, `--version` and bad input answer without waiting for torch (seconds on a busy
    machine); only the commands that train or act import it, and the fork server imports it once."""
    import subprocess
    import sys

    code = "import sys, a3c, a3c.cli; a3c.cli.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "import a3c.cli or its parser imported torch"
