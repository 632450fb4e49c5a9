"""What a run writes beside its model: figures of how it went and, when its configuration asks
(``RunConfig.monitor``), the gradient flow per layer; and ``first_layer_filters``, the weights
its filter figures show (the web lab's live filters too).

``train_run`` and ``resume_run`` make a ``RunFigures`` before the first step (without
matplotlib that is a ``MissingPackageError``, before the run folder is written to) and call
``write`` once the model is saved, so a run trained from the command line, the web lab or a
notebook has the same files: ``curves.png``, ``confusion.png``, ``filters.png`` (a model with
a conv layer), ``misclassified.png`` and, monitored, ``gradient_flow.json`` and
``gradient_flow.png``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.engine.backend import to_numpy
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Conv2D
from cnnlab.engine.metrics import confusion_matrix
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback
from cnnlab.figures import plots
from cnnlab.figures.base import figure_class
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import GRADIENT_FLOW_FILE, RunFolder
from cnnlab.runs.monitor import GradientMonitor

CURVES, CONFUSION, FILTERS, MISCLASSIFIED = (
    "curves.png", "confusion.png", "filters.png", "misclassified.png",
)  # fmt: skip
GRADIENT_FLOW_FIGURE = "gradient_flow.png"


class RunFigures:
    """The figures of a run of ``config`` training ``model``, and its gradient monitor when
    the configuration asks for one."""

    def __init__(self, config: RunConfig, model: Sequential) -> None:
        figure_class()  # no matplotlib: say so now rather than after training
        self.monitor = GradientMonitor(model) if config.monitor else None

    @property
    def callbacks(self) -> list[Callback]:
        """What ``fit`` must call for these figures (the gradient monitor, if any)."""
        return [self.monitor] if self.monitor is not None else []

    def write(
        self,
        folder: RunFolder,
        model: Sequential,
        history: list[dict[str, Any]],
        test_images: np.ndarray,
        test_labels: np.ndarray,
        predictions: np.ndarray,
    ) -> None:
        """Write the figures (and the gradient flow) of the finished run into ``folder``: its
        ``history`` (one entry per epoch), the test pictures (uint8 ``(N, C, H, W)``), their
        labels and the model's answers ``(N,)``. The monitor stops watching the model."""
        out, names = folder.path, model.meta["class_names"]
        if self.monitor is not None:
            self.monitor.close()
            folder.write_json(out / GRADIENT_FLOW_FILE, self.monitor.records)
            plots.plot_gradient_flow(self.monitor.records, out / GRADIENT_FLOW_FIGURE)
        plots.plot_curves(history, out / CURVES)
        matrix = confusion_matrix(test_labels, predictions, len(names))
        plots.plot_confusion(matrix, names, out / CONFUSION)
        if any(isinstance(layer, Conv2D) for layer in model.layers):
            plots.plot_filters(first_layer_filters(model, colour=True), out / FILTERS)
        plots.plot_misclassified(test_images, test_labels, predictions, names, out / MISCLASSIFIED)


def first_layer_filters(model: Sequential, colour: bool = False) -> np.ndarray:
    """The first conv layer's filters ``(C_out, kH, kW)``, averaged over the input channels;
    with ``colour``, a colour model's as ``(C_out, kH, kW, 3)``: each filter's red, green and
    blue weights, as an image is laid out."""
    conv = next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)
    if conv is None:
        raise CnnlabError("this model has no Conv2D layer, so it has no filters to show")
    weights = to_numpy(conv.params["W"])  # (C_out, C_in, kH, kW)
    if colour and weights.shape[1] == 3:
        return weights.transpose(0, 2, 3, 1)
    return weights.mean(axis=1)
