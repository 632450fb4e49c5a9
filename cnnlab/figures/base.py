"""What every cnnlab figure is drawn on: a matplotlib ``Figure`` without a window, saved as PNG.

matplotlib is imported when a figure is made, never when this module is, so code that only
imports cnnlab needs NumPy alone; without matplotlib a figure is a one-line error naming the
install command. Files are written atomically: a reader sees the old PNG or the new one.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.engine.errors import MissingPackageError
from cnnlab.engine.fileio import atomic_write_bytes

DPI = 110


def figure_class() -> Any:
    """matplotlib's ``Figure``; ``MissingPackageError`` without matplotlib (a caller that will
    draw later asks first, so that nothing is computed for figures it cannot draw)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingPackageError("figures need matplotlib", "lab") from None
    return Figure


def new_figure(width: float, height: float) -> Any:
    """A ``width`` × ``height`` inch figure with constrained layout (no pyplot, no window)."""
    return figure_class()(figsize=(width, height), dpi=DPI, layout="constrained")


def png_bytes(fig: Any) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save(fig: Any, path: str | os.PathLike) -> Path:
    """Render ``fig`` and write it to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(fig))  # rendered first: a drawing error writes nothing
    return path


def grid_shape(count: int, max_cols: int = 8) -> tuple[int, int]:
    """``(rows, cols)`` of a grid of ``count`` tiles at most ``max_cols`` wide."""
    cols = max(1, min(count, max_cols))
    return max(1, math.ceil(count / cols)), cols


def show_digit(ax: Any, image: np.ndarray, title: str = "") -> None:
    """A grey image on ``ax``, black at 0 and white at 1 (or its maximum), without ticks."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=max(1.0, float(np.max(image))))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def log_axis(ax: Any, values: Any, axis: str = "x") -> None:
    """A log-scaled ``axis`` from the decade below the smallest positive of ``values`` to the
    one above the largest, labelled at whole decades only: matplotlib's default also labels the
    2×, 3×, … minor ticks when the data spans under about two decades, and those overlap."""
    from matplotlib.ticker import LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    positive = np.asarray(values, dtype=float)
    positive = positive[positive > 0]
    if positive.size:
        low, high = np.floor(np.log10(positive.min())), np.ceil(np.log10(positive.max()))
        (ax.set_xlim if axis == "x" else ax.set_ylim)(10**low, 10 ** max(high, low + 1))
    target.set_major_locator(LogLocator(base=10, numticks=8))
    target.set_minor_formatter(NullFormatter())
