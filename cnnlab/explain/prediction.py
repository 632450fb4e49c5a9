"""Everything ``cnnlab explain`` shows about one prediction, as numbers and as files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.explain import figures
from cnnlab.explain.maps import (
    LayerMaps,
    Occlusion,
    TopPatches,
    activation_maps,
    occlusion,
    predict_one,
    saliency,
    top_patches,
)
from cnnlab.explain.report import Section, write_report
from cnnlab.figures.plots import first_layer_filters, plot_filters
from cnnlab.runs.pictures import Picture


@dataclass
class Explanation:
    """The numbers behind one explained prediction."""

    probabilities: np.ndarray  # (K,)
    target: int  # the class explained: the true label when known, else the prediction
    layers: list[LayerMaps]
    filters: np.ndarray  # (C, kH, kW)
    occlusion: Occlusion
    saliency: np.ndarray  # (H, W)
    top: TopPatches | None
    files: dict[str, Path] = field(default_factory=dict)

    def top_k(self, k: int = 3) -> list[tuple[int, float]]:
        order = np.argsort(-self.probabilities)[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]


def explain_prediction(
    model: Sequential,
    item: Picture,
    patch_images: np.ndarray | None = None,
    class_names: list[str] | None = None,
    out_dir: str | Path | None = None,
    occlusion_patch: int = 6,
) -> Explanation:
    """Explain ``model``'s prediction for ``item``.

    ``patch_images`` ``(N, 1, H, W)`` (grey models only) are searched for the patches that
    excite each filter of the second conv layer (skipped when None). ``occlusion_patch`` is the
    grey square's side. With ``out_dir``, the figures and ``report.html`` are written there.
    """
    x = item.x.astype(model.dtype)[None]  # (1, C, H, W)
    if model.input_shape and x.shape[1:] != tuple(model.input_shape):
        c, h, w = model.input_shape
        raise CnnlabError(
            f"{item.source} gives a {x.shape[2]}x{x.shape[3]} {_kind(x.shape[1])} input, but the "
            f"model takes {h}x{w} {_kind(c)} pictures; give it the kind of picture it was "
            "trained on"
        )
    probs = predict_one(model, x)
    target = item.label if item.label is not None else int(np.argmax(probs))
    names = class_names or [str(i) for i in range(len(probs))]
    result = Explanation(
        probabilities=probs,
        target=target,
        layers=activation_maps(model, x),
        filters=first_layer_filters(model, colour=True),
        occlusion=occlusion(model, x, target, patch=occlusion_patch),
        saliency=saliency(model, x, target),
        top=top_patches(model, patch_images) if patch_images is not None else None,
    )
    if out_dir is not None:
        result.files = _write(result, item, names, Path(out_dir))
    return result


def _kind(channels: int) -> str:
    return {1: "grey", 3: "colour"}.get(channels, f"{channels}-channel")


def _write(result: Explanation, item: Picture, names: list[str], out: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    target_name = names[result.target]
    files["preprocessing"] = figures.plot_preprocessing(
        {**item.steps, "network input": item.display},
        out / "preprocessing.png",
        {"raw": item.size[::-1]},  # the "raw" step is shown at most 512 px a side
    )
    top3 = ", ".join(f"{names[i]} {p:.1%}" for i, p in result.top_k(3))
    files["prediction"] = figures.plot_prediction(
        result.probabilities, names, out / "prediction.png", f"Prediction vector (top 3: {top3})"
    )
    # Conv layers are numbered from 1 among themselves, as the web lab numbers them.
    for number, layer in enumerate(result.layers, start=1):
        files[f"maps_conv{number}"] = figures.plot_maps(
            layer, out / f"activation_maps_conv{number}.png"
        )
    files["filters"] = plot_filters(result.filters, out / "filters_conv1.png")
    files["occlusion"] = figures.plot_occlusion(
        item.display, result.occlusion, target_name, out / "occlusion.png"
    )
    files["saliency"] = figures.plot_saliency(
        item.display, result.saliency, target_name, out / "saliency.png"
    )
    if result.top is not None:
        files["top_patches"] = figures.plot_top_patches(result.top, out / "top_patches.png")
    why = "the true class" if item.label is not None else "the predicted class"
    sections = [
        Section("Preprocessing", "The image as the network receives it.", [files["preprocessing"]]),
        Section(
            "Prediction",
            f"Top 3: {top3}.",
            [files["prediction"]],
            [["class", "probability"]]
            + [[names[i], f"{p:.4f}"] for i, p in result.top_k(len(names))],
        ),
        *(
            Section(
                f"Activation maps of conv layer {number} (model layer {layer.name})",
                "Each map is one filter slid over its input: where it is large, the filter "
                "found its pattern.",
                [files[f"maps_conv{number}"]],
            )
            for number, layer in enumerate(result.layers, start=1)
        ),
        Section(
            "Filters of conv layer 1",
            f"The weights of each {result.filters.shape[1]}×{result.filters.shape[2]} "
            "first-layer filter.",
            [files["filters"]],
        ),
        Section(
            "Occlusion sensitivity",
            f"A grey square covers part of the image; the map shows P({target_name}) "
            f"({why}) for each position of the square.",
            [files["occlusion"]],
        ),
        Section(
            "Saliency",
            f"The gradient of the score of {target_name} with respect to every input pixel.",
            [files["saliency"]],
        ),
    ]
    if result.top is not None:
        sections.append(
            Section(
                "What the second conv layer looks for",
                "For each filter, the MNIST patches that excite it most.",
                [files["top_patches"]],
            )
        )
    files["report"] = write_report(
        out / "report.html",
        f"Why did the network answer {names[int(np.argmax(result.probabilities))]}?",
        sections,
        intro=f"Image: {item.source}. Conv layers: "
        + ", ".join(layer.name for layer in result.layers),
    )
    return files
