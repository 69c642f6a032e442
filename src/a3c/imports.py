"""`module:attr` names of a user's code (an env class, an env factory, an encoder), imported on
demand.

Names rather than objects travel in configs and checkpoints: a worker process, a Ray actor or a
fresh process loading a checkpoint imports the same code again from its name.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from a3c.errors import A3CError, first_line


def load_entry(
    name: str, what: str, error: type[A3CError], builds: str = "an env"
) -> Callable[..., Any]:
    """The callable that `name` ("module:attr", attr may be dotted) names; `what` says what the name
    is for in the messages ("env id", "model.encoder"), each one line raised as `error`."""
    module_name, _, attr = name.partition(":")
    if not module_name.strip() or not attr.strip():
        raise error(f"invalid {what} '{name}': expected module:Class or module:make_fn")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise error(
            f"cannot import the module '{module_name}' of {what} '{name}': {first_line(e)}"
        ) from None
    # the user's module raised while importing (a SyntaxError, a RuntimeError...)
    except Exception as e:
        raise error(
            f"cannot import the module '{module_name}' of {what} '{name}': {type(e).__name__}: "
            f"{first_line(e)}"
        ) from None
    try:
        entry = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise error(f"module '{module_name}' has no '{attr}' ({what} '{name}')") from None
    if not callable(entry):
        raise error(
            f"{what} '{name}' is not a class or function that builds {builds} (it is a "
            f"{type(entry).__name__})"
        )
    return entry


def name_of(obj: Any, what: str, error: type[A3CError]) -> str:
    """ "module:qualname" of a module-level class or function (what workers import again)."""
    qualname = getattr(obj, "__qualname__", "")
    module = getattr(obj, "__module__", None)
    if not module or not qualname or "<" in qualname:
        raise error(
            f"{what} must be a class or function defined at the top level of a module (got "
            f"{obj!r}): worker processes import it by name"
        )
    return f"{module}:{qualname}"
