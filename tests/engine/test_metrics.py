"""The Wilson score interval of an accuracy, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.metrics import describe_accuracy, wilson_interval


def by_hand(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_three_right_of_three_is_between_44_and_100_percent() -> None:
    # z² = 3.8415; 1 + z²/3 = 2.2805; centre (1 + 0.6403) / 2.2805 = 0.7193;
    # half 1.96 · √(3.8415 / 36) / 2.2805 = 0.2807
    low, high = wilson_interval(3, 3)
    assert low == pytest.approx(0.4385, abs=1e-4) and high == pytest.approx(1.0)


def test_eight_of_ten_and_zero_of_five() -> None:
    # 8/10: centre (0.8 + 0.1921) / 1.3841 = 0.7168, half 1.96·√(0.016 + 0.0096)/1.3841 = 0.2266
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert wilson_interval(450, 500) == pytest.approx(by_hand(450, 500), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_count_out_of_range_is_refused() -> None:
    with pytest.raises(CnnlabError, match="got 4 of 3"):
        wilson_interval(4, 3)


def test_an_accuracy_is_described_with_its_count_and_interval() -> None:
    assert describe_accuracy(3, 3) == "100% of 3 pictures (95% interval 44–100%)"
    assert describe_accuracy(1, 1) == "100% of 1 picture (95% interval 21–100%)"
