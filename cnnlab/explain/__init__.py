"""Seeing inside a CNN: activation maps, filters, occlusion, saliency, gradient flow, and the
article's ideas as small experiments.

Modules: ``article`` (the 6×6 image, 4×4 filter and curve detector), ``maps`` (activation
maps, occlusion, saliency, top patches), ``prediction`` (all of it for one image),
``experiments`` (learning rates, activations, losses, features), ``surface`` (the error
surface of a linear neuron with two weights), ``step`` (one training iteration),
``gradcheck``, ``perceptron`` (sonar), ``monitor`` (``GradientMonitor``), ``figures`` and
``experiment_figures`` (matplotlib) and ``report`` (self-contained HTML).
``first_layer_filters`` comes from ``cnnlab.figures.plots``. Importing this package needs NumPy
only.
"""

from cnnlab.engine.gradcheck import gradient_check
from cnnlab.explain.article import (
    ARTICLE_FILTER,
    ARTICLE_IMAGE,
    ARTICLE_MAP,
    CURVE_FILTER,
    CURVE_IMAGE,
    NO_CURVE_IMAGE,
    activation_map,
    convolution_steps,
    curve_detector,
)
from cnnlab.explain.maps import (
    activation_maps,
    occlusion,
    receptive_field,
    saliency,
    top_patches,
)
from cnnlab.explain.monitor import GradientMonitor
from cnnlab.explain.prediction import explain_prediction
from cnnlab.explain.step import training_step
from cnnlab.figures.plots import first_layer_filters

__all__ = [
    "ARTICLE_FILTER",
    "ARTICLE_IMAGE",
    "ARTICLE_MAP",
    "CURVE_FILTER",
    "CURVE_IMAGE",
    "NO_CURVE_IMAGE",
    "GradientMonitor",
    "activation_map",
    "activation_maps",
    "convolution_steps",
    "curve_detector",
    "explain_prediction",
    "first_layer_filters",
    "gradient_check",
    "occlusion",
    "receptive_field",
    "saliency",
    "top_patches",
    "training_step",
]
