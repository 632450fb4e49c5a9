"""Reading a probability vector: top class, runner-up, and when to say unsure."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.runs.confidence import UNSURE_BELOW, read


def test_a_clear_answer_is_sure_and_names_the_runner_up() -> None:
    r = read(np.array([0.01, 0.9, 0.02, 0.07]))
    assert (r.label, r.runner_up) == (1, 3)
    assert r.probability == pytest.approx(0.9) and r.runner_up_probability == pytest.approx(0.07)
    assert not r.unsure


def test_a_low_top_probability_is_unsure() -> None:
    top = UNSURE_BELOW - 0.01
    r = read(np.array([top, 0.0, 1 - top]))
    assert r.label == 0 and r.unsure


def test_ties_go_to_the_lower_index_as_argmax() -> None:
    r = read(np.full(10, 0.1))
    assert (r.label, r.runner_up) == (0, 1) and r.unsure
