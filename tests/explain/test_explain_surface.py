"""The error surface of a linear neuron with two weights, and gradient descent on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.engine.errors import CnnlabError
from cnnlab.explain.experiment_figures import plot_error_surface
from cnnlab.explain.surface import error_surface, gradient, gradient_descent, loss, neuron_data


def test_hand_computed_loss_gradient_and_one_step() -> None:
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    t = np.array([1.0, 2.0])
    w = np.zeros(2)
    # L = ½·mean(1², 4²)... the outputs are 0, so L = ½·(1 + 4)/2 = 1.25
    assert loss(x, t, w) == pytest.approx(1.25)
    # dL/dw = −(1/2)·Xᵀt = −½·(1, 4)
    np.testing.assert_allclose(gradient(x, t, w), [-0.5, -2.0])
    path, grads = gradient_descent(x, t, w, lr=0.1, steps=1)
    np.testing.assert_allclose(path, [[0.0, 0.0], [0.05, 0.2]])  # w − 0.1·(−0.5, −2)
    np.testing.assert_allclose(grads, [[-0.5, -2.0]])


def test_gradient_matches_central_differences_in_float64() -> None:
    x, t = neuron_data(30, seed=3)
    w = np.array([0.3, -1.2])
    eps = 1e-6
    numeric = [(loss(x, t, w + eps * e) - loss(x, t, w - eps * e)) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(gradient(x, t, w), numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradient_match_pytorch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, t, w = (
        rng.normal(size=(int(rng.integers(2, 50)), 2)),
        rng.normal(size=50),
        rng.normal(size=2),
    )
    t = t[: len(x)]
    wt = torch.tensor(w, requires_grad=True)
    expected = 0.5 * torch.nn.functional.mse_loss(torch.tensor(x) @ wt, torch.tensor(t))
    expected.backward()
    assert loss(x, t, w) == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(gradient(x, t, w), wt.grad.numpy(), rtol=1e-10)


def test_grid_holds_the_loss_at_each_weight_pair_and_its_lowest_point_is_the_optimum() -> None:
    s = error_surface(grid=41)
    assert s.loss.shape == (41, 41)
    i, j = 7, 30
    assert s.loss[i, j] == pytest.approx(loss(s.x, s.t, np.array([s.w1[j], s.w2[i]])))
    lowest = np.unravel_index(int(s.loss.argmin()), s.loss.shape)
    spacing = s.w1[1] - s.w1[0]
    assert abs(s.w1[lowest[1]] - s.optimum[0]) <= spacing
    assert abs(s.w2[lowest[0]] - s.optimum[1]) <= spacing
    assert s.min_loss <= s.loss.min()
    np.testing.assert_allclose(s.gradients[0], gradient(s.x, s.t, s.path[0]))


def test_below_the_critical_rate_the_loss_falls_every_step_and_above_it_the_walk_diverges() -> None:
    critical = error_surface(steps=0).critical_lr
    good = error_surface(lr=0.9 * critical, steps=100)
    assert np.all(np.diff(good.path_loss[:30]) < 0)  # later steps change it by rounding only
    assert good.converged
    assert good.path_loss[-1] == pytest.approx(good.min_loss, rel=1e-6)
    too_big = error_surface(lr=1.1 * critical, steps=100)
    assert not too_big.converged
    assert too_big.path_loss[-1] > 100 * too_big.path_loss[0]
    slow = error_surface(lr=0.01, steps=100)
    assert not slow.converged and slow.path_loss[-1] < slow.path_loss[0]


def test_a_path_that_overflows_stops_early_with_finite_weights() -> None:
    s = error_surface(lr=50.0, steps=1000)
    assert len(s.path) < 1001
    assert np.isfinite(s.path).all() and np.isfinite(s.path_loss).all()
    assert len(s.gradients) == len(s.path) - 1


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": 0.0}, {"lr": -1.0}, {"steps": -1}, {"samples": 1}, {"grid": 1}, {"start": (1, 2, 3)}],
)
def test_bad_settings_are_one_line_errors(kwargs) -> None:
    with pytest.raises(CnnlabError):
        error_surface(**kwargs)


def test_figure_is_a_png(tmp_path) -> None:
    path = plot_error_surface(error_surface(lr=1.2, steps=40, grid=21), tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
