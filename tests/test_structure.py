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
    """Counted as `ruff format` leaves them (`make lint` fails on unformatted code), so a module
    cannot be brought under the limit by joining lines."""
    long = {
        str(p.relative_to(SRC)): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_80_lines():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno is not None
            ):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_nothing_names_a_file_outside_the_repository():
    files = [
        *_sources(),
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
        *(ROOT / "benchmarks").glob("*.py"),
        *(ROOT / "tests").glob("*.py"),
    ]
    pattern = re.compile(r"shared/(DESIGN|STYLE|CONVENTIONS)|\.\./shared")
    hits = [
        str(p.relative_to(ROOT))
        for p in files
        if p != Path(__file__) and pattern.search(p.read_text())
    ]
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


def test_a_node_groups_actor_class_imports_without_torch():
    """A Ray node group's process imports its actor class's module first: that module imports no
    torch, so the node's fork server (started in the actor's constructor) imports it alongside."""
    import subprocess
    import sys

    code = "import sys, a3c.backends.ray_shell; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "import a3c.backends.ray_shell imported torch"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The a3c modules `path` imports, at module level or inside functions (a lazy import is still
    a dependency), leaving out imports under `if TYPE_CHECKING:` (annotations only)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.update(
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            )
    out = set()
    for target in found:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    """No two modules of src/ import each other, directly or round a circle, lazily or not; a
    package's children may read the package (Python imports it first), but it does not count."""
    paths = {_module_name(p): p for p in _sources()}
    graph = {name: _imports(path, name, set(paths)) for name, path in paths.items()}
    assert _cycles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
