"""The array-module seam: every layer reaches NumPy (or CuPy) through here.

The engine is written against the NumPy API. CuPy implements the same API on NVIDIA GPUs, so the
same layers run there once their parameters live on the device. CuPy is imported only when a
"cuda" device is asked for: the NumPy path never imports it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from cnnlab.engine.errors import CnnlabError

DEVICES = ("cpu", "cuda")


def array_module(device: str) -> ModuleType:
    """Return the array module for ``device``: NumPy for "cpu", CuPy for "cuda"."""
    if device == "cpu":
        return np
    if device == "cuda":
        try:
            return importlib.import_module("cupy")
        except ImportError:
            raise CnnlabError(
                "device 'cuda' needs CuPy: install it with `pip install cupy-cuda12x` "
                "on a machine with an NVIDIA GPU, or use --device cpu"
            ) from None
    raise CnnlabError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


def xp_of(array: Any) -> ModuleType:
    """The array module an array belongs to, found without importing CuPy for NumPy arrays."""
    if isinstance(array, np.ndarray | np.generic):
        return np
    if type(array).__module__.split(".")[0] == "cupy":
        return importlib.import_module("cupy")
    return np


def device_of(array: Any) -> str:
    """ "cpu" for a NumPy array, "cuda" for a CuPy array."""
    return "cpu" if xp_of(array) is np else "cuda"


def to_device(array: Any, device: str) -> Any:
    """Copy ``array`` to ``device`` (no copy when it already lives there)."""
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    return array_module(device).asarray(array)


def to_numpy(array: Any) -> np.ndarray:
    """A NumPy view or copy of ``array``, wherever it lives."""
    return to_device(array, "cpu")


def as_strided(xp: ModuleType, x: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
    """A read-only strided view of ``x`` (strides in bytes) from whichever module ``x`` uses."""
    if xp is np:
        if x.flags.c_contiguous:
            # The same view built straight on x's buffer (NumPy checks that it stays inside):
            # 10× cheaper than as_strided, which matters for one-digit predictions.
            view = np.ndarray(shape, x.dtype, x, 0, strides)
            view.flags.writeable = False
            return view
        return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(x, shape, strides)
