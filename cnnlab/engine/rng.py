"""Explicit randomness: every random draw in cnnlab comes from a ``np.random.Generator``.

Layers take ``rng=`` (a Generator or an int seed). When none is given they draw from one module
generator, seeded with 0 at import, so a script that builds the same model twice in a fresh
process gets the same weights; ``manual_seed(n)`` resets it.
"""

from __future__ import annotations

import numpy as np

_default = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the generator that layers built without ``rng=`` draw from."""
    global _default
    _default = np.random.default_rng(seed)


def resolve_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A Generator from ``rng``: itself, a new one seeded with it, or the module generator."""
    if rng is None:
        return _default
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")
