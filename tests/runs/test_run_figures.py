"""What a run draws and the filters it shows: ``first_layer_filters`` reads the first
convolution's weights as pictures (the figures themselves: tests/runs/test_pipeline.py)."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab.runs.run_figures import first_layer_filters


def test_first_layer_filters_average_the_input_channels() -> None:
    model = cnnlab.Sequential(
        [cnnlab.Conv2D(3, 4, 3, rng=0), cnnlab.ReLU(), cnnlab.Conv2D(4, 2, 3)]
    )
    weights = model.layers[0].params["W"]  # (4, 3, 3, 3)
    filters = first_layer_filters(model)
    assert filters.shape == (4, 3, 3)
    np.testing.assert_allclose(filters[1], (weights[1, 0] + weights[1, 1] + weights[1, 2]) / 3)
    one_channel = cnnlab.build("lenet5", seed=0)
    np.testing.assert_array_equal(
        first_layer_filters(one_channel), one_channel.layers[0].params["W"][:, 0]
    )
    with pytest.raises(cnnlab.CnnlabError, match="no Conv2D"):
        first_layer_filters(cnnlab.Sequential([cnnlab.Flatten(), cnnlab.Dense(4, 2)]))
