"""`python -m a3c`: the `a3c` command (same parser, same program name in usage and errors)."""

from __future__ import annotations

import sys

from a3c.cli import main

if __name__ == "__main__":  # guarded: worker processes may import the main module
    sys.exit(main())
