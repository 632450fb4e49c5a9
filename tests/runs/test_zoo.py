"""The model zoo: presets built by name, seeded, with the activation's initialisation."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.engine.errors import CnnlabError
from cnnlab.runs.zoo import init_for


def test_presets_are_seeded() -> None:
    a, b, c = cl.build("default", seed=3), cl.build("default", seed=3), cl.build("default", seed=4)
    for (p, _), (q, _) in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a.parameters()[0][0], c.parameters()[0][0])
    with pytest.raises(CnnlabError, match="unknown model preset 'lenet'"):
        cl.build("lenet")


def test_activation_picks_the_layers_and_their_initialisation() -> None:
    assert (init_for("relu"), init_for("tanh"), init_for("sigmoid")) == ("he", "glorot", "glorot")
    model = cl.build("simple", activation="tanh")
    assert sum(isinstance(layer, cl.Tanh) for layer in model.layers) == 2
    assert not any(isinstance(layer, cl.ReLU) for layer in model.layers)
    with pytest.raises(CnnlabError, match=r"build: activation must be one of .*, got 'swish'"):
        cl.build("default", activation="swish")
