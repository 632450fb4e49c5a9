"""The perceptron rule, k-fold cross-validation and the sonar comparison."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data import load
from cnnlab.engine.errors import CnnlabError
from cnnlab.explain.perceptron import (
    compare_on_sonar,
    cross_validate,
    perceptron_classifier,
    step,
    train_perceptron,
)


def test_perceptron_rule_separates_separable_data(rng: np.random.Generator) -> None:
    x = rng.uniform(-1, 1, size=(200, 2))
    y = (x @ np.array([2.0, -1.0]) + 0.3 > 0).astype(np.int64)
    w, b = train_perceptron(x, y, epochs=200, lr=0.1)
    assert (step(x @ w + b) == y).mean() == 1.0


def test_perceptron_rule_one_update_by_hand() -> None:
    w, b = train_perceptron(np.array([[1.0, 2.0], [-1.0, 1.0]]), np.array([0, 1]), 1, 0.5)
    # sample 1: z = 0 ≥ 0 → predicts 1, error −1 → w = −0.5·[1, 2], b = −0.5;
    # sample 2: z = 0.5 − 1 − 0.5 = −1 → predicts 0, error +1 → w += 0.5·[−1, 1], b += 0.5.
    np.testing.assert_allclose(w, [-1.0, -0.5])
    assert b == 0.0


def test_perceptron_rule_learns_from_uint8_labels_as_the_loader_gives_them() -> None:
    x = np.array([[1.0, 2.0], [-1.0, 1.0]])
    w, b = train_perceptron(x, np.array([0, 1], dtype=np.uint8), 1, 0.5)
    np.testing.assert_allclose(w, [-1.0, -0.5])  # the same update as with int64 labels
    assert b == 0.0


def test_cross_validation_uses_every_row_once(rng: np.random.Generator) -> None:
    seen = []

    def record(x_train, y_train, x_test):
        seen.append(x_test[:, 0].copy())
        assert len(set(x_train[:, 0]) & set(x_test[:, 0])) == 0
        return np.zeros(len(x_test), dtype=np.int64)

    x = np.arange(10.0)[:, None]
    y = np.array([0, 1] * 5)
    scores = cross_validate(record, x, y, folds=3, seed=1)
    assert len(scores) == 3 and sorted(np.concatenate(seen)) == list(range(10))
    with pytest.raises(CnnlabError):
        cross_validate(record, x, y, folds=1)


def test_sonar_comparison_beats_the_majority_class() -> None:
    result = compare_on_sonar(epochs=60, folds=3, net_epochs=30)
    assert list(result.scores) == ["perceptron", "logistic regression", "MLP 60-32-2"]
    assert result.baseline == pytest.approx(111 / 208)
    for scores in result.scores.values():
        assert len(scores) == 3
        assert np.mean(scores) > result.baseline + 0.05
    assert result.weights.shape == (60,)
    # The weights shown are a perceptron that learned the returns, not the file's order.
    x, y = load("sonar")
    assert (step(x @ result.weights + result.bias) == y).mean() > 0.75
    x_all = perceptron_classifier(60, 0.01)
    assert callable(x_all)
