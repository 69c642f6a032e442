"""The fork server that the processes backend starts its workers from.

Starting a worker with `spawn` means a fresh interpreter importing torch, gymnasium and a3c: about
1 s of CPU per worker, paid again for every restart and every `learn()`. Instead, one clean process
(the `forkserver` start method: no threads, it never computes) imports them once, and every worker
is a fork of it, ready in milliseconds. Forking the trainer itself stays off limits: it may hold
torch or BLAS threads.

`warm_up()` starts the server without waiting for it. On the trainer it is called from one
place, `a3c.backends.prepare`, which `a3c train` calls once its arguments parse and
`from a3c import A3C` calls before it imports torch, so that the server imports torch on the other
core while this process does (about 1.5 s on a 2-core machine, paid once instead of twice in a
row); the agent calls it again when it is built (a no-op when the server runs). On Ray, a node
group's actor starts its node's server the same way, before it imports torch
(a3c/backends/ray_shell.py). The server lives as long as this process. Standard library only, so
that it can run before torch is imported.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterator
from multiprocessing import forkserver
from typing import Any

# What the server imports once: the user's main module (as spawn would re-run it, guarded by
# `if __name__ == "__main__"`) and the code of the workers and of the evaluator, with torch and
# gymnasium. CPython before the fix of gh-126631 (3.11, 3.12, early 3.13) ignores `__main__` here:
# each worker then imports the script itself, after its fork.
PRELOAD = ["__main__", "a3c.backends.processes"]


# A worker process imports the user's main script (as spawn would). A script that trains at import,
# without the `if __name__ == "__main__":` guard, would train again inside every worker: `learn()`
# refuses, and the worker exits with this code, which the trainer turns into this message.
UNGUARDED_MAIN_EXIT = 86
UNGUARDED_MAIN = (
    "your script started training when a worker process imported it: put the code that trains "
    "under "
    '`if __name__ == "__main__":` (worker processes import the main script)'
)


def refuse_unguarded_main() -> None:
    """Exit at once if this is a child process importing the main script (multiprocessing's own
    test for that is the private `_inheriting` flag, set only while the child prepares)."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        sys.stderr.write(f"a3c: error: {UNGUARDED_MAIN}\n")  # the process ends at once: no logger
        sys.stderr.flush()
        os._exit(UNGUARDED_MAIN_EXIT)


def context() -> Any:
    """The multiprocessing context the processes backend starts workers with."""
    return multiprocessing.get_context("forkserver")


@contextlib.contextmanager
def main_left_out() -> Iterator[None]:
    """Start processes inside this block without the main module. A process started from a fork
    server still runs the starter's main script first (as `__mp_main__`). In a Ray actor that is
    Ray's worker script, which imports Ray into every worker (some 450 modules and 30,000 objects
    more): a node group's CartPole workers ran a few percent slower than the processes backend's.
    Multiprocessing reads the script's path from the main module's `__file__` (or its spec's
    name) as each process starts."""
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {
        k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if k in main.__dict__
    }
    if "__spec__" in saved:
        main.__spec__ = None  # multiprocessing reads the attribute: absent is an error
    try:
        yield
    finally:
        main.__dict__.update(saved)


def in_child_process() -> bool:
    """True in a worker (or one importing the user's script): it must not start servers of its
    own."""
    return multiprocessing.parent_process() is not None or bool(
        getattr(multiprocessing.current_process(), "_inheriting", False)
    )


def warm_up(main: bool = True) -> None:
    """Start the fork server (non-blocking) if it is not running yet. Workers inherit its
    environment, so it starts with OMP_NUM_THREADS=1 (one thread per worker). `main=False` leaves
    the main module out: in a Ray actor it is Ray's own worker script, not the user's."""
    preload = PRELOAD if main else [m for m in PRELOAD if m != "__main__"]
    context().set_forkserver_preload(preload)  # takes effect only if the server is not running yet
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
