"""Random affine augmentation of digit batches (cnnlab.data.augment)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data.augment import (
    affine_transform,
    elastic_displacement,
    gaussian_matrix,
    random_affine,
    random_crop_flip,
    random_handwriting,
)
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


def test_handwriting_with_every_maximum_zero_is_the_identity_exactly() -> None:
    images = _batch()
    zero = dict.fromkeys(
        (
            "max_shift",
            "max_rotate_deg",
            "max_scale",
            "max_shear_deg",
            "elastic_alpha",
            "max_thicken",
            "max_blur",
        ),
        0.0,
    )
    out = random_handwriting(images, np.random.default_rng(0), **zero)
    assert out.dtype == np.float32 and np.array_equal(out, images)


def test_handwriting_is_seeded_and_keeps_the_shape() -> None:
    images = _batch()[:, None]
    a = random_handwriting(images, np.random.default_rng(3))
    b = random_handwriting(images, np.random.default_rng(3))
    assert a.shape == images.shape and np.array_equal(a, b)
    assert not np.array_equal(a, random_handwriting(images, np.random.default_rng(4)))


def test_thickening_adds_ink_and_thinning_removes_it() -> None:
    stroke = np.zeros((1, 28, 28), np.float32)
    stroke[0, 6:22, 13:15] = 1.0  # a vertical bar two pixels wide: 32 units of ink
    fixed = dict(max_shift=0.0, max_rotate_deg=0.0, max_scale=0.0, max_shear_deg=0.0)
    fixed |= dict(elastic_alpha=0.0, max_blur=0.0, max_thicken=1.0)
    masses = [
        random_handwriting(stroke, np.random.default_rng(s), **fixed).sum() for s in range(40)
    ]
    # t in [-1, 1]: the full dilation is 4 x 18 = 72, the full erosion 0; mixing is linear in t.
    assert min(masses) < 32 < max(masses)
    assert min(masses) >= 0 and max(masses) <= 72 + 1e-4


def test_gaussian_matrix_rows_sum_to_one_and_sigma_zero_is_the_identity() -> None:
    g = gaussian_matrix(5, 1.0)
    assert np.allclose(g.sum(1), 1.0)
    # Hand case: the middle row is exp(-k²/2) for k = -2..2, normalised.
    row = np.exp(-0.5 * np.arange(-2, 3) ** 2)
    assert np.allclose(g[2], row / row.sum())
    assert np.array_equal(gaussian_matrix(4, 0.0), np.eye(4, dtype=np.float32))


def test_elastic_displacement_has_the_requested_size_and_is_smooth() -> None:
    d_r, d_c = elastic_displacement(np.random.default_rng(0), (4, 28, 28), alpha=2.0, sigma=3.0)
    assert d_r.shape == d_c.shape == (4, 28, 28)
    assert np.allclose(np.sqrt((d_r**2).mean(axis=(1, 2))), 2.0, rtol=1e-4)
    # Smooth: neighbouring displacements differ far less than the field itself varies.
    assert np.abs(np.diff(d_r, axis=1)).mean() < 0.25 * np.abs(d_r).mean()


@pytest.mark.parametrize(
    ("option", "value"), [("elastic_alpha", -1.0), ("max_thicken", 1.5), ("max_blur", np.nan)]
)
def test_handwriting_refuses_bad_settings(option: str, value: float) -> None:
    with pytest.raises(CnnlabError, match=option):
        random_handwriting(_batch(), np.random.default_rng(0), **{option: value})


def test_probability_distorts_that_share_and_leaves_the_rest_exactly() -> None:
    images = _batch(n=400)
    untouched = {
        p: np.all(random_handwriting(images, np.random.default_rng(1), probability=p) == images,
                  axis=(1, 2))
        for p in (0.0, 0.25, 1.0)
    }  # fmt: skip
    assert untouched[0.0].all() and not untouched[1.0].any()
    assert 0.15 < 1 - untouched[0.25].mean() < 0.35  # 100 expected distorted, binomial sd 8.7


def test_crop_and_flip_by_hand() -> None:
    x = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    rng = np.random.default_rng(0)
    out = random_crop_flip(x, rng, padding=1)
    # Replay the generator's draws: offsets for each picture, then which are mirrored.
    replay = np.random.default_rng(0)
    dy, dx = replay.integers(0, 3, 2), replay.integers(0, 3, 2)
    mirror = replay.random(2) < 0.5
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i in range(2):
        expected = padded[i, :, dy[i] : dy[i] + 3, dx[i] : dx[i] + 3]
        np.testing.assert_array_equal(out[i], expected[..., ::-1] if mirror[i] else expected)
    assert out.dtype == x.dtype and out.shape == x.shape


def test_crop_and_flip_without_padding_or_flip_is_the_identity() -> None:
    x = np.random.default_rng(1).random((4, 3, 5, 6)).astype(np.float32)
    out = random_crop_flip(x, np.random.default_rng(2), padding=0, flip=False)
    np.testing.assert_array_equal(out, x)


def test_crop_and_flip_keeps_every_value_of_an_unshifted_flip() -> None:
    x = np.random.default_rng(1).random((64, 3, 4, 4)).astype(np.float32)
    out = random_crop_flip(x, np.random.default_rng(3), padding=0)
    flipped = (out != x).any(axis=(1, 2, 3))
    assert 16 < flipped.sum() < 48  # about half
    np.testing.assert_array_equal(out[flipped], x[flipped][..., ::-1])


def test_crop_and_flip_refuses_flat_batches() -> None:
    with pytest.raises(CnnlabError, match=r"\(N, C, H, W\)"):
        random_crop_flip(np.zeros((2, 5, 5)), np.random.default_rng(0))


def test_colour_jitter_changes_brightness_contrast_and_saturation_per_picture() -> None:
    from cnnlab.data.augment import random_colour_jitter

    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(
        random_colour_jitter(images, np.random.default_rng(1), 0, 0, 0), images
    )
    shifted = random_colour_jitter(images, np.random.default_rng(1), 0.5, 0, 0)
    offsets = (shifted - images).reshape(4, -1)
    np.testing.assert_allclose(offsets, offsets[:, :1].repeat(75, axis=1), atol=1e-6)
    assert np.all(np.abs(offsets) <= 0.5) and len(set(offsets[:, 0].round(6))) == 4
    # saturation alone keeps each pixel's grey (the mean of its channels)
    saturated = random_colour_jitter(images, np.random.default_rng(1), 0, 0, 0.5)
    np.testing.assert_allclose(saturated.mean(axis=1), images.mean(axis=1), atol=1e-6)
    grey = images[:, :1]
    np.testing.assert_array_equal(
        random_colour_jitter(grey, np.random.default_rng(1), 0, 0, 1), grey
    )


def test_random_picture_crops_and_never_mirrors_without_flip() -> None:
    from cnnlab.data.augment import random_picture

    images = np.zeros((8, 1, 6, 6), np.float32)
    images[:, :, :, 0] = 1  # a bright left column: a mirror would move it right
    out = random_picture(images, np.random.default_rng(0), padding=0, flip=False, jitter=0)
    np.testing.assert_array_equal(out, images)
    flipped = random_picture(images, np.random.default_rng(0), padding=0, flip=True, jitter=0)
    assert (flipped[:, 0, 0, -1] == 1).any()


def test_channel_orders_and_grey_by_hand() -> None:
    from cnnlab.data.augment import random_channels

    x = np.array([1, 2, 6], np.float32).reshape(1, 3, 1, 1)
    # rng 0 draws 0.637 (< 1: reordered), then order 2 of the five others, (1, 2, 0): G, B, R
    reordered = random_channels(x, np.random.default_rng(0), permute=1, grey=0)
    np.testing.assert_array_equal(reordered.ravel(), [2, 6, 1])
    greyed = random_channels(x, np.random.default_rng(0), permute=1, grey=1)
    np.testing.assert_array_equal(greyed.ravel(), [3, 3, 3])  # (1 + 2 + 6) / 3


def test_channel_changes_are_seeded_shares_of_the_batch_and_keep_the_shape() -> None:
    from cnnlab.data.augment import random_channels

    x = np.random.default_rng(1).random((400, 3, 2, 2)).astype(np.float32)
    out = random_channels(x, np.random.default_rng(2), permute=0.5, grey=0.0)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, random_channels(x, np.random.default_rng(2), 0.5, 0.0))
    changed = (out != x).any(axis=(1, 2, 3))
    assert 160 < changed.sum() < 240  # about half
    # a reordered picture holds its own channels, in another order
    np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(x, axis=1))
    orders = {tuple(np.argsort(x[i, :, 0, 0])[np.argsort(np.argsort(out[i, :, 0, 0]))]) for i in
              np.flatnonzero(changed)}  # fmt: skip
    assert len(orders) == 5 and (0, 1, 2) not in orders
    grey = random_channels(x, np.random.default_rng(2), permute=0.0, grey=0.25)
    flat = (grey == grey[:, :1]).all(axis=(1, 2, 3))
    assert 70 < flat.sum() < 130  # about a quarter
    np.testing.assert_allclose(grey[flat], x[flat].mean(axis=1, keepdims=True).repeat(3, 1))
    np.testing.assert_array_equal(grey[~flat], x[~flat])


def test_channel_changes_leave_grey_pictures_and_zero_chances_alone() -> None:
    from cnnlab.data.augment import random_channels, random_picture

    x = np.random.default_rng(1).random((6, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(random_channels(x, np.random.default_rng(0), 0, 0), x)
    one = x[:, :1]
    np.testing.assert_array_equal(random_channels(one, np.random.default_rng(0), 1, 1), one)
    plain = random_picture(x, np.random.default_rng(0), padding=0, flip=False, jitter=0, grey=1)
    np.testing.assert_allclose(plain, x.mean(axis=1, keepdims=True).repeat(3, 1), rtol=1e-6)


@pytest.mark.parametrize("option", ["permute", "grey"])
def test_channel_changes_refuse_bad_chances(option: str) -> None:
    from cnnlab.data.augment import random_channels

    with pytest.raises(CnnlabError, match=option):
        random_channels(np.zeros((1, 3, 2, 2)), np.random.default_rng(0), **{option: 1.5})
    with pytest.raises(CnnlabError, match=r"\(N, C, H, W\)"):
        random_channels(np.zeros((3, 2, 2)), np.random.default_rng(0))
