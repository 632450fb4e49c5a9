"""Central-difference gradient checks in float64, for layers, losses and whole models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 1e-6
RTOL = 1e-6
# Central differences of a truly zero gradient give round-off noise of about 1e-10.
ATOL = 1e-9


def numerical_grad(f: Callable[[], float], array: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f() / d array by central differences, perturbing ``array`` in place one entry at a time."""
    grad = np.zeros_like(array, dtype=np.float64)
    it = np.nditer(array, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        idx = it.multi_index
        old = array[idx]
        array[idx] = old + eps
        plus = f()
        array[idx] = old - eps
        minus = f()
        array[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a − n| / max(max |a|, max |n|, 1e-12): one number for a whole gradient array."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0), 1e-12)
    return float(np.abs(analytic - numeric).max(initial=0.0) / scale)


def assert_close_grad(
    name: str, analytic: np.ndarray, numeric: np.ndarray, rtol: float = RTOL, atol: float = ATOL
) -> None:
    """Relative error below ``rtol``; a gradient that is zero (both sides below ``atol``) passes."""
    assert analytic.shape == numeric.shape, f"{name}: shape {analytic.shape} != {numeric.shape}"
    diff = float(np.abs(np.asarray(analytic) - np.asarray(numeric)).max(initial=0.0))
    if diff < atol:
        return
    err = rel_error(analytic, numeric)
    assert err < rtol, f"{name}: relative error {err:.3e} >= {rtol:g} (max abs diff {diff:.3e})"


def check_layer(
    layer,
    x: np.ndarray,
    rng: np.random.Generator,
    before_forward: Callable[[], None] = lambda: None,
    rtol: float = RTOL,
) -> None:
    """Check dx and every parameter gradient of ``layer`` at ``x``.

    The scalar is ``L = Σ forward(x) · G`` for a fixed random ``G``, so dL/dy = G.
    ``before_forward`` runs before every forward pass (e.g. to replay a dropout mask).
    """
    assert x.dtype == np.float64 and layer.dtype == np.float64
    before_forward()
    out = np.array(layer.forward(x))
    G = rng.standard_normal(out.shape)

    def loss() -> float:
        before_forward()
        return float(np.sum(np.asarray(layer.forward(x)) * G))

    before_forward()
    layer.forward(x)
    dx = np.array(layer.backward(G.copy()))
    grads = {k: np.array(v) for k, v in layer.grads.items()}
    assert_close_grad(f"{layer!r} dx", dx, numerical_grad(loss, x), rtol)
    for key, param in layer.params.items():
        assert_close_grad(f"{layer!r} d{key}", grads[key], numerical_grad(loss, param), rtol)


def check_model(model, loss_fn, x: np.ndarray, y: np.ndarray, rtol: float = RTOL) -> None:
    """Check dL/dx and every parameter gradient of ``loss_fn(model(x), y)``."""

    def loss() -> float:
        return loss_fn.forward(model.forward(x), y)

    loss()
    dx = np.array(model.backward(loss_fn.backward()))
    grads = [np.array(g) for _, g in model.parameters()]
    assert_close_grad("model dx", dx, numerical_grad(loss, x), rtol)
    for (name, param, _), grad in zip(model.named_parameters(), grads, strict=True):
        assert_close_grad(f"model {name}", grad, numerical_grad(loss, param), rtol)
