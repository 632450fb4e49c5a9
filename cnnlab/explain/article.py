"""The article's small worked examples, as data: a 6×6 image, a 4×4 filter and a curve detector.

The article showed them as pictures; these are cnnlab's own small integer versions, kept in one
place so the command line, the tests and the web lab all use the same numbers.

- ``ARTICLE_IMAGE`` is a 6×6 handwritten "7" (1 = ink) and ``ARTICLE_FILTER`` a 4×4 detector
  of the "/" stroke. Sliding the filter gives the 3×3 activation map ``ARTICLE_MAP``, which peaks
  (4) where the filter lies exactly on the 7's diagonal.
- ``CURVE_FILTER`` is a 10×10 curve detector (the article's size); ``CURVE_IMAGE`` is a 28×28
  arch whose top-left corner is that curve, ``NO_CURVE_IMAGE`` a straight stroke (a "1").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab.engine.layers import Conv2D

ARTICLE_IMAGE = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
    ]
)
ARTICLE_FILTER = np.array(
    [
        [0, 0, 0, 1],
        [0, 0, 1, 0],
        [0, 1, 0, 0],
        [1, 0, 0, 0],
    ]
)
ARTICLE_MAP = np.array(
    [
        [1, 1, 3],
        [0, 4, 0],
        [3, 1, 0],
    ]
)

CURVE_FILTER = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
)


def _curve_image() -> np.ndarray:
    """A 28×28 arch "∩": the curve, its mirror image beside it, and two straight legs."""
    image = np.zeros((28, 28))
    image[3:13, 4:14] = CURVE_FILTER
    image[3:13, 14:24] = CURVE_FILTER[:, ::-1]
    image[13:24, 5] = 1  # the legs continue the curve's vertical ends
    image[13:24, 22] = 1
    return image


def _no_curve_image() -> np.ndarray:
    """A 28×28 straight vertical stroke, a "1" with no curve in it."""
    image = np.zeros((28, 28))
    image[4:24, 13] = 1
    return image


CURVE_IMAGE = _curve_image()
NO_CURVE_IMAGE = _no_curve_image()


class ConvStep(NamedTuple):
    """One position of the filter: where it is, what it covers, the products and their sum."""

    row: int
    col: int
    patch: np.ndarray  # (kH, kW) pixels under the filter
    products: np.ndarray  # (kH, kW) patch × filter, entry by entry
    total: float  # the sum of the products: one entry of the activation map


def convolution_steps(image: np.ndarray, kernel: np.ndarray) -> list[ConvStep]:
    """The multiply-and-sum at every filter position, in reading order (stride 1, no padding).

    ``image`` is ``(H, W)``, ``kernel`` ``(kH, kW)``; returns ``(H−kH+1)·(W−kW+1)`` steps whose
    ``total`` fields, laid out row by row, form the activation map.
    """
    image, kernel = np.asarray(image, dtype=float), np.asarray(kernel, dtype=float)
    patches = np.lib.stride_tricks.sliding_window_view(image, kernel.shape)  # (H', W', kH, kW)
    products = patches * kernel
    totals = products.sum(axis=(2, 3))  # (H', W')
    rows, cols = totals.shape
    return [
        ConvStep(r, c, patches[r, c].copy(), products[r, c], float(totals[r, c]))
        for r in range(rows)
        for c in range(cols)
    ]


def activation_map(image: np.ndarray, kernel: np.ndarray, bias: float = 0.0) -> np.ndarray:
    """The activation map of one filter over one grey image, computed by ``cnnlab.Conv2D``.

    The filter is loaded into the weights of a 1-in, 1-out ``Conv2D`` (float64), so the map is
    exactly what the engine's convolution layer computes. ``(H, W)`` → ``(H−kH+1, W−kW+1)``.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    conv = Conv2D(1, 1, kernel.shape, rng=0, dtype=np.float64)
    conv.params["W"][...] = kernel[None, None]  # (1, 1, kH, kW)
    conv.params["b"][...] = bias
    x = np.asarray(image, dtype=np.float64)[None, None]  # (1, 1, H, W)
    return conv.forward(x)[0, 0]


def curve_detector() -> dict[str, dict[str, float | np.ndarray]]:
    """The curve filter over the arch and over the straight stroke: maps and peak activations."""
    result = {}
    for name, image in (("curve", CURVE_IMAGE), ("no curve", NO_CURVE_IMAGE)):
        amap = activation_map(image, CURVE_FILTER)
        peak = np.unravel_index(int(amap.argmax()), amap.shape)
        result[name] = {
            "image": image,
            "map": amap,
            "peak": float(amap.max()),
            "peak_at": (int(peak[0]), int(peak[1])),
        }
    return result
