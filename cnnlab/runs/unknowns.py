"""Probabilities that mean what they say, and an answer for pictures of none of the classes.

A network trained with cross-entropy is over-confident: of the digits it reads at 99 %, fewer
than 99 % are right, and a heart or a letter is read as some digit at 99 % too. Two remedies,
both fitted after training on held-in validation pictures and kept in the model's ``meta``:

- **Temperature scaling** (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017):
  the probabilities become ``softmax(z / T)`` with the one number ``T`` that minimises the
  negative log-likelihood of the validation labels. The predicted class never changes. How well
  probabilities match accuracy is measured by the expected calibration error (``ece``: the
  accuracy and the mean confidence of 15 equal-width confidence bins, their gaps weighted by the
  bins' sizes) and seen in a reliability diagram (``reliability``).
- **A score for "is this any of the classes?"**, high for pictures like the training ones, with
  a threshold under which a picture is answered "none of these". Three scores are offered:
  ``"msp"``, the maximum softmax probability (Hendrycks & Gimpel, ICLR 2017); ``"energy"``,
  ``T · log Σ_k exp(z_k / T)`` (Liu et al., NeurIPS 2020); ``"mahalanobis"``, minus the squared
  Mahalanobis distance of the penultimate features to the nearest class mean, with one
  covariance shared by the classes (Lee et al., NeurIPS 2018). The threshold keeps ``keep`` of
  the validation pictures. benchmarks/README.md compares them on generated non-digits.
  A fourth, ``"cosine"``, the largest cosine of the penultimate features to a class mean, is
  the score of a prototype model (``cnnlab.runs.prototype``), whose class means are its
  prototypes and whose threshold comes from its own examples, left out one at a time.

``calibrate`` fits both and returns the ``meta`` entries; ``assess`` answers a batch with them.
A model without those entries behaves as before: its softmax, and every picture known.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.engine.backend import to_numpy, xp_of
from cnnlab.engine.errors import CnnlabError, NonFiniteError
from cnnlab.engine.layers import Dense, Softmax
from cnnlab.engine.losses import OutlierExposureLoss
from cnnlab.engine.sequential import Sequential

BINS = 15  # confidence bins of the calibration error, as Guo et al. use
SCORES = ("msp", "energy", "mahalanobis", "cosine")
METHOD = "energy"  # the score training calibrates (benchmarks/README.md)
MIN_HELD = 50  # validation pictures below which no threshold is set (see calibrate)
# Share of held-in validation pictures the threshold keeps as known. Chosen on the tune group of
# benchmarks/unknowns.py: the full-MNIST default model lost 5.7 % of the real-world digits it
# read right at 0.99, 3.7 % at 0.995 and 2.2 % at 0.998, and the bundled-sample one 1.7 and
# 0.8 % at 0.99 and 0.998, while the share of non-digits answered "not a digit" or "unsure"
# stayed 98.0-98.5 and 94.2 %: what the lower threshold lets through, "unsure" still catches.
KEEP = 0.998
T_RANGE = (0.05, 20.0)  # temperatures searched, and accepted from a model file
PRIOR_SD = 0.5  # of log T: T within a factor e^±1 of 1 at two standard deviations
# meta keys written by ``calibrate`` (the two Mahalanobis ones only for that score; "cosine"
# uses class_means alone)
META_KEYS = ("temperature", "unknown_score", "unknown_below", "class_means", "feature_precision")


# -- probabilities and their calibration -------------------------------------------------------


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(z / T)`` of ``(N, K)`` logits, row by row, in float64."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels (N,)`` under ``softmax(logits / T)``."""
    log_p = log_softmax(logits, temperature)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, prior: float = PRIOR_SD) -> float:
    """The ``T`` in ``T_RANGE`` that minimises ``nll`` plus ``(log T)² / (2 prior² N)`` for
    ``N`` pictures: golden-section search on ``log T``.

    The second term is a normal prior on ``log T`` around 0 (``T = 1``, the softmax as it is):
    a network that reads nearly all of a small validation set right gives the NLL hardly any
    minimum (one error in 167 pictures pulled ``T`` to 0.35 where the test set wants 0.69), and
    the prior holds it near 1 until the pictures say otherwise; over thousands of pictures it
    fades. ``prior=inf`` fits the NLL alone. Both terms are convex in ``1 / T``, hence have
    one minimum along ``log T``; 60 steps narrow the range to a factor of 1.00000003 of it.
    """
    logits, labels = _checked(logits, labels)
    weight = 1 / (2 * prior**2 * len(labels))

    def cost(log_t: float) -> float:
        return nll(logits, labels, np.exp(log_t)) + weight * log_t**2

    low, high = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = cost(a), cost(b)
    for _ in range(60):
        if fa <= fb:  # the minimum is left of b
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = cost(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = cost(b)
    return float(np.exp((low + high) / 2))


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS
) -> dict[str, np.ndarray]:
    """The reliability diagram's numbers: pictures grouped by their top probability into
    ``bins`` equal-width bins ``(i / bins, (i + 1) / bins]``, with each bin's ``count``, mean
    ``confidence`` and ``accuracy`` (both 0 for an empty bin), and the bin ``edges``."""
    probabilities, labels = _checked(probabilities, labels)
    top = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    which = np.clip(np.ceil(top * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    shown = np.maximum(count, 1)
    return {
        "edges": np.linspace(0, 1, bins + 1),
        "count": count,
        "confidence": np.bincount(which, top, minlength=bins) / shown,
        "accuracy": np.bincount(which, right.astype(np.float64), minlength=bins) / shown,
    }


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: ``Σ_b (n_b / N) · |accuracy_b − confidence_b|`` over the
    ``reliability`` bins, in [0, 1]."""
    r = reliability(probabilities, labels, bins)
    return float((r["count"] * np.abs(r["accuracy"] - r["confidence"])).sum() / len(labels))


def _checked(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, labels = np.asarray(values, np.float64), np.asarray(labels)
    if values.ndim != 2 or labels.shape != (len(values),) or not len(values):
        raise CnnlabError(
            f"expected scores (N, K) and labels (N,) with N ≥ 1, got {values.shape} and "
            f"{labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise CnnlabError(f"labels must be class indices ≥ 0, got {labels.dtype}")
    if labels.max() >= values.shape[1] or not np.isfinite(values).all():
        raise CnnlabError(
            f"labels must be below {values.shape[1]} and scores finite; got labels up to "
            f"{labels.max()}"
        )
    return values, labels.astype(np.int64)


# -- what the network computes, and the scores -------------------------------------------------


def logits_and_features(
    model: Sequential, x: np.ndarray, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """The logits ``(N, K)`` (before a final ``Softmax`` layer, if any) and the penultimate
    features ``(N, D)`` (what the last ``Dense`` layer receives) of inputs
    ``(N, *input_shape)``, in evaluation mode, as float64."""
    layers = model.layers[:-1] if isinstance(model.layers[-1], Softmax) else model.layers
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, Dense)]
    split = dense[-1] if dense else len(layers) - 1
    was_training = model.training
    model.eval()
    logits, features = [], []
    try:
        if len(x):  # the model checks the input's shape and dtype
            model.forward(x[:1])
        if not np.isfinite(to_numpy(x)).all():
            raise NonFiniteError("the input contains NaN or inf")
        for start in range(0, len(x), batch_size):
            h = x[start : start + batch_size]
            for layer in layers[:split]:
                h = layer.forward(h)
            features.append(to_numpy(h).reshape(len(h), -1).astype(np.float64))
            for layer in layers[split:]:
                h = layer.forward(h)
            logits.append(to_numpy(h).astype(np.float64))
    finally:
        if was_training:
            model.train()
    if not logits:
        k = model.output_shape()[-1] if model.input_shape else 0
        return np.zeros((0, k)), np.zeros((0, 0))
    return np.concatenate(logits), np.concatenate(features)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Minus the free energy, ``T · log Σ_k exp(z_k / T)`` per row ``(N,)``: high when some
    class's logit is high."""
    z = np.asarray(logits, np.float64) / temperature
    top = z.max(axis=1)
    return temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


def class_means(
    features: np.ndarray, labels: np.ndarray, classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class feature means ``(K, D)`` and the precision ``(D, D)`` (inverse) of the
    covariance shared by the classes (each picture's feature minus its class mean). A class
    with no picture gets the overall mean. With ``N`` pictures of ``D`` features the
    covariance is shrunk towards its mean variance by ``D / (D + N)``, so that few pictures
    (fewer than features) still give a usable precision (the idea of Ledoit & Wolf's
    shrinkage; the share is a simple rule, not their estimate), plus a ridge of 1e-6 of the
    mean variance for features that never vary (dead ReLUs)."""
    features = np.asarray(features, np.float64)
    counts = np.bincount(labels, minlength=classes)
    sums = np.zeros((classes, features.shape[1]))
    np.add.at(sums, labels, features)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], features.mean(0))
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    d = len(covariance)
    variance = max(float(np.trace(covariance)) / d, 1e-12)
    shrink = d / (d + len(features))
    covariance = (1 - shrink) * covariance + (shrink * variance + 1e-6 * variance) * np.eye(d)
    precision = np.linalg.inv(covariance)
    return means, (precision + precision.T) / 2


def mahalanobis(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Minus the smallest squared Mahalanobis distance of each row of ``features (N, D)`` to a
    class mean ``(K, D)`` under ``precision (D, D)``: ``(N,)``, high near a class."""
    features = np.asarray(features, np.float64)
    # (f − μ)ᵀ P (f − μ) = fᵀPf − 2 fᵀPμ + μᵀPμ, for every pair at once.
    fp = features @ precision
    distance = (
        (fp * features).sum(1)[:, None] - 2 * fp @ means.T + ((means @ precision) * means).sum(1)
    )
    return -np.maximum(distance, 0).min(axis=1)


def cosine(features: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The largest cosine ``(N,)`` of each row of ``features (N, D)`` to a class mean ``(K, D)``:
    1 when a picture's features point exactly the way of some class's, lower further away."""
    features = np.asarray(features, np.float64)
    means = np.asarray(means, np.float64)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    centre = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return (unit @ centre.T).max(axis=1)


def scores(
    method: str,
    logits: np.ndarray,
    features: np.ndarray,
    temperature: float = 1.0,
    means: np.ndarray | None = None,
    precision: np.ndarray | None = None,
) -> np.ndarray:
    """The ``method``'s score ``(N,)``, high for pictures like the training ones."""
    if method == "msp":
        return np.exp(log_softmax(logits, temperature).max(axis=1))
    if method == "energy":
        return energy(logits, temperature)
    if method == "mahalanobis":
        return mahalanobis(features, means, precision)
    if method == "cosine":
        return cosine(features, means)
    raise CnnlabError(f"unknown score {method!r}; use one of {', '.join(SCORES)}")


# -- fitting after training, and answering -----------------------------------------------------


def calibrate(
    model: Sequential,
    x_val: np.ndarray,
    y_val: np.ndarray,
    method: str = METHOD,
    keep: float = KEEP,
) -> dict[str, Any]:
    """The ``meta`` entries that make ``assess`` calibrated and able to say "none of these",
    fitted on held-in validation inputs ``x_val (N, *input_shape)`` and labels ``y_val (N,)``:
    ``temperature``, ``unknown_score`` (``method``), ``unknown_below`` (the score under which
    a picture is unknown: the ``1 − keep`` quantile of the validation pictures' scores) and, for
    ``"mahalanobis"``, ``class_means`` and ``feature_precision`` (from the same pictures; for
    ``"cosine"`` the class means alone).

    Under ``MIN_HELD`` pictures only the temperature is fitted: the lowest of a handful of
    scores is no threshold (three drawn classes of 20 pictures, 9 held out: a third of new
    pictures of a trained class fell below it), so such a model takes every picture as one of
    its classes."""
    if method not in SCORES:
        raise CnnlabError(f"unknown score {method!r}; use one of {', '.join(SCORES)}")
    if not 0 < keep <= 1:
        raise CnnlabError(f"keep must be in (0, 1], got {keep}")
    logits, features = logits_and_features(model, x_val)
    labels = np.asarray(y_val, np.int64)
    temperature = fit_temperature(logits, labels)
    meta: dict[str, Any] = {"temperature": temperature}
    if len(labels) < MIN_HELD:
        return meta
    meta["unknown_score"] = method
    means = precision = None
    if method in ("mahalanobis", "cosine"):
        means, precision = class_means(features, labels, logits.shape[1])
        meta["class_means"] = means.astype(np.float32).tolist()
        if method == "mahalanobis":
            meta["feature_precision"] = precision.astype(np.float32).tolist()
        means, precision = _class_meta(meta, logits.shape[1], features.shape[1], method)
    score = scores(method, logits, features, temperature, means, precision)
    meta["unknown_below"] = float(np.quantile(score, 1 - keep))
    return meta


def assess(model: Sequential, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(N, K)`` and whether each picture is one of the classes ``(N,)`` bool,
    for inputs ``(N, *input_shape)``: calibrated and judged by the ``meta`` that ``calibrate``
    wrote; a model without it gives its plain softmax and every picture known."""
    meta = model.meta
    if "temperature" not in meta:
        probabilities = to_numpy(model.predict_proba(x))
        return probabilities, np.ones(len(probabilities), bool)
    temperature, method, below = _checked_meta(meta)
    logits, features = logits_and_features(model, x)
    probabilities = np.exp(log_softmax(logits, temperature)).astype(model.dtype)
    if method is None:  # calibrated on too few pictures to set a threshold
        return probabilities, np.ones(len(probabilities), bool)
    means = precision = None
    if method in ("mahalanobis", "cosine"):
        means, precision = _class_meta(meta, logits.shape[1], features.shape[1], method)
    known = scores(method, logits, features, temperature, means, precision) >= below
    return probabilities, known


def _checked_meta(meta: dict[str, Any]) -> tuple[float, str | None, float]:
    temperature, method, below = (meta.get(k) for k in META_KEYS[:3])
    number = (int, float)
    threshold = (method is None and below is None) or (
        method in SCORES and isinstance(below, number) and np.isfinite(below)
    )
    if (
        not isinstance(temperature, number)
        or not T_RANGE[0] <= temperature <= T_RANGE[1]
        or not threshold
    ):
        raise CnnlabError(
            f"the model's meta temperature, unknown_score and unknown_below must be a number in "
            f"{T_RANGE}, one of {', '.join(SCORES)} and a finite number; got "
            f"{str(temperature)[:20]}, {str(method)[:20]}, {str(below)[:20]}; train it again"
        )
    return float(temperature), method, float(below) if below is not None else 0.0


def _class_meta(
    meta: dict[str, Any], k: int, d: int, method: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The class means ``(K, D)`` and, for ``"mahalanobis"``, the precision ``(D, D)`` in
    ``meta``, checked (``"cosine"`` needs no precision: None)."""
    try:
        means = np.asarray(meta.get("class_means"), np.float64)
        precision = (
            np.asarray(meta.get("feature_precision"), np.float64)
            if method == "mahalanobis"
            else np.eye(d)
        )
    except (TypeError, ValueError):
        means = precision = np.empty(0)
    if (
        means.shape != (k, d)
        or precision.shape != (d, d)
        or not (np.isfinite(means).all() and np.isfinite(precision).all())
    ):
        raise CnnlabError(
            f"the model's meta class_means and feature_precision must be finite ({k}, {d}) and "
            f"({d}, {d}) arrays, got {means.shape} and {precision.shape}; train it again"
        )
    return means, precision if method == "mahalanobis" else None


def with_nondigits(
    x: np.ndarray, y: np.ndarray, seed: int, share: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Digit training inputs ``x (N, 1, 28, 28)`` and labels ``y (N,)`` with ``share · N``
    generated non-digits (``data.nondigits``' tune group, label ``OutlierExposureLoss.NONE``)
    appended, for training with outlier exposure."""
    from cnnlab.data.nondigits import nondigit_inputs

    others, _ = nondigit_inputs(int(share * len(x)), seed, "tune", preprocess=False)
    xp = xp_of(x)
    others = xp.asarray(others[:, None].astype(x.dtype))
    none = xp.full(len(others), OutlierExposureLoss.NONE, dtype=y.dtype)
    return xp.concatenate([x, others]), xp.concatenate([y, none])
