"""The IMAGE argument of ``explain`` and ``step``: an image file, a bundled photo, or a picture
of a data set.

``DATASET:SPLIT:INDEX`` (e.g. ``mnist-sample:test:17``) picks picture 17 of a data set's test
split, already the size the network takes, so it needs no preprocessing beyond the model's
normalisation. ``photo:NAME`` is one of the colour photos bundled with cnnlab (``photo:cat``,
``photo:coffee``, ``photo:astronaut``, ``photo:rocket``). Anything else is read as an image file
and prepared as ``cnnlab predict`` does for the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.engine.errors import CnnlabError

_SPEC = re.compile(r"^(?P<name>[a-z0-9-]+):(?P<split>train|test):(?P<index>\d+)$")


_PHOTO = re.compile(r"^photo:(?P<name>[a-z]+)$")
PHOTOS = ("astronaut", "cat", "coffee", "rocket")


@dataclass
class InputImage:
    """One image ready for the network, with how it got there."""

    image: np.ndarray  # (H, W) grey or (H, W, 3) RGB in [0, 1]: the picture the network sees
    source: str  # what the user passed
    label: int | None = None  # the true class, when the image comes from a data set
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # preprocessing stages, in order
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # of steps shown smaller
    x: np.ndarray | None = None  # (C, H, W) the network input, when it is not ``image`` itself

    def as_input(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The network input ``(1, C, H, W)``."""
        if self.x is not None:
            return self.x.astype(dtype)[None]
        return self.image.astype(dtype)[None, None]  # (1, 1, 28, 28)


def photo_path(name: str) -> Path:
    """The bundled colour photo ``name`` (one of ``PHOTOS``)."""
    from cnnlab.data.datasets import BUNDLED_DIR

    if name not in PHOTOS:
        raise CnnlabError(f"no bundled photo {name!r}; choose photo:{', photo:'.join(PHOTOS)}")
    return BUNDLED_DIR / f"photo-{name}.jpg"


def _from_data_set(spec: str, match: re.Match, data_dir: Any, model: Any) -> InputImage:
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
    title = f"{name} {split} #{index}"
    shape = (1, *images.shape[1:]) if images.ndim == 3 else images.shape[1:]
    if model is not None and tuple(model.input_shape or (1, 28, 28)) != shape:
        from cnnlab.runs.inputs import describe_shape

        raise CnnlabError(
            f"{spec!r}: {name} pictures are {describe_shape(shape)}, but the model takes "
            f"{describe_shape(model.input_shape)} ones; pick a picture of the data it was "
            "trained on"
        )
    if images.ndim == 3:  # a digit (28, 28)
        image = images[index].astype(np.float32) / np.float32(255)
        return InputImage(image, spec, int(labels[index]), {title: image})
    from cnnlab.runs.inputs import prepare

    picture = images[index]  # (C, H, W) uint8
    image = picture.transpose(1, 2, 0).astype(np.float32) / 255
    x = prepare(model, picture[None])[0] if model is not None else None
    return InputImage(image, spec, int(labels[index]), {title: image}, x=x)


def load_input(spec: str, data_dir: str | Path | None = None, model: Any = None) -> InputImage:
    """Resolve an IMAGE argument: ``DATASET:SPLIT:INDEX``, ``photo:NAME`` or an image file.

    ``model`` decides how a picture file is prepared (digit preprocessing or the model's own
    resizing and normalisation); without it a file is read as a digit.
    """
    match = _SPEC.match(spec)
    if match and not Path(spec).exists():
        return _from_data_set(spec, match, data_dir, model)
    photo = _PHOTO.match(spec)
    path = photo_path(photo["name"]) if photo and not Path(spec).exists() else Path(spec)
    if not path.exists():  # a FIFO or a folder: reading it says what it is
        raise CnnlabError(
            f"{spec!r}: no such image file; give an image (PNG, JPEG, ...), a bundled photo "
            "like photo:cat, or a data set picture like mnist-sample:test:17"
        )
    from cnnlab.data.preprocess import load_image, preprocess_digit
    from cnnlab.runs.inputs import kind_of, read_picture

    if model is not None and kind_of(model) == "images":
        from cnnlab.data.folders import read_whole

        picture = read_picture(model, path)
        whole, size = read_whole(path, name=spec)  # the picture before it was cropped
        steps = {"original": whole.astype(np.float32) / 255, **picture.steps}
        return InputImage(picture.display, spec, None, steps, {"original": size}, x=picture.x)
    grey = load_image(path)  # its errors name the file
    try:
        result = preprocess_digit(grey)
    except CnnlabError as err:  # no ink, too small: say which image
        raise type(err)(f"{spec}: {err}") from None
    steps = {name: np.asarray(step) for name, step in result.steps.items()}
    # The "raw" step is shown at most 512 px a side; the file's own size is kept to say so.
    image = np.asarray(result.image, dtype=np.float32)
    return InputImage(image, spec, None, steps, {"raw": (grey.shape[0], grey.shape[1])})
