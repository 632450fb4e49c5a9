"""What a run writes beside its model: figures of how it went and, when its configuration asks
(``RunConfig.monitor``), the gradient flow per layer.

``train_run`` and ``resume_run`` make a ``RunFigures`` before the first step (without
matplotlib that is a ``MissingPackageError``, before the run folder is written to) and call
``write`` once the model is saved, so a run trained from the command line, the web lab or a
notebook has the same files: ``curves.png``, ``confusion.png``, ``filters.png`` (a model with
a conv layer), ``misclassified.png`` and, monitored, ``gradient_flow.json`` and
``gradient_flow.png``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.engine.layers import Conv2D
from cnnlab.engine.metrics import confusion_matrix
from cnnlab.engine.train import Callback
from cnnlab.figures import plots
from cnnlab.figures.base import figure_class
from cnnlab.runs.folder import GRADIENT_FLOW_FILE
from cnnlab.runs.monitor import GradientMonitor

if TYPE_CHECKING:
    from cnnlab.engine.sequential import Sequential
    from cnnlab.runs.config import RunConfig
    from cnnlab.runs.pipeline import RunResult

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

    def write(self, result: RunResult) -> None:
        """Write the figures (and the gradient flow) of the finished ``result`` into its
        folder; the monitor stops watching the model."""
        folder, model, predictions = result.folder, result.model, result.predictions
        out, labels, names = folder.path, result.data.test_labels, model.meta["class_names"]
        if self.monitor is not None:
            self.monitor.close()
            folder.write_json(out / GRADIENT_FLOW_FILE, self.monitor.records)
            plots.plot_gradient_flow(self.monitor.records, out / GRADIENT_FLOW_FIGURE)
        plots.plot_curves(result.history, out / CURVES)
        matrix = confusion_matrix(labels, predictions, len(names))
        plots.plot_confusion(matrix, names, out / CONFUSION)
        if any(isinstance(layer, Conv2D) for layer in model.layers):
            plots.plot_filters(plots.first_layer_filters(model, colour=True), out / FILTERS)
        plots.plot_misclassified(
            result.data.test_images, labels, predictions, names, out / MISCLASSIFIED
        )
