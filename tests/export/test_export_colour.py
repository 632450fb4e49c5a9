"""A colour model (3 input channels, batch norm, its normalisation in the metadata) exports to
ONNX and TorchScript and computes what cnnlab computes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab.cli.main import main
from cnnlab.data import shapes
from cnnlab.data.imageset import ImageSet
from cnnlab.runs.model_input import data_meta, prepare

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def colour() -> tuple[cnnlab.Sequential, np.ndarray]:
    """``vgg`` after a few steps on the shapes (non-trivial running statistics), and inputs."""
    x, y = shapes.generate(192, size=32, seed=0)
    data = ImageSet("shapes", shapes.CLASSES, x, y, x[:32], y[:32])
    model = cnnlab.build("vgg", n_classes=len(shapes.CLASSES), seed=3)
    model.meta.update(data_meta(data))
    inputs = prepare(model, x)
    optimizer = cnnlab.Adam(model.parameters(), lr=3e-3)
    cnnlab.fit(model, cnnlab.CrossEntropyLoss(), optimizer, inputs, y, epochs=1, batch_size=32)
    return model.eval(), inputs[:40]


def test_onnx_runtime_matches_and_carries_the_normalisation(colour: tuple, tmp_path: Path) -> None:
    model, x = colour
    path = tmp_path / "model.npz"
    model.save(path)
    assert main(["export", str(path), "--format", "onnx"]) == 0
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    assert got.shape == (40, 6)
    np.testing.assert_allclose(got, model.forward(x), atol=1e-4, rtol=1e-4)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == list(shapes.CLASSES)
    assert json.loads(meta["mean"]) == pytest.approx(model.meta["mean"])
    assert json.loads(meta["std"]) == pytest.approx(model.meta["std"])
    assert meta["kind"] == "images" and json.loads(meta["input_shape"]) == [3, 32, 32]


@pytest.mark.slow
def test_the_exported_program_matches_and_loads_without_deprecation(
    colour: tuple, tmp_path: Path
) -> None:
    # torch.jit.load, the TorchScript check, is deprecated in PyTorch 2.13 for torch.export.
    model, x = colour
    model.save(tmp_path / "model.npz")
    assert main(["export", str(tmp_path / "model.npz"), "--format", "torch-export"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = torch.export.load(str(tmp_path / "model.pt2")).module()
        for batch in (x, x[:1]):  # any batch size
            got = module(torch.from_numpy(batch)).detach().numpy()
            np.testing.assert_allclose(got, model.forward(batch), atol=1e-4, rtol=1e-4)
