"""Random changes to training batches, for training with ``--augment``.

Digits (never mirrored): every sample gets its own shift, rotation, scale and shear, all applied
at once through one vectorised inverse mapping with bilinear sampling; pixels that come from
outside the image are 0.
``random_handwriting`` adds what varies between writers: an elastic distortion of the strokes
(Simard, Steinkraus & Platt, 2003: a random displacement field smoothed by a Gaussian), stroke
thickness and blur.

Other pictures get what works for photos (:func:`random_crop_flip`): a random crop of the
zero-padded picture (a shift of up to ``padding`` pixels) and a horizontal flip half the time;
colour jitter (:func:`random_colour_jitter`); and, to make colour a less telling cue than shape,
channel orders and grey copies (:func:`random_channels`).
"""

from __future__ import annotations

import numpy as np

from cnnlab.engine import validate
from cnnlab.engine.errors import CnnlabError


def _as_batch(images: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Return ``images`` as float32 (N, H, W) and the original shape to restore."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        flat = images[:, 0]
    elif images.ndim == 3:
        flat = images
    else:
        raise CnnlabError(
            f"augmentation needs images shaped (N, H, W) or (N, 1, H, W), got {images.shape}; "
            "reshape the batch"
        )
    return flat.astype(np.float32, copy=False), images.shape


def affine_transform(
    images: np.ndarray,
    shift_y: np.ndarray,
    shift_x: np.ndarray,
    rotate_deg: np.ndarray,
    scale: np.ndarray,
    shear_deg: np.ndarray,
) -> np.ndarray:
    """Apply one affine map per sample about the image centre.

    ``images`` is (N, H, W) or (N, 1, H, W); every parameter is a float array of shape (N,).
    A point p (row, column; pixel centres at integer indices) moves to
    ``centre + scale * R(rotate) @ S(shear) @ (p - centre) + shift``, where a positive
    ``rotate_deg`` turns the picture counter-clockwise as displayed and a positive ``shear_deg``
    leans it to the right. Returns float32 with the input's shape; uint8 input keeps its 0..255
    scale.
    """
    flat, shape = _as_batch(images)
    src_r, src_c = _affine_sources(flat.shape, shift_y, shift_x, rotate_deg, scale, shear_deg)
    return _bilinear(flat, src_r, src_c).reshape(shape)


def _affine_sources(
    shape: tuple[int, int, int],
    shift_y: np.ndarray,
    shift_x: np.ndarray,
    rotate_deg: np.ndarray,
    scale: np.ndarray,
    shear_deg: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (N, H, W) rows and columns of ``affine_transform``'s inverse map."""
    n, h, w = shape
    dy, dx = (np.broadcast_to(np.asarray(p, np.float64), (n,)) for p in (shift_y, shift_x))
    theta = np.deg2rad(np.broadcast_to(np.asarray(rotate_deg, np.float64), (n,)))
    shear = np.tan(np.deg2rad(np.broadcast_to(np.asarray(shear_deg, np.float64), (n,))))
    s = np.broadcast_to(np.asarray(scale, np.float64), (n,))
    if np.any(s <= 0):
        raise CnnlabError(f"affine scale must be positive, got minimum {s.min()}; use e.g. 1.0")

    # Forward map in (row, col) coordinates, rows growing downwards: F = s * R @ Sh with
    # R = [[cos, -sin], [sin, cos]] (counter-clockwise on screen) and Sh = [[1, 0], [-k, 1]]
    # (col' = col - k * row: rows above the centre move right).
    cos, sin = np.cos(theta), np.sin(theta)
    f00, f01 = s * (cos + sin * shear), -s * sin
    f10, f11 = s * (sin - cos * shear), s * cos
    det = f00 * f11 - f01 * f10
    i00, i01, i10, i11 = f11 / det, -f01 / det, -f10 / det, f00 / det

    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows = np.arange(h, dtype=np.float64)[None, :, None] - cy - dy[:, None, None]
    cols = np.arange(w, dtype=np.float64)[None, None, :] - cx - dx[:, None, None]
    src_r = i00[:, None, None] * rows + i01[:, None, None] * cols + cy
    src_c = i10[:, None, None] * rows + i11[:, None, None] * cols + cx
    return src_r, src_c


def _bilinear(flat: np.ndarray, src_r: np.ndarray, src_c: np.ndarray) -> np.ndarray:
    """Sample (N, H, W) ``flat`` at float coordinates (N, H, W); zero outside the image."""
    n, h, w = flat.shape
    r0 = np.floor(src_r)
    c0 = np.floor(src_c)
    fr = (src_r - r0).astype(np.float32)
    fc = (src_c - c0).astype(np.float32)
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)
    batch = np.arange(n)[:, None, None]
    out = np.zeros(src_r.shape, np.float32)
    # The four neighbouring taps, each masked where it falls outside the image.
    for r_off, c_off, weight in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        r = r0 + r_off
        c = c0 + c_off
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        tap = flat[batch, np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]
        out += np.where(inside, tap * weight, np.float32(0))
    return out


def _check_maxima(who: str, **maxima: float) -> None:
    for name, value in maxima.items():
        validate.number(who, name, value, 0.0)


def random_affine(
    images: np.ndarray,
    rng: np.random.Generator,
    max_shift: float = 2.0,
    max_rotate_deg: float = 10.0,
    max_scale: float = 0.1,
    max_shear_deg: float = 0.0,
) -> np.ndarray:
    """Distort each image of an (N, 28, 28) or (N, 1, 28, 28) batch by a random affine map.

    Per sample, draw uniformly: a shift in [-max_shift, max_shift] pixels on each axis, a rotation
    in [-max_rotate_deg, max_rotate_deg], a scale in [1 - max_scale, 1 + max_scale] and a shear in
    [-max_shear_deg, max_shear_deg]. Returns float32 of the input's shape (uint8 input keeps its
    0..255 scale); with all maxima 0 the output equals the input exactly.
    """
    _check_maxima(
        "random_affine",
        max_shift=max_shift,
        max_rotate_deg=max_rotate_deg,
        max_shear_deg=max_shear_deg,
    )
    validate.number("random_affine", "max_scale", max_scale, 0.0, 1.0, high_open=True)
    n = np.asarray(images).shape[0] if np.ndim(images) else 0
    return affine_transform(
        images, *_draw_affine(rng, n, max_shift, max_rotate_deg, max_scale, max_shear_deg)
    )


def _draw_affine(
    rng: np.random.Generator, n: int, shift: float, rotate: float, scale: float, shear: float
) -> tuple[np.ndarray, ...]:
    """Per-sample shift_y, shift_x, rotation, scale and shear drawn uniformly within the maxima."""
    return (
        rng.uniform(-shift, shift, n),
        rng.uniform(-shift, shift, n),
        rng.uniform(-rotate, rotate, n),
        rng.uniform(1 - scale, 1 + scale, n),
        rng.uniform(-shear, shear, n),
    )


def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) float32 matrix G such that ``G @ f`` smooths each column of f by a Gaussian.

    Rows are normalised, so a constant field stays constant up to the borders; with
    ``sigma == 0`` G is the identity.
    """
    if sigma == 0:
        return np.eye(size, dtype=np.float32)
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (g / g.sum(1, keepdims=True)).astype(np.float32)


def elastic_displacement(
    rng: np.random.Generator, shape: tuple[int, int, int], alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random displacement field (rows, columns), each (N, H, W) float32, in pixels.

    Simard et al. (2003): uniform noise in [-1, 1] per pixel, smoothed by a Gaussian of standard
    deviation ``sigma`` and scaled by ``alpha``. The smoothing is two matrix products per field
    (``G_h @ f @ G_w``), which keeps it vectorised over the batch.
    """
    n, h, w = shape
    g_h, g_w = gaussian_matrix(h, sigma), gaussian_matrix(w, sigma)
    fields = rng.uniform(-1, 1, (2, n, h, w)).astype(np.float32)
    smooth = g_h @ fields @ g_w.T
    # Normalise each field to unit RMS before scaling, so alpha is the displacement's typical
    # size in pixels whatever sigma is (smoothing alone shrinks the noise by ~1/(2·sigma)).
    rms = np.sqrt(np.mean(smooth**2, axis=(2, 3), keepdims=True)) + 1e-12
    smooth = alpha * smooth / rms
    return smooth[0], smooth[1]


def _max3(flat: np.ndarray) -> np.ndarray:
    """3×3 grey dilation of an (N, H, W) batch (a brush one pixel wider on every side)."""
    padded = np.pad(flat, ((0, 0), (1, 1), (1, 1)))
    rows = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return np.maximum(np.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


def _blur3(flat: np.ndarray) -> np.ndarray:
    """[1, 2, 1]/4 blur along both axes of an (N, H, W) batch, zero outside."""
    padded = np.pad(flat, ((0, 0), (1, 1), (1, 1)))
    rows = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) * 0.25
    return (rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) * 0.25


def random_handwriting(
    images: np.ndarray,
    rng: np.random.Generator,
    max_shift: float = 2.0,
    max_rotate_deg: float = 12.0,
    max_scale: float = 0.15,
    max_shear_deg: float = 15.0,
    elastic_alpha: float = 1.0,
    elastic_sigma: float = 3.0,
    max_thicken: float = 0.5,
    max_blur: float = 0.5,
    probability: float = 1.0,
) -> np.ndarray:
    """Distort digits of an (N, 28, 28) or (N, 1, 28, 28) batch as another writer might.

    Each sample is distorted with chance ``probability`` and otherwise left exactly as it is.
    One bilinear resampling applies a random affine map (as ``random_affine``) plus an elastic
    displacement of typical size ``elastic_alpha`` pixels, smooth over ``elastic_sigma`` pixels.
    Then, per sample, the strokes are thickened by mixing in up to ``max_thicken`` of a 3×3
    dilation, or thinned by the same amount of erosion, and blurred by mixing in up to
    ``max_blur`` of a 3×3 blur. Returns float32 of the input's shape (uint8 input keeps its
    0..255 scale); with every maximum 0 the output equals the input exactly.
    """
    who = "random_handwriting"
    _check_maxima(
        who,
        max_shift=max_shift,
        max_rotate_deg=max_rotate_deg,
        max_shear_deg=max_shear_deg,
        elastic_alpha=elastic_alpha,
        elastic_sigma=elastic_sigma,
    )
    validate.number(who, "max_scale", max_scale, 0.0, 1.0, high_open=True)
    validate.number(who, "max_thicken", max_thicken, 0.0, 1.0)
    validate.number(who, "max_blur", max_blur, 0.0, 1.0)
    validate.number(who, "probability", probability, 0.0, 1.0)
    flat, shape = _as_batch(images)
    chosen = rng.random(flat.shape[0]) < probability
    out = flat.copy()
    out[chosen] = _handwriting(
        flat[chosen], rng, max_shift, max_rotate_deg, max_scale, max_shear_deg,
        elastic_alpha, elastic_sigma, max_thicken, max_blur,
    )  # fmt: skip
    return out.reshape(shape)


def _handwriting(
    flat: np.ndarray,
    rng: np.random.Generator,
    max_shift: float,
    max_rotate_deg: float,
    max_scale: float,
    max_shear_deg: float,
    elastic_alpha: float,
    elastic_sigma: float,
    max_thicken: float,
    max_blur: float,
) -> np.ndarray:
    """``random_handwriting``'s distortion of every digit of a float32 (N, H, W) batch."""
    n = flat.shape[0]
    affine = _draw_affine(rng, n, max_shift, max_rotate_deg, max_scale, max_shear_deg)
    src_r, src_c = _affine_sources(flat.shape, *affine)
    if elastic_alpha > 0:
        d_r, d_c = elastic_displacement(rng, flat.shape, elastic_alpha, elastic_sigma)
        src_r, src_c = src_r + d_r, src_c + d_c
    out = _bilinear(flat, src_r, src_c)

    # Thickness: t > 0 mixes in the dilation, t < 0 the erosion (dilation of the negative).
    t = rng.uniform(-max_thicken, max_thicken, n).astype(np.float32)[:, None, None]
    top = out.max(axis=(1, 2), keepdims=True)
    grown = np.where(t > 0, _max3(out), top - _max3(top - out))
    out = out + np.abs(t) * (grown - out)
    b = rng.uniform(0, max_blur, n).astype(np.float32)[:, None, None]
    return out + b * (_blur3(out) - out)


def random_crop_flip(
    images: np.ndarray, rng: np.random.Generator, padding: int = 4, flip: bool = True
) -> np.ndarray:
    """Shift each picture of an (N, C, H, W) batch by a random crop of its zero-padded copy
    (up to ``padding`` pixels each way) and mirror it left-right with probability 1/2.

    Returns an array of the input's shape and dtype; with ``padding=0`` and ``flip=False`` it
    equals the input.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise CnnlabError(
            f"crop-and-flip augmentation needs images shaped (N, C, H, W), got {images.shape}"
        )
    if padding < 0:
        raise CnnlabError(f"padding must be >= 0, got {padding}; use e.g. 4")
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    # (N, C, 2p+1, 2p+1, H, W): every crop of every picture, as a view.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    dy = rng.integers(0, 2 * padding + 1, n)
    dx = rng.integers(0, 2 * padding + 1, n)
    out = windows[np.arange(n), :, dy, dx]  # (N, C, H, W)
    if flip:
        mirror = rng.random(n) < 0.5
        out[mirror] = out[mirror, :, :, ::-1]
    return out


def random_colour_jitter(
    images: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
) -> np.ndarray:
    """Change each picture of a float ``(N, C, H, W)`` batch as another light or camera might.

    Per picture, drawn uniformly: a brightness shift in [-``brightness``, ``brightness``] (in the
    batch's own units: normalised inputs have a standard deviation near 1), a contrast factor in
    [1 - ``contrast``, 1 + ``contrast``] about the picture's mean, and for colour pictures a
    saturation factor in [1 - ``saturation``, 1 + ``saturation``] about each pixel's grey (the
    mean of its channels). Returns float32 of the input's shape; with every amount 0 it equals
    the input.
    """
    for name, value in (("brightness", brightness), ("contrast", contrast)):
        validate.number("random_colour_jitter", name, value, 0.0)
    validate.number("random_colour_jitter", "saturation", saturation, 0.0, 1.0)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise CnnlabError(
            f"colour jitter needs images shaped (N, C, H, W), got {images.shape}; reshape the batch"
        )
    n, c = images.shape[:2]
    shift = rng.uniform(-brightness, brightness, (n, 1, 1, 1)).astype(np.float32)
    gain = rng.uniform(1 - contrast, 1 + contrast, (n, 1, 1, 1)).astype(np.float32)
    out = images + shift
    if contrast > 0:
        mean = out.mean(axis=(1, 2, 3), keepdims=True)
        out = (out - mean) * gain + mean
    if c > 1 and saturation > 0:
        grey = out.mean(axis=1, keepdims=True)
        colour = rng.uniform(1 - saturation, 1 + saturation, (n, 1, 1, 1)).astype(np.float32)
        out = grey + (out - grey) * colour
    return out


# The five orders of three channels other than their own (RGB → RBG, GRB, GBR, BRG, BGR).
_OTHER_ORDERS = np.array([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])


def random_channels(
    images: np.ndarray, rng: np.random.Generator, permute: float = 0.5, grey: float = 0.2
) -> np.ndarray:
    """Make colour a less telling cue in a float ``(N, 3, H, W)`` batch of colour pictures.

    Per picture, independently: with chance ``permute`` its channels are put in one of the five
    other orders (drawn uniformly: a red symbol on green becomes a green one on blue, and so
    on), and with chance ``grey`` every channel is replaced by their mean. Grey pictures
    ``(N, 1, H, W)`` come back unchanged. Returns float32 of the input's shape; with both
    chances 0 it equals the input.
    """
    validate.number("random_channels", "permute", permute, 0.0, 1.0)
    validate.number("random_channels", "grey", grey, 0.0, 1.0)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise CnnlabError(
            f"channel changes need images shaped (N, C, H, W), got {images.shape}; "
            "reshape the batch"
        )
    n, c = images.shape[:2]
    if c != 3:
        return images
    order = np.where(
        (rng.random(n) < permute)[:, None], _OTHER_ORDERS[rng.integers(0, 5, n)], [0, 1, 2]
    )
    out = images[np.arange(n)[:, None], order]  # (N, 3, H, W)
    greyed = (rng.random(n) < grey)[:, None, None, None]
    return np.where(greyed, out.mean(axis=1, keepdims=True), out)


def random_picture(
    images: np.ndarray,
    rng: np.random.Generator,
    padding: int = 4,
    flip: bool = True,
    jitter: float = 0.2,
    permute: float = 0.0,
    grey: float = 0.0,
) -> np.ndarray:
    """Crop-and-flip (:func:`random_crop_flip`), then colour jitter of up to ``jitter`` in
    brightness, contrast and saturation (:func:`random_colour_jitter`), then, for colour
    pictures, other channel orders with chance ``permute`` and grey copies with chance ``grey``
    (:func:`random_channels`), for a float ``(N, C, H, W)`` batch of pictures."""
    out = random_crop_flip(images, rng, padding=padding, flip=flip)
    if jitter > 0:
        out = random_colour_jitter(out, rng, jitter, jitter, min(jitter, 1.0))
    if permute > 0 or grey > 0:
        out = random_channels(out, rng, permute, grey)
    return out
