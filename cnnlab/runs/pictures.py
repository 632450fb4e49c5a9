"""The one way a picture becomes a model's input, whatever it comes from.

``read_picture(model, source)`` takes any of

- an image file's path (PNG, JPEG, …), or the file's bytes (a web upload);
- ``photo:NAME``, one of the colour photos bundled with cnnlab (``PHOTOS``);
- ``DATASET:SPLIT:INDEX`` (e.g. ``mnist-sample:test:17``), a picture of a data set, already the
  size the network takes, with its true class;
- a 2-D array of grey levels in [0, 1] (a drawing), taken as the 28×28 input itself or, with
  ``preprocess=True``, a picture of any size from 5×5 to 1024×1024 to be preprocessed;

and returns a ``Picture``: the network input prepared as the model's training data was
(:mod:`cnnlab.runs.inputs`), what it looks like, and how it got there. Decoding and
preprocessing run in one of ``PICTURE_SLOTS`` (a few at once: each may allocate ~64 MB).
Every problem is a one-line ``CnnlabError`` naming the picture; a picture whose header claims
too many pixels is an ``ImageTooLargeError``, a digit model's blank picture a ``NoInkError``.

``needed(source)`` says which kind of model a source is for, so a command given no model can
choose one (:func:`cnnlab.runs.folder.newest_model`).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.inputs import (
    DIGIT_SHAPE,
    LUMA,
    class_names,
    describe_shape,
    kind_of,
    prepare,
    reads_digits,
)

# Pictures decoded and preprocessed at once: one per core, at most 4 (peak memory ~4 × 64 MB).
PICTURE_SLOTS = threading.BoundedSemaphore(min(os.cpu_count() or 1, 4))
PHOTOS = ("astronaut", "cat", "coffee", "rocket")
DRAWING_SIDES = (5, 1024)  # the smallest and largest side of a drawing to preprocess

_SPEC = re.compile(r"^(?P<name>[a-z0-9-]+):(?P<split>train|test):(?P<index>\d+)$")
_PHOTO = re.compile(r"^photo:(?P<name>[a-z]+)$")

Source = str | os.PathLike | bytes | np.ndarray


@dataclass
class Picture:
    """One picture made ready for a model, with what it looked like on the way."""

    x: np.ndarray  # (C, H, W) the network input, in the model's dtype
    display: np.ndarray  # (H, W) grey or (H, W, 3) RGB in [0, 1]: what the network sees
    source: str  # what was given: a path, a photo or data set name, "the picture"
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # preprocessing stages, in order
    # (width, height) as read: a digit's picture or drawing before preprocessing (a file over
    # 1024 px a side is read shrunk), a picture model's centre-cropped square
    size: tuple[int, int] = (0, 0)
    inverted: bool = False  # dark ink on a light ground, turned around for a digit model
    label: int | None = None  # the true class, when the picture comes from a data set


def read_picture(
    model: Sequential,
    source: Source,
    *,
    preprocess: bool = True,
    data_dir: str | os.PathLike | None = None,
) -> Picture:
    """``source`` (see the module's list) as ``model``'s input.

    ``preprocess`` applies to a pixel array only: False takes it as the 28×28 input itself.
    ``data_dir`` is where a ``DATASET:SPLIT:INDEX``'s data set may be found.
    """
    if isinstance(source, np.ndarray):
        return _from_pixels(model, source, preprocess)
    if isinstance(source, bytes | bytearray | memoryview):
        return _from_file(model, bytes(source), "the picture")
    text = os.fspath(source)
    exists = Path(text).exists()  # a file of that name wins over a spec
    spec = _SPEC.match(text)
    if spec and not exists:
        return _from_data_set(model, text, spec, data_dir)
    photo = _PHOTO.match(text)
    if photo and not exists:
        return _from_file(model, photo_path(photo["name"]), text)
    if not exists:  # a FIFO or a folder: reading it says what it is
        raise CnnlabError(
            f"{text!r}: no such image file; give an image (PNG, JPEG, ...), a bundled photo "
            "like photo:cat, or a data set picture like mnist-sample:test:17"
        )
    return _from_file(model, text, text)


def reads_dataset(model: Sequential, name: str) -> bool:
    """Whether ``model`` was made for the named data set: it has that set's classes."""
    from cnnlab.data.datasets import DATASETS

    info = DATASETS.get(name)
    try:
        return info is not None and class_names(model) == list(info.classes)
    except CnnlabError:  # a meta that does not fit the model
        return False


def needed(source: Source) -> tuple[Callable[[Sequential], bool], str]:
    """Which models can read ``source``, and that kind in words ("that reads digits"): a data
    set's picture needs a model of that set's classes, a bundled photo a picture model, and a
    file or a drawing a model of the digits 0-9."""
    if isinstance(source, str | os.PathLike) and not Path(source).exists():
        spec = _SPEC.match(os.fspath(source))
        if spec:
            name = spec["name"]
            return (lambda model: reads_dataset(model, name)), f"of {name}'s classes"
        if _PHOTO.match(os.fspath(source)):
            return (lambda model: kind_of(model) == "images"), "that reads pictures"
    return reads_digits, "that reads digits"


def needed_by(sources: Sequence[Source]) -> tuple[Callable[[Sequential], bool], str]:
    """``needed`` for several sources at once: the models that can read every one of them."""
    needs = [needed(source) for source in sources]
    words = " and ".join(dict.fromkeys(words for _, words in needs))
    return (lambda model: all(fits(model) for fits, _ in needs)), words


def photo_path(name: str) -> Path:
    """The bundled colour photo ``name`` (one of ``PHOTOS``)."""
    from cnnlab.data.datasets import BUNDLED_DIR

    if name not in PHOTOS:
        raise CnnlabError(f"no bundled photo {name!r}; choose photo:{', photo:'.join(PHOTOS)}")
    return BUNDLED_DIR / f"photo-{name}.jpg"


def _digit(model: Sequential, result, source: str, size: tuple[int, int]) -> Picture:
    """A ``preprocess_digit`` result as a digit model's ``Picture``."""
    image = np.asarray(result.image, np.float32)
    steps = {name: np.asarray(step) for name, step in result.steps.items()}
    return Picture(image[None].astype(model.dtype), image, source, steps, size, result.inverted)


def _from_file(model: Sequential, file: str | Path | bytes, source: str) -> Picture:
    """A picture file (its path or bytes), prepared as ``model``'s training pictures were."""
    with PICTURE_SLOTS:
        if kind_of(model) == "digits":
            from cnnlab.data.preprocess import load_image, preprocess_digit

            grey = load_image(file)  # its errors name the file
            try:
                result = preprocess_digit(grey)
            except CnnlabError as err:  # no ink, too small: say which picture
                raise type(err)(f"{source}: {err}") from None
            return _digit(model, result, source, (grey.shape[1], grey.shape[0]))
        from cnnlab.data.folders import read_pixels

        channels, side, _ = model.input_shape
        pixels, _ = read_pixels(file, side, source)  # its one-line errors name the picture
    if channels == 1:
        grey = (pixels.astype(np.float32) @ LUMA).round().astype(np.uint8)
        batch = grey[None, None]  # (1, 1, H, W)
    else:
        batch = pixels.transpose(2, 0, 1)[None]  # (1, 3, H, W)
    display = batch[0].transpose(1, 2, 0).astype(np.float32) / 255
    display = display[..., 0] if channels == 1 else display
    steps = {f"centre-cropped {side}x{side}": display}
    return Picture(prepare(model, batch)[0], display, source, steps, (side, side))


def _from_pixels(model: Sequential, pixels: np.ndarray, preprocess: bool) -> Picture:
    """A drawing: grey levels in [0, 1], (28, 28) as they are or any size to preprocess."""
    if kind_of(model) != "digits" or tuple(model.input_shape or DIGIT_SHAPE) != DIGIT_SHAPE:
        raise CnnlabError(
            "a drawing is read by a model of 28x28 grey pictures; this one takes "
            f"{describe_shape(model.input_shape)} pictures"
        )
    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise CnnlabError(f"the pixels must be a 2-D array, got shape {pixels.shape}")
    low, high = DRAWING_SIDES
    if not preprocess and pixels.shape != DIGIT_SHAPE[1:]:
        raise CnnlabError(
            f"the pixels must be 28×28, got {pixels.shape[0]}×{pixels.shape[1]}; "
            "preprocess them for other sizes"
        )
    if preprocess and not (min(pixels.shape) >= low and max(pixels.shape) <= high):
        raise CnnlabError(f"the pixels must be {low}×{low} to {high}×{high}, got {pixels.shape}")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise CnnlabError("the pixel values must be finite numbers in [0, 1]")
    image = pixels.astype(np.float32)
    size = (image.shape[1], image.shape[0])
    if not preprocess:
        return Picture(
            image[None].astype(model.dtype), image, "the drawing", {"centred": image}, size
        )
    from cnnlab.data.preprocess import preprocess_digit

    with PICTURE_SLOTS:
        return _digit(model, preprocess_digit(image), "the drawing", size)


def _from_data_set(
    model: Sequential, spec: str, match: re.Match, data_dir: str | os.PathLike | None
) -> Picture:
    """Picture ``INDEX`` of a data set's split, with its true class."""
    from cnnlab.data import PICTURE_DATASETS, load

    name, split, index = match["name"], match["split"], int(match["index"])
    if name not in PICTURE_DATASETS:
        raise CnnlabError(
            f"{spec!r}: unknown image data set {name!r}; use one of "
            f"{', '.join(PICTURE_DATASETS)}, e.g. mnist-sample:test:17"
        )
    images, labels = load(name, split, data_dir=data_dir)
    if index >= len(images):
        raise CnnlabError(
            f"{spec!r}: index {index} is out of range; {name} {split} has {len(images)} images"
        )
    picture = images[index] if images.ndim == 4 else images[index][None]  # (C, H, W) uint8
    if tuple(model.input_shape or DIGIT_SHAPE) != picture.shape:
        raise CnnlabError(
            f"{spec!r}: {name} pictures are {describe_shape(picture.shape)}, but the model takes "
            f"{describe_shape(model.input_shape or DIGIT_SHAPE)} ones; pick a picture of the "
            "data it was trained on"
        )
    display = picture.transpose(1, 2, 0).astype(np.float32) / np.float32(255)
    display = display[..., 0] if picture.shape[0] == 1 else display
    title = f"{name} {split} #{index}"
    x = prepare(model, picture[None])[0]
    size = (picture.shape[2], picture.shape[1])
    return Picture(x, display, spec, {title: display}, size, label=int(labels[index]))
