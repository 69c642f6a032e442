"""MkDocs hooks: the pages' reference tables are generated from the code, so they cannot drift.

A page writes a marker and the build puts the generated Markdown in its place:

- `<!-- a3c:config -->`: one table per config section, from the fields' own one-line docs
  (`a3c.config.field_docs`), the same text `a3c train --help` shows;
- `<!-- a3c:metrics progress -->` / `<!-- a3c:metrics eval -->`: the columns of progress.csv /
  eval.csv with their TensorBoard tags (`a3c.metrics.markdown_table`);
- `<!-- a3c:help COMMAND -->`: `a3c COMMAND --help` as a terminal 80 columns wide shows it.

tests/test_docs.py checks the markers and the generated text.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

MARKER = re.compile(r"<!-- a3c:(\w+)(?: ([\w-]+))? -->")


def config_tables() -> str:
    """Markdown: a `### section` heading and a | key | default | meaning | table per config section.
    A key may break only after one of its dots (`<wbr>`; the stylesheet keeps code from breaking
    mid-word), so that `env.envs_per_worker` never shows as `env.envs_per_worke` / `r`."""
    from a3c.config import NOT_LEARNING, SECTIONS, field_docs

    out: list[str] = []
    current = None
    for key, default, doc in field_docs():
        section = max((s for s in SECTIONS if key.startswith(s + ".")), key=len)
        if section != current:
            current = section
            out += ["", f"### `{section}`", "", "| key | default | meaning |", "|---|---|---|"]
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        note = " *(not learning)*" if key in NOT_LEARNING else ""
        name = "<code>" + ".<wbr>".join(key.split(".")) + "</code>"
        out.append(f"| {name} | `{shown}` | {doc.replace('|', chr(92) + '|')}{note} |")
    return "\n".join(out).strip() + "\n"


def command_help(command: str) -> str:
    """`a3c COMMAND --help` at 80 columns, as a fenced block (`a3c` alone for the top level)."""
    from a3c.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        parser = build_parser()
        if command != "a3c":
            sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
            parser = sub.choices[command]  # type: ignore[attr-defined]
        text = parser.format_help()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "```text\n" + text.rstrip() + "\n```\n"


def expand(markdown: str) -> str:
    """The page's Markdown with every marker replaced by its generated text."""
    from a3c import metrics

    def one(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "config":
            return config_tables()
        if kind == "metrics":
            return metrics.markdown_table(arg or "progress")
        if kind == "help":
            return command_help(arg or "a3c")
        raise ValueError(f"unknown docs marker {m.group(0)}")

    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown)
