"""cnnlab: a convolutional neural network, from scratch in NumPy, that learns to read digits.

The engine (layers, losses, optimizers, ``Sequential``, ``fit``) needs only NumPy, and
threadpoolctl to keep the BLAS on one thread while its own threads use every core
(``set_threads``). Data loaders live in ``cnnlab.data``, image preprocessing in
``cnnlab.data.preprocess``, the command line in ``cnnlab.cli``.
"""

from cnnlab.engine.compiled import set_compiled
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    MaxPool2D,
    ReLU,
    Residual,
    Sigmoid,
    Softmax,
    Tanh,
)
from cnnlab.engine.losses import CrossEntropyLoss, MSELoss, OutlierExposureLoss
from cnnlab.engine.optim import SGD, Adam, CosineLR, OneCycleLR, StepLR, Warmup
from cnnlab.engine.parallel import get_threads, set_threads
from cnnlab.engine.rng import manual_seed
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback, TrainState, evaluate, fit, to_input
from cnnlab.runs.zoo import PRESETS, build

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "SGD",
    "Adam",
    "AvgPool2D",
    "BatchNorm1D",
    "BatchNorm2D",
    "Callback",
    "CnnlabError",
    "Conv2D",
    "CosineLR",
    "CrossEntropyLoss",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2D",
    "Layer",
    "MSELoss",
    "MaxPool2D",
    "OneCycleLR",
    "OutlierExposureLoss",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "StepLR",
    "Tanh",
    "TrainState",
    "Warmup",
    "build",
    "evaluate",
    "fit",
    "get_threads",
    "manual_seed",
    "set_compiled",
    "set_threads",
    "to_input",
]
