"""The feature extractor that ships with cnnlab, and how ``cnnlab pretrain`` makes it again.

A small network learns to tell apart a few hundred classes of pictures cnnlab draws itself
(:mod:`cnnlab.data.synthetic`: formula-driven fractals as in FractalDB, glyphs of Bézier
strokes, on spectral-noise, flat or paper backgrounds, in colour and grey; and the generated
``shapes`` set, :mod:`cnnlab.data.shapes`). No photo, no downloaded data set and none of the
bundled MNIST digits: every picture it saw comes from a formula and a seed, so the same
command makes the same file. What it learned to see — edges, strokes, corners, blobs,
textures — carries over to a person's own pictures, which is what a handful of them cannot
teach a network from scratch.

The extractor reads one input for colour and grey alike: 3×32×32, ``(pixel/255 − mean) / std``
per channel with the ``mean`` and ``std`` of its pretraining pictures (in its ``meta``); a
grey picture is repeated over the three channels. Its layers: three blocks of conv 3×3
(padding 1) → max-pool 2×2 → batchnorm → ReLU, widths 32, 64, 128 (32 → 16 → 8 → 4), a 4×4
average pool to 128 features, and the pretraining head. ``meta["extractor"]`` records the
recipe, the data sources, the seed, the threads and the training time.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data import shapes, synthetic
from cnnlab.data.augment import random_crop_flip
from cnnlab.data.imageset import channel_stats, normalise
from cnnlab.engine import validate
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import (
    AvgPool2D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
)
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS, OneCycleLR
from cnnlab.engine.parallel import get_threads
from cnnlab.engine.rng import manual_seed
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback, fit

SHAPE = (3, 32, 32)
WIDTHS = (32, 64, 128)
BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled" / "extractor.npz"
FORMAT = "cnnlab-extractor-1"  # meta["extractor"]["format"] of a file this module wrote
_GENERATE_AT_ONCE = 2000  # pictures drawn per call of a generator: bounds its scratch arrays


class ExtractorError(CnnlabError):
    """The extractor file is missing, damaged or not one ``cnnlab pretrain`` wrote."""


@dataclass(frozen=True)
class PretrainRecipe:
    """How the extractor is pretrained: its data and its training."""

    fractal_classes: int = 50
    stroke_classes: int = 100
    per_class: int = 160  # pictures per fractal or stroke class
    outline_pictures: int = 12000  # of the geometric shapes (synthetic.OUTLINES)
    shapes_pictures: int = 6000  # of the generated ``shapes`` set (6 classes)
    grey: float = 0.3  # share of the drawn pictures made grey
    # 20 epochs: 5 reached 40 % on the pretraining classes and 61.8 / 47.8 % on the tune digits
    # and drawn symbols of benchmarks/few_examples.py as prototypes; 20 reach 80 % and 66.0 /
    # 62.2 % (benchmarks/README.md).
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    label_smoothing: float = 0.1
    seed: int = 0

    def check(self) -> None:
        for name in ("fractal_classes", "stroke_classes", "per_class", "epochs", "batch_size"):
            validate.integer("pretrain", name, getattr(self, name), 1)
        validate.integer("pretrain", "shapes_pictures", self.shapes_pictures, 0)
        validate.integer("pretrain", "outline_pictures", self.outline_pictures, 0)
        validate.integer("pretrain", "seed", self.seed, 0)
        validate.number("pretrain", "lr", self.lr, 0, low_open=True)
        validate.number("pretrain", "grey", self.grey, 0, 1)


def sources(recipe: PretrainRecipe) -> list[str]:
    """Every data source the extractor sees, in words (for its meta and the docs)."""
    return [
        f"fractals: {recipe.fractal_classes} iterated function systems (FractalDB-style, "
        f"cnnlab.data.synthetic.fractals), {recipe.per_class} pictures each",
        f"strokes: {recipe.stroke_classes} glyphs of 2-4 Bezier strokes "
        f"(cnnlab.data.synthetic.strokes), {recipe.per_class} pictures each",
        f"outlines: {recipe.outline_pictures} pictures of {len(synthetic.OUTLINES)} geometric "
        "shapes, filled or outlined (cnnlab.data.synthetic.outlines)",
        "backgrounds: 1/f^alpha spectral noise (cnnlab.data.synthetic.noise), flat colours, "
        f"light paper; {recipe.grey:.0%} of these pictures grey",
        f"shapes: {recipe.shapes_pictures} pictures of cnnlab's generated shapes set "
        "(cnnlab.data.shapes, 6 classes)",
    ]


def class_names(recipe: PretrainRecipe) -> list[str]:
    return (
        [f"fractal-{k}" for k in range(recipe.fractal_classes)]
        + [f"glyph-{k}" for k in range(recipe.stroke_classes)]
        + ([f"outline-{k}-{c}" for k, c in synthetic.OUTLINES] if recipe.outline_pictures else [])
        + (list(shapes.CLASSES) if recipe.shapes_pictures else [])
    )


def pretraining_set(recipe: PretrainRecipe, size: int = SHAPE[1]) -> tuple[np.ndarray, np.ndarray]:
    """The pretraining pictures uint8 ``(N, 3, size, size)`` and labels int64 ``(N,)``: the
    fractal classes first, then the glyphs, the geometric outlines and the six shapes."""
    recipe.check()
    images, labels = [], []
    offset = 0
    for kind, n_classes in (
        (synthetic.fractals, recipe.fractal_classes),
        (synthetic.strokes, recipe.stroke_classes),
    ):
        total = n_classes * recipe.per_class
        for start in range(0, total, _GENERATE_AT_ONCE):
            n, part = min(_GENERATE_AT_ONCE, total - start), start + offset * recipe.per_class
            cover, y = kind(n, n_classes, size, seed=recipe.seed, part=part)
            images.append(synthetic.compose(cover, recipe.seed, recipe.grey, part))
            labels.append(y + offset)
        offset += n_classes
    for start in range(0, recipe.outline_pictures, _GENERATE_AT_ONCE):
        n, part = min(_GENERATE_AT_ONCE, recipe.outline_pictures - start), start + offset
        cover, y = synthetic.outlines(n, size, seed=recipe.seed, part=part)
        images.append(synthetic.compose(cover, recipe.seed, recipe.grey, part))
        labels.append(y + offset)
    if recipe.outline_pictures:
        offset += len(synthetic.OUTLINES)
    if recipe.shapes_pictures:
        x, y = shapes.generate(recipe.shapes_pictures, size, seed=recipe.seed)
        images.append(x)
        labels.append(y + offset)
    return np.concatenate(images), np.concatenate(labels)


def build_extractor(n_classes: int, seed: int = 0) -> Sequential:
    """The extractor's network (its layers: this module's docstring) with a head of
    ``n_classes``, seeded."""
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    channels = SHAPE[0]
    for width in WIDTHS:
        layers += [
            Conv2D(channels, width, 3, padding=1, rng=rng), MaxPool2D(2),
            BatchNorm2D(width), ReLU(),
        ]  # fmt: skip
        channels = width
    layers += [AvgPool2D(4), Flatten(), Dense(channels, n_classes, init="glorot", rng=rng)]
    return Sequential(layers, input_shape=SHAPE, meta={"preset": "extractor"})


def pretrain(
    recipe: PretrainRecipe = PretrainRecipe(),
    callbacks: Sequence[Callback] = (),
    log: Callable[[str], None] = lambda line: None,
) -> Sequential:
    """Draw the pretraining set and train the extractor on it; returns the model, its
    ``meta`` filled in (normalisation, classes, recipe, sources, time)."""
    recipe.check()
    started = time.perf_counter()
    images, labels = pretraining_set(recipe)
    log(f"drew {len(images):,} pictures of {labels.max() + 1} classes "
        f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    mean, std = channel_stats(images)
    x = normalise(images, mean, std)
    del images
    names = class_names(recipe)
    manual_seed(recipe.seed)
    model = build_extractor(len(names), recipe.seed)
    optimizer = OPTIMIZERS["adam"](model.parameters(), lr=recipe.lr)
    steps = recipe.epochs * -(-len(x) // recipe.batch_size)
    fit(
        model, LOSSES["cross-entropy"](label_smoothing=recipe.label_smoothing), optimizer,
        x, labels, epochs=recipe.epochs, batch_size=recipe.batch_size, seed=recipe.seed,
        schedule=OneCycleLR(recipe.lr, steps), augment=random_crop_flip, callbacks=callbacks,
    )  # fmt: skip
    model.eval()
    seconds = time.perf_counter() - started
    model.meta.update({
        "kind": "images",
        "dataset": "cnnlab pretraining (formula-drawn pictures)",
        "class_names": names,
        "mean": mean,
        "std": std,
        "input": "32x32 colour (RGB; grey repeated over the channels), centre-cropped, "
                 "(pixel/255 - mean) / std per channel",
        "extractor": {
            "format": FORMAT,
            "recipe": dataclasses.asdict(recipe),
            "sources": sources(recipe),
            "features": feature_layers(model),
            "threads": get_threads(),
            "seconds": round(seconds, 1),
            "made": time.strftime("%Y-%m-%d", time.gmtime()),
            "command": "cnnlab pretrain",
        },
    })  # fmt: skip
    return model


def feature_layers(model: Sequential) -> int:
    """How many of ``model``'s first layers compute its features: all but the final Dense."""
    return len(model.layers) - 1


@functools.cache
def shipped_extractor() -> Sequential:
    """The extractor shipped in the package, loaded once per process (read-only: a run that
    starts from it trains copies of its layers)."""
    return load_extractor()


def load_extractor(path: str | os.PathLike | None = None) -> Sequential:
    """The extractor in ``path`` (default: the one shipped in the package), checked: a model
    file of the extractor's input with the meta ``cnnlab pretrain`` writes."""
    path = Path(path) if path is not None else BUNDLED
    try:
        model = Sequential.load(path)
    except CnnlabError as err:
        raise ExtractorError(
            f"the feature extractor {path} cannot be read ({err}); make it again with "
            "`cnnlab pretrain`, or train with --from scratch"
        ) from None
    info = model.meta.get("extractor")
    ok = (
        isinstance(info, dict)
        and info.get("format") == FORMAT
        and tuple(model.input_shape or ()) == SHAPE
        and isinstance(model.layers[-1], Dense)
        and info.get("features") == feature_layers(model)
    )
    if not ok:
        raise ExtractorError(
            f"{path} is not a cnnlab feature extractor (a 3x32x32 model written by "
            "`cnnlab pretrain`); make it again with `cnnlab pretrain`, or train with --from scratch"
        )
    return model


def extractor_input(extractor: Sequential, images: np.ndarray) -> np.ndarray:
    """Pictures uint8 ``(N, 1 or 3, 32, 32)`` → the extractor's input float32
    ``(N, 3, 32, 32)``: a grey picture repeated over the channels, normalised as its meta
    says."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2:] != SHAPE[1:]:
        raise CnnlabError(
            f"the feature extractor reads grey or colour pictures of 32x32, got {images.shape}"
        )
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    return normalise(images, extractor.meta["mean"], extractor.meta["std"])


def features(extractor: Sequential, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The extractor's features float32 ``(N, 128)`` of pictures uint8 ``(N, 1 or 3, 32, 32)``."""
    body = Sequential(extractor.layers[: feature_layers(extractor)], input_shape=SHAPE)
    return np.asarray(body.outputs(extractor_input(extractor, images), batch_size))


def save_extractor(model: Sequential, path: str | os.PathLike) -> None:
    """Write the extractor (atomically, as every model file)."""
    model.save(path)


def describe(recipe: PretrainRecipe) -> dict[str, Any]:
    """The recipe as the docs and the command's summary show it."""
    return {**dataclasses.asdict(recipe), "sources": sources(recipe)}
