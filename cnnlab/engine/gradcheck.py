"""Gradient checks: the engine's analytic gradients against central differences, in float64.

One checker for everything: ``cnnlab gradcheck`` runs ``gradient_check`` on a whole network, and
the tests run ``check_layer``, ``check_model`` and ``mismatch`` on single layers and losses. All
of them judge an analytic gradient ``a`` against a numerical one ``n`` the same way, as
``torch.autograd.gradcheck`` does: they agree when ``|a − n| ≤ atol + rtol·max(|a|, |n|)``.
The absolute floor ``atol`` matters for a gradient that is truly ~0, such as a conv bias right
before batch norm (the normalisation subtracts the mean, so the bias cancels): there the central
difference is pure rounding noise, its relative error is ~1 and means nothing. The relative
error reported is ``relative_error``.

Whole networks: for a few entries θ of every parameter (and of the input) the numerical
derivative ``(L(θ+ε) − L(θ−ε)) / 2ε`` is compared with the backward pass. ReLU and max-pool
are not differentiable everywhere. When a ±ε nudge flips a ReLU on or off or moves a max-pool's
winner, the central quotient straddles a kink and means nothing. If only one side crosses (a
unit sitting exactly at 0, common on a digit's blank background), the one-sided quotient of the
other side is compared instead: it is the side whose derivative the engine uses. If both sides
cross, the entry is skipped and counted rather than reported as an error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.engine.layers import Dropout, Layer, MaxPool2D, ReLU, Residual, Softmax
from cnnlab.engine.losses import CrossEntropyLoss, MSELoss
from cnnlab.engine.sequential import Sequential

# Whole networks (``gradient_check``, ``cnnlab gradcheck``). Measured on every preset
# (default, fast, lenet5, simple) × activation (relu, sigmoid, tanh) × seed 0–9 in float64, two
# digits, 10 entries a parameter, ε = 1e-6: the largest relative error was 5.0e-05 (lenet5,
# sigmoid, the input's small gradient), and |analytic − numeric| on the ~0 gradients of fast's
# conv biases before batch norm at most 4.4e-10. rtol and atol leave a margin of 2× and 20×.
EPS = 1e-6
RTOL = 1e-4
ATOL = 1e-8
# Entries whose gradient is this small relative to the parameter's largest are compared
# against that scale instead of their own size: the loss's rounding noise, divided by 2ε,
# would otherwise dominate their relative error.
SCALE_FLOOR = 1e-3
ONE_SIDED_FACTOR = 100.0  # a one-sided quotient may be this many times less exact

# Single layers and losses (``check_layer``, ``check_model``, ``mismatch``): small float64
# inputs, exact to far better than a whole network. Central differences of a truly zero
# gradient give round-off noise of about 1e-10.
LAYER_RTOL = 1e-6
LAYER_ATOL = 1e-9


def relative_error(analytic: Any, numeric: Any, scale: float = 0.0) -> float:
    """``max |a − n| / max(max |a|, max |n|, scale, 1e-12)``, for numbers or whole arrays."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    size = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), scale, 1e-12)
    return float(np.abs(a - n).max(initial=0.0) / size)


def within_tolerance(
    analytic: Any, numeric: Any, rtol: float, atol: float, scale: float = 0.0
) -> bool:
    """``max |a − n| ≤ atol + rtol·max(max |a|, max |n|, scale)``: the one pass rule."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    size = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), scale)
    return bool(np.abs(a - n).max(initial=0.0) <= atol + rtol * size)


def mismatch(
    name: str, analytic: Any, numeric: Any, rtol: float = LAYER_RTOL, atol: float = LAYER_ATOL
) -> str:
    """ "" when ``analytic`` and ``numeric`` agree within tolerance, else what differs."""
    a, n = np.asarray(analytic), np.asarray(numeric)
    if a.shape != n.shape:
        return f"{name}: shape {a.shape} != {n.shape}"
    if within_tolerance(a, n, rtol, atol):
        return ""
    diff = float(np.abs(a - n).max(initial=0.0))
    err = relative_error(a, n)
    return f"{name}: relative error {err:.3e} > {rtol:g} (max abs diff {diff:.3e} > {atol:g})"


def numerical_grad(f: Callable[[], float], array: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f() / d array by central differences, nudging ``array`` in place one entry at a time."""
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


def check_layer(
    layer: Layer,
    x: np.ndarray,
    rng: np.random.Generator,
    before_forward: Callable[[], None] = lambda: None,
    rtol: float = LAYER_RTOL,
) -> list[str]:
    """Every mismatch of dx and the parameter gradients of a float64 ``layer`` at ``x``.

    The scalar is ``L = Σ forward(x) · G`` for a fixed random ``G``, so dL/dy = G.
    ``before_forward`` runs before every forward pass (e.g. to replay a dropout mask).
    """
    before_forward()
    G = rng.standard_normal(np.shape(layer.forward(x)))

    def loss() -> float:
        before_forward()
        return float(np.sum(np.asarray(layer.forward(x)) * G))

    before_forward()
    layer.forward(x)
    dx = np.array(layer.backward(G.copy()))
    grads = {k: np.array(v) for k, v in layer.grads.items()}
    found = [mismatch(f"{layer!r} dx", dx, numerical_grad(loss, x, EPS), rtol)]
    for key, param in layer.params.items():
        numeric = numerical_grad(loss, param, EPS)
        found.append(mismatch(f"{layer!r} d{key}", grads[key], numeric, rtol))
    return [m for m in found if m]


def check_model(
    model: Sequential, loss_fn: Any, x: np.ndarray, y: np.ndarray, rtol: float = LAYER_RTOL
) -> list[str]:
    """Every mismatch of dL/dx and the parameter gradients of ``loss_fn(model(x), y)``."""

    def loss() -> float:
        return loss_fn.forward(model.forward(x), y)

    loss()
    dx = np.array(model.backward(loss_fn.backward()))
    grads = [np.array(g) for _, g in model.parameters()]
    found = [mismatch("model dx", dx, numerical_grad(loss, x, EPS), rtol)]
    for (name, param, _), grad in zip(model.named_parameters(), grads, strict=True):
        found.append(mismatch(f"model {name}", grad, numerical_grad(loss, param, EPS), rtol))
    return [m for m in found if m]


@dataclass
class ParamCheck:
    """The check of one parameter array (or of the input)."""

    name: str  # e.g. "0.Conv2D.W" or "input"
    shape: tuple[int, ...]
    checked: int  # entries compared
    one_sided: int  # of those, compared by a one-sided difference beside a kink
    kinks: int  # entries skipped because both ±ε nudges crossed a ReLU or max-pool kink
    max_error: float  # largest relative error among the compared entries (0 when none)
    max_abs_error: float  # largest |analytic − numeric| among them
    floored: int  # entries over rtol that pass only through the absolute floor atol
    passed: bool


@dataclass
class GradCheck:
    """The whole check: one row per parameter, and the verdict."""

    rows: list[ParamCheck]
    rtol: float
    atol: float
    eps: float

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def kink_pattern(model: Sequential) -> list[np.ndarray]:
    """Which side of every kink the last forward pass was on: ReLU on/off, max-pool winners."""
    pattern = []
    for layer in _with_sublayers(model.layers):
        if isinstance(layer, ReLU) or (isinstance(layer, Residual) and layer.relu):
            pattern.append(np.asarray(layer.active()))
        elif isinstance(layer, MaxPool2D):
            pattern.extend(np.asarray(m).copy() for m in layer.winner_maps())
    return pattern


def _check_entries(
    name: str,
    array: np.ndarray,
    grad: np.ndarray,
    picks: list[int],
    loss_at: Callable[[], tuple[float, list[np.ndarray]]],
    base: tuple[float, list[np.ndarray]],
    eps: float,
    rtol: float,
    atol: float,
) -> ParamCheck:
    """Nudge each picked entry of ``array`` by ±ε and compare with its analytic ``grad``.

    ``loss_at()`` gives the loss and kink pattern now; ``base`` is what it gave unperturbed.
    """
    base_loss, base_pattern = base
    flat_grad = grad.reshape(-1)  # (size,)
    flat = array.reshape(-1)  # a view: nudging it nudges the array the network reads
    scale = SCALE_FLOOR * float(np.abs(flat_grad).max())
    errors, diffs, one_sided, kinks, floored, passed = [], [], 0, 0, 0, True
    for i in picks:
        original = flat[i]
        flat[i] = original + eps
        plus, plus_pattern = loss_at()
        flat[i] = original - eps
        minus, minus_pattern = loss_at()
        flat[i] = original
        plus_ok = _same(base_pattern, plus_pattern)
        minus_ok = _same(base_pattern, minus_pattern)
        if plus_ok and minus_ok:
            numeric, limit = (plus - minus) / (2 * eps), rtol
        elif plus_ok or minus_ok:
            numeric = (plus - base_loss) / eps if plus_ok else (base_loss - minus) / eps
            limit, one_sided = ONE_SIDED_FACTOR * rtol, one_sided + 1
        else:
            kinks += 1
            continue
        analytic = float(flat_grad[i])
        # Scaled so one rtol reads for both: one-sided quotients are only O(ε) exact.
        error = relative_error(analytic, numeric, scale) * rtol / limit
        errors.append(error)
        diffs.append(abs(analytic - numeric))
        ok = within_tolerance(analytic, numeric, limit, atol, scale)
        passed = passed and ok
        floored += ok and error > rtol
    worst, worst_diff = max(errors, default=0.0), max(diffs, default=0.0)
    shape = tuple(array.shape)
    return ParamCheck(
        name, shape, len(errors), one_sided, kinks, worst, worst_diff, floored, passed
    )


def gradient_check(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    entries: int = 10,
    eps: float = EPS,
    rtol: float = RTOL,
    atol: float = ATOL,
    seed: int = 0,
) -> GradCheck:
    """Check ``model``'s gradients on inputs ``x`` ``(N, ...)`` and labels ``y`` ``(N,)``.

    The check runs on a float64 copy in training mode (batch norm uses batch statistics) with
    dropout switched off, so the loss is a fixed function of the weights. ``entries`` random
    entries of each parameter, plus the one with the largest gradient, are compared; an entry
    passes when ``|a − n| ≤ atol + rtol·max(|a|, |n|, SCALE_FLOOR·(largest |gradient| of the
    parameter))``. Pick labels the model gets wrong (or random ones): a confidently right batch
    has a loss and gradients so close to zero that rounding noise dominates the differences.
    """
    net = copy.deepcopy(model).astype(np.float64)
    net.train()
    for layer in net.layers:
        if isinstance(layer, Dropout):
            layer.eval()
    loss_fn = MSELoss() if isinstance(net.layers[-1], Softmax) else CrossEntropyLoss()
    x = np.array(x, dtype=np.float64)
    y = np.asarray(y)

    def loss_at() -> tuple[float, list[np.ndarray]]:
        value = loss_fn.forward(net.forward(x), y)
        return value, kink_pattern(net)

    base = loss_at()
    input_grad = np.asarray(net.backward(loss_fn.backward(), input_grad=True))
    targets = [(name, p, np.asarray(g).copy()) for name, p, g in net.named_parameters()]
    targets.append(("input", x, input_grad))
    rng = np.random.default_rng(seed)
    rows = []
    for name, array, grad in targets:
        count = min(entries, array.size)
        picks = set(rng.choice(array.size, size=count, replace=False).tolist())
        picks.add(int(np.abs(grad).argmax()))
        rows.append(
            _check_entries(name, array, grad, sorted(picks), loss_at, base, eps, rtol, atol)
        )
    return GradCheck(rows, rtol, atol, eps)


def _with_sublayers(layers: list[Layer]) -> list[Layer]:
    """``layers`` with each block's sub-layers listed before the block itself."""
    out: list[Layer] = []
    for layer in layers:
        if isinstance(layer, Residual):
            out.extend(_with_sublayers(layer.sublayers()))
        out.append(layer)
    return out
