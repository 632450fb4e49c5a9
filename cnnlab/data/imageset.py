"""One shape for every image data set cnnlab trains on: uint8 ``(N, C, H, W)`` and class names.

Digits (1×28×28), CIFAR-10 (3×32×32), the generated ``shapes`` set and a user's image folder all
arrive as an :class:`ImageSet`. The network sees ``(pixel / 255 − mean) / std`` per channel,
with ``mean`` and ``std`` measured on the training split (:func:`channel_stats`) and stored in
the model, so a picture given later is normalised exactly as the training images were.
Digit models keep their historical input, plain ``pixel / 255`` (mean 0, std 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.engine.errors import CnnlabError

# Rows of at most this many images at a time when measuring statistics or normalising, so the
# float copy of a large set is never made whole just to read its mean.
# Values per float64 chunk of channel_stats: 32 MB, whatever the picture size (a count of
# pictures was 3.2 GB for 4,096 pictures of 3×128×128 beside the squares).
_CHUNK_VALUES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ImageSet:
    """Training and test images with integer labels, and what the labels mean.

    ``x_train``/``x_test`` are uint8 ``(N, C, H, W)``; ``y_train``/``y_test`` int64 ``(N,)``
    in ``0 .. len(class_names) − 1``. ``kind`` is ``"digits"`` for the MNIST-style sets (their
    models get the digit preprocessing for photos) and ``"images"`` for everything else.
    ``skipped`` lists ``(file, reason)`` for the pictures that could not be used;
    ``from_cache`` says the pictures were read from the decoded-array cache.
    """

    name: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    kind: str = "images"
    skipped: tuple[tuple[str, str], ...] = field(default=())
    from_cache: bool = False

    def __post_init__(self) -> None:
        for part in ("x_train", "x_test"):
            x = getattr(self, part)
            if x.dtype != np.uint8 or x.ndim != 4:
                raise CnnlabError(f"{self.name}: {part} must be uint8 (N, C, H, W), got {x.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise CnnlabError(
                f"{self.name}: train images {self.x_train.shape[1:]} and test images "
                f"{self.x_test.shape[1:]} differ in shape"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one image, ``(C, H, W)``."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def stratified_split(
    labels: np.ndarray,
    fraction: float,
    seed: int | Sequence[int],
    n_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``labels`` ``(N,)``: sorted indices of the kept and the held-out
    pictures.

    From each class, ``round(n · fraction)`` of its ``n`` pictures are held out (at least one
    when ``fraction > 0``), but every class keeps at least one picture: a class of one is all
    kept. ``fraction`` is in [0, 1); 0 holds nothing out. The same labels and seed give the same
    split; ``n_classes`` (default: the highest label + 1) sets which classes are visited.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise CnnlabError(f"stratified_split: labels must be shaped (N,), got {labels.shape}")
    if not 0 <= fraction < 1:
        raise CnnlabError(f"stratified_split: fraction must be in [0, 1), got {fraction}")
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    rng = np.random.default_rng(seed)
    kept, held = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for label in range(n_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        wanted = max(round(len(members) * fraction), 1) if fraction > 0 else 0
        n_held = max(min(wanted, len(members) - 1), 0)
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def _rows(images: np.ndarray) -> int:
    """Pictures per chunk: ``_CHUNK_VALUES`` values at most (one picture at least)."""
    return max(1, _CHUNK_VALUES // max(1, images[0].size)) if len(images) else 1


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 ``(N, C, H, W)`` images on [0, 1].

    A channel with (almost) no spread gets std 1, so normalising never divides by zero.
    """
    n, c = images.shape[:2]
    total = np.zeros(c)
    squares = np.zeros(c)
    rows = _rows(images)
    for start in range(0, n, rows):
        chunk = images[start : start + rows].astype(np.float64)
        chunk /= 255.0
        total += chunk.sum(axis=(0, 2, 3))
        chunk *= chunk  # in place: no second chunk-sized array
        squares += chunk.sum(axis=(0, 2, 3))
    count = max(1, n * images.shape[2] * images.shape[3])
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std = np.where(std < 1e-3, 1.0, std)
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def normalise(images: np.ndarray, mean: Any, std: Any, dtype: Any = np.float32) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` → float ``(pixel / 255 − mean) / std`` per channel, same shape."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise CnnlabError(f"expected images of shape (N, C, H, W), got {images.shape}")
    mean = np.asarray(mean, dtype)[:, None, None]
    std = np.asarray(std, dtype)[:, None, None]
    if mean.shape[0] != images.shape[1]:
        raise CnnlabError(
            f"the model was trained on {mean.shape[0]}-channel images, these have "
            f"{images.shape[1]}; give it {'colour' if mean.shape[0] == 3 else 'grey'} pictures"
        )
    out = np.empty(images.shape, dtype)
    scale = np.dtype(dtype).type(1 / 255)
    rows = _rows(images)
    for start in range(0, len(images), rows):
        part = images[start : start + rows]
        np.multiply(part, scale, out=out[start : start + rows], dtype=dtype)
    out -= mean
    out /= std
    return out
