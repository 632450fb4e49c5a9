"""Accuracy, confusion matrix, per-class precision and recall."""

from __future__ import annotations

import numpy as np

from cnnlab.engine.errors import CnnlabError


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of ``predictions`` equal to ``labels`` (both ``(N,)``)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float((labels == predictions).mean()) if labels.size else 0.0


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(
        predictions, dtype=np.int64
    )
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall ``(K,)`` from a confusion matrix (0 where undefined)."""
    hits = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    return precision, recall


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (Wilson, 1927) of a proportion: ``correct`` successes out of
    ``total`` trials → ``(low, high)`` in [0, 1]; ``z`` = 1.96 gives 95 % coverage.

    With ``p = correct / total`` it is ``(p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)``:
    unlike ``p ± z·√(p(1−p)/n)`` it stays inside [0, 1] and is not zero-width at 0 or 100 %
    (3 right of 3: 43.9 % to 100 %). ``total`` 0 tells nothing: ``(0, 1)``.
    """
    correct, total = int(correct), int(total)
    if total < 0 or not 0 <= correct <= total:
        raise CnnlabError(f"wilson_interval: need 0 <= correct <= total, got {correct} of {total}")
    if total == 0:
        return 0.0, 1.0
    p, z2 = correct / total, z * z
    denominator = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denominator
    half = z * np.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denominator
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def describe_accuracy(correct: int, total: int) -> str:
    """An accuracy with its number of pictures and 95 % interval, e.g.
    ``"100% of 3 pictures (95% interval 44–100%)"``."""
    low, high = wilson_interval(correct, total)
    share = 100 * correct / total if total else 0.0
    return (
        f"{share:.0f}% of {total:,} picture{'' if total == 1 else 's'} "
        f"(95% interval {100 * low:.0f}–{100 * high:.0f}%)"
    )
