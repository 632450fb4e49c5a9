"""Optimizers (the weight update step) and learning-rate schedules.

An optimizer holds a list of ``(param, grad)`` array pairs from ``model.parameters()`` and
updates each ``param`` in place. The update rules are PyTorch's, so the two agree step by step.
"""

from __future__ import annotations

import math
from typing import Any

from cnnlab.engine import validate
from cnnlab.engine.backend import xp_of
from cnnlab.engine.errors import CnnlabError

Pair = tuple[Any, Any]


def _positive(who: str, name: str, value: Any) -> float:
    return validate.number(who, name, value, 0.0, low_open=True)


def _non_negative(who: str, name: str, value: Any) -> float:
    return validate.number(who, name, value, 0.0)


class Optimizer:
    """Base class: the parameter list, ``zero_grad`` and state for checkpoints."""

    def __init__(self, parameters: list[Pair], lr: float) -> None:
        self.parameters = list(parameters)
        name = type(self).__name__
        if not self.parameters:
            raise CnnlabError(f"{name}: got an empty parameter list; pass model.parameters()")
        for item in self.parameters:
            if len(item) != 2 or item[0].shape != item[1].shape:
                raise CnnlabError(f"{name}: parameters must be (param, grad) pairs of one shape")
        self.lr = _positive(name, "lr", lr)
        self.step_count = 0

    def zero_grad(self) -> None:
        """Reset every gradient to zero."""
        for _, grad in self.parameters:
            grad.fill(0)

    def step(self) -> None:
        raise NotImplementedError

    def state_arrays(self) -> list[Any]:
        """The optimizer's per-parameter state arrays, in a fixed order (for checkpoints)."""
        return []

    def load_state_arrays(self, arrays: list[Any], step_count: int) -> None:
        """Restore what ``state_arrays`` returned; shapes must match."""
        own = self.state_arrays()
        if len(arrays) != len(own) or any(
            a.shape != b.shape for a, b in zip(arrays, own, strict=True)
        ):
            raise CnnlabError(
                f"{type(self).__name__}: checkpoint state does not match the model's parameters"
            )
        for target, value in zip(own, arrays, strict=True):
            target[...] = value
        self.step_count = int(step_count)


class SGD(Optimizer):
    """Stochastic gradient descent. Plain SGD is literally ``w ← w − η·dL/dW``.

    With ``momentum`` μ a velocity ``v ← μ·v + g`` is kept and ``w ← w − η·v`` (Nesterov:
    ``w ← w − η·(g + μ·v)``); ``weight_decay`` λ adds ``λ·w`` to the gradient first.
    """

    def __init__(
        self,
        parameters: list[Pair],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(parameters, lr)
        self.momentum = _non_negative("SGD", "momentum", momentum)
        self.weight_decay = _non_negative("SGD", "weight_decay", weight_decay)
        if nesterov and self.momentum == 0:
            raise CnnlabError("SGD: nesterov=True needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        self.velocity = [xp_of(p).zeros_like(p) for p, _ in self.parameters]

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        first = self.step_count == 0
        for (param, grad), velocity in zip(self.parameters, self.velocity, strict=True):
            g = grad + self.weight_decay * param if self.weight_decay else grad
            if self.momentum:
                if first:
                    velocity[...] = g
                else:
                    velocity *= self.momentum
                    velocity += g
                g = g + self.momentum * velocity if self.nesterov else velocity
            param -= self.lr * g
        self.step_count += 1

    def state_arrays(self) -> list[Any]:
        return self.velocity


class Adam(Optimizer):
    """Adam: per-weight step sizes from running means of the gradient and its square.

    ``m ← β1·m + (1−β1)·g``, ``v ← β2·v + (1−β2)·g²``,
    ``w ← w − η·m̂ / (√v̂ + ε)`` with bias-corrected ``m̂``, ``v̂``; ``weight_decay`` adds ``λ·w``
    to the gradient (PyTorch's ``Adam``, not ``AdamW``).
    """

    def __init__(
        self,
        parameters: list[Pair],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(parameters, lr)
        try:
            b1, b2 = (validate.number("Adam", "betas", b, 0.0, 1.0, high_open=True) for b in betas)
        except (CnnlabError, TypeError, ValueError):
            raise CnnlabError(f"Adam: betas must be two numbers in [0, 1), got {betas!r}") from None
        self.betas = (b1, b2)
        self.eps = _positive("Adam", "eps", eps)
        self.weight_decay = _non_negative("Adam", "weight_decay", weight_decay)
        self.m = [xp_of(p).zeros_like(p) for p, _ in self.parameters]
        self.v = [xp_of(p).zeros_like(p) for p, _ in self.parameters]

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        self.step_count += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.step_count
        sqrt_correction2 = math.sqrt(1 - beta2**self.step_count)
        step_size = self.lr / correction1
        for (param, grad), m, v in zip(self.parameters, self.m, self.v, strict=True):
            xp = xp_of(param)
            g = grad + self.weight_decay * param if self.weight_decay else grad
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * (g * g)
            denom = xp.sqrt(v) / param.dtype.type(sqrt_correction2)
            denom += param.dtype.type(self.eps)
            param -= param.dtype.type(step_size) * (m / denom)

    def state_arrays(self) -> list[Any]:
        return self.m + self.v


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.base_lr = _positive("StepLR", "base_lr", base_lr)
        self.step_size = validate.integer("StepLR", "step_size", step_size, 1)
        self.gamma = _positive("StepLR", "gamma", gamma)

    def __call__(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineLR:
    """Cosine decay from ``base_lr`` to ``min_lr`` over ``total_steps``, then flat."""

    def __init__(self, base_lr: float, total_steps: int, min_lr: float = 0.0) -> None:
        self.base_lr = _positive("CosineLR", "base_lr", base_lr)
        self.total_steps = validate.integer("CosineLR", "total_steps", total_steps, 1)
        self.min_lr = _non_negative("CosineLR", "min_lr", min_lr)

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t))


class OneCycleLR:
    """One cycle: warm up from ``max_lr/div`` to ``max_lr``, then anneal to a tiny rate.

    Both phases follow a cosine and peak at the same step as PyTorch's ``OneCycleLR``
    (step ``pct_start·total − 1``), so the two give the same rate at every step.
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div: float = 25.0,
        final_div: float = 1e4,
    ) -> None:
        self.max_lr = _positive("OneCycleLR", "max_lr", max_lr)
        self.total_steps = validate.integer("OneCycleLR", "total_steps", total_steps, 2)
        validate.number(
            "OneCycleLR", "pct_start", pct_start, 0.0, 1.0, low_open=True, high_open=True
        )
        self.peak = float(pct_start * total_steps) - 1
        self.initial = self.max_lr / div
        self.final = self.initial / final_div

    @staticmethod
    def _cos(start: float, end: float, t: float) -> float:
        return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))

    def __call__(self, step: int) -> float:
        if step <= self.peak:
            return self._cos(self.initial, self.max_lr, step / self.peak if self.peak > 0 else 1)
        rest = self.total_steps - 1 - self.peak
        return self._cos(self.max_lr, self.final, (step - self.peak) / rest)


class Warmup:
    """Compose: a linear warm-up over ``steps`` steps in front of any other schedule."""

    def __init__(self, schedule: Any, steps: int) -> None:
        self.schedule, self.steps = schedule, validate.integer("Warmup", "steps", steps, 1)

    def __call__(self, step: int) -> float:
        scale = min(1.0, (step + 1) / self.steps)
        return scale * self.schedule(step)
