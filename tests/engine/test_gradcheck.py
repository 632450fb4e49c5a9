"""The gradient check passes on correct layers, fails on a broken one, and ignores kinks."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab.engine.gradcheck import gradient_check, relative_error
from cnnlab.explain.experiments import digits


def wrong_labels(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits(n, "test")
    return x, (y + 3) % 10


def test_lenet5_passes_with_kinks_handled_not_flagged() -> None:
    x, y = wrong_labels(2)
    check = gradient_check(cnnlab.build("lenet5"), x, y, entries=4)
    names = [row.name for row in check.rows]
    assert names[0] == "0.Conv2D.W" and names[-1] == "input" and len(names) == 11
    assert check.passed
    assert all(row.max_error <= 1e-5 for row in check.rows)
    # Blank background puts ReLUs exactly at their kink: those entries are handled, not errors.
    assert sum(row.one_sided + row.kinks for row in check.rows) > 0


class BrokenDense(cnnlab.Dense):
    """A dense layer whose weight gradient is 1 % too large."""

    def backward(self, grad_out):
        result = super().backward(grad_out)
        self.grads["W"] *= 1.01
        return result


def test_a_broken_backward_is_caught() -> None:
    model = cnnlab.build("lenet5", activation="tanh")
    good = model.layers[9]
    broken = BrokenDense(good.in_features, good.out_features)
    broken.params["W"][...] = good.params["W"]
    broken.params["b"][...] = good.params["b"]
    model.layers[9] = broken
    x, y = wrong_labels(2)
    check = gradient_check(model, x, y, entries=4)
    failed = [row.name for row in check.rows if not row.passed]
    assert failed == ["9.BrokenDense.W"]
    assert not check.passed


def test_relative_error() -> None:
    assert relative_error(1.0, 1.0) == 0.0
    assert relative_error(1.0, 1.1) == pytest.approx(0.1 / 1.1)
    assert relative_error(1e-9, 2e-9, scale=1e-3) == 1e-6
