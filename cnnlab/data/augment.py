"""Small random affine distortions of digit batches, for training with ``--augment``.

Every sample gets its own shift, rotation, scale and shear, all applied at once through one
vectorised inverse mapping with bilinear sampling; pixels that come from outside the image are 0.
"""

from __future__ import annotations

import numpy as np

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
    n, h, w = flat.shape
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
    out = _bilinear(flat, src_r, src_c)
    return out.reshape(shape)


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
    for name, value in (
        ("max_shift", max_shift),
        ("max_rotate_deg", max_rotate_deg),
        ("max_scale", max_scale),
        ("max_shear_deg", max_shear_deg),
    ):
        if not np.isfinite(value) or value < 0:
            raise CnnlabError(f"{name} must be a finite number >= 0, got {value}; use e.g. 0")
    if max_scale >= 1:
        raise CnnlabError(f"max_scale must be below 1, got {max_scale}; use e.g. 0.1")
    n = np.asarray(images).shape[0] if np.ndim(images) else 0
    return affine_transform(
        images,
        rng.uniform(-max_shift, max_shift, n),
        rng.uniform(-max_shift, max_shift, n),
        rng.uniform(-max_rotate_deg, max_rotate_deg, n),
        rng.uniform(1 - max_scale, 1 + max_scale, n),
        rng.uniform(-max_shear_deg, max_shear_deg, n),
    )
