"""Turn a terminal's screen, captured with colours by `tmux capture-pane -e -p`, into an SVG that
looks like the terminal (rich's export), for the docs' pictures of what a user sees.

    tmux capture-pane -e -p -t SESSION > screen.ansi
    python tools/terminal_svg.py screen.ansi docs/img/progress.svg --title "a3c train" --width 80
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ansi", type=Path, help="the captured screen, with ANSI colours")
    parser.add_argument("out", type=Path, help="the SVG to write")
    parser.add_argument("--title", default="a3c", help="the window title")
    parser.add_argument("--width", type=int, default=100, help="terminal columns")
    args = parser.parse_args()
    lines = args.ansi.read_text().rstrip("\n").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    console = Console(
        record=True,
        width=args.width,
        force_terminal=True,
        color_system="truecolor",
        file=open("/dev/null", "w"),
    )
    for line in lines:
        console.print(Text.from_ansi(line), crop=True, overflow="crop", no_wrap=True)
    args.out.write_text(console.export_svg(title=args.title))


if __name__ == "__main__":
    main()
