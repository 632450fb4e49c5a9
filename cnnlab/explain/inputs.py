"""The IMAGE argument of ``explain`` and ``step``: an image file, or a digit of a data set.

``DATASET:SPLIT:INDEX`` (e.g. ``mnist-sample:test:17``) picks digit 17 of the bundled sample's
test split, already 28×28, centred and ink-bright, so it needs no preprocessing. Anything else
is read as an image file and preprocessed as ``cnnlab predict`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.engine.errors import CnnlabError

_SPEC = re.compile(r"^(?P<name>[a-z0-9-]+):(?P<split>train|test):(?P<index>\d+)$")


@dataclass
class InputImage:
    """One image ready for the network, with how it got there."""

    image: np.ndarray  # (28, 28) float32 in [0, 1], ink bright on dark
    source: str  # what the user passed
    label: int | None = None  # the true class, when the image comes from a data set
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # preprocessing stages, in order
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # of steps shown smaller

    def as_input(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The network input ``(1, 1, 28, 28)``."""
        return self.image.astype(dtype)[None, None]  # (1, 1, 28, 28)


def load_input(spec: str, data_dir: str | Path | None = None) -> InputImage:
    """Resolve an IMAGE argument: ``DATASET:SPLIT:INDEX`` or the path of an image file."""
    match = _SPEC.match(spec)
    if match and not Path(spec).exists():
        from cnnlab.data import load, names

        name, split, index = match["name"], match["split"], int(match["index"])
        if name not in names() or name == "sonar":
            raise CnnlabError(
                f"{spec!r}: unknown image data set {name!r}; use mnist-sample, mnist or "
                "fashion-mnist, e.g. mnist-sample:test:17"
            )
        images, labels = load(name, split, data_dir=data_dir)
        if index >= len(images):
            raise CnnlabError(
                f"{spec!r}: index {index} is out of range; {name} {split} has {len(images)} images"
            )
        image = images[index].astype(np.float32) / np.float32(255)
        return InputImage(image, spec, int(labels[index]), {f"{name} {split} #{index}": image})
    path = Path(spec)
    if not path.exists():  # a FIFO or a folder: load_image says what it is
        raise CnnlabError(
            f"{spec!r}: no such image file; give an image (PNG, JPEG, ...) or a data set digit "
            "like mnist-sample:test:17"
        )
    from cnnlab.data.preprocess import load_image, preprocess_digit

    grey = load_image(path)  # its errors name the file
    try:
        result = preprocess_digit(grey)
    except CnnlabError as err:  # no ink, too small: say which image
        raise type(err)(f"{spec}: {err}") from None
    steps = {name: np.asarray(step) for name, step in result.steps.items()}
    # The "raw" step is shown at most 512 px a side; the file's own size is kept to say so.
    image = np.asarray(result.image, dtype=np.float32)
    return InputImage(image, spec, None, steps, {"raw": (grey.shape[0], grey.shape[1])})
