"""Tests for cnnlab.export.onnx: a checked ONNX graph that ONNX Runtime runs like cnnlab."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab.data import load
from cnnlab.engine.errors import CnnlabError, MissingPackageError, install_hint
from cnnlab.export.onnx import export_onnx, to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def bn_model() -> cnnlab.Sequential:
    """A small network with both batch norms, average pooling and a softmax at the end."""
    layers = [
        cnnlab.Conv2D(1, 8, 5, padding=2, rng=0),
        cnnlab.BatchNorm2D(8),
        cnnlab.AvgPool2D(2),
        cnnlab.Tanh(),
        cnnlab.Conv2D(8, 8, 3, stride=2, rng=1),
        cnnlab.MaxPool2D(2, stride=1),
        cnnlab.Sigmoid(),
        cnnlab.Flatten(),
        cnnlab.Dense(8 * 5 * 5, 32, rng=2),
        cnnlab.BatchNorm1D(32),
        cnnlab.ReLU(),
        cnnlab.Dropout(0.2, rng=3),
        cnnlab.Dense(32, 10, init="glorot", rng=4),
        cnnlab.Softmax(),
    ]
    return cnnlab.Sequential(layers, input_shape=(1, 28, 28), meta={"preset": "bn-test"})


def briefly_trained(model: cnnlab.Sequential, steps: int = 8) -> cnnlab.Sequential:
    """A few SGD steps on real digits: non-trivial weights, biases and running statistics."""
    images, labels = load("mnist-sample", "train")
    x = cnnlab.to_input(images[: 32 * steps])
    optimizer = cnnlab.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = cnnlab.CrossEntropyLoss()
    model.train()
    for i in range(0, len(x), 32):
        loss.forward(model.forward(x[i : i + 32]), labels[i : i + 32])
        model.backward(loss.backward(), input_grad=False)
        optimizer.step()
    model.meta["class_names"] = list("0123456789")
    return model.eval()


NAMES = ["default", "lenet5", "simple", "fast", "batchnorm"]


@pytest.fixture(scope="module")
def trained() -> dict[str, cnnlab.Sequential]:
    models = {name: cnnlab.build(name, seed=5) for name in NAMES[:4]}
    models["batchnorm"] = bn_model()
    return {name: briefly_trained(model) for name, model in models.items()}


@pytest.fixture(scope="module")
def test_digits() -> np.ndarray:
    """The bundled sample's 2,000 test digits, none of which the models trained on."""
    images, _ = load("mnist-sample", "test")
    return cnnlab.to_input(images)


def session(model: cnnlab.Sequential, **kwargs: bool) -> ort.InferenceSession:
    proto = to_onnx(model, **kwargs)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def max_diff(model: cnnlab.Sequential, x: np.ndarray) -> float:
    """Largest |ONNX Runtime − cnnlab| over the outputs for inputs ``x``, in batches of 1,000."""
    runtime = session(model)
    worst = 0.0
    for i in range(0, len(x), 1000):
        batch = x[i : i + 1000]
        (got,) = runtime.run(None, {"input": batch})
        want = model.forward(batch)
        assert got.shape == want.shape == (len(batch), 10)
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_runtime_matches_cnnlab_on_2000_test_digits(
    name: str, trained: dict, test_digits: np.ndarray
) -> None:
    assert max_diff(trained[name], test_digits) <= 1e-5


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runtime_matches_cnnlab_on_all_10000_test_digits(name: str, trained: dict) -> None:
    images, _ = load("mnist", "test", data_dir=MNIST_DIR)
    assert images.shape == (10_000, 28, 28)
    diff = max_diff(trained[name], cnnlab.to_input(images))
    print(f"{name}: max |onnxruntime - cnnlab| over 10,000 digits = {diff:.3g}")
    assert diff <= 1e-5


def test_graph_structure_and_names(trained: dict) -> None:
    proto = to_onnx(trained["default"])
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and dims == ["N", 1, 28, 28]
    (out,) = proto.graph.output
    assert out.name == "logits"
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 10]
    ops = [node.op_type for node in proto.graph.node]
    assert ops == ["Conv", "MaxPool", "Relu"] * 2 + ["Flatten", "Gemm", "Relu", "Gemm", "Identity"]
    conv = proto.graph.node[0]
    attrs = {a.name: list(a.ints) for a in conv.attribute}
    assert attrs == {"kernel_shape": [5, 5], "pads": [0, 0, 0, 0], "strides": [1, 1]}
    gemm = proto.graph.node[7]
    assert {a.name: a.i for a in gemm.attribute} == {"transB": 1}


def test_batchnorm_model_gives_probabilities(trained: dict) -> None:
    model = trained["batchnorm"]
    proto = to_onnx(model)
    assert proto.graph.output[0].name == "probabilities"
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("BatchNormalization") == 2 and "Dropout" not in ops
    assert "AveragePool" in ops and ops[-2] == "Softmax"


def test_metadata_is_embedded(trained: dict) -> None:
    proto = to_onnx(trained["lenet5"])
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["cnnlab_version"] == cnnlab.__version__
    assert props["preset"] == "lenet5"
    assert json.loads(props["class_names"]) == list("0123456789")
    assert json.loads(props["input_shape"]) == [1, 28, 28]
    assert proto.producer_name == "cnnlab"


def test_the_metadata_names_a_folder_data_set_without_its_path(trained: dict) -> None:
    model = copy.deepcopy(trained["lenet5"])
    model.meta["dataset"] = "/tmp/pytest-of-someone/data/myshapes"
    props = {p.key: p.value for p in to_onnx(model).metadata_props}
    assert props["dataset"] == "myshapes"
    assert not any("/tmp" in value for value in props.values())


def test_the_metadata_carries_the_calibration(trained: dict) -> None:
    model = copy.deepcopy(trained["lenet5"])
    model.meta.update(temperature=0.54, unknown_score="energy", unknown_below=-7.25)
    props = {p.key: p.value for p in to_onnx(model).metadata_props}
    assert float(props["temperature"]) == 0.54 and float(props["unknown_below"]) == -7.25
    assert props["unknown_score"] == "energy"
    plain = {p.key for p in to_onnx(trained["lenet5"]).metadata_props}
    assert not {"temperature", "unknown_score", "unknown_below"} & plain


def test_probabilities_flag_appends_softmax(trained: dict, test_digits: np.ndarray) -> None:
    model = trained["simple"]
    runtime = session(model, probabilities=True)
    assert runtime.get_outputs()[0].name == "probabilities"
    x = test_digits[:300]
    (got,) = runtime.run(None, {"input": x})
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert np.abs(got - model.predict_proba(x)).max() <= 1e-5
    # A model that already ends in softmax gets no second one.
    ops = [n.op_type for n in to_onnx(trained["batchnorm"], probabilities=True).graph.node]
    assert ops.count("Softmax") == 1


def test_dynamic_batch_sizes(trained: dict) -> None:
    model = trained["lenet5"]
    runtime = session(model)
    for n in (1, 7):
        x = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
        (got,) = runtime.run(None, {"input": x})
        assert got.shape == (n, 10)
        assert np.abs(got - model.forward(x)).max() <= 1e-5


def test_float64_model_exports_as_float32() -> None:
    model = cnnlab.build("lenet5", seed=1, dtype=np.float64).eval()
    x = np.random.default_rng(0).random((16, 1, 28, 28))
    (got,) = session(model).run(None, {"input": x.astype(np.float32)})
    assert got.dtype == np.float32
    assert np.abs(got - model.forward(x)).max() <= 1e-5


def test_export_writes_a_loadable_file(trained: dict, tmp_path: Path) -> None:
    path = export_onnx(trained["default"], tmp_path / "sub" / "model.onnx")
    assert path == tmp_path / "sub" / "model.onnx"
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.graph.output[0].name == "logits"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]


def test_failed_export_leaves_existing_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    no_shape = cnnlab.Sequential([cnnlab.Flatten(), cnnlab.Dense(4, 2, rng=0)])
    with pytest.raises(CnnlabError, match="no input_shape"):
        export_onnx(no_shape, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_refuses_low_opset_and_non_models(trained: dict) -> None:
    with pytest.raises(CnnlabError, match="opset must be >= 17, got 13"):
        to_onnx(trained["lenet5"], opset=13)
    with pytest.raises(CnnlabError, match="expected a cnnlab Sequential"):
        to_onnx("model.npz")


def test_missing_onnx_says_how_to_install(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingPackageError, match=re.escape(install_hint("onnx"))):
        to_onnx(trained["lenet5"])
