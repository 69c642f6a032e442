"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class A3CError(Exception):
    """Base class of the errors caused by user input (config, env id, files)."""


class ConfigError(A3CError):
    """An invalid hyperparameter, an unknown key or a malformed config file."""


class RunFailure(RuntimeError):
    """A run that cannot go on (a worker that keeps failing, parameters that are no longer finite).
    The run stops with its last good checkpoint; the CLI prints one line and exits with code 1."""


class EnvError(A3CError):
    """An unknown env id or an env whose spaces the library does not support."""


def wrapped_stop(e: BaseException) -> BaseException | None:
    """The stop exception (a signal handler's, a time limit's: not an Exception) that a C extension
    wrapped in a SystemError (Ray's `ray.wait` does), or None."""
    cause = e.__cause__
    return (
        cause
        if isinstance(e, SystemError) and cause is not None and not isinstance(cause, Exception)
        else None
    )


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
