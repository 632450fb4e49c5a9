"""The gradient check passes on correct layers, fails on a broken one, and ignores kinks."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab.engine.gradcheck import (
    ATOL,
    RTOL,
    gradient_check,
    mismatch,
    relative_error,
    within_tolerance,
)
from cnnlab.explain.experiments import digits
from cnnlab.runs.zoo import PRESETS


def wrong_labels(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits(n, "test")
    return x, (y + 3) % 10


def test_lenet5_passes_with_kinks_handled_not_flagged() -> None:
    x, y = wrong_labels(2)
    check = gradient_check(cnnlab.build("lenet5"), x, y, entries=4)
    names = [row.name for row in check.rows]
    assert names[0] == "0.Conv2D.W" and names[-1] == "input" and len(names) == 11
    assert check.passed
    assert all(row.max_error <= RTOL and not row.floored for row in check.rows)
    # Blank background puts ReLUs exactly at their kink: those entries are handled, not errors.
    assert sum(row.one_sided + row.kinks for row in check.rows) > 0


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.slow
def test_every_preset_and_activation_passes_at_seeds_0_to_9(preset: str, activation: str) -> None:
    """What ``cnnlab gradcheck`` runs (its defaults, on fewer entries), at seeds 0–9."""
    x, true = digits(2, "test")
    for seed in range(10):
        model = cnnlab.build(preset, activation=activation, seed=seed, input_shape=(1, 28, 28))
        y = (true + np.random.default_rng(seed).integers(1, 10, size=len(true))) % 10
        check = gradient_check(model, x, y, entries=3, seed=seed)
        failed = [
            (row.name, row.max_error, row.max_abs_error) for row in check.rows if not row.passed
        ]
        assert not failed, f"{preset} {activation} seed {seed}: {failed}"


def test_biases_before_batchnorm_pass_by_the_absolute_floor_only() -> None:
    # fast's conv biases sit before BatchNorm2D, which subtracts the batch mean: their true
    # gradient is 0, the central difference is rounding noise, and the relative error is ~1.
    x, y = wrong_labels(2)
    check = gradient_check(cnnlab.build("fast"), x, y, entries=4)
    rows = {row.name: row for row in check.rows}
    for name in ("0.Conv2D.b", "4.Conv2D.b"):
        assert rows[name].passed and rows[name].floored > 0
        assert rows[name].max_error > RTOL and rows[name].max_abs_error <= ATOL
    # Without the floor they would fail: the floor is what passes them.
    strict = gradient_check(cnnlab.build("fast"), x, y, entries=4, atol=0.0)
    assert not {r.name: r for r in strict.rows}["0.Conv2D.b"].passed
    assert check.passed


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
    # on arrays: the largest difference over the largest magnitude
    assert relative_error(np.array([1.0, 10.0]), np.array([1.5, 10.0])) == pytest.approx(0.05)


def test_tolerance_is_atol_plus_rtol() -> None:
    assert within_tolerance(1e-12, 3e-10, rtol=1e-4, atol=1e-8)  # ~0: the floor passes it
    assert not within_tolerance(1e-12, 3e-10, rtol=1e-4, atol=0.0)
    assert within_tolerance(1.0, 1.00005, rtol=1e-4, atol=0.0)
    assert not within_tolerance(1.0, 1.0002, rtol=1e-4, atol=1e-8)
    assert mismatch("w", np.ones(3), np.ones(3)) == ""
    assert "relative error" in mismatch("w", np.ones(3), np.array([1.0, 1.0, 1.1]))
    assert "shape" in mismatch("w", np.ones(3), np.ones(2))
