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
    saliency,
    top_patches,
)
from cnnlab.explain.report import Section, write_report
from cnnlab.figures.plots import plot_filters
from cnnlab.runs.pictures import Picture
from cnnlab.runs.predict import assess, none_of_these
from cnnlab.runs.run_figures import first_layer_filters


@dataclass
class Explanation:
    """The numbers behind one explained prediction."""

    probabilities: np.ndarray  # (K,), as ``cnnlab predict`` gives them (calibrated)
    target: int  # the class explained: the true label when known, else the prediction
    layers: list[LayerMaps]
    filters: np.ndarray  # (C, kH, kW)
    occlusion: Occlusion
    saliency: np.ndarray  # (H, W)
    top: TopPatches | None
    known: bool = True  # False: the model says the picture is none of its classes
    none_of_these: str = "none of these"  # how such an answer is said ("not a digit")
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
    patch_source: str = "mnist-sample",
) -> Explanation:
    """Explain ``model``'s prediction for ``item``.

    ``patch_images`` ``(N, 1, H, W)`` (grey models only) are searched for the patches that
    excite each filter of the second conv layer (skipped when None); ``patch_source`` names
    the data set they come from. ``occlusion_patch`` is the
    grey square's side. With ``out_dir``, the figures and ``report.html`` are written there.
    """
    x = item.x.astype(model.dtype)[None]  # (1, C, H, W)
    if model.input_shape and x.shape[1:] != tuple(model.input_shape):
        c, h, w = model.input_shape
        raise CnnlabError(
            f"{item.source} gives a {x.shape[3]}×{x.shape[2]} {_kind(x.shape[1])} input, but the "
            f"model takes {w}×{h} {_kind(c)} pictures; give it the kind of picture it was "
            "trained on"
        )
    probabilities, known = assess(model, x)
    probs = probabilities[0]
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
        known=bool(known[0]),
        none_of_these=none_of_these(model),
    )
    if out_dir is not None:
        result.files = _write(result, item, names, Path(out_dir), patch_source)
    return result


def _kind(channels: int) -> str:
    return {1: "grey", 3: "colour"}.get(channels, f"{channels}-channel")


def conv_label(number: int, layer: LayerMaps) -> str:
    """How text and figures name a conv layer: its number among the conv layers, counted from 1
    as the web lab counts them, and its place in the model."""
    return f"conv layer {number} (model layer {layer.name})"


def preprocessing_steps(item: Picture) -> tuple[dict[str, np.ndarray], dict[str, tuple]]:
    """``item``'s stages, the original first, ending in the network input (named so, once),
    and the true (height, width) of the first stage when it is shown smaller."""
    steps = dict(item.steps)
    sizes = {name: item.size[::-1] for name in list(steps)[:1] if name in ("raw", "original")}
    if steps:
        last, image = list(steps.items())[-1]
        if np.shape(image) == item.display.shape and np.array_equal(image, item.display):
            del steps[last]  # the last stage is what the network sees: one panel, not two
            return {**steps, f"network input\n{last}": item.display}, sizes
    return {**steps, "network input": item.display}, sizes


def _write(
    result: Explanation, item: Picture, names: list[str], out: Path, patch_source: str
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    target_name = names[result.target]
    steps, sizes = preprocessing_steps(item)
    files["preprocessing"] = figures.plot_preprocessing(steps, out / "preprocessing.png", sizes)
    top3 = ", ".join(f"{names[i]} {p:.1%}" for i, p in result.top_k(3))
    files["prediction"] = figures.plot_prediction(
        result.probabilities, names, out / "prediction.png", f"Prediction vector (top 3: {top3})"
    )
    # Conv layers are numbered from 1 among themselves, as the web lab numbers them.
    for number, layer in enumerate(result.layers, start=1):
        files[f"maps_conv{number}"] = figures.plot_maps(
            layer, out / f"activation_maps_conv{number}.png", label=conv_label(number, layer)
        )
    files["filters"] = plot_filters(result.filters, out / "filters_conv1.png")
    files["occlusion"] = figures.plot_occlusion(
        item.display, result.occlusion, target_name, out / "occlusion.png"
    )
    files["saliency"] = figures.plot_saliency(
        item.display, result.saliency, target_name, out / "saliency.png"
    )
    top_label = ""
    if result.top is not None:
        number, layer = next(
            (n, layer)
            for n, layer in enumerate(result.layers, start=1)
            if layer.index == result.top.layer_index
        )
        top_label = conv_label(number, layer)
        files["top_patches"] = figures.plot_top_patches(
            result.top, out / "top_patches.png", label=top_label[0].upper() + top_label[1:],
            source=patch_source,
        )  # fmt: skip
    why = "the true class" if item.label is not None else "the predicted class"
    sections = [
        Section(
            "Preprocessing",
            "The picture as given, then each stage on the way to the network's input "
            "(sizes are width × height).",
            [files["preprocessing"]],
        ),
        Section(
            "Prediction",
            f"Top 3: {top3}.",
            [files["prediction"]],
            [["class", "probability"]]
            + [[names[i], f"{p:.4f}"] for i, p in result.top_k(len(names))],
        ),
        *(
            Section(
                f"Activation maps of {conv_label(number, layer)}",
                "Each map is one filter slid over its input: where it is large, the filter "
                "found its pattern.",
                [files[f"maps_conv{number}"]],
            )
            for number, layer in enumerate(result.layers, start=1)
        ),
        Section(
            "Filters of conv layer 1",
            f"The weights of each {result.filters.shape[2]}×{result.filters.shape[1]} "
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
                f"What {top_label} looks for",
                f"For each filter, the {patch_source} patches that excite it most.",
                [files["top_patches"]],
            )
        )
    files["report"] = write_report(
        out / "report.html",
        _title(result, names[int(np.argmax(result.probabilities))]),
        sections,
        intro=f"Image: {item.source}. Conv layers: "
        + ", ".join(conv_label(n, layer) for n, layer in enumerate(result.layers, start=1)),
    )
    return files


def _title(result: Explanation, best: str) -> str:
    if result.known:
        return f"Why did the network answer {best}?"
    return f"Why is this {result.none_of_these}? (closest: {best})"
