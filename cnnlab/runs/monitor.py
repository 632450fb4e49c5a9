"""Gradient flow while training: a ``fit`` callback that records, per layer and per epoch,

- ``grad_norm``: the mean over the epoch's batches of ‖dL/dθ‖ (all of the layer's parameters);
- ``update_ratio``: the mean of ‖Δθ‖/‖θ‖ per optimizer step (around 1e-3 is healthy);
- ``dead_fraction`` (ReLU): the fraction of units that were zero for every sample of the epoch;
- ``saturated_fraction`` (Sigmoid, Tanh): the fraction of outputs in the flat tails
  (sigmoid below 0.01 or above 0.99, |tanh| above 0.99), where the gradient all but vanishes.

It observes each layer by wrapping its ``backward`` on the instance: after the layer has
written its gradients (and before the optimizer uses them) the wrapper reads ``grads``, a copy
of ``params`` and, for activations, the cached output ``_out`` of the training batch.
``close()`` removes the wrappers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab.engine.backend import to_numpy
from cnnlab.engine.layers import Layer, ReLU, Sigmoid, Tanh
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback, TrainState

SATURATION = 0.99  # sigmoid outside [0.01, 0.99] or |tanh| above this counts as saturated


def _norm(arrays: list[Any]) -> float:
    return float(np.sqrt(sum(float((to_numpy(a).astype(np.float64) ** 2).sum()) for a in arrays)))


class _LayerStats:
    """What one layer accumulates over one epoch."""

    def __init__(self) -> None:
        self.grad_norms: list[float] = []
        self.update_ratios: list[float] = []
        self.snapshot: list[np.ndarray] | None = None
        self.ever_active: np.ndarray | None = None
        self.saturated = 0
        self.total = 0


class GradientMonitor(Callback):
    """Record per-layer gradient statistics of ``model`` during ``fit``.

    ``records`` is a JSON-serialisable list with one dict per finished epoch:
    ``{"epoch": 1, "layers": [{"name": "0.Conv2D", "type": "Conv2D", "grad_norm": ...,
    "update_ratio": ...}, {"name": "2.ReLU", "type": "ReLU", "dead_fraction": ...}, ...]}``.
    ``batch_grad_norms`` holds ``{layer name: ‖grad‖}`` for every batch of the run.
    """

    def __init__(self, model: Sequential) -> None:
        self.model = model
        self.records: list[dict[str, Any]] = []
        self.batch_grad_norms: list[dict[str, float]] = []
        self._watched: list[tuple[str, Layer]] = [
            (f"{i}.{type(layer).__name__}", layer)
            for i, layer in enumerate(model.layers)
            if layer.params or isinstance(layer, ReLU | Sigmoid | Tanh)
        ]
        self._stats = {name: _LayerStats() for name, _ in self._watched}
        self._batch: dict[str, float] = {}
        for name, layer in self._watched:
            layer.backward = self._wrap(name, layer)  # type: ignore[method-assign]

    def _wrap(self, name: str, layer: Layer) -> Callable[[Any], Any]:
        original = type(layer).backward

        def backward(grad_out: Any) -> Any:
            result = original(layer, grad_out)
            if layer.training:
                self._observe(name, layer)
            return result

        return backward

    def _observe(self, name: str, layer: Layer) -> None:
        stats = self._stats[name]
        if layer.params:
            norm = _norm(list(layer.grads.values()))
            stats.grad_norms.append(norm)
            stats.snapshot = [to_numpy(p).copy() for p in layer.params.values()]
            self._batch[name] = norm
            return
        out = to_numpy(layer._out)
        if isinstance(layer, ReLU):
            active = (out > 0).any(axis=0)  # per unit: did any sample of the batch fire it?
            stats.ever_active = active if stats.ever_active is None else stats.ever_active | active
        else:
            centred = out - 0.5 if isinstance(layer, Sigmoid) else out
            limit = SATURATION - 0.5 if isinstance(layer, Sigmoid) else SATURATION
            tail = np.abs(centred) > limit
            stats.saturated += int(tail.sum())
            stats.total += tail.size

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        for name, layer in self._watched:
            stats = self._stats[name]
            if layer.params and stats.snapshot is not None:
                now = [to_numpy(p) for p in layer.params.values()]
                delta = _norm([a - b for a, b in zip(now, stats.snapshot, strict=True)])
                stats.update_ratios.append(delta / max(_norm(stats.snapshot), 1e-12))
                stats.snapshot = None
        if self._batch:
            self.batch_grad_norms.append(self._batch)
            self._batch = {}

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        layers = []
        for name, layer in self._watched:
            stats = self._stats[name]
            entry: dict[str, Any] = {"name": name, "type": type(layer).__name__}
            if layer.params:
                entry["grad_norm"] = float(np.mean(stats.grad_norms)) if stats.grad_norms else 0.0
                ratios = stats.update_ratios
                entry["update_ratio"] = float(np.mean(ratios)) if ratios else 0.0
            elif isinstance(layer, ReLU):
                alive = stats.ever_active
                entry["dead_fraction"] = 0.0 if alive is None else float(1.0 - alive.mean())
            else:
                entry["saturated_fraction"] = stats.saturated / max(stats.total, 1)
            layers.append(entry)
            self._stats[name] = _LayerStats()
        self.records.append(
            {"epoch": int(logs.get("epoch", len(self.records) + 1)), "layers": layers}
        )

    def close(self) -> None:
        """Remove the wrappers; the model behaves exactly as before."""
        for _, layer in self._watched:
            layer.__dict__.pop("backward", None)
