"""Generated non-digits: seeded, balanced by kind, two groups kept apart, in the digit format."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data import nondigits
from cnnlab.engine.errors import CnnlabError


def test_the_same_seed_gives_the_same_pictures_and_every_kind_as_often() -> None:
    n = 3 * len(nondigits.KINDS["tune"])
    a, kinds = nondigits.draw_nondigits(n, seed=5)
    b, again = nondigits.draw_nondigits(n, seed=5)
    c, _ = nondigits.draw_nondigits(n, seed=6)
    assert np.array_equal(a, b) and np.array_equal(kinds, again) and not np.array_equal(a, c)
    assert a.shape == (n, nondigits.CANVAS, nondigits.CANVAS) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    _, counts = np.unique(kinds, return_counts=True)
    assert sorted(set(kinds)) == sorted(nondigits.KINDS["tune"]) and set(counts) == {3}


@pytest.mark.parametrize("group", ["tune", "heldout"])
def test_every_picture_has_a_stroke_of_ink_and_dark_borders(group: str) -> None:
    ink, kinds = nondigits.draw_nondigits(8 * len(nondigits.KINDS[group]), seed=1, group=group)
    strong = (ink > 0.5).reshape(len(ink), -1).sum(1)
    assert (strong >= 20).all(), kinds[strong < 20]
    assert (strong <= 0.5 * nondigits.CANVAS**2).all()  # drawn lines, not filled pages
    shapes = ~np.char.endswith(kinds.astype(str), "letters")  # a turned glyph may reach it
    assert ink[shapes, 0].max() < 0.5 and ink[shapes, :, -1].max() < 0.5


def test_the_groups_share_no_shape_kind_and_no_font() -> None:
    tune, held = nondigits.SHAPES["tune"], nondigits.SHAPES["heldout"]
    assert not set(tune) & set(held)
    for hand in (False, True):
        fonts = [set(nondigits._font_files(g, hand)) for g in ("tune", "heldout")]
        assert not fonts[0] & fonts[1]
    assert not set(nondigits.LETTERS) & set("0123456789OoIlSsZzBbGgqT")


def test_a_shape_is_drawn_where_its_segments_lie() -> None:
    # One horizontal segment on row 28 from column 10 to 45, 4 px wide: ink is
    # clip(2 - distance + 0.5, 0, 1), so 1 within 1.5 px, 0.5 at 2 px, 0 from 2.5 px.
    segment = np.array([[[[10.0, 28.0], [45.0, 28.0]]]])
    ink = nondigits._render(segment, np.array([4.0]))[0]
    assert ink[27:30, 10:46].min() == 1.0
    assert np.all(ink[[26, 30], 10:46] == 0.5)
    assert ink[:26].max() == 0 and ink[31:].max() == 0
    assert ink[28, 8] == 0.5 and ink[28, 47] == 0.5  # 2 px beyond either end
    assert ink[28, :8].max() == 0 and ink[28, 48:].max() == 0


def test_inputs_look_like_a_users_digit_after_preprocessing() -> None:
    x, kinds = nondigits.nondigit_inputs(9, seed=2)
    assert x.shape == (9, 28, 28) and x.dtype == np.float32 and len(kinds) == 9
    assert np.allclose(x.reshape(9, -1).max(1), 1)
    rows = np.arange(28)
    centre = (x.sum(2) @ rows) / x.sum((1, 2))
    assert np.all(np.abs(centre - 14) < 1.5)  # MNIST's centre of mass
    assert x[:, :2].max() < 0.2  # the 20×20 box leaves a border


def test_bad_arguments_are_refused_in_one_line() -> None:
    with pytest.raises(CnnlabError, match="tune, heldout"):
        nondigits.draw_nondigits(3, 0, group="other")
    with pytest.raises(CnnlabError, match="at least 0"):
        nondigits.draw_nondigits(-1, 0)


def test_unprocessed_inputs_are_fitted_to_mnists_box_all_at_once() -> None:
    x, kinds = nondigits.nondigit_inputs(30, seed=3, preprocess=False)
    _, same = nondigits.draw_nondigits(30, seed=3)
    assert x.shape == (30, 28, 28) and x.dtype == np.float32 and np.array_equal(kinds, same)
    assert np.allclose(x.reshape(30, -1).max(1), 1)
    rows = np.arange(28)
    mass = x.sum((1, 2))
    assert np.allclose((x.sum(2) @ rows) / mass, 14, atol=0.1)  # centre of mass, both axes
    assert np.allclose((x.sum(1) @ rows) / mass, 14, atol=0.1)
    inked = x > 0.3
    tall = 28 - inked.any(2)[:, ::-1].argmax(1) - inked.any(2).argmax(1)
    wide = 28 - inked.any(1)[:, ::-1].argmax(1) - inked.any(1).argmax(1)
    assert np.all(np.abs(np.maximum(tall, wide) - 20) <= 2)  # the 20-pixel box


def test_stars_triangles_and_spirals_come_in_many_shapes() -> None:
    rng = np.random.default_rng(0)
    stars = nondigits._stars(200, rng)
    repeats = np.all(stars == stars[:, -1:], axis=(2, 3))[:, ::-1].cumprod(1).sum(1)
    drawn = stars.shape[1] - repeats + 1  # segments before the padding repeats the last
    assert {3, 4, 5, 8, 10, 12, 16} <= set(drawn)  # asterisks, one stroke, 4-8 point outlines
    corners = nondigits._triangles(200, rng)[:, :3, 0]  # (n, 3 corners, 2)
    sides = np.roll(corners, -1, axis=1) - corners
    cos = -(sides * np.roll(sides, 1, axis=1)).sum(-1) / (
        np.linalg.norm(sides, axis=-1) * np.linalg.norm(np.roll(sides, 1, axis=1), axis=-1)
    )
    angles = np.degrees(np.arccos(cos))
    assert np.allclose(angles.sum(1), 180) and angles.min() >= 30 - 1e-6 and angles.max() > 100
    spirals = nondigits._spirals(200, rng)
    step = spirals[:, :, 1] - spirals[:, :, 0]
    a, b = step[:, :-1], step[:, 1:]
    turning = (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]).sum(1)  # its sign: which way
    assert (turning > 0).sum() > 50 and (turning < 0).sum() > 50
