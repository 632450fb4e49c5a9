"""From a resolved ``RunConfig`` to the objects ``fit`` needs: model, optimizer, loss,
learning-rate schedule and augmentation."""

from __future__ import annotations

import json
from functools import partial
from itertools import takewhile
from typing import Any

from cnnlab.data.augment import random_handwriting, random_picture
from cnnlab.data.folders import memory_budget
from cnnlab.data.imageset import ImageSet
from cnnlab.engine import limits
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import read_regular_file
from cnnlab.engine.layers import Flatten, Softmax
from cnnlab.engine.limits import check_activations
from cnnlab.engine.losses import LOSSES, OutlierExposureLoss
from cnnlab.engine.optim import OPTIMIZERS, CosineLR, OneCycleLR, Optimizer
from cnnlab.engine.rng import manual_seed
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.serialize import model_from_config
from cnnlab.runs import recipes, sizing
from cnnlab.runs.config import RunConfig
from cnnlab.runs.model_input import check_fits
from cnnlab.runs.zoo import build


def with_probabilities(model: Sequential, loss: str) -> Sequential:
    """The model, ending in a Softmax when ``loss`` compares probabilities (the article's MSE
    against a one-hot target) and it does not end in one already."""
    if loss != "mse" or isinstance(model.layers[-1], Softmax):
        return model
    return Sequential([*model.layers, Softmax()], model.input_shape, model.meta)


# Training holds about this many copies of one batch's activations (forward values kept for
# backward, their gradients, scratch), each number a float32.
_TRAINING_COPIES, _NUMBER_BYTES = 3, 4
MIN_CHECKED = 32  # every preset takes 32×32 pictures


def check_image_size(config: RunConfig) -> None:
    """Refuse, before any picture is decoded, an ``image_size`` the run's preset cannot train
    at: its conv layers over the activation limits, or a batch of their activations over the
    memory budget. Only the conv layers depend on the size; they are taken from the preset
    built small. A run started from a trained model (``start_from``) trains that model's
    layers, not the preset's: they are checked once it is made (:func:`check_loadable`)."""
    if config.image_size is None or config.start_from not in (None, "scratch"):
        return
    resolved = config.resolve(1, "images")
    if resolved.model.endswith(".json"):
        return  # a fixed architecture has its own input size, checked against the data
    small = build(resolved.model, activation=resolved.activation, input_shape=(3, 32, 32))
    convs = list(takewhile(lambda layer: not isinstance(layer, Flatten), small.layers))

    def fits(size: int) -> bool:
        try:
            check_activations(convs, (3, size, size), "")
            numbers = limits.activation_numbers(convs, (3, size, size))
        except (CnnlabError, ValueError):
            return False  # over the limits, or too small for the layers (checked later)
        need = resolved.batch_size * numbers * _TRAINING_COPIES * _NUMBER_BYTES
        return need <= memory_budget()

    size = config.image_size
    if not fits(size) and fits(MIN_CHECKED):
        largest = max(s for s in range(MIN_CHECKED, size, 8) if fits(s))
        raise CnnlabError(
            f"--image-size {size} is too large for the {resolved.model} model at batch size "
            f"{resolved.batch_size} on this machine; choose --image-size {largest} or less"
        )


def make_model(config: RunConfig, pictures: ImageSet) -> Sequential:
    """The network ``config.model`` names (a preset, built for the shape and classes of
    ``pictures``, or an architecture .json file, which must fit them), seeded."""
    manual_seed(config.seed)
    name = config.model
    if name.endswith(".json"):
        try:
            architecture = json.loads(read_regular_file(name, limits.MAX_CONFIG_BYTES))
        except CnnlabError:
            raise  # not a regular file, or too big: said in one line already
        except OSError as err:
            raise CnnlabError(f"{name}: cannot read it ({err.strerror})") from None
        except (ValueError, RecursionError) as err:
            raise CnnlabError(f"{name}: not valid JSON ({err})") from None
        model = model_from_config(Sequential, architecture, name, rng=config.seed)
    else:
        model = build(
            name, activation=config.activation, seed=config.seed,
            input_shape=pictures.input_shape, n_classes=len(pictures.class_names),
        )  # fmt: skip
    model = with_probabilities(model, config.loss)
    try:
        check_fits(model, pictures)
    except CnnlabError as err:
        raise CnnlabError(f"{name}: {err}") from None
    check_loadable(model, pictures, name)
    return model


def check_loadable(model: Sequential, pictures: ImageSet, name: str) -> None:
    """Refuse, before training, a model that the bounds every model file is loaded under would
    refuse at ``pictures``' size: it would train, then be refused by every command that
    reads it."""
    try:
        check_activations(model.layers, pictures.input_shape, name)
    except CnnlabError as err:
        raise CnnlabError(f"{err} at this picture size; use a smaller --image-size") from None


def make_optimizer(model: Sequential, config: RunConfig) -> Optimizer:
    kwargs: dict[str, Any] = {"weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        kwargs["momentum"] = config.momentum
    else:
        kwargs["betas"] = tuple(config.betas)
    return OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr, **kwargs)


def make_loss(config: RunConfig) -> Any:
    if config.loss == "cross-entropy":
        loss = LOSSES["cross-entropy"](label_smoothing=config.label_smoothing)
        if config.outlier_exposure:
            return OutlierExposureLoss(loss, config.outlier_exposure)
        return loss
    return LOSSES[config.loss]()


def make_schedule(config: RunConfig, steps_per_epoch: int) -> Any:
    """The learning rate per step, or None for a constant one."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle" and total >= 2:
        return OneCycleLR(config.lr, total)
    if config.schedule == "cosine":
        return CosineLR(config.lr, total)
    return None


def make_augment(
    config: RunConfig, kind: str, channels: int = 3, colour_tells: bool = False
) -> Any:
    """When the run augments: for digits (never mirrored) ``random_handwriting`` with
    ``recipes.AUGMENT``'s settings; for other pictures crops and colour jitter, and mirror
    images for colour ones only (a grey picture may be a letter or digit, which a mirror
    changes), with, for a folder's colour pictures and a network started from pretrained
    features, channel orders and grey copies (``recipes.FOLDER_COLOUR_AUGMENT``) unless
    ``colour_tells`` (their colours alone tell the classes apart: ``sizing.colour_tells``);
    else None."""
    if not config.augment:
        return None
    if kind == "digits":
        return partial(random_handwriting, **recipes.AUGMENT)
    settings = dict(recipes.PICTURE_AUGMENT)
    started = config.start_from not in (None, "scratch")
    if channels == 3 and sizing.is_folder(config.dataset) and started and not colour_tells:
        settings.update(recipes.FOLDER_COLOUR_AUGMENT)
    return partial(random_picture, flip=channels == 3, **settings)
