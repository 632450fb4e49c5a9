"""Random affine augmentation of digit batches (cnnlab.data.augment)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data.augment import affine_transform, random_affine
from cnnlab.engine.errors import CnnlabError


def _batch(seed: int = 0, n: int = 6) -> np.ndarray:
    """(n, 28, 28) float32 blobs well inside the frame."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.float32)
    images[:, 8:20, 9:19] = rng.random((n, 12, 10), np.float32)
    return images


def _com(images: np.ndarray) -> np.ndarray:
    """(N, 2) centres of mass (row, column) of an (N, H, W) batch."""
    idx = np.arange(images.shape[-1])
    total = images.sum((1, 2))
    return np.stack([images.sum(2) @ idx / total, images.sum(1) @ idx / total], axis=1)


def test_all_maxima_zero_is_the_identity_exactly() -> None:
    images = _batch()
    rng = np.random.default_rng(1)
    out = random_affine(images, rng, 0.0, 0.0, 0.0, 0.0)
    assert out.dtype == np.float32 and np.array_equal(out, images)
    four_d = images[:, None]
    assert np.array_equal(random_affine(four_d, rng, 0.0, 0.0, 0.0, 0.0), four_d)


def test_a_shift_moves_the_centre_of_mass_by_the_shift() -> None:
    images = _batch()
    dy = np.array([1.5, -2.0, 0.25, 0.0, 2.0, -0.75])
    dx = np.array([-2.25, 0.5, 0.0, 1.0, 2.0, -1.5])
    n = len(images)
    out = affine_transform(images, dy, dx, np.zeros(n), np.ones(n), np.zeros(n))
    assert np.allclose(_com(out) - _com(images), np.stack([dy, dx], 1), atol=1e-4)
    assert np.allclose(out.sum((1, 2)), images.sum((1, 2)), rtol=1e-5)  # nothing fell off


def test_random_shifts_are_the_draws_of_the_generator() -> None:
    images = _batch(n=32)
    out = random_affine(images, np.random.default_rng(5), 2.0, 0.0, 0.0, 0.0)
    twin = np.random.default_rng(5)
    dy, dx = twin.uniform(-2, 2, 32), twin.uniform(-2, 2, 32)
    assert np.allclose(_com(out) - _com(images), np.stack([dy, dx], 1), atol=1e-4)


def test_quarter_turn_is_rot90_and_a_point_lands_where_computed() -> None:
    images = _batch()
    n = len(images)
    out = affine_transform(images, np.zeros(n), np.zeros(n), np.full(n, 90.0), 1, 0)
    assert np.allclose(out, np.rot90(images, 1, axes=(1, 2)), atol=1e-6)
    # A dot at (13, 20) is (-0.5, 6.5) from the centre (13.5, 13.5); turning 90° anticlockwise
    # on screen sends it to (-6.5, -0.5), i.e. pixel (7, 13).
    dot = np.zeros((1, 28, 28), np.float32)
    dot[0, 13, 20] = 1
    turned = affine_transform(dot, 0, 0, 90, 1, 0)
    assert turned[0, 7, 13] == pytest.approx(1) and turned.sum() == pytest.approx(1)


def test_thirty_degrees_matches_the_hand_computed_map() -> None:
    # Bilinear sampling reproduces a linear ramp exactly, so the rotated ramp value at each
    # output pixel is the source column that the inverse rotation sends it to.
    cols = np.tile(np.arange(28, dtype=np.float32), (28, 1))[None]
    out = affine_transform(cols, 0, 0, 30, 1, 0)[0]
    r, c = np.mgrid[0:28, 0:28] - 13.5
    t = np.deg2rad(30)
    source_col = -np.sin(t) * r + np.cos(t) * c + 13.5
    inside = (np.abs(r) < 8) & (np.abs(c) < 8)
    assert np.allclose(out[inside], source_col[inside], atol=1e-4)


def test_shape_dtype_scale_and_reproducibility() -> None:
    images = (_batch(n=10) * 255).astype(np.uint8)
    a = random_affine(images, np.random.default_rng(3), max_shear_deg=5.0)
    b = random_affine(images, np.random.default_rng(3), max_shear_deg=5.0)
    c = random_affine(images, np.random.default_rng(4), max_shear_deg=5.0)
    assert a.shape == images.shape and a.dtype == np.float32
    assert 100 < a.max() <= 255  # still on the 0..255 scale
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    rng = np.random.default_rng(3)
    four_d = random_affine(images[:, None].astype(np.float32) / 255, rng, max_shear_deg=5.0)
    assert four_d.shape == (10, 1, 28, 28) and four_d.dtype == np.float32
    assert np.allclose(four_d[:, 0], a / 255, atol=1e-5)


def test_bad_settings_are_refused() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(CnnlabError, match="shape"):
        random_affine(np.zeros((28, 28), np.float32), rng)
    with pytest.raises(CnnlabError, match="max_rotate_deg"):
        random_affine(_batch(), rng, max_rotate_deg=-1)
    with pytest.raises(CnnlabError, match="max_scale"):
        random_affine(_batch(), rng, max_scale=1.5)
