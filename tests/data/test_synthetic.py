"""The formula-drawn pretraining pictures: shapes, ranges, balance, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data import synthetic
from cnnlab.engine.errors import CnnlabError


@pytest.mark.parametrize("draw", [synthetic.fractals, synthetic.strokes])
def test_class_generators_give_balanced_coverages_in_range(draw) -> None:
    cover, labels = draw(12, 4, size=16, seed=0)
    assert cover.shape == (12, 16, 16) and cover.dtype == np.float32
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [3, 3, 3, 3]
    assert cover.min() >= 0 and cover.max() <= 1
    assert (cover.sum(axis=(1, 2)) > 1).all()  # every picture shows something


@pytest.mark.parametrize("draw", [synthetic.fractals, synthetic.strokes])
def test_same_seed_same_pixels_another_part_other_pictures(draw) -> None:
    a, la = draw(8, 2, size=16, seed=3)
    b, lb = draw(8, 2, size=16, seed=3)
    c, _ = draw(8, 2, size=16, seed=3, part=1)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_a_part_draws_the_same_classes() -> None:
    """The classes come from the seed alone: every part draws the same systems."""
    maps, weight = synthetic.fractal_systems(5, seed=1)
    again, weight_again = synthetic.fractal_systems(5, seed=1)
    assert np.array_equal(maps, again) and np.array_equal(weight, weight_again)
    assert np.allclose(weight.sum(axis=1), 1)
    # Contractive: every map's largest singular value is below 1.
    assert np.linalg.norm(maps[..., :2], ord=2, axis=(2, 3)).max() < 1


def test_outlines_cover_every_class() -> None:
    cover, labels = synthetic.outlines(2 * len(synthetic.OUTLINES), size=16, seed=0)
    assert np.bincount(labels).tolist() == [2] * len(synthetic.OUTLINES)
    assert cover.shape == (len(labels), 16, 16) and cover.min() >= 0 and cover.max() <= 1
    assert (cover.sum(axis=(1, 2)) > 0.5).all()


def test_the_outline_radius_of_a_square_reaches_its_corners() -> None:
    """A 4-cornered polygon of radius 1: 1 at its corners (0°), cos(45°) mid-edge (45°)."""
    kind, corners = np.array([[[0]]]), np.array([[[4]]])
    theta = np.array([[[0.0, np.pi / 4]]])
    assert np.allclose(synthetic._radius(kind, corners, theta), [[[1.0, np.cos(np.pi / 4)]]])


def test_noise_is_in_range() -> None:
    pictures = synthetic.noise(6, size=16, seed=0)
    assert pictures.shape == (6, 3, 16, 16) and pictures.min() >= 0 and pictures.max() <= 1


def test_compose_makes_uint8_pictures_and_grey_ones_have_equal_channels() -> None:
    cover, _ = synthetic.strokes(20, 2, size=16, seed=0)
    pictures = synthetic.compose(cover, seed=0, grey=1.0)
    assert pictures.shape == (20, 3, 16, 16) and pictures.dtype == np.uint8
    assert np.array_equal(pictures[:, 0], pictures[:, 1])
    colour = synthetic.compose(cover, seed=0, grey=0.0)
    assert not np.array_equal(colour[:, 0], colour[:, 1])
    assert np.array_equal(colour, synthetic.compose(cover, seed=0, grey=0.0))


def test_the_shape_stands_out_from_its_background() -> None:
    cover = np.zeros((30, 16, 16), np.float32)
    cover[:, 4:12, 4:12] = 1
    pictures = synthetic.compose(cover, seed=0).astype(float).mean(axis=1)
    inside, outside = pictures[:, 6:10, 6:10].mean((1, 2)), pictures[:, :2].mean((1, 2))
    assert (np.abs(inside - outside) > 0.2 * 255).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda: synthetic.fractals(4, 2, size=4),
        lambda: synthetic.strokes(4, 0),
        lambda: synthetic.compose(np.zeros((2, 3))),
    ],
)
def test_bad_arguments_are_one_line_errors(call) -> None:
    with pytest.raises(CnnlabError):
        call()
