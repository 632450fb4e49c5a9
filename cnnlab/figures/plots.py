"""Figures of a training run: curves, confusion matrix, first-layer filters, misclassified
pictures and gradient flow.

Each ``plot_*`` function draws on ``cnnlab.figures.base`` and writes one PNG, returning its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.figures.base import grid_shape, new_figure, save


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Loss (left) and accuracy (right) per epoch, on the training and the test images."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure(9, 3.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    if all("test_loss" in h for h in history):  # runs from before cnnlab recorded it lack it
        loss_ax.plot(epochs, [h["test_loss"] for h in history], "s-", label="test")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_ax.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
    if all("test_accuracy" in h for h in history):
        acc_ax.plot(epochs, [100 * h["test_accuracy"] for h in history], "s-", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    return save(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str | os.PathLike) -> Path:
    """The confusion matrix as a heat map with the counts written in each cell."""
    k = len(class_names)
    fig = new_figure(6.5, 5.8)
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
    return save(fig, path)


def plot_filters(filters: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """Filters ``(C, kH, kW)`` as small images on one colour scale, so their strengths compare
    (the web lab draws them the same way); colour filters ``(C, kH, kW, 3)`` as the colour
    patch each responds to most, mid-grey meaning weight 0, on the same shared scale."""
    filters = np.asarray(filters)
    colour = filters.ndim == 4
    rows, cols = grid_shape(len(filters))
    fig = new_figure(1.35 * cols + 0.4, 1.45 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = float(np.abs(filters).max()) or 1.0
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < len(filters) and colour:
            ax.imshow(0.5 + 0.5 * filters[k] / limit, interpolation="nearest")
        elif k < len(filters):
            ax.imshow(filters[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        if k < len(filters):
            ax.set_title(f"filter {k}", fontsize=8)
    kh, kw = filters.shape[1:3]
    legend = (
        "the colour each filter responds to, grey = 0"
        if colour
        else ("red = positive, blue = negative")
    )
    fig.suptitle(
        title
        or f"First conv layer: {len(filters)} filters of {kh}×{kw} weights\n"
        f"{legend}, one scale |w| ≤ {limit:.2f}",
        fontsize=11,
    )
    return save(fig, path)


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: list[str],
    path: str | os.PathLike,
    limit: int = 36,
) -> Path:
    """A grid of up to ``limit`` misclassified images, titled true → predicted: grey ``(N, H, W)``
    or pictures ``(N, C, H, W)`` (colour when C is 3)."""
    images = np.asarray(images)
    if images.ndim == 4:  # (N, C, H, W) → (N, H, W) or (N, H, W, 3), as imshow takes them
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    wrong = np.flatnonzero(labels != predictions)[:limit]
    cols = 9
    rows = max(1, -(-len(wrong) // cols))
    fig = new_figure(1.15 * cols, 1.3 * rows + 0.5)
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
    return save(fig, path)


def plot_gradient_flow(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """A gradient monitor's ``records`` (``cnnlab.runs.monitor``) as four panels against
    epoch, one line per layer."""
    fig = new_figure(12.0, 7.6)
    axes = fig.subplots(2, 2)
    panels = (
        ("grad_norm", "gradient norm ‖dL/dθ‖ (log)", True),
        ("update_ratio", "update ratio ‖Δw‖/‖w‖ (log)", True),
        ("dead_fraction", "dead ReLU units (fraction)", False),
        ("saturated_fraction", "saturated sigmoid/tanh units (fraction)", False),
    )
    epochs = [r["epoch"] for r in records]
    names = [e["name"] for e in records[0]["layers"]] if records else []
    for ax, (key, label, log) in zip(axes.flat, panels, strict=True):
        drawn = False
        for name in names:
            values = [
                next((e.get(key) for e in r["layers"] if e["name"] == name), None) for r in records
            ]
            if any(v is None for v in values):
                continue
            ax.plot(epochs, values, marker="o", label=name)
            drawn = True
        ax.set_xlabel("epoch")
        ax.set_ylabel(label, fontsize=9)
        if drawn:
            if log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(-0.02, 1.02)
            ax.legend(fontsize=7, ncol=2)
            ax.set_xticks(epochs)
        else:
            ax.text(
                0.5,
                0.5,
                "no such layers in this model",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="gray",
            )
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Gradient flow per layer while training", fontsize=12)
    return save(fig, path)


def plot_reliability(
    bins: dict[str, np.ndarray],
    path: str | os.PathLike,
    before: dict[str, np.ndarray] | None = None,
    title: str = "Reliability",
) -> Path:
    """A reliability diagram: per confidence bin (``edges``, ``count``, ``confidence``,
    ``accuracy``, as ``runs.unknowns.reliability`` gives them), the accuracy as a bar against
    the diagonal a calibrated model follows; ``before`` adds the uncalibrated bins as an
    outline. Below, how many pictures fall in each bin (log scale)."""
    fig = new_figure(5.2, 6.0)
    ax, counts_ax = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    edges = np.asarray(bins["edges"])
    left, width = edges[:-1], np.diff(edges)
    shown = np.asarray(bins["count"]) > 0
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    ax.bar(left[shown], np.asarray(bins["accuracy"])[shown], width[shown], align="edge",
           color="tab:blue", alpha=0.8, edgecolor="white", label="accuracy")  # fmt: skip
    if before is not None:
        was = np.asarray(before["count"]) > 0
        ax.bar(left[was], np.asarray(before["accuracy"])[was], width[was], align="edge",
               fill=False, edgecolor="tab:red", label="before calibration")  # fmt: skip
    ax.plot(np.asarray(bins["confidence"])[shown], np.asarray(bins["accuracy"])[shown], "o",
            color="black", markersize=3, label="mean confidence")  # fmt: skip
    ax.set(ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    counts_ax.bar(left, np.maximum(bins["count"], 0.5), width, align="edge", color="tab:blue")
    counts_ax.set_yscale("log")
    counts_ax.set(xlabel="confidence (top probability)", ylabel="pictures")
    return save(fig, path)
