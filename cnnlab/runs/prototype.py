"""A classifier made in one pass from a handful of examples: the mean of each class's features.

With 1 to 5 pictures a class, training a network has almost nothing to learn from; the
pretrained extractor's features already place pictures of one kind near each other. Each class
is then its *prototype*, the mean of its examples' length-normalised features, and a picture
belongs to the class whose prototype points most nearly its way (the largest cosine; the
nearest-class-mean classifier of Mensink et al., 2013, and the prototypes of Snell et al.'s
prototypical networks, 2017).

The head is an ordinary ``Dense`` layer: row ``k`` of its weights is prototype ``k`` times
``scale / mean feature length``, its bias 0. A picture's logits are then ``scale · |f| / m ·
cos(f, p_k)``, whose largest entry is the largest cosine, so the model saves, loads, explains
and exports like any other.

A picture of none of the classes is told by its largest cosine (``unknowns.cosine``): its
threshold comes from the examples themselves, each left out of its class's prototype in turn
(:func:`cosine_below`), and is kept in the model's ``meta`` as a calibrated model's is, so the
one reading path (``cnnlab.runs.predict.read``) answers "none of these" with it. A network
trained on a folder too small to hold pictures out gets its threshold the same way, from its
own penultimate features of its training pictures (:func:`own_threshold`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Dense
from cnnlab.engine.sequential import Sequential
from cnnlab.runs import pretrain, unknowns

SCALE = 10.0  # logits of a typical picture span ±SCALE: softmax answers with some confidence
METHOD = "prototype"  # meta["head"] of a model whose head is class means
# A picture is none of the classes when its cosine distance (1 − cos) to the nearest prototype
# is over MARGIN times the farthest any example lies from its class's prototype made without
# it. Tuned on three kinds of drawing that are none of three drawn classes of 10 examples
# (benchmarks/teach_unknowns.py, 5 seeds). On the 20-epoch extractor, at 1.0, 1.1, 1.25 and
# 1.5 it turned away 100, 100, 100 and 99.6 % of them and kept 96.9, 97.6, 98.7 and 99.6 % of
# new drawings of the classes (on the 5-epoch one, 1.0 had been the balance: 94 and 98.7 %).
MARGIN = 1.25
# A network trained on a small folder has seen its training pictures: their left-out cosines sit
# closer to their classes than a new picture's, and one odd picture among a hundred sets the
# farthest. Its threshold starts from the QUANTILE of those cosines instead of the lowest. Chosen
# on three small folders (10 digits and 40 clip-art symbols a class from the extractor, 150
# coloured shapes a class from scratch; benchmarks/README.md): at 0.02 and 1.25 every model
# kept 99.3-100 % of the test pictures it read right and turned away 97-100 %, 24-34 % and
# 0-18 % of the other folders' pictures; at 0.05 it kept 96.5 % on one; from the lowest cosine
# (0.0) the symbols' and the shapes' models turned away 0-7 % of them.
OWN_QUANTILE, OWN_MARGIN = 0.02, 1.25


def _unit(rows: np.ndarray) -> np.ndarray:
    """Each row ``(N, D)`` scaled to length 1 (a zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def prototypes(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class prototypes float32 ``(n_classes, D)``: the mean of each class's length-normalised
    features ``(N, D)``, normalised to length 1. Every class needs an example."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise CnnlabError(
            f"prototypes need features (N, D) and labels (N,), got {features.shape} and "
            f"{labels.shape}"
        )
    counts = np.bincount(labels, minlength=n_classes)
    if len(counts) > n_classes or (counts == 0).any():
        empty = np.flatnonzero(counts == 0)
        raise CnnlabError(
            f"every class needs at least one example; class {int(empty[0]) if len(empty) else '?'}"
            " has none"
        )
    sums = np.zeros((n_classes, features.shape[1]))
    np.add.at(sums, labels, _unit(features))
    return _unit(sums / counts[:, None]).astype(np.float32)


def cosine_below(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    margin: float = MARGIN,
    quantile: float = 0.0,
) -> float | None:
    """The cosine under which a picture is none of the classes, from the examples' features
    ``(N, D)`` and classes ``labels (N,)``: each example of a class with two or more is scored
    as a new picture would be, against its own class's prototype made without it (and the
    other prototypes); the threshold lies ``margin`` times the ``1 − quantile`` quantile of
    those cosine distances from 1 (at 0, the largest). None while no class has two examples
    (no example can be left out)."""
    unit = _unit(np.asarray(features, np.float64))
    labels = np.asarray(labels)
    sums = np.zeros((n_classes, unit.shape[1]))
    np.add.at(sums, labels, unit)
    cos = unit @ _unit(sums).T  # (N, K): the normalised sum points as the normalised mean
    rows = np.arange(len(unit))
    cos[rows, labels] = (unit * _unit(sums[labels] - unit)).sum(axis=1)  # without itself
    usable = np.bincount(labels, minlength=n_classes)[labels] >= 2
    if not usable.any():
        return None
    farthest = 1 - float(np.quantile(cos[usable].max(axis=1), quantile))
    return 1 - margin * farthest


def own_threshold(model: Sequential, x: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The ``meta`` entries that let a network trained without held-out pictures say "none of
    these": class prototypes of its penultimate features of its training inputs
    ``x (N, *input_shape)`` of classes ``labels (N,)``, and the cosine under which a picture is
    none of them (:func:`cosine_below` at ``OWN_QUANTILE`` and ``OWN_MARGIN``); its softmax is
    left as it is (``temperature`` 1: nothing held out to fit one). Empty while no class has two
    pictures."""
    logits, features = unknowns.logits_and_features(model, x)
    labels = np.asarray(labels, np.int64)
    k = logits.shape[1]
    below = cosine_below(features, labels, k, OWN_MARGIN, OWN_QUANTILE)
    if below is None or np.bincount(labels, minlength=k).min() == 0:
        return {}
    return {
        "temperature": 1.0,
        "unknown_score": "cosine",
        "unknown_below": below,
        "class_means": prototypes(features, labels, k).tolist(),
    }


def prototype_head(features: np.ndarray, labels: np.ndarray, n_classes: int) -> Dense:
    """A ``Dense`` layer ``D → n_classes`` whose largest output is the nearest prototype."""
    protos = prototypes(features, labels, n_classes)
    length = float(np.linalg.norm(np.asarray(features, np.float64), axis=1).mean())
    head = Dense(protos.shape[1], n_classes)
    head.params["W"][...] = protos * (SCALE / max(length, 1e-12))
    head.params["b"][...] = 0
    return head


def prototype_model(
    extractor: Sequential, images: np.ndarray, labels: np.ndarray, names: list[str]
) -> Sequential:
    """The extractor's features and a prototype head for the pictures uint8 ``(N, C, 32, 32)``
    (grey or colour) of classes ``labels`` ``(N,)`` named ``names``; ready to predict."""
    return model_of_features(extractor, pretrain.features(extractor, images), labels, names)


def model_of_features(
    extractor: Sequential, features: np.ndarray, labels: np.ndarray, names: list[str]
) -> Sequential:
    """:func:`prototype_model` from the examples' features ``(N, D)`` already computed (by
    :func:`cnnlab.runs.pretrain.features`): one who keeps them adds an example in one pass of
    one picture. The model shares the extractor's layers (it only predicts)."""
    layers = extractor.layers[: pretrain.feature_layers(extractor)]
    head = prototype_head(features, labels, len(names))
    below = cosine_below(features, labels, len(names))
    meta: dict[str, Any] = {
        key: extractor.meta[key] for key in ("mean", "std", "input") if key in extractor.meta
    }
    meta.update({
        "kind": "images",
        "class_names": list(names),
        "head": METHOD,
        "n_examples": len(features),
        "from": "extractor",
        "temperature": 1.0,  # its softmax as it is: too few examples to fit one
    })  # fmt: skip
    if below is not None:  # "none of these" under the examples' own threshold (unknowns.assess)
        meta.update({
            "unknown_score": "cosine",
            "unknown_below": below,
            "class_means": prototypes(features, labels, len(names)).tolist(),
        })  # fmt: skip
    model = Sequential([*layers, head], input_shape=pretrain.SHAPE, meta=meta)
    model.eval()
    return model
