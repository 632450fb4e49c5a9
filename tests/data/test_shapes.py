"""The generated ``shapes`` set: seeded, balanced, colour, and the shape is the class."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab.data
from cnnlab.data import shapes
from cnnlab.data.pictures import load_image_set
from cnnlab.engine.errors import CnnlabError


def test_the_same_seed_gives_the_same_pixels() -> None:
    a, la = shapes.generate(60, size=16, seed=3)
    b, lb = shapes.generate(60, size=16, seed=3)
    c, _ = shapes.generate(60, size=16, seed=4)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert a.shape == (60, 3, 16, 16) and a.dtype == np.uint8
    assert np.bincount(la).tolist() == [10] * len(shapes.CLASSES)


def test_pictures_are_colour_and_the_shape_stands_out() -> None:
    images, _ = shapes.generate(120, size=32, seed=0)
    spread = images.astype(float).std(axis=1).mean()  # differences between channels
    assert spread > 10
    # The centre of a picture (where the shapes sit) differs from its border.
    centre = images[:, :, 12:20, 12:20].astype(float).mean(axis=(2, 3))
    border = images[:, :, :3, :].astype(float).mean(axis=(2, 3))
    assert np.abs(centre - border).sum(axis=1).mean() > 40


def test_shape_areas_match_their_formulas() -> None:
    """The inside-tests by hand: areas of a disc, a ring and a square of radius r."""
    axis = (np.arange(400) + 0.5) / 200 - 1  # pixel centres in [-1, 1]
    v, u = np.meshgrid(axis, axis, indexing="ij")
    r = np.array([0.5])[:, None, None]
    disc, ring, square = (shapes._shape(k, u[None], v[None], r).mean() * 4 for k in (0, 4, 1))
    assert disc == pytest.approx(np.pi * 0.25, rel=0.02)
    assert ring == pytest.approx(np.pi * 0.25 * (1 - 0.55**2), rel=0.03)
    assert square == pytest.approx((0.8 * 2 * 0.5) ** 2, rel=0.03)


def test_registered_as_a_named_data_set() -> None:
    info = cnnlab.data.DATASETS["shapes"]
    assert info.bundled and "synthetic" in info.description
    data = load_image_set("shapes", image_size=16)
    assert data.class_names == shapes.CLASSES and data.input_shape == (3, 16, 16)
    assert len(data.y_train) == shapes.N_TRAIN and len(data.y_test) == shapes.N_TEST
    # Training and test pictures come from different streams.
    assert not np.array_equal(data.x_train[: shapes.N_TEST], data.x_test)


def test_size_bounds() -> None:
    with pytest.raises(CnnlabError, match="8 to 256"):
        shapes.generate(4, size=4)
