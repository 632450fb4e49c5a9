"""Figures of the article's ideas as experiments: the convolution step by step (a strip and a
GIF), the curve detector, learning rates, activations and vanishing gradients, the two losses,
learned features, the perceptron on sonar, and the error surface of a linear neuron.

Every function takes the numbers ``cnnlab.explain.article``, ``experiments`` or ``perceptron``
return and a ``path``, draws on ``cnnlab.figures.base``, writes the file atomically and returns
the path.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.engine.fileio import atomic_write_bytes
from cnnlab.figures.base import new_figure, png_bytes, save, show_digit

if TYPE_CHECKING:
    from cnnlab.explain.article import ConvStep
    from cnnlab.explain.experiments import (
        ActivationRun,
        Features,
        LearningRateRun,
        LossRun,
    )
    from cnnlab.explain.perceptron import SonarComparison
    from cnnlab.explain.surface import ErrorSurface


def _draw_convolution(
    ax: Any, image: np.ndarray, kernel: np.ndarray, s: ConvStep, amap: np.ndarray
) -> None:
    """The image with the filter's window at one position, every pixel's value written in."""
    from matplotlib.patches import Rectangle

    ax.imshow(image, cmap="Greys", vmin=0, vmax=max(2.0, float(image.max()) * 2))
    kh, kw = kernel.shape
    for (r, c), value in np.ndenumerate(image):
        inside = s.row <= r < s.row + kh and s.col <= c < s.col + kw
        text = f"{value:g}"
        if inside:
            weight = kernel[r - s.row, c - s.col]
            text = f"{value:g}×{weight:g}"
        ax.text(
            c,
            r,
            text,
            ha="center",
            va="center",
            fontsize=7 if inside else 9,
            color="#b30000" if inside else "black",
        )
    ax.add_patch(
        Rectangle(
            (s.col - 0.5, s.row - 0.5), kw, kh, fill=False, edgecolor="#d62728", linewidth=2.5
        )
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"position ({s.row}, {s.col}): sum = {s.total:g}", fontsize=10)


def plot_convolution_strip(
    image: np.ndarray, kernel: np.ndarray, steps: list[ConvStep], path: str | Path
) -> Path:
    """Every filter position as one frame, then the image, the filter and the finished map."""
    amap = np.array([s.total for s in steps]).reshape(
        image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1
    )  # (H', W')
    cols = amap.shape[1]
    rows = amap.shape[0] + 1
    fig = new_figure(3.0 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, s in zip(axes[:-1].flat, steps, strict=True):
        _draw_convolution(ax, image, kernel, s, amap)
    bottom = axes[-1]
    for ax, (title, values, cmap) in zip(
        bottom,
        (
            ("image", image, "Greys"),
            ("filter (weights)", kernel, "Greys"),
            ("activation map", amap, "viridis"),
        ),
        strict=False,
    ):
        ax.imshow(values, cmap=cmap)
        for (r, c), value in np.ndenumerate(values):
            ax.text(
                c,
                r,
                f"{value:g}",
                ha="center",
                va="center",
                fontsize=10,
                color="#b30000",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
            )
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in bottom[3:]:
        ax.set_axis_off()
    fig.suptitle(
        "Convolution: the filter slides over the image; pixel × weight, summed, "
        "gives one entry of the activation map",
        fontsize=12,
    )
    return save(fig, path)


def save_convolution_gif(
    image: np.ndarray,
    kernel: np.ndarray,
    steps: list[ConvStep],
    path: str | Path,
    frame_ms: int = 900,
) -> Path:
    """An animated GIF: the filter moves position by position and the map fills in."""
    from PIL import Image

    rows = image.shape[0] - kernel.shape[0] + 1
    cols = image.shape[1] - kernel.shape[1] + 1
    frames = []
    for n, s in enumerate(steps):
        fig = new_figure(7.6, 3.8)
        left, right = fig.subplots(1, 2, width_ratios=[image.shape[1], cols + 1])
        _draw_convolution(left, image, kernel, s, np.zeros((rows, cols)))
        filled = np.full((rows, cols), np.nan)
        filled.reshape(-1)[: n + 1] = [t.total for t in steps[: n + 1]]
        right.imshow(
            np.nan_to_num(filled), cmap="viridis", vmin=0, vmax=max(t.total for t in steps) or 1
        )
        for (r, c), value in np.ndenumerate(filled):
            if not np.isnan(value):
                right.text(c, r, f"{value:g}", ha="center", va="center", fontsize=12, color="w")
        right.set_xticks([])
        right.set_yticks([])
        right.set_title("activation map", fontsize=10)
        frames.append(Image.open(io.BytesIO(png_bytes(fig))).convert("RGB"))
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0
    )
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curve_detector(
    kernel: np.ndarray, results: dict[str, dict[str, Any]], path: str | Path
) -> Path:
    """The curve filter; each image and its activation map, with the peak marked."""
    names = list(results)
    fig = new_figure(3.2 * (1 + len(names)), 6.4)
    axes = fig.subplots(2, 1 + len(names), squeeze=False)
    axes[0, 0].imshow(kernel, cmap="Greys")
    axes[0, 0].set_title(f"curve filter {kernel.shape[0]}×{kernel.shape[1]}", fontsize=10)
    axes[1, 0].set_axis_off()
    vmax = max(float(r["map"].max()) for r in results.values())
    for j, name in enumerate(names, start=1):
        r = results[name]
        show_digit(axes[0, j], r["image"], f"image: {name}")
        shown = axes[1, j].imshow(r["map"], cmap="viridis", vmin=0, vmax=vmax)
        py, px = r["peak_at"]
        axes[1, j].plot(
            px,
            py,
            marker="o",
            markersize=12,
            markerfacecolor="none",
            markeredgecolor="red",
            markeredgewidth=2,
        )
        axes[1, j].set_title(f"activation map: peak {r['peak']:g}", fontsize=10)
        axes[1, j].set_xticks([])
        axes[1, j].set_yticks([])
    for ax in axes[0, 0:1]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[1, 1:], shrink=0.85, label="activation")
    fig.suptitle("A curve detector fires strongly on a curve and weakly elsewhere", fontsize=12)
    return save(fig, path)


def plot_learning_rates(runs: list[LearningRateRun], path: str | Path) -> Path:
    """Batch and held-out loss against step for every η; a diverged run ends in a labelled ×."""
    from matplotlib import colormaps

    fig = new_figure(12.0, 4.8)
    left, right = fig.subplots(1, 2)
    colours = colormaps["tab10"](np.arange(len(runs)) % 10)
    tallest = max(max(run.losses, default=1.0) for run in runs)
    for run, colour in zip(runs, colours, strict=True):
        label = f"η = {run.lr:g}: {run.verdict}" + (" (best)" if run.best else "")
        steps = np.arange(1, len(run.losses) + 1)
        left.plot(steps, run.losses, color=colour, linewidth=1.2, marker=".", label=label)
        if run.verdict == "diverged":
            finite = math.isfinite(run.diverged_loss)
            height = run.diverged_loss if finite else max(run.losses) * 10
            left.plot(
                run.diverged_at,
                height,
                marker="X",
                markersize=14,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
            )
            text = f"loss {run.diverged_loss:.3g}" if finite else "loss overflowed"
            left.annotate(
                f"η = {run.lr:g} diverged at step {run.diverged_at}\n({text})",
                (run.diverged_at, height),
                xytext=(10, -6),
                textcoords="offset points",
                va="top",  # below its ×, so it never reaches the title
                color="#b30000",
                fontsize=9,
            )
            tallest = max(tallest, height)
            continue
        right.plot(run.probe_steps, run.probe_losses, color=colour, marker=".", label=label)
    left.set_yscale("log")
    left.set_ylim(top=tallest * 10)  # a decade of room above the highest × for the legend
    left.set_xlabel("training step (one batch each)")
    left.set_ylabel("training batch loss (log scale)")
    left.set_title("Batch loss while training (× marks where a run diverged)", fontsize=11)
    left.legend(fontsize=8, loc="upper right")
    right.set_ylim(0, None)
    right.set_xlabel("training step")
    right.set_ylabel("cross-entropy loss on held-out digits")
    right.set_title("Held-out loss of the runs that did not diverge", fontsize=11)
    right.legend(fontsize=8, loc="lower left")
    fig.suptitle(
        "Plain SGD at different learning rates η: too small is slow, too large "
        "overshoots or diverges",
        fontsize=12,
    )
    return save(fig, path)


def plot_activation_gradients(runs: list[ActivationRun], path: str | Path) -> Path:
    """Gradient norm per layer depth (log scale) and the first layer's norm batch by batch."""
    fig = new_figure(11.5, 4.4)
    left, right = fig.subplots(1, 2)
    colours = {"sigmoid": "#d62728", "tanh": "#ff7f0e", "relu": "#2ca02c"}
    for run in runs:
        colour = colours.get(run.activation)
        depth = np.arange(1, len(run.grad_norms) + 1)
        left.plot(depth, run.grad_norms, marker="o", color=colour, label=run.activation)
        right.plot(run.first_layer_per_batch, color=colour, label=f"{run.activation}: layer 1")
    left.set_yscale("log")
    left.set_xlabel("dense layer (1 = next to the input)")
    left.set_ylabel("mean ‖dL/dW‖ over the first epoch (log)")
    left.set_xticks(np.arange(1, len(runs[0].grad_norms) + 1))
    left.set_title("Gradient reaching each layer", fontsize=11)
    left.legend()
    right.set_yscale("log")
    right.set_xlabel("batch")
    right.set_ylabel("‖dL/dW‖ of the first layer (log)")
    right.set_title("First layer's gradient, batch by batch", fontsize=11)
    right.legend()
    fig.suptitle(
        f"Gradient reaching each layer of a plain network with {len(runs[0].grad_norms) - 1} "
        "hidden layers\nthe first layer gets "
        + ", ".join(f"{r.activation} {r.reach:.2g}×" for r in runs)
        + " the output layer's",
        fontsize=12,
    )
    return save(fig, path)


def plot_losses(runs: list[LossRun], path: str | Path) -> Path:
    """Test accuracy per epoch for each loss."""
    fig = new_figure(6.6, 4.2)
    ax = fig.subplots()
    for run in runs:
        epochs = np.arange(1, len(run.test_accuracy) + 1)
        ax.plot(epochs, np.array(run.test_accuracy) * 100, marker="o", label=run.loss)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(np.arange(1, len(runs[0].test_accuracy) + 1))
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("The article's MSE against cross-entropy, same CNN and SGD", fontsize=11)
    return save(fig, path)


def plot_features(feat: Features, path: str | Path, max_maps: int = 12) -> Path:
    """Row 1: first-layer filters. Row 2: their maps on the digit. Row 3: the next layer's."""
    filters = feat.filters[:max_maps]
    layers = feat.layers
    cols = max(len(filters), *(min(len(lm.maps), max_maps) for lm in layers)) + 1
    rows = 1 + len(layers)
    fig = new_figure(1.5 * cols, 1.75 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_axis_off()
    axes[0, 0].set_axis_on()
    show_digit(axes[0, 0], feat.image, f"digit ({feat.label})")
    for k, f in enumerate(filters):
        ax = axes[0, k + 1]
        ax.set_axis_on()
        limit = float(np.abs(f).max()) or 1.0
        ax.imshow(f, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {k}", fontsize=8)
    for r, lm in enumerate(layers, start=1):
        axes[r, 0].set_axis_on()
        axes[r, 0].text(
            0.5,
            0.5,
            f"layer {lm.index}\n{lm.maps.shape[0]} maps\n{lm.maps.shape[1]}×{lm.maps.shape[2]}\n"
            "(positive part)",
            ha="center",
            va="center",
            fontsize=9,
        )
        axes[r, 0].set_frame_on(False)
        for k, amap in enumerate(lm.maps[:max_maps]):
            ax = axes[r, k + 1]
            ax.set_axis_on()
            ax.imshow(np.maximum(amap, 0), cmap="magma", vmin=0)
            ax.set_title(f"map {k}", fontsize=8)
    fig.suptitle(
        "What the layers learned: first-layer filters are small edge and stroke detectors;\n"
        "deeper maps are coarser and respond to larger parts of the digit",
        fontsize=11,
    )
    return save(fig, path)


def plot_perceptron(result: SonarComparison, path: str | Path) -> Path:
    """The perceptron's weight per sonar feature (the echo's energy in one frequency band), and
    the cross-validated accuracies."""
    fig = new_figure(11.5, 4.0)
    left, right = fig.subplots(1, 2, width_ratios=[2.2, 1])
    w = result.weights
    band = np.arange(1, len(w) + 1)
    left.bar(band, w, color=np.where(w >= 0, "#d62728", "#1f77b4"))
    left.axhline(0, color="black", linewidth=0.8)
    left.set_xlabel("frequency band of the echo's energy (feature 1–60, low to high)")
    left.set_ylabel("weight")
    left.set_title(
        f"Perceptron weights (red pushes towards mine, blue towards rock); bias {result.bias:.3f}",
        fontsize=10,
    )
    names = list(result.scores)
    means = [np.mean(result.scores[n]) * 100 for n in names]
    spreads = [np.std(result.scores[n]) * 100 for n in names]
    right.bar(np.arange(len(names)), means, yerr=spreads, capsize=6, color="#8c564b")
    right.axhline(
        result.baseline * 100,
        color="gray",
        linestyle="--",
        label=f"majority class {result.baseline:.0%}",
    )
    for i, m in enumerate(means):
        right.text(i, m + spreads[i] + 1.5, f"{m:.1f}%", ha="center", fontsize=9)
    right.set_xticks(np.arange(len(names)), [n.replace(" ", "\n", 1) for n in names], fontsize=8)
    right.set_ylim(0, 105)
    right.set_ylabel(f"accuracy, {result.folds}-fold CV (%)")
    right.set_title("Mean ± spread over folds", fontsize=10)
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle("The perceptron on sonar returns: rock or mine?", fontsize=12)
    return save(fig, path)


def plot_error_surface(surface: ErrorSurface, path: str | Path) -> Path:
    """The linear neuron's loss as a 3-D bowl and as contours, with gradient descent's path.

    Points of a diverging path that leave the plotted square are left out of the bowl.
    """
    fig = new_figure(12.0, 5.2)
    bowl = fig.add_subplot(1, 2, 1, projection="3d")
    flat = fig.add_subplot(1, 2, 2)
    grid_w1, grid_w2 = np.meshgrid(surface.w1, surface.w2)
    bowl.plot_surface(grid_w1, grid_w2, surface.loss, cmap="viridis", alpha=0.75, linewidth=0)
    lo, hi = (surface.w1[0], surface.w2[0]), (surface.w1[-1], surface.w2[-1])
    inside = np.all((surface.path >= lo) & (surface.path <= hi), axis=1)
    bowl.plot(
        surface.path[inside, 0],
        surface.path[inside, 1],
        surface.path_loss[inside],
        color="red",
        marker="o",
        markersize=3,
        zorder=10,
    )
    bowl.set_xlabel("w₁")
    bowl.set_ylabel("w₂")
    bowl.set_zlabel("loss L")
    bowl.view_init(elev=35, azim=-60)
    bowl.set_title("Error surface L(w₁, w₂)", fontsize=11)
    levels = surface.min_loss + (surface.loss.max() - surface.min_loss) * np.linspace(0, 1, 16) ** 2
    flat.contour(grid_w1, grid_w2, surface.loss, levels=levels[1:], cmap="viridis")
    flat.plot(
        surface.path[:, 0],
        surface.path[:, 1],
        color="red",
        marker="o",
        markersize=3,
        linewidth=1.2,
        label=f"gradient descent, η = {surface.lr:g}",
    )
    flat.plot(*surface.path[0], marker="s", color="black", linestyle="none", label="start")
    flat.plot(
        *surface.optimum,
        marker="*",
        markersize=14,
        color="gold",
        markeredgecolor="black",
        linestyle="none",
        label="lowest loss",
    )
    flat.set_xlim(lo[0], hi[0])
    flat.set_ylim(lo[1], hi[1])
    flat.set_aspect("equal")
    flat.set_xlabel("w₁")
    flat.set_ylabel("w₂")
    steps = len(surface.path) - 1
    flat.set_title(
        f"Seen from above: {steps} steps, loss {surface.path_loss[0]:.3g} → "
        f"{surface.path_loss[-1]:.3g} (lowest {surface.min_loss:.3g})",
        fontsize=10,
    )
    flat.legend(fontsize=8, loc="upper right")
    fig.suptitle(
        "A linear neuron with two weights: gradient descent walks down the bowl, "
        f"w ← w − η·dL/dw (it diverges for η > {surface.critical_lr:.3g})",
        fontsize=12,
    )
    return save(fig, path)
