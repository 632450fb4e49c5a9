"""Presets follow the data's shape and classes; ``vgg`` for colour pictures trains and matches
PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab
from cnnlab.data import shapes
from cnnlab.data.augment import random_crop_flip
from cnnlab.data.imageset import channel_stats, normalise
from cnnlab.engine.gradcheck import gradient_check
from cnnlab.runs.zoo import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 40, 36)])
def test_every_preset_takes_the_data_shape_and_classes(name: str, shape: tuple) -> None:
    model = cnnlab.build(name, input_shape=shape, n_classes=6)
    assert model.input_shape == shape and model.output_shape() == (6,)
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    assert model.eval().forward(x).shape == (2, 6)


def test_presets_keep_their_designed_shapes_by_default() -> None:
    assert cnnlab.build("default").input_shape == (1, 28, 28)
    assert cnnlab.build("vgg").input_shape == (3, 32, 32)
    assert cnnlab.build("vgg").output_shape() == (10,)


def test_a_picture_too_small_for_a_preset_is_one_line() -> None:
    with pytest.raises(cnnlab.CnnlabError, match="preset 'lenet5' cannot take input"):
        cnnlab.build("lenet5", input_shape=(3, 8, 8))


def test_vgg_gradients_match_finite_differences() -> None:
    model = cnnlab.build("vgg", input_shape=(3, 8, 8), n_classes=4, dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8))
    y = np.array([0, 1, 3])
    check = gradient_check(model, x, y, entries=3)
    biases = [row for row in check.rows if row.name.endswith("Conv2D.b")]
    assert len(biases) == 3
    assert all(row.passed for row in check.rows if row not in biases), check
    # Batch norm subtracts each channel's mean, so a convolution's bias before it cannot change
    # the loss: its gradient is exactly zero (and finite differences give only round-off).
    loss = cnnlab.CrossEntropyLoss()
    model.train()
    loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    for name, _, grad in model.named_parameters():
        if name.endswith("Conv2D.b"):
            assert np.abs(grad).max() < 1e-12, name


@pytest.mark.slow
def test_vgg_matches_pytorch() -> None:
    torch = pytest.importorskip("torch")
    from cnnlab.export.pytorch import to_torch

    model = cnnlab.build("vgg", n_classes=6, seed=5, dtype=np.float64).eval()
    x = np.random.default_rng(2).normal(size=(4, 3, 32, 32))
    ours = model.forward(x)
    theirs = to_torch(model).eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_vgg_learns_the_shapes() -> None:
    x, y = shapes.generate(1200, size=16, seed=0)
    xt, yt = shapes.generate(300, size=16, seed=1)
    mean, std = channel_stats(x)
    model = cnnlab.build("vgg", input_shape=(3, 16, 16), n_classes=len(shapes.CLASSES))
    optimizer = cnnlab.Adam(model.parameters(), lr=5e-3)
    cnnlab.fit(
        model, cnnlab.CrossEntropyLoss(), optimizer, normalise(x, mean, std), y, epochs=4,
        batch_size=32, seed=0, augment=lambda b, rng: random_crop_flip(b, rng, padding=2),
    )  # fmt: skip
    accuracy = (model.predict(normalise(xt, mean, std)) == yt).mean()
    assert accuracy > 0.4  # chance is 1/6
