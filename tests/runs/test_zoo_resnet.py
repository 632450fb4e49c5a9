"""ResNet-18: torchvision's layout, any picture size, within the model file's limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cnnlab
from cnnlab.engine import limits
from cnnlab.runs.zoo import IMAGENET, RESNET18_WIDTHS, resnet18


def test_resnet18_has_torchvisions_shape_and_sizes() -> None:
    model = resnet18()
    assert model.input_shape == IMAGENET and model.output_shape() == (1000,)
    shapes = model.shapes()
    assert shapes[0] == (64, 112, 112) and shapes[3] == (64, 56, 56)
    assert [shapes[i] for i in (5, 7, 9, 11)] == [
        (w, 56 // 2**s, 56 // 2**s) for s, w in enumerate(RESNET18_WIDTHS)
    ]
    # torchvision's 11,689,512 parameters plus the convs' 4,800 bias entries.
    assert model.num_params() == 11_689_512 + 4_800
    assert [type(layer).__name__ for layer in model.layers].count("Residual") == 8
    limits.check_activations(model.layers, model.input_shape, "resnet18")
    assert model.num_params() < limits.MAX_WEIGHTS


def test_resnet18_without_a_head_gives_512_features_at_any_size() -> None:
    model = resnet18(n_classes=None, input_shape=(3, 112, 112)).eval()
    x = np.random.default_rng(0).random((2, 3, 112, 112), dtype=np.float32)
    features = model.outputs(x)
    assert features.shape == (2, 512) and np.isfinite(features).all()
    assert (features >= 0).all()  # the average of ReLU outputs
    assert resnet18(input_shape=(1, 8, 8)).output_shape() == (1000,)  # padding reaches 1×1


def test_resnet18_saves_and_loads(tmp_path: Path) -> None:
    model = resnet18(seed=4, input_shape=(3, 32, 32), n_classes=3)
    model.save(tmp_path / "resnet.npz")
    loaded = cnnlab.Sequential.load(tmp_path / "resnet.npz")
    x = np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(loaded.outputs(x), model.outputs(x))
    assert loaded.meta == {"preset": "resnet18"}
