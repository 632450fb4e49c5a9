"""The engine's argument checks: each returns the cleaned value or raises a ``CnnlabError``.

Every message names who complained (``who``, e.g. ``"Conv2D"``), the argument, what it must
be, and echoes what was received: ``Conv2D: stride must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnlab.engine.errors import CnnlabError, InvalidArgumentError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def integer(who: str, name: str, value: Any, minimum: int) -> int:
    """An int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidArgumentError(who, name, f"an integer >= {minimum}", value)
    return int(value)


def pair(who: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each at least ``minimum``, as a pair (a kernel or window size)."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise InvalidArgumentError(who, name, "an int or a pair of ints", value)
        return (integer(who, name, value[0], minimum), integer(who, name, value[1], minimum))
    size = integer(who, name, value, minimum)
    return (size, size)


def number(
    who: str,
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number (not a bool) in the interval from ``low`` to ``high``.

    The ends are included unless ``low_open`` / ``high_open``; the message writes the interval
    the usual way, e.g. ``in [0, 1)`` or ``a finite number > 0``.
    """
    ok = isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        if high == math.inf:
            bound = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InvalidArgumentError(who, name, bound, value)
    return float(value)


def choice(who: str, name: str, value: Any, options: tuple[str, ...]) -> str:
    """One of ``options``."""
    if value not in options:
        raise InvalidArgumentError(who, name, f"one of {', '.join(map(repr, options))}", value)
    return value


def float_dtype(who: str, dtype: Any) -> np.dtype:
    """float32 or float64, as a NumPy dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise CnnlabError(f"{who}: dtype must be float32 or float64, got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise CnnlabError(f"{who}: dtype must be float32 or float64, got {resolved}")
    return resolved
