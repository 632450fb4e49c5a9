"""From a resolved ``RunConfig`` to the objects ``fit`` needs: model, optimizer, loss,
learning-rate schedule and augmentation."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from cnnlab import data
from cnnlab.data.augment import random_handwriting
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Softmax
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS, CosineLR, OneCycleLR, Optimizer
from cnnlab.engine.rng import manual_seed
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.serialize import model_from_config
from cnnlab.runs import recipes
from cnnlab.runs.config import RunConfig
from cnnlab.runs.zoo import build

IMAGE_SHAPE = (1, 28, 28)  # every image data set: one grey channel of 28×28


def check_fits(model: Sequential, dataset: str, name: str = "") -> None:
    """Refuse a model whose input or output does not match the data set's images and classes;
    ``name`` (a file or preset) starts the message."""
    where = f"{name}: " if name else ""
    if model.input_shape not in (None, IMAGE_SHAPE):
        raise CnnlabError(
            f"{where}the model takes input {model.input_shape}, but {dataset} images are "
            f"{IMAGE_SHAPE}; set input_shape to [1, 28, 28]"
        )
    outputs = model.output_shape(IMAGE_SHAPE)[-1]
    classes = len(data.class_names(dataset))
    if outputs != classes:
        raise CnnlabError(
            f"{where}the model has {outputs} outputs, but {dataset} has {classes} classes"
        )


def with_probabilities(model: Sequential, loss: str) -> Sequential:
    """The model, ending in a Softmax when ``loss`` compares probabilities (the article's MSE
    against a one-hot target) and it does not end in one already."""
    if loss != "mse" or isinstance(model.layers[-1], Softmax):
        return model
    return Sequential([*model.layers, Softmax()], model.input_shape, model.meta)


def make_model(config: RunConfig) -> Sequential:
    """The network ``config.model`` names (a preset or an architecture .json file), seeded."""
    manual_seed(config.seed)
    name = config.model
    if name.endswith(".json"):
        try:
            architecture = json.loads(Path(name).read_text())
        except OSError as err:
            raise CnnlabError(f"{name}: cannot read it ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise CnnlabError(f"{name}: not valid JSON ({err})") from None
        model = model_from_config(architecture, name, rng=config.seed)
    else:
        model = build(name, activation=config.activation, seed=config.seed)
    model = with_probabilities(model, config.loss)
    check_fits(model, config.dataset, name)
    return model


def make_optimizer(model: Sequential, config: RunConfig) -> Optimizer:
    kwargs: dict[str, Any] = {"weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        kwargs["momentum"] = config.momentum
    else:
        kwargs["betas"] = tuple(config.betas)
    return OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr, **kwargs)


def make_loss(config: RunConfig) -> Any:
    if config.loss == "cross-entropy":
        return LOSSES["cross-entropy"](label_smoothing=config.label_smoothing)
    return LOSSES[config.loss]()


def make_schedule(config: RunConfig, steps_per_epoch: int) -> Any:
    """The learning rate per step, or None for a constant one."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle" and total >= 2:
        return OneCycleLR(config.lr, total)
    if config.schedule == "cosine":
        return CosineLR(config.lr, total)
    return None


def make_augment(config: RunConfig) -> Any:
    """``random_handwriting`` with ``recipes.AUGMENT``'s settings when the run augments its
    training images, else None."""
    return partial(random_handwriting, **recipes.AUGMENT) if config.augment else None
