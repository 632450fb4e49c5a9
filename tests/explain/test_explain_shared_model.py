"""The shared trained model of the explain tests has learned."""

from __future__ import annotations

import numpy as np
from explain_support import trained_small_cnn

import cnnlab
from cnnlab.explain.experiments import digits


def test_the_shared_model_has_learned() -> None:
    x, y = digits(300, "test")
    accuracy = cnnlab.evaluate(trained_small_cnn(), x, y)
    assert accuracy > 0.7
    assert np.isfinite(accuracy)
