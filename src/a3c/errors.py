"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class A3CError(Exception):
    """Base class of the errors caused by user input (config, env id, files)."""


class ConfigError(A3CError):
    """An invalid hyperparameter, an unknown key or a malformed config file."""


class EnvError(A3CError):
    """An unknown env id or an env whose spaces the library does not support."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type's name if it has none): what a
    one-line error quotes of a library's multi-line one."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
