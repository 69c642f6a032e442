"""The config's shared validators: each `Check` returns None for a good value, else what the
value must be (`invalid value for KEY: VALUE must be ...` is the user's one-line error)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]


def kind(ok: Callable[[Any], bool], want: str) -> Check:
    return lambda v: None if ok(v) else want


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return (
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and (isinstance(v, int) or math.isfinite(v))
    )


def integer(lo: int = 0, hi: int | None = None) -> Check:
    """An int (not a bool) in [lo, hi]; the message names the upper bound when it is the one
    broken."""
    low, both = f"must be an integer >= {lo}", f"must be an integer in [{lo}, {hi}]"
    return lambda v: low if not is_int(v) or v < lo else both if hi is not None and v > hi else None


def number(
    lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> Check:
    """A finite int or float within the bounds (open or closed)."""
    want = (
        "must be a finite number"
        if lo is None
        else f"must be a number {'>' if lo_open else '>='} {lo}"
    )
    if lo is not None and hi is not None:
        want = f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    above = (lambda v: lo is None or v > lo) if lo_open else (lambda v: lo is None or v >= lo)
    below = (lambda v: hi is None or v < hi) if hi_open else (lambda v: hi is None or v <= hi)
    return kind(lambda v: is_number(v) and above(v) and below(v), want)


def one_of(*choices: str) -> Check:
    return kind(lambda v: v in choices, f"must be one of {', '.join(choices)}")


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def int_list(lo: int, hi: int) -> Check:
    ok = integer(lo, hi)
    return kind(
        lambda v: isinstance(v, tuple) and not any(ok(h) for h in v),
        f"must be a list of integers in [{lo}, {hi}] (may be empty)",
    )


def pairs(v: Any) -> bool:
    ok = isinstance(v, tuple) and all(
        isinstance(p, list | tuple) and len(p) == 2 and not any(number(lo=0)(x) for x in p)
        for p in v
    )
    return ok and all(a[0] <= b[0] for a, b in zip(v, v[1:], strict=False))


boolean = kind(lambda v: isinstance(v, bool), "must be true or false")
text = kind(lambda v: isinstance(v, str) and bool(v), "must be a non-empty string")
mapping = kind(lambda v: isinstance(v, dict), "must be a mapping")
schedule_points = kind(
    pairs, "must be a list of [step, value] pairs of numbers >= 0 with non-decreasing steps"
)
betas = kind(
    lambda v: (
        isinstance(v, tuple) and len(v) == 2 and not any(number(0, 1, hi_open=True)(b) for b in v)
    ),
    "must be two numbers in [0, 1)",
)
target_value = kind(
    lambda v: v is None or v == "auto" or not number()(v), "must be a finite number, auto or null"
)
names = kind(
    lambda v: isinstance(v, tuple) and all(isinstance(k, str) and k for k in v),
    "must be a list of key names (may be empty)",
)
entry = kind(
    lambda v: isinstance(v, str) and v.count(":") == 1 and all(p.strip() for p in v.split(":")),
    "must be module:Class or module:make_fn",
)
