"""Figures of a training run: curves, confusion matrix, first-layer filters, misclassified digits.

matplotlib is imported inside each function (Agg backend, no window), so the engine never
needs it. Every figure is written atomically as a PNG.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CnnlabError(
            'figures need matplotlib: pip install "cnnlab[lab]" (or pip install matplotlib)'
        ) from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, path: str | os.PathLike) -> None:
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Loss (left) and accuracy (right) per epoch."""
    epochs = [h["epoch"] for h in history]
    fig = _figure(9, 3.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_ax.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
    if all("test_accuracy" in h for h in history):
        acc_ax.plot(epochs, [100 * h["test_accuracy"] for h in history], "s-", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str | os.PathLike) -> None:
    """The confusion matrix as a heat map with the counts written in each cell."""
    k = len(class_names)
    fig = _figure(6.5, 5.8)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8, label="images")
    ax.set_xticks(range(k), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if count > threshold else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    _save(fig, path)


def plot_filters(weights: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """First-layer filters ``(C_out, C_in, kH, kW)``: one tile per filter (channel 0), grey."""
    filters = np.asarray(weights)[:, 0]  # (C_out, kH, kW)
    count = filters.shape[0]
    cols = min(8, count)
    rows = -(-count // cols)
    fig = _figure(1.1 * cols + 0.6, 1.1 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    limit = float(np.abs(filters).max()) or 1.0
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < count:
            ax.imshow(filters[i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(str(i), fontsize=8)
    fig.suptitle(title or f"First-layer filters (red +, blue −, |w| ≤ {limit:.2f})")
    _save(fig, path)


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: list[str],
    path: str | os.PathLike,
    limit: int = 36,
) -> None:
    """A grid of up to ``limit`` misclassified images ``(N, 28, 28)``, titled true → predicted."""
    wrong = np.flatnonzero(labels != predictions)[:limit]
    cols = 9
    rows = max(1, -(-len(wrong) // cols))
    fig = _figure(1.15 * cols, 1.3 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, wrong, strict=False):
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"{class_names[labels[i]]} → {class_names[predictions[i]]}", fontsize=8)
    fig.suptitle(
        f"Misclassified test images, true → predicted ({len(wrong)} shown)"
        if len(wrong)
        else "No misclassified test images"
    )
    _save(fig, path)
