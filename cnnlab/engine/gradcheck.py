"""Gradient check: the engine's analytic gradients against central differences.

For a few entries θ of every parameter (and of the input) the numerical derivative
``(L(θ+ε) − L(θ−ε)) / 2ε`` is compared with the backward pass, in float64. ReLU and max-pool
are not differentiable everywhere. When a ±ε nudge flips a ReLU on or off or moves a max-pool's
winner, the central quotient straddles a kink and means nothing. If only one side crosses (a
unit sitting exactly at 0, common on a digit's blank background), the one-sided quotient of the
other side is compared instead: it is the side whose derivative the engine uses. If both sides
cross, the entry is skipped and counted rather than reported as an error.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from cnnlab.engine.layers import Dropout, MaxPool2D, ReLU, Softmax
from cnnlab.engine.losses import CrossEntropyLoss, MSELoss
from cnnlab.engine.sequential import Sequential

# Entries whose gradient is this small relative to the parameter's largest are compared
# against that scale instead of their own size: the loss's rounding noise, divided by 2ε,
# would otherwise dominate their relative error.
SCALE_FLOOR = 1e-3
ONE_SIDED_FACTOR = 100.0  # a one-sided quotient may be this many times less exact


@dataclass
class ParamCheck:
    """The check of one parameter array (or of the input)."""

    name: str  # e.g. "0.Conv2D.W" or "input"
    shape: tuple[int, ...]
    checked: int  # entries compared
    one_sided: int  # of those, compared by a one-sided difference beside a kink
    kinks: int  # entries skipped because both ±ε nudges crossed a ReLU or max-pool kink
    max_error: float  # largest relative error among the compared entries (0 when none)
    passed: bool


@dataclass
class GradCheck:
    """The whole check: one row per parameter, and the verdict."""

    rows: list[ParamCheck]
    tolerance: float
    eps: float

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)


def relative_error(analytic: float, numeric: float, scale: float = 0.0) -> float:
    """``|a − n| / max(|a|, |n|, scale, 1e-12)``."""
    return abs(analytic - numeric) / max(abs(analytic), abs(numeric), scale, 1e-12)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def kink_pattern(model: Sequential) -> list[np.ndarray]:
    """Which side of every kink the last forward pass was on: ReLU on/off, max-pool winners."""
    pattern = []
    for layer in model.layers:
        if isinstance(layer, ReLU):
            pattern.append(np.asarray(layer.active()))
        elif isinstance(layer, MaxPool2D):
            pattern.extend(np.asarray(m).copy() for m in layer.winner_maps())
    return pattern


def gradient_check(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    entries: int = 10,
    eps: float = 1e-6,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> GradCheck:
    """Check ``model``'s gradients on inputs ``x`` ``(N, ...)`` and labels ``y`` ``(N,)``.

    The check runs on a float64 copy in training mode (batch norm uses batch statistics) with
    dropout switched off, so the loss is a fixed function of the weights. ``entries`` random
    entries of each parameter, plus the one with the largest gradient, are compared; errors are
    relative to ``max(|analytic|, |numeric|, SCALE_FLOOR·(largest |gradient| of the parameter))``.
    Pick labels the model gets wrong (or random ones): a confidently right batch has a loss and
    gradients so close to zero that rounding noise dominates the differences.
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

    base, base_pattern = loss_at()
    input_grad = np.asarray(net.backward(loss_fn.backward(), input_grad=True))
    targets = [(name, p, np.asarray(g).copy()) for name, p, g in net.named_parameters()]
    targets.append(("input", x, input_grad))
    rng = np.random.default_rng(seed)
    rows = []
    for name, array, grad in targets:
        flat_grad = grad.reshape(-1)  # (size,)
        count = min(entries, array.size)
        picks = set(rng.choice(array.size, size=count, replace=False).tolist())
        picks.add(int(np.abs(flat_grad).argmax()))
        flat = array.reshape(-1)  # a view: nudging it nudges the array the network reads
        scale = SCALE_FLOOR * float(np.abs(flat_grad).max())
        errors, one_sided, kinks = [], 0, 0
        for i in sorted(picks):
            original = flat[i]
            flat[i] = original + eps
            plus, plus_pattern = loss_at()
            flat[i] = original - eps
            minus, minus_pattern = loss_at()
            flat[i] = original
            plus_ok = _same(base_pattern, plus_pattern)
            minus_ok = _same(base_pattern, minus_pattern)
            if plus_ok and minus_ok:
                numeric, limit = (plus - minus) / (2 * eps), tolerance
            elif plus_ok or minus_ok:
                numeric = (plus - base) / eps if plus_ok else (base - minus) / eps
                limit, one_sided = ONE_SIDED_FACTOR * tolerance, one_sided + 1
            else:
                kinks += 1
                continue
            # Scaled so one tolerance applies to both: one-sided quotients are only O(ε) exact.
            error = relative_error(float(flat_grad[i]), numeric, scale)
            errors.append(error * tolerance / limit)
        worst = max(errors, default=0.0)
        rows.append(
            ParamCheck(
                name, tuple(array.shape), len(errors), one_sided, kinks, worst, worst <= tolerance
            )
        )
    return GradCheck(rows, tolerance, eps)
