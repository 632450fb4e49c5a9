"""Figures of one model at work: the input's preprocessing, the prediction, activation maps,
occlusion, saliency, top patches, one training step, the gradient check and the gradient flow.

Every ``plot_*`` function takes numbers (arrays or the dataclasses of ``cnnlab.explain``) and a
``path``, draws on ``cnnlab.figures.base``, writes one PNG atomically and returns the path. The
first-layer filters are ``cnnlab.figures.plots.plot_filters``; the article's experiments are in
``cnnlab.explain.experiment_figures``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.figures.base import grid_shape, log_axis, new_figure, save, show_digit

if TYPE_CHECKING:
    from cnnlab.engine.gradcheck import GradCheck
    from cnnlab.explain.maps import LayerMaps, Occlusion, TopPatches
    from cnnlab.explain.step import StepResult


def plot_preprocessing(
    steps: dict[str, np.ndarray],
    path: str | Path,
    sizes: dict[str, tuple[int, int]] | None = None,
) -> Path:
    """The preprocessing stages of the input image, left to right, from the original picture
    to the network's input; ``sizes`` gives the true (height, width) of a stage shown smaller.
    Sizes are written width × height."""
    count = len(steps)
    fig = new_figure(max(2.3 * count + 0.4, 5.4), 2.8)  # room for the title over one panel
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, (name, image) in zip(axes, steps.items(), strict=True):
        image = np.asarray(image, dtype=float)
        ax.imshow(image, cmap="gray")
        h, w = (sizes or {}).get(name, image.shape[:2])
        shown = "" if (h, w) == image.shape[:2] else f" (shown {image.shape[1]}×{image.shape[0]})"
        ax.set_title(f"{name}\n{w}×{h}{shown}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    h, w = np.shape(list(steps.values())[-1])[:2]
    fig.suptitle(f"Preprocessing: from the image to the network's {w}×{h} input", fontsize=12)
    return save(fig, path)


def shown_of(count: int, shown: int, what: str) -> str:
    """``"64 maps"``, or ``"the first 32 of 64 maps"`` when a figure shows fewer."""
    return f"{count} {what}" if shown >= count else f"the first {shown} of {count} {what}"


def plot_maps(
    layer: LayerMaps, path: str | Path, max_maps: int = 32, label: str | None = None
) -> Path:
    """One conv layer's activation maps as a grid, one shared colour scale centred on 0: the
    first ``max_maps`` of them, the title says how many there are. ``label`` names the layer
    (default ``"layer " + layer.name``)."""
    maps = layer.maps[:max_maps]
    rows, cols = grid_shape(len(maps))
    fig = new_figure(1.45 * cols + 1.2, 1.45 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = float(np.abs(maps).max()) or 1.0
    image = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(maps):
            ax.set_axis_off()
            continue
        image = ax.imshow(maps[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {k}", fontsize=8)
    h, w = maps.shape[1:]
    fig.suptitle(
        f"Activation maps of {label or 'layer ' + layer.name} "
        f"({shown_of(len(layer.maps), len(maps), 'maps')}, {w}×{h})\n"
        "red = filter responds strongly, blue = negative response",
        fontsize=11,
    )
    fig.colorbar(image, ax=axes, shrink=0.8, label="activation")
    return save(fig, path)


def plot_occlusion(image: np.ndarray, occ: Occlusion, class_name: str, path: str | Path) -> Path:
    """The input (a digit or a colour picture); P(class) at each position of the patch (the
    numbers ``cnnlab explain`` prints: lowest, where); and the drop per pixel, averaged over the
    patches covering it, laid over the input."""
    fig = new_figure(10.5, 3.6)
    axes = fig.subplots(1, 3)
    show_digit(axes[0], image, "input")
    low, high = float(occ.grid.min()), float(occ.grid.max())
    at = np.unravel_index(int(occ.grid.argmin()), occ.grid.shape)
    # Each cell sits at its patch's centre, on the digit's pixel grid.
    step = float(occ.rows[1] - occ.rows[0]) if len(occ.rows) > 1 else 1.0
    centre_r, centre_c = occ.rows + (occ.patch - 1) / 2, occ.cols + (occ.patch - 1) / 2
    extent = (
        centre_c[0] - step / 2, centre_c[-1] + step / 2, centre_r[-1] + step / 2,
        centre_r[0] - step / 2,
    )  # fmt: skip
    shown = axes[1].imshow(
        occ.grid, cmap="magma", vmin=low, vmax=max(high, low + 1e-6), extent=extent
    )
    axes[1].set_xlim(-0.5, image.shape[1] - 0.5)
    axes[1].set_ylim(image.shape[0] - 0.5, -0.5)
    axes[1].set_title(
        f"P({class_name}) with the {occ.patch}×{occ.patch} patch centred here\n"
        f"lowest {low:.4f} (corner at row {occ.rows[at[0]]}, column {occ.cols[at[1]]})",
        fontsize=10,
    )
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    fig.colorbar(shown, ax=axes[1], shrink=0.85, label=f"P({class_name})")
    drop = np.clip(occ.base_probability - occ.pixel_map, 0, None)
    axes[2].imshow(image, cmap="gray")
    axes[2].imshow(drop, cmap="Reds", alpha=0.6, vmin=0, vmax=max(float(drop.max()), 1e-6))
    axes[2].set_title("drop per pixel (mean over the patches\ncovering it)", fontsize=10)
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    fig.suptitle(
        f"Occlusion sensitivity (Zeiler & Fergus): P({class_name}) = "
        f"{occ.base_probability:.3f} unoccluded; dark = the network needs this region",
        fontsize=11,
    )
    return save(fig, path)


def plot_saliency(image: np.ndarray, sal: np.ndarray, class_name: str, path: str | Path) -> Path:
    """The digit and |d score / d pixel|."""
    fig = new_figure(7.4, 3.6)
    axes = fig.subplots(1, 2)
    show_digit(axes[0], image, "input")
    shown = axes[1].imshow(sal, cmap="hot")
    axes[1].set_title(f"|d score({class_name}) / d pixel|", fontsize=10)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    fig.colorbar(shown, ax=axes[1], shrink=0.85, label="gradient magnitude")
    fig.suptitle("Saliency: pixels whose change moves the class score most", fontsize=11)
    return save(fig, path)


def plot_top_patches(
    top: TopPatches,
    path: str | Path,
    max_filters: int = 32,
    label: str | None = None,
    source: str = "MNIST",
) -> Path:
    """For each filter (the first ``max_filters``), a 3×3 mosaic of the input patches of
    ``source`` that excite it most. ``label`` names the layer (default its model index)."""
    filters, k = top.patches.shape[:2]
    c_out = min(filters, max_filters)
    side = math.ceil(math.sqrt(k))
    size = top.size
    rows, cols = grid_shape(c_out)
    fig = new_figure(1.6 * cols + 0.4, 1.75 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    for f, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if f >= c_out:
            ax.set_axis_off()
            continue
        mosaic = np.ones((side * (size + 1) - 1, side * (size + 1) - 1)) * 0.35  # grey gutters
        for j in range(k):
            r, c = divmod(j, side)
            mosaic[
                r * (size + 1) : r * (size + 1) + size, c * (size + 1) : c * (size + 1) + size
            ] = top.patches[f, j]
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"filter {f}", fontsize=8)
    fig.suptitle(
        f"{label or f'Layer {top.layer_index}'}: the {k} {source} patches ({size}×{size} "
        f"pixels each) that activate each filter most"
        + (f" ({shown_of(filters, c_out, 'filters')})" if c_out < filters else ""),
        fontsize=11,
    )
    return save(fig, path)


def plot_prediction(
    probabilities: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """A bar chart of the prediction vector."""
    fig = new_figure(6.4, 3.4)
    ax = fig.subplots()
    best = int(np.argmax(probabilities))
    colours = ["#d62728" if i == best else "#1f77b4" for i in range(len(probabilities))]
    ax.bar(range(len(probabilities)), probabilities, color=colours)
    ax.set_xticks(range(len(probabilities)), class_names, fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")
    ax.set_xlabel("class")
    for i, p in enumerate(probabilities):
        if p >= 0.01:
            ax.text(i, p + 0.02, f"{p:.2f}", ha="center", fontsize=8)
    ax.set_title(title or "Prediction vector", fontsize=11)
    return save(fig, path)


def plot_step(result: StepResult, class_names: Sequence[str], path: str | Path) -> Path:
    """The prediction vector before and after the step, and the gradient norm per parameter."""
    fig = new_figure(11.5, 4.0)
    left, right = fig.subplots(1, 2)
    k = np.arange(len(result.before))
    left.bar(k - 0.2, result.before, width=0.4, label="before", color="#7f7f7f")
    left.bar(k + 0.2, result.after, width=0.4, label="after", color="#1f77b4")
    left.axvline(result.label, color="#2ca02c", linestyle=":", label=f"target ({result.label})")
    left.set_xticks(k, class_names, fontsize=9)
    left.set_ylim(0, 1.05)
    left.set_ylabel("probability")
    left.set_title(
        f"Prediction vector; loss {result.loss:.4g} → {abs(result.loss_after):.4g}", fontsize=11
    )
    left.legend(fontsize=8)
    names = [n for n, _ in result.grad_norms]
    right.barh(np.arange(len(names)), [v for _, v in result.grad_norms], color="#9467bd")
    right.set_yticks(np.arange(len(names)), names, fontsize=8)
    right.invert_yaxis()
    log_axis(right, [v for _, v in result.grad_norms])
    right.set_xlabel("‖dL/dθ‖ (log)")
    right.set_title("Gradient norm of each parameter", fontsize=11)
    title = f"One training step with η = {result.lr:g}"
    if result.probe_before is not None:
        title += (
            f"; accuracy on {result.probe_size} other test pictures "
            f"{100 * result.probe_before:.1f} % → {100 * result.probe_after:.1f} %"
        )
    if result.overshot:
        title += " (overshoot)"
    fig.suptitle(title, fontsize=12)
    return save(fig, path)


def plot_gradcheck(check: GradCheck, path: str | Path) -> Path:
    """The largest relative error of every parameter against the tolerance (log scale)."""
    fig = new_figure(8.0, 0.38 * len(check.rows) + 1.6)
    ax = fig.subplots()
    errors = [max(row.max_error, 1e-16) for row in check.rows]
    colours = ["#2ca02c" if row.passed else "#d62728" for row in check.rows]
    y = np.arange(len(check.rows))
    ax.barh(y, errors, color=colours)
    ax.set_yticks(y, [row.name for row in check.rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(check.rtol, color="black", linestyle="--", label=f"tolerance (rtol) {check.rtol:g}")
    ax.set_xlabel("largest relative error, analytic vs central difference (log)")
    ax.legend(fontsize=8, loc="lower right")
    verdict = "PASS" if check.passed else "FAIL"
    ax.set_title(f"Gradient check: {verdict}", fontsize=11)
    return save(fig, path)
