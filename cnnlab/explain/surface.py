"""The article's error surface: the loss of a linear neuron with two input weights, and gradient
descent walking down it.

The neuron computes ``o = w₁·x₁ + w₂·x₂`` (no bias) and is scored with the article's loss
``L(w) = (1/N) Σ_n ½ (t_n − o_n)²``. As a function of the two weights that loss is a quadratic
bowl, the surface the article pictures; its gradient is ``dL/dw = −(1/N) Xᵀ(t − Xw)``, and every
step of gradient descent is the article's update ``w_new = w_old − η·dL/dW``.

The data are seeded and made here (no download): ``samples`` inputs drawn from a Gaussian whose
two features are correlated, so the bowl is a long, tilted valley, and targets from fixed "true"
weights plus a little noise. The bowl's curvatures (the eigenvalues ``λ`` of ``(1/N) XᵀX``) say
what a learning rate will do: the walk converges when ``η < 2/λ_max`` and diverges above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.engine.errors import CnnlabError

TRUE_WEIGHTS = (1.5, -0.5)  # the weights that made the targets
CORRELATION = 0.8  # between the two input features: a long, tilted valley
NOISE = 0.3  # standard deviation of the noise added to the targets
DEFAULT_START = (-2.0, 2.5)


@dataclass
class ErrorSurface:
    """The loss over a grid of weights and the path gradient descent took across it."""

    x: np.ndarray  # (N, 2) inputs
    t: np.ndarray  # (N,) targets
    w1: np.ndarray  # (G,) grid values of the first weight
    w2: np.ndarray  # (G,) grid values of the second weight
    loss: np.ndarray  # (G, G) loss[i, j] at w = (w1[j], w2[i])
    lr: float  # η
    path: np.ndarray  # (S+1, 2) the weights before the first step and after each step
    path_loss: np.ndarray  # (S+1,) the loss at those weights
    gradients: np.ndarray  # (S, 2) dL/dw at the start of each step
    optimum: np.ndarray  # (2,) the weights of lowest loss (least squares)
    min_loss: float
    curvatures: np.ndarray  # (2,) eigenvalues of (1/N) XᵀX, smallest first

    @property
    def critical_lr(self) -> float:
        """``2/λ_max``: gradient descent converges for any smaller η and diverges above it."""
        return 2.0 / float(self.curvatures[-1])

    @property
    def best_lr(self) -> float:
        """``2/(λ_min + λ_max)``: the η whose slowest direction shrinks fastest."""
        return 2.0 / float(self.curvatures.sum())

    @property
    def converged(self) -> bool:
        """Whether the walk ended within 1 % of the bowl's width of the optimum."""
        return bool(self.distance_to_optimum <= 0.01 * (self.w1[-1] - self.w1[0]))

    @property
    def distance_to_optimum(self) -> float:
        """``‖w_last − w*‖``."""
        return float(np.linalg.norm(self.path[-1] - self.optimum))


def neuron_data(samples: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, 2)`` with correlated features and targets ``(N,)`` of the linear neuron."""
    if not isinstance(samples, int) or samples < 2:
        raise CnnlabError(f"samples must be an integer >= 2, got {samples!r}")
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, CORRELATION], [CORRELATION, 1.0]])
    x = rng.multivariate_normal(np.zeros(2), cov, size=samples)  # (N, 2)
    t = x @ np.array(TRUE_WEIGHTS) + NOISE * rng.standard_normal(samples)  # (N,)
    return x, t


def loss(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``L = (1/N) Σ ½ (t − x·w)²`` for weights ``w`` ``(..., 2)``; returns shape ``(...)``."""
    outputs = np.asarray(w) @ x.T  # (..., N)
    return 0.5 * ((t - outputs) ** 2).mean(axis=-1)


def gradient(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``dL/dw = −(1/N) Xᵀ(t − Xw)`` for one weight vector ``w`` ``(2,)``."""
    return -(x.T @ (t - x @ w)) / len(x)


def gradient_descent(
    x: np.ndarray, t: np.ndarray, start: Sequence[float], lr: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """The path ``(steps+1, 2)`` of ``w_new = w_old − η·dL/dW`` and the gradients ``(steps, 2)``.

    The walk stops early (the path is shorter) once the weights overflow: a diverging η.
    """
    if not lr > 0:
        raise CnnlabError(f"the learning rate must be > 0, got {lr!r}")
    if not isinstance(steps, int) or steps < 0:
        raise CnnlabError(f"steps must be an integer >= 0, got {steps!r}")
    w = np.array(start, dtype=np.float64)
    if w.shape != (2,):
        raise CnnlabError(f"start must be two weights (w1, w2), got {start!r}")
    path, grads = [w.copy()], []
    for _ in range(steps):
        g = gradient(x, t, w)
        w = w - lr * g  # the article's update
        if not np.isfinite(w).all() or np.abs(w).max() > 1e6:
            break
        grads.append(g)
        path.append(w.copy())
    return np.array(path), np.array(grads).reshape(-1, 2)


def error_surface(
    lr: float = 0.5,
    steps: int = 50,
    start: Sequence[float] = DEFAULT_START,
    samples: int = 100,
    seed: int = 0,
    grid: int = 81,
) -> ErrorSurface:
    """The loss of the linear neuron over a ``grid × grid`` square of weights and the walk of
    ``steps`` gradient-descent steps at learning rate ``lr`` from ``start``.

    The square is centred on the optimum and reaches 1.4 times as far as the start, so the start,
    the optimum and every converging path lie on it.
    """
    if not isinstance(grid, int) or grid < 2:
        raise CnnlabError(f"grid must be an integer >= 2, got {grid!r}")
    x, t = neuron_data(samples, seed)
    path, grads = gradient_descent(x, t, start, lr, steps)
    optimum = np.linalg.lstsq(x, t, rcond=None)[0]  # (2,)
    half = 1.4 * float(np.abs(path[0] - optimum).max())
    w1 = np.linspace(optimum[0] - half, optimum[0] + half, grid)
    w2 = np.linspace(optimum[1] - half, optimum[1] + half, grid)
    weights = np.stack(np.meshgrid(w1, w2), axis=-1)  # (G, G, 2): [i, j] = (w1[j], w2[i])
    return ErrorSurface(
        x=x,
        t=t,
        w1=w1,
        w2=w2,
        loss=loss(x, t, weights),
        lr=float(lr),
        path=path,
        path_loss=loss(x, t, path),
        gradients=grads,
        optimum=optimum,
        min_loss=float(loss(x, t, optimum)),
        curvatures=np.linalg.eigvalsh(x.T @ x / len(x)),
    )
