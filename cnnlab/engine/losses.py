"""Loss functions: how far the prediction vector is from the target.

``loss = loss_fn.forward(outputs, labels)`` returns a Python float, the mean over the batch;
``loss_fn.backward()`` returns dL/doutputs with the outputs' shape and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.engine import validate
from cnnlab.engine.backend import xp_of
from cnnlab.engine.errors import CnnlabError, NonFiniteError


def _check_batch(name: str, outputs: Any, labels: Any) -> Any:
    """Validate ``(N, K)`` float outputs and ``(N,)`` integer labels in [0, K); return labels."""
    if not hasattr(outputs, "ndim") or outputs.ndim != 2:
        raise CnnlabError(
            f"{name}: expected outputs of shape (N, K), "
            f"got {getattr(outputs, 'shape', type(outputs))}"
        )
    xp = xp_of(outputs)
    labels = xp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != outputs.shape[0]:
        raise CnnlabError(
            f"{name}: expected labels of shape ({outputs.shape[0]},), got {labels.shape}"
        )
    if not xp.issubdtype(labels.dtype, xp.integer):
        raise CnnlabError(f"{name}: labels must be integers, got {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= outputs.shape[1]):
        raise CnnlabError(
            f"{name}: labels must be in [0, {outputs.shape[1] - 1}], "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )
    if not bool(xp.isfinite(outputs).all()):
        raise NonFiniteError(
            f"{name}: the network output contains NaN or inf (training diverged); "
            "lower the learning rate"
        )
    return labels


def one_hot(labels: Any, num_classes: int, dtype: Any = np.float32) -> Any:
    """Integer labels ``(N,)`` → one-hot targets ``(N, num_classes)``, e.g. 8 → [0,…,0,1,0]."""
    xp = xp_of(labels)
    targets = xp.zeros((labels.shape[0], num_classes), dtype=dtype)
    targets[xp.arange(labels.shape[0]), labels] = 1
    return targets


class CrossEntropyLoss:
    """Softmax and negative log-likelihood fused, on raw scores (logits).

    ``L = −(1/N) Σ_n Σ_k t_nk log softmax(z_n)_k`` with the target ``t_n`` the one-hot vector of
    ``y_n``; with ``label_smoothing`` ε it is ``(1 − ε)·onehot + ε/K`` (PyTorch's definition),
    which stops the network from driving its scores to extremes. Fusing softmax and the log is
    numerically stable (log-sum-exp with the max subtracted) and gives the simple gradient
    ``(softmax(z) − t) / N``.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = validate.number(
            "CrossEntropyLoss", "label_smoothing", label_smoothing, 0.0, 1.0, high_open=True
        )

    def forward(self, logits: Any, labels: Any) -> float:
        """``logits (N, K)``, ``labels (N,)`` integers → the mean loss."""
        labels = _check_batch("CrossEntropyLoss", logits, labels)
        xp = xp_of(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(labels.shape[0])
        self._probs, self._labels = xp.exp(log_probs), labels
        nll = float(0.0 - log_probs[rows, labels].mean())  # 0 - x: a certain hit is 0, not -0
        eps = self.label_smoothing
        if not eps:
            return nll
        return (1 - eps) * nll + eps * float(-log_probs.mean(axis=1).mean())

    def backward(self) -> Any:
        """dL/dlogits ``(N, K)``."""
        xp = xp_of(self._probs)
        grad = self._probs.copy()
        n, k = grad.shape
        eps = self.label_smoothing
        if eps:
            grad -= grad.dtype.type(eps / k)
        grad[xp.arange(n), self._labels] -= grad.dtype.type(1 - eps)
        grad /= n
        return grad

    def __repr__(self) -> str:
        eps = self.label_smoothing
        return f"CrossEntropyLoss(label_smoothing={eps:g})" if eps else "CrossEntropyLoss()"


class OutlierExposureLoss:
    """Cross-entropy on the pictures of a class, plus a pull towards the uniform distribution on
    pictures of none: outlier exposure (Hendrycks, Mazeika & Dietterich, "Deep Anomaly
    Detection with Outlier Exposure", ICLR 2019).

    A label of ``NONE`` (−1) marks a picture of no class. With the ``M`` class pictures of the
    batch and its ``U`` others, ``L = CE_M + weight · (1/U) Σ_u −(1/K) Σ_k log softmax(z_u)_k``,
    where ``CE_M`` is ``base`` (a ``CrossEntropyLoss``, label smoothing and all) on the class
    pictures; its gradient on a picture of none is ``weight · (softmax(z_u) − 1/K) / U``. A
    batch without pictures of none is plain ``base``.
    """

    NONE = -1

    def __init__(self, base: CrossEntropyLoss, weight: float = 0.5) -> None:
        if not isinstance(base, CrossEntropyLoss):
            raise CnnlabError(
                f"OutlierExposureLoss: base must be a CrossEntropyLoss, got {type(base).__name__}"
            )
        self.base = base
        self.weight = validate.number("OutlierExposureLoss", "weight", weight, 0.0)

    def forward(self, logits: Any, labels: Any) -> float:
        """``logits (N, K)``, ``labels (N,)`` integers in [0, K) or ``NONE`` → the loss."""
        xp = xp_of(logits)
        labels = xp.asarray(labels)
        none = labels == self.NONE
        self._none, self._shape, self._dtype = none, logits.shape, logits.dtype
        inside = ~none
        loss = 0.0
        if bool(inside.any()):
            loss = self.base.forward(logits[inside], labels[inside])
        outside = logits[none]
        self._probs = None
        if len(outside):
            _check_batch("OutlierExposureLoss", outside, xp.zeros(len(outside), xp.int64))
            shifted = outside - outside.max(axis=1, keepdims=True)
            log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
            self._probs = xp.exp(log_probs)
            loss += self.weight * float(-log_probs.mean())
        return loss

    def backward(self) -> Any:
        """dL/dlogits ``(N, K)``."""
        xp = xp_of(self._none)
        grad = xp.zeros(self._shape, self._dtype)
        if bool((~self._none).any()):
            grad[~self._none] = self.base.backward()
        if self._probs is not None:
            u, k = self._probs.shape
            grad[self._none] = (self._probs - grad.dtype.type(1 / k)) * grad.dtype.type(
                self.weight / u
            )
        return grad

    def __repr__(self) -> str:
        return f"OutlierExposureLoss({self.base!r}, weight={self.weight:g})"


class MSELoss:
    """The article's loss: ``L = (1/N) Σ_n Σ_k ½ (t_nk − o_nk)²`` against one-hot targets.

    Use it on probabilities (a ``Softmax`` as the last layer), as the article does.
    """

    def forward(self, outputs: Any, labels: Any) -> float:
        """``outputs (N, K)``, ``labels (N,)`` integers → the mean loss."""
        labels = _check_batch("MSELoss", outputs, labels)
        diff = outputs - one_hot(labels, outputs.shape[1], outputs.dtype)
        self._diff = diff
        return float(0.5 * (diff * diff).sum() / outputs.shape[0])

    def backward(self) -> Any:
        """dL/doutputs ``(N, K)`` = (o − t) / N."""
        return self._diff / self._diff.shape[0]

    def __repr__(self) -> str:
        return "MSELoss()"


LOSSES = {"cross-entropy": CrossEntropyLoss, "mse": MSELoss}
