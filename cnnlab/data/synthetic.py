"""Pictures cnnlab draws from formulas, to pretrain a feature extractor without any photo.

Three generators, each vectorised over the batch and seeded:

- :func:`fractals`: formula-driven classes as in FractalDB (Kataoka et al., "Pre-training
  without Natural Images", ACCV 2020): each class is an iterated function system of 2 to 4
  contractive affine maps, drawn by the chaos game; its pictures differ by small changes of
  the maps' parameters and by where, how large and how turned the fractal is drawn.
- :func:`strokes`: glyph-like classes: each class is 2 to 4 quadratic Bézier strokes; its
  pictures move the control points a little, slant, turn, scale and thicken them — the
  handwriting-like counterpart of the fractals.
- :func:`noise`: spectral noise with a ``1/f^α`` power spectrum, the statistics that make
  procedural noise a useful pretraining input ("Learning to See by Looking at Noise",
  Baradad et al., NeurIPS 2021); here it is the background the shapes are drawn on.

:func:`compose` lays a drawn shape's coverage ``(N, H, W)`` on a background in a colour, as a
picture uint8 ``(N, 3, H, W)``: on spectral noise, on a flat colour, or dark ink on light
paper, and a share of the pictures in grey (the three channels equal), so one extractor reads
colour and grey pictures alike.
"""

from __future__ import annotations

import numpy as np

from cnnlab.engine.errors import CnnlabError

_SUPERSAMPLE = 2  # shapes are drawn at twice the size and averaged 2×2 for smooth edges
_FRACTAL_WARMUP, _FRACTAL_STEPS, _FRACTAL_CHAINS = 6, 12, 256
_STROKE_POINTS = 96  # samples along one stroke, enough to leave no gap at 2×128 pixels


def _check(who: str, n: int, n_classes: int, size: int) -> None:
    if not 8 <= size <= 128:
        raise CnnlabError(f"{who}: image size must be 8 to 128, got {size}")
    if n < 0 or n_classes < 1:
        raise CnnlabError(f"{who}: need n >= 0 pictures of n_classes >= 1, got {n}, {n_classes}")


def _splat(points: np.ndarray, size: int, thickness: np.ndarray) -> np.ndarray:
    """Points ``(N, P, 2)`` in [-1, 1] (row, column) → coverage float32 ``(N, size, size)``.

    Every point marks its pixel at twice the size; ``thickness`` ``(N,)`` (0, 1 or 2) grows
    each mark by that many pixels (3×3 maxima), and the 2×2 average gives smooth edges.
    """
    n = len(points)
    big = size * _SUPERSAMPLE
    cells = np.clip(((points + 1) / 2 * big).astype(np.int64), 0, big - 1)
    flat = (np.arange(n)[:, None] * big + cells[..., 0]) * big + cells[..., 1]
    ink = np.bincount(flat.ravel(), minlength=n * big * big).reshape(n, big, big) > 0
    for grow in range(int(thickness.max(initial=0))):
        wider = ink.copy()
        wider[:, 1:] |= ink[:, :-1]
        wider[:, :-1] |= ink[:, 1:]
        wider[:, :, 1:] |= wider[:, :, :-1].copy()
        wider[:, :, :-1] |= wider[:, :, 1:].copy()
        ink = np.where((thickness > grow)[:, None, None], wider, ink)
    cover = ink.reshape(n, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))
    return cover.astype(np.float32)


def _placed(points: np.ndarray, rng: np.random.Generator, fill: tuple[float, float]) -> np.ndarray:
    """Points ``(N, P, 2)`` fitted into the picture: centred on their box, scaled to fill
    ``fill`` of it (random in that range), turned and shifted at random."""
    n = len(points)
    low = np.percentile(points, 1, axis=1, keepdims=True)
    high = np.percentile(points, 99, axis=1, keepdims=True)
    centred = points - (low + high) / 2
    extent = np.maximum((high - low).max(axis=2, keepdims=True) / 2, 1e-6)
    scale = rng.uniform(*fill, (n, 1, 1)) / extent
    angle = rng.uniform(-np.pi, np.pi, n)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    r, c = centred[..., 0] * scale[..., 0], centred[..., 1] * scale[..., 0]
    room = np.maximum(1 - scale[..., 0] * extent[..., 0], 0)
    shift = rng.uniform(-1, 1, (n, 2)) * room
    return np.stack([r * cos - c * sin + shift[:, :1], r * sin + c * cos + shift[:, 1:]], -1)


def fractal_systems(n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_classes`` iterated function systems: maps ``(K, 4, 2, 3)`` (a 2×2 matrix and a
    shift each) and their probabilities ``(K, 4)`` (0 for an unused map), as FractalDB weighs
    them: in proportion to each matrix's area factor ``|det|``."""
    rng = np.random.default_rng([seed, 1])
    maps = rng.uniform(-1, 1, (n_classes, 4, 2, 3))
    # Contractive: each matrix scaled so its largest singular value is 0.3 to 0.85.
    sigma = np.linalg.norm(maps[..., :2], ord=2, axis=(2, 3))
    maps[..., :2] *= (rng.uniform(0.3, 0.85, (n_classes, 4)) / sigma)[..., None, None]
    used = np.arange(4)[None, :] < rng.integers(2, 5, n_classes)[:, None]
    weight = np.abs(np.linalg.det(maps[..., :2])) * used + 1e-3 * used
    return maps.astype(np.float32), weight / weight.sum(axis=1, keepdims=True)


def fractals(
    n: int, n_classes: int, size: int = 32, seed: int = 0, part: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fractal coverages float32 ``(n, size, size)`` in [0, 1] and their classes int64
    ``(n,)``, balanced over ``n_classes`` systems (:func:`fractal_systems` of ``seed``).

    ``part`` numbers the batches of one large set: the same classes, other pictures."""
    _check("fractals", n, n_classes, size)
    maps, weight = fractal_systems(n_classes, seed)
    rng = np.random.default_rng([seed, 2, part, n])
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    # Each picture's system: its class's, every parameter moved by up to ±10 %.
    own = maps[labels] * rng.uniform(0.9, 1.1, (n, 4, 2, 3)).astype(np.float32)
    cumulative = np.cumsum(weight[labels], axis=1)  # (n, 4)
    points = np.zeros((n, _FRACTAL_CHAINS, 2), np.float32)
    rows = np.arange(n)[:, None]
    kept = []
    for step in range(_FRACTAL_WARMUP + _FRACTAL_STEPS):
        pick = (rng.random((n, _FRACTAL_CHAINS, 1)) > cumulative[:, None, :]).sum(-1)
        pick = np.minimum(pick, 3)
        chosen = own[rows, pick]  # (n, chains, 2, 3)
        points = np.einsum("ncij,ncj->nci", chosen[..., :2], points) + chosen[..., 2]
        if step >= _FRACTAL_WARMUP:
            kept.append(points)
    placed = _placed(np.concatenate(kept, axis=1), rng, (0.6, 0.95))
    return _splat(placed, size, rng.integers(1, 3, n)), labels


def strokes(
    n: int, n_classes: int, size: int = 32, seed: int = 0, part: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` glyph coverages float32 ``(n, size, size)`` in [0, 1] and their classes int64
    ``(n,)``, balanced over ``n_classes`` glyphs of 2 to 4 quadratic Bézier strokes each
    (``part`` as for :func:`fractals`)."""
    _check("strokes", n, n_classes, size)
    class_rng = np.random.default_rng([seed, 3])
    controls = class_rng.uniform(-0.8, 0.8, (n_classes, 4, 3, 2))  # 4 strokes of 3 points
    count = class_rng.integers(2, 5, n_classes)
    rng = np.random.default_rng([seed, 4, part, n])
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    own = controls[labels] + rng.normal(0, 0.06, (n, 4, 3, 2))
    shear = rng.uniform(-0.3, 0.3, n)
    own[..., 1] += shear[:, None, None] * own[..., 0]  # slant, as handwriting does
    t = np.linspace(0, 1, _STROKE_POINTS)[:, None]
    bezier = np.stack([(1 - t) ** 2, 2 * t * (1 - t), t**2], axis=1)  # (P, 3, 1)
    curve = np.einsum("pkx,nskd->nspd", bezier, own)  # (n, 4, P, 2)
    # A glyph with fewer strokes repeats its first one: the same pixels, nothing added.
    unused = np.arange(4)[None, :] >= count[labels][:, None]
    curve = np.where(unused[:, :, None, None], curve[:, :1], curve)
    placed = _placed(curve.reshape(n, -1, 2), rng, (0.55, 0.9))
    return _splat(placed, size, rng.integers(1, 3, n)), labels


# Outline classes of :func:`outlines`: (kind, corners) with kind 0 a regular polygon, 1 a star,
# 2 a flower (rounded bumps) and 3 a circle.
OUTLINES = (
    *((0, k) for k in range(3, 9)),
    *((1, k) for k in range(4, 9)),
    *((2, k) for k in range(3, 8)),
    (3, 0),
)


def _radius(kind: np.ndarray, corners: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The outline's distance from its centre at angle ``theta`` ``(N, H, W)``, for shapes of
    radius 1 of ``kind`` and ``corners`` ``(N, 1, 1)`` (:data:`OUTLINES`)."""
    k = np.maximum(corners, 1)
    sector = 2 * np.pi / k
    polygon = np.cos(np.pi / k) / np.cos(np.mod(theta, sector) - sector / 2)
    tip = np.abs(np.mod(theta, sector) / sector * 2 - 1)  # 1 at a point, 0 between two
    star = 0.45 + 0.55 * tip**1.5
    flower = 0.75 + 0.25 * np.cos(k * theta)
    return np.select([kind == 0, kind == 1, kind == 2], [polygon, star, flower], 1.0)


def outlines(n: int, size: int = 32, seed: int = 0, part: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` coverages float32 ``(n, size, size)`` of the geometric shapes :data:`OUTLINES`
    (polygons, stars, flowers, circles) and their classes int64 ``(n,)``, balanced: turned,
    squashed, sized and placed at random, and a third of them drawn as an outline only."""
    _check("outlines", n, 1, size)
    rng = np.random.default_rng([seed, 7, part, n])
    labels = rng.permutation(np.arange(n) % len(OUTLINES)).astype(np.int64)
    table = np.array(OUTLINES)[labels]
    kind, corners = (table[:, i, None, None] for i in (0, 1))
    big = size * _SUPERSAMPLE
    axis = (np.arange(big) + 0.5) / big * 2 - 1
    radius = rng.uniform(0.35, 0.75, (n, 1, 1))
    centre = rng.uniform(-1, 1, (n, 2, 1, 1)) * (1 - radius[:, None])
    row, col = axis[None, :, None] - centre[:, 0], axis[None, None, :] - centre[:, 1]
    squash = rng.uniform(0.7, 1.0, (n, 1, 1))
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    u = (col * np.cos(angle) + row * np.sin(angle)) / squash
    v = -col * np.sin(angle) + row * np.cos(angle)
    reach = np.hypot(u, v) / (radius * _radius(kind, corners, np.arctan2(v, u)))
    width = np.where(rng.random((n, 1, 1)) < 1 / 3, rng.uniform(0.15, 0.3, (n, 1, 1)), 2.0)
    ink = (reach < 1) & (reach > 1 - width)
    cover = ink.reshape(n, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))
    return cover.astype(np.float32), labels


def noise(n: int, size: int = 32, seed: int = 0, part: int = 0) -> np.ndarray:
    """``n`` colour noise pictures float32 ``(n, 3, size, size)`` in [0, 1] whose power falls
    as ``1/f^α`` with frequency (α from 1 to 2.5 per picture: from grainy to cloudy); the
    three channels share part of their pattern, as the colours of a scene do."""
    rng = np.random.default_rng([seed, 5, part, n])
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    freq = np.maximum(np.hypot(fy, fx), 1.0 / size)
    alpha = rng.uniform(1.0, 2.5, (n, 1, 1, 1))
    white = rng.normal(size=(n, 1, size, size)) + 0.6 * rng.normal(size=(n, 3, size, size))
    field = np.fft.irfft2(np.fft.rfft2(white) * freq ** (-alpha / 2), s=(size, size))
    low = field.min(axis=(1, 2, 3), keepdims=True)
    high = field.max(axis=(1, 2, 3), keepdims=True)
    return ((field - low) / np.maximum(high - low, 1e-9)).astype(np.float32)


def _colours(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random RGB colours ``(n, 3)`` in [0, 1]."""
    return rng.uniform(0, 1, (n, 3)).astype(np.float32)


def compose(cover: np.ndarray, seed: int = 0, grey: float = 0.3, part: int = 0) -> np.ndarray:
    """Coverages float ``(N, H, W)`` in [0, 1] → pictures uint8 ``(N, 3, H, W)``.

    A third of the pictures each: the shape in a colour on spectral noise, on a flat colour,
    and as dark ink on light paper; the shape's colour keeps at least 0.35 of brightness away
    from its background's, so it never vanishes. A share ``grey`` is made grey (its three
    channels the luminance), and every picture gets a little pixel noise.
    """
    cover = np.asarray(cover, np.float32)
    if cover.ndim != 3:
        raise CnnlabError(f"compose: expected coverages (N, H, W), got {cover.shape}")
    n, h, w = cover.shape
    rng = np.random.default_rng([seed, 6, part, n])
    style = rng.integers(0, 3, n)[:, None, None, None]
    textured = noise(n, h, seed, part) if h == w else np.zeros((n, 3, h, w), np.float32)
    contrast = rng.uniform(0.2, 0.6, (n, 1, 1, 1)).astype(np.float32)
    base = _colours(n, rng)[:, :, None, None]
    background = np.where(style == 0, base + contrast * (textured - 0.5), base)
    paper = rng.uniform(0.75, 1.0, (n, 1, 1, 1)).astype(np.float32)
    background = np.where(style == 2, paper, background)
    # The shape's brightness: at least 0.35 away from the background's mean brightness.
    level = background.mean(axis=(1, 2, 3))
    away = rng.uniform(0.35, 0.8, n)
    target = np.where(level > 0.5, level - away, level + away).clip(0, 1)
    ink = _colours(n, rng)
    ink += (target - ink.mean(axis=1))[:, None]
    ink = np.where(style[:, :, 0, 0] == 2, ink * 0.3, ink)  # dark ink on paper
    picture = background + (ink[:, :, None, None] - background) * cover[:, None]
    make_grey = rng.random(n) < grey
    luma = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), picture, axes=([0], [1]))
    picture = np.where(make_grey[:, None, None, None], luma[:, None], picture)
    grain = rng.normal(0, 0.02, picture.shape).astype(np.float32)
    picture += np.where(make_grey[:, None, None, None], grain[:, :1], grain)
    return np.clip(picture * 255 + 0.5, 0, 255).astype(np.uint8)
