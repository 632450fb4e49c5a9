"""What a model expects as input: it follows the data (:mod:`cnnlab.runs.pictures` turns a
picture into it).

A model remembers the data it was trained on in its ``meta`` (written by training):
``kind`` (``"digits"`` or ``"images"``), ``class_names``, and for pictures the per-channel
``mean`` and ``std`` of the training split. Models saved before colour support have no ``kind``;
a 1×28×28 model is then a digit model.

- **Digit models** see ``pixel / 255`` of 28×28 grey digits; a person's photo of a digit first
  goes through the MNIST-style preprocessing (:mod:`cnnlab.data.preprocess`).
- **Picture models** see ``(pixel / 255 − mean) / std`` per channel; a photo is decoded and
  centre-cropped and resized exactly as the training pictures were
  (:func:`cnnlab.data.folders.decode`). A grey photo given to a colour model is repeated in
  the three channels; a colour photo given to a grey model becomes its luminance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.data.folders import MAX_CLASS_NAME
from cnnlab.data.imageset import ImageSet, channel_stats, normalise
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import to_input

DIGIT_SHAPE = (1, 28, 28)
MAX_NAME = MAX_CLASS_NAME  # characters of a class name a model file may carry
# ITU-R BT.601 luma weights, as Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def kind_of(model: Sequential) -> str:
    """``"digits"`` or ``"images"``: how ``model`` wants its pictures prepared."""
    kind = model.meta.get("kind")
    if kind in ("digits", "images"):
        return kind
    return "digits" if model.input_shape in (None, DIGIT_SHAPE) else "images"


def reads_digits(model: Sequential) -> bool:
    """Whether ``model`` reads the ten digits 0-9 from 28×28 grey pictures: what a drawing on
    the web lab's Draw tab is for (a Fashion-MNIST model reads such pictures, but clothes)."""
    if kind_of(model) != "digits" or tuple(model.input_shape or DIGIT_SHAPE) != DIGIT_SHAPE:
        return False
    try:
        return class_names(model) == list("0123456789")
    except CnnlabError:  # a meta that does not fit the model
        return False


def data_meta(data: ImageSet, seed: int = 0) -> dict[str, Any]:
    """The ``meta`` entries a model trained on ``data`` carries, for inference later.

    ``split_seed`` is the seed that split a folder into training and test pictures, so that
    ``evaluate`` tests on the same pictures the training held out.
    """
    meta: dict[str, Any] = {
        "dataset": data.name,
        "kind": data.kind,
        "class_names": list(data.class_names),
        "split_seed": seed,
    }
    c, h, w = data.input_shape
    if data.kind == "digits":
        meta["input"] = "28x28 grey in [0, 1], ink bright on dark"
    else:
        meta["mean"], meta["std"] = channel_stats(data.x_train)
        meta["input"] = (
            f"{h}x{w} {'colour (RGB)' if c == 3 else 'grey'}, centre-cropped, "
            "(pixel/255 - mean) / std per channel"
        )
    return meta


def channel_stats_of(model: Sequential) -> tuple[np.ndarray, np.ndarray]:
    """A picture model's per-channel ``mean`` and ``std`` from its ``meta``, checked: one
    finite number per input channel, every std at least 1e-6 (a model file is a user's file;
    dividing 0..1 pixels by less overflows float32)."""
    channels = (model.input_shape or DIGIT_SHAPE)[0]
    stats = []
    for key in ("mean", "std"):
        value = model.meta.get(key)
        try:
            array = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            array = np.empty(0)
        low = 1e-6 if key == "std" else -np.inf
        if array.shape != (channels,) or not np.isfinite(array).all() or (array < low).any():
            raise CnnlabError(
                f"the model's meta {key!r} must be {channels} finite number(s)"
                f"{', each at least 1e-6' if key == 'std' else ''}, got {str(value)[:60]}; "
                "train the model again"
            )
        stats.append(array)
    return stats[0], stats[1]


def prepare(model: Sequential, images: np.ndarray) -> np.ndarray:
    """uint8 pictures ``(N, C, H, W)`` → the model's float input (digit or normalised)."""
    if kind_of(model) == "digits":
        return to_input(images[:, 0], model.dtype)
    mean, std = channel_stats_of(model)
    return normalise(images, mean, std, model.dtype)


def prepare_set(model: Sequential, data: ImageSet, split: str) -> np.ndarray:
    """The float input of one split of ``data``, after checking ``model`` fits it."""
    check_fits(model, data)
    return prepare(model, data.x_train if split == "train" else data.x_test)


def describe_shape(shape: tuple[int, ...]) -> str:
    """``(C, H, W)`` in words, e.g. ``"32x32 colour"``."""
    c, h, w = shape
    return f"{h}x{w} {'colour' if c == 3 else 'grey' if c == 1 else f'{c}-channel'}"


def check_fits(model: Sequential, data: ImageSet) -> None:
    """Refuse, in one line, a model whose input or classes do not match ``data``."""
    wanted = model.input_shape or DIGIT_SHAPE
    if tuple(wanted) != data.input_shape:
        takes, has = describe_shape(wanted), describe_shape(data.input_shape)
        if tuple(wanted[1:]) == data.input_shape[1:]:  # a folder is read at the model's size
            takes, has = takes.split()[-1], has.split()[-1]
        raise CnnlabError(
            f"the model takes {takes} pictures, but {data.name} has {has} ones; give it the "
            "kind of pictures it takes"
        )
    outputs = model.output_shape(tuple(wanted))[-1]
    if outputs != len(data.class_names):
        raise CnnlabError(
            f"the model has {outputs} outputs, but {data.name} has {len(data.class_names)} classes"
        )
    names = class_names(model) if model.meta.get("class_names") else None  # checked there
    if names and names != [str(n) for n in data.class_names]:
        raise CnnlabError(
            f"the model's classes ({', '.join(names)}) are not {data.name}'s "
            f"({', '.join(data.class_names)}); use the data set it was trained on"
        )


def class_names(model: Sequential) -> list[str]:
    """The model's class names, or ``"0"``, ``"1"``, … when it has none; refused in one line
    when its ``meta`` holds a list that is not one short name per output."""
    outputs = model.output_shape(tuple(model.input_shape or DIGIT_SHAPE))[-1]
    names = model.meta.get("class_names")
    if not names:
        return [str(i) for i in range(outputs)]
    if (
        not isinstance(names, list)
        or len(names) != outputs
        or not all(
            isinstance(n, str | int) and len(str(n)) <= MAX_NAME and str(n).isprintable()
            for n in names
        )
    ):
        raise CnnlabError(
            f"the model's meta 'class_names' must be {outputs} printable names (one per output, "
            f"at most {MAX_NAME} characters each), got {ascii(names)[:60]}; train the model again"
        )
    return [str(n) for n in names]


def class_index(names: list[str], label: str) -> int:
    """The index of the class ``label`` names: a class name (exact, case-sensitive), else an
    index into ``names``; refused in one line listing the names otherwise."""
    if label in names:
        return names.index(label)
    if label.strip().isdecimal() and int(label) < len(names):
        return int(label)
    raise CnnlabError(
        f"{label!r} is not one of the model's classes; give a class name "
        f"({', '.join(names)}) or an index from 0 to {len(names) - 1}"
    )
