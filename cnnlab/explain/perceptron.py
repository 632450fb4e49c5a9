"""The perceptron of the previous lesson, on the UCI sonar returns (rock or mine).

A perceptron weighs the 60 sonar energies, adds a bias and fires (predicts "mine") when the
sum is at least 0: a step activation. It learns by the perceptron rule, one example at a time:
``w ← w + η·(y − ŷ)·x`` and ``b ← b + η·(y − ŷ)``. It is compared, on the same k folds, with
logistic regression and a small multi-layer perceptron, both trained by cnnlab.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cnnlab.engine import validate
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Dense, ReLU
from cnnlab.engine.losses import CrossEntropyLoss
from cnnlab.engine.optim import SGD
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import fit

Classifier = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def step(z: np.ndarray) -> np.ndarray:
    """The step activation: 1 where ``z >= 0``, else 0."""
    return (z >= 0).astype(np.int64)


def train_perceptron(
    x: np.ndarray, y: np.ndarray, epochs: int = 500, lr: float = 0.01
) -> tuple[np.ndarray, float]:
    """Weights ``(F,)`` and bias learned by the perceptron rule from ``x`` ``(N, F)``, ``y`` 0/1.

    The rule is sequential by nature (each update changes the next prediction), so it visits
    the examples one by one, in order, every epoch, starting from zero weights.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)  # unsigned labels (the loaders' uint8) would wrap at y − 1
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(epochs):
        for xi, yi in zip(x, y, strict=True):
            error = yi - (1 if xi @ w + b >= 0 else 0)
            if error:
                w += lr * error * xi
                b += lr * error
    return w, b


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    validate.integer("perceptron", "folds", k, 2)
    if k > n:
        raise CnnlabError(f"perceptron: folds must be at most the {n} rows, got {k}")
    return np.array_split(np.random.default_rng(seed).permutation(n), k)


def cross_validate(
    classifier: Classifier, x: np.ndarray, y: np.ndarray, folds: int = 3, seed: int = 0
) -> list[float]:
    """Accuracy on each held-out fold; ``classifier(x_train, y_train, x_test) -> predictions``."""
    scores = []
    parts = _folds(len(x), folds, seed)
    for i, test in enumerate(parts):
        train = np.concatenate([p for j, p in enumerate(parts) if j != i])
        predicted = classifier(x[train], y[train], x[test])
        scores.append(float((predicted == y[test]).mean()))
    return scores


def perceptron_classifier(epochs: int, lr: float) -> Classifier:
    def classify(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        w, b = train_perceptron(x_train, y_train, epochs, lr)
        return step(x_test @ w + b)

    return classify


def cnnlab_classifier(hidden: int | None, epochs: int, lr: float, seed: int = 0) -> Classifier:
    """Logistic regression (``hidden=None``: one Dense layer, softmax over 2 classes) or an MLP
    with one ReLU hidden layer, trained by ``cnnlab.fit`` with SGD + momentum on standardised
    inputs (mean and spread taken from the training fold only)."""

    def classify(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
        features = x_train.shape[1]
        rng = np.random.default_rng(seed)
        if hidden is None:
            layers = [Dense(features, 2, init="glorot", rng=rng)]
        else:
            layers = [Dense(features, hidden, rng=rng), ReLU(), Dense(hidden, 2, rng=rng)]
        model = Sequential(layers, input_shape=(features,))
        xs = ((x_train - mean) / std).astype(np.float32)
        fit(
            model,
            CrossEntropyLoss(),
            SGD(model.parameters(), lr, momentum=0.9),
            xs,
            y_train.astype(np.int64),
            epochs=epochs,
            batch_size=16,
            seed=seed,
        )
        return np.asarray(model.predict(((x_test - mean) / std).astype(np.float32)))

    return classify


@dataclass
class SonarComparison:
    """Cross-validated accuracies of the three models and the perceptron's learned weights."""

    folds: int
    scores: dict[str, list[float]]  # model name → accuracy per fold
    weights: np.ndarray  # (60,) perceptron trained on all rows, in a seeded random order
    bias: float
    baseline: float  # accuracy of always answering the majority class


def compare_on_sonar(
    epochs: int = 500,
    lr: float = 0.01,
    folds: int = 3,
    seed: int = 0,
    net_epochs: int = 100,
    net_lr: float = 0.01,
) -> SonarComparison:
    """Perceptron vs logistic regression vs a 60-32-2 MLP on the same ``folds`` folds of sonar."""
    from cnnlab.data import load

    x, y = load("sonar")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
    models = {
        "perceptron": perceptron_classifier(epochs, lr),
        "logistic regression": cnnlab_classifier(None, net_epochs, net_lr, seed),
        "MLP 60-32-2": cnnlab_classifier(32, net_epochs, net_lr, seed),
    }
    scores = {name: cross_validate(fn, x, y, folds, seed) for name, fn in models.items()}
    # The file lists every rock before every mine; visited in that order the rule ends on a run
    # of mines and its weights say "mine" to almost everything (55 % right), so shuffle first.
    order = np.random.default_rng(seed).permutation(len(x))
    w, b = train_perceptron(x[order], y[order], epochs, lr)
    return SonarComparison(folds, scores, w, b, float(max(y.mean(), 1 - y.mean())))
