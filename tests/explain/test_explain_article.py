"""The article's worked examples: the 6×6 convolution and the curve detector."""

from __future__ import annotations

import numpy as np

from cnnlab.explain.article import (
    ARTICLE_FILTER,
    ARTICLE_IMAGE,
    ARTICLE_MAP,
    CURVE_FILTER,
    activation_map,
    convolution_steps,
    curve_detector,
)


def hand_convolution(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The textbook double loop, written independently of the code under test."""
    kh, kw = kernel.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[r, c] = sum(
                image[r + i, c + j] * kernel[i, j] for i in range(kh) for j in range(kw)
            )
    return out


def test_article_map_matches_the_engine_and_the_hand_loop() -> None:
    engine = activation_map(ARTICLE_IMAGE, ARTICLE_FILTER)
    assert engine.shape == (3, 3)
    np.testing.assert_array_equal(engine, ARTICLE_MAP)
    np.testing.assert_array_equal(hand_convolution(ARTICLE_IMAGE, ARTICLE_FILTER), ARTICLE_MAP)
    assert ARTICLE_MAP.max() == 4 and tuple(np.argwhere(ARTICLE_MAP == 4)[0]) == (1, 1)


def test_convolution_steps_show_each_multiply_and_sum() -> None:
    steps = convolution_steps(ARTICLE_IMAGE, ARTICLE_FILTER)
    assert len(steps) == 9
    assert [(s.row, s.col) for s in steps] == [(r, c) for r in range(3) for c in range(3)]
    for s in steps:
        np.testing.assert_array_equal(s.patch, ARTICLE_IMAGE[s.row : s.row + 4, s.col : s.col + 4])
        np.testing.assert_array_equal(s.products, s.patch * ARTICLE_FILTER)
        assert s.total == s.products.sum() == ARTICLE_MAP[s.row, s.col]


def test_conv2d_equals_hand_loop_on_random_values(rng: np.random.Generator) -> None:
    image = rng.normal(size=(9, 7))
    kernel = rng.normal(size=(3, 4))
    np.testing.assert_allclose(
        activation_map(image, kernel, bias=0.5), hand_convolution(image, kernel) + 0.5, atol=1e-12
    )
    totals = [s.total for s in convolution_steps(image, kernel)]
    np.testing.assert_allclose(np.reshape(totals, (7, 4)), hand_convolution(image, kernel))


def test_curve_detector_peaks_on_the_curve() -> None:
    result = curve_detector()
    curve, straight = result["curve"], result["no curve"]
    assert curve["peak"] == CURVE_FILTER.sum() == 13  # every curve pixel under a weight of 1
    assert straight["peak"] == 4
    assert curve["peak"] > 3 * straight["peak"]
    assert curve["map"].shape == straight["map"].shape == (19, 19)
    assert curve["map"][curve["peak_at"]] == curve["peak"]
