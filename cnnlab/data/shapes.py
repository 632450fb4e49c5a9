"""``shapes``: a colour data set cnnlab generates itself — synthetic, offline, seeded.

Each picture is one coloured shape (circle, square, triangle, cross, ring or half-disc) of random
size, position, rotation and colour, on a textured background of two other colours (stripes,
checks or soft blobs), with a little pixel noise. The class is the shape, never the colour, so a
network must learn outlines and corners — the colour-image counterpart of the digit exercise.
The pictures are synthetic: they teach the mechanics of colour training, not what real photos
look like. The same seed always gives the same pixels; the test split uses a different seed
stream from the training split.

Rendering is vectorised over the whole batch: each shape is an inside-test on rotated pixel
coordinates, tested at twice the resolution and averaged 2×2 for smooth edges.
"""

from __future__ import annotations

import numpy as np

from cnnlab.data.imageset import ImageSet
from cnnlab.engine.errors import CnnlabError

CLASSES = ("circle", "square", "triangle", "cross", "ring", "half-disc")
N_TRAIN, N_TEST = 6000, 1200
_SUPERSAMPLE = 2
_BATCH = 1000  # pictures rendered at once: bounds the float64 scratch arrays


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue in [0, 1), saturation and value in [0, 1], each ``(N,)`` → RGB ``(N, 3)``."""
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _shape(label: int, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Inside-test ``(N, H, W)`` of shape ``label`` on rotated coordinates, radius ``r``."""
    dist = np.hypot(u, v)
    if label == 0:  # circle
        return dist < r
    if label == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) < 0.8 * r
    if label == 2:  # equilateral triangle with circumradius r: inside its three edges at r/2
        edges = [u * np.cos(a) + v * np.sin(a) for a in np.deg2rad([90.0, 210.0, 330.0])]
        return np.maximum(np.maximum(edges[0], edges[1]), edges[2]) < r / 2
    if label == 3:  # cross
        arm = 0.32 * r
        return ((np.abs(u) < arm) & (np.abs(v) < r)) | ((np.abs(v) < arm) & (np.abs(u) < r))
    if label == 4:  # ring
        return (dist < r) & (dist > 0.55 * r)
    return (dist < r) & (v > -0.2 * r)  # half-disc


def _texture(kind: int, along: np.ndarray, across: np.ndarray, freq, phase) -> np.ndarray:
    """A background pattern in [0, 1]: stripes, checks or soft blobs."""
    if kind == 0:
        return 0.5 + 0.5 * np.sin(np.pi * freq * along + phase[:, 0, None, None])
    if kind == 1:
        return (np.sin(np.pi * freq * along) * np.sin(np.pi * freq * across) > 0).astype(np.float32)
    return 0.5 + 0.25 * (
        np.sin(0.85 * freq * along + phase[:, 0, None, None])
        + np.sin(1.15 * freq * across + phase[:, 1, None, None])
    )


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: rows ``(1, size, 1)`` and columns ``(1, 1, size)``."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1).astype(np.float32)
    return axis[None, :, None], axis[None, None, :]


def _rotated(theta: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates turned by ``theta`` ``(N,)``: ``(u, v)``, each ``(N, H, W)``."""
    cos = np.cos(theta).astype(np.float32)[:, None, None]
    sin = np.sin(theta).astype(np.float32)[:, None, None]
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _render(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``(N, 3, size, size)`` pictures of the shapes ``labels``."""
    n = len(labels)
    f32 = np.float32
    centre = rng.uniform(-0.3, 0.3, (n, 2)).astype(f32)
    radius = rng.uniform(0.38, 0.62, n).astype(f32)[:, None, None]
    angle = rng.uniform(0, 2 * np.pi, n)
    kind = rng.integers(0, 3, n)
    freq = rng.uniform(2.0, 6.0, n).astype(f32)[:, None, None]
    tilt = rng.uniform(0, np.pi, n)
    phase = rng.uniform(0, 2 * np.pi, (n, 2)).astype(f32)

    # The shape is tested at twice the resolution; its 2×2 average is the edge coverage.
    y, x = _grid(size * _SUPERSAMPLE)
    u, v = _rotated(angle, y - centre[:, 0, None, None], x - centre[:, 1, None, None])
    mask = np.zeros((n, *u.shape[1:]), bool)
    # One vectorised pass per class and per texture (6 + 3 passes), never per picture.
    for label in range(len(CLASSES)):
        pick = labels == label
        mask[pick] = _shape(label, u[pick], v[pick], radius[pick])
    cover = sum(
        mask[:, i::_SUPERSAMPLE, j::_SUPERSAMPLE].astype(f32)
        for i in range(_SUPERSAMPLE)
        for j in range(_SUPERSAMPLE)
    ) / f32(_SUPERSAMPLE**2)

    along, across = _rotated(tilt, *np.broadcast_arrays(*_grid(size)))
    pattern = np.zeros((n, size, size), f32)
    for k in range(3):
        pick = kind == k
        pattern[pick] = _texture(k, along[pick], across[pick], freq[pick], phase[pick])

    hue = rng.uniform(0, 1, n)
    fg = _hsv_to_rgb(hue, rng.uniform(0.55, 1, n), rng.uniform(0.55, 1, n)).astype(f32)
    # Background hues keep away from the shape's, so it never vanishes into its backdrop.
    bg = [
        _hsv_to_rgb(
            (hue + rng.uniform(0.2, 0.8, n)) % 1, rng.uniform(0, 0.8, n), rng.uniform(0.15, 0.9, n)
        ).astype(f32)[:, :, None, None]
        for _ in range(2)
    ]
    picture = bg[0] + (bg[1] - bg[0]) * pattern[:, None]
    picture += (fg[:, :, None, None] - picture) * cover[:, None]
    picture += rng.normal(0, 0.03, picture.shape).astype(f32)
    return np.clip(picture * 255 + 0.5, 0, 255).astype(np.uint8)


def generate(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pictures uint8 ``(n, 3, size, size)`` and their labels int64 ``(n,)``, balanced."""
    if not 8 <= size <= 256:
        raise CnnlabError(f"shapes: image size must be 8 to 256, got {size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    parts = [_render(labels[start : start + _BATCH], size, rng) for start in range(0, n, _BATCH)]
    images = np.concatenate(parts) if parts else np.zeros((0, 3, size, size), np.uint8)
    return images, labels


def load(size: int = 32, seed: int = 0) -> ImageSet:
    """The ``shapes`` set: ``N_TRAIN`` training and ``N_TEST`` test pictures of ``size`` pixels.

    ``seed`` picks the set; the test split always draws from a separate stream of it.
    """
    x_train, y_train = generate(N_TRAIN, size, seed=2 * seed)
    x_test, y_test = generate(N_TEST, size, seed=2 * seed + 1)
    return ImageSet("shapes", CLASSES, x_train, y_train, x_test, y_test)
