"""ResNet-18 between cnnlab, PyTorch (torchvision's own model) and ONNX: the same function, and
weights that map one to one."""

from __future__ import annotations

import numpy as np
import pytest
from torchvision_models import resnet18 as torchvision_resnet18

import cnnlab
from cnnlab.engine.errors import CnnlabError
from cnnlab.export.pytorch import from_torch, to_torch
from cnnlab.runs.zoo import basic_block, resnet18

torch = pytest.importorskip("torch")
torch.set_num_threads(2)


def relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.slow  # an 11-million-weight network, built three times
def test_torchvision_resnet18_gives_torchvisions_outputs() -> None:
    """Random torchvision weights and statistics, a 224×224 picture: equal to 1e-4."""
    reference = torchvision_resnet18(seed=3)
    model = from_torch(reference, input_shape=(3, 224, 224))
    assert model.num_params() == sum(p.numel() for p in reference.parameters()) + 4800
    shapes = {key: value.shape for key, value in model.state_arrays().items()}
    preset = resnet18(n_classes=1000).state_arrays()  # the preset's very layout
    assert shapes == {key: value.shape for key, value in preset.items()}
    assert not model.training
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert relative(model.outputs(x), expected) < 1e-4


@pytest.mark.slow  # an 11-million-weight network, built three times
def test_a_headless_torchvision_resnet_is_a_feature_extractor() -> None:
    reference = torchvision_resnet18(seed=4)
    reference.fc = torch.nn.Identity()
    model = from_torch(reference, input_shape=(3, 112, 112))
    assert model.output_shape() == (512,)
    x = np.random.default_rng(1).random((3, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert relative(model.outputs(x), expected) < 1e-4


@pytest.mark.slow  # an 11-million-weight network, built three times
def test_to_torch_computes_the_same_and_comes_back(rng) -> None:
    """float64, training mode too: outputs, input gradients and the batch norms' statistics."""
    model = resnet18(seed=2, dtype=np.float64, input_shape=(3, 32, 32), n_classes=7)
    module = to_torch(model)
    x = rng.standard_normal((2, 3, 32, 32))
    y = model.forward(x)
    g = rng.standard_normal(y.shape)
    dx = model.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-8 * np.abs(dx).max())
    ours = [g for _, _, g in model.named_parameters()]
    theirs = [p.grad.numpy() for p in module.parameters()]
    assert len(ours) == len(theirs) == 62 + 20  # the convs' (zero) biases too
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * max(np.abs(b).max(), 1e-2))
    back = from_torch(module.eval(), input_shape=(3, 32, 32))
    for (key, a), b in zip(model.state_arrays().items(), back.state_arrays().values(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * np.abs(b).max(), err_msg=key)


def test_a_bottleneck_or_odd_block_is_refused_in_one_line() -> None:
    block = torchvision_resnet18(seed=0).layer1[0]
    block.relu = torch.nn.GELU()
    with pytest.raises(CnnlabError, match="a block whose activation is GELU is not supported"):
        from_torch(torch.nn.Sequential(block), input_shape=(64, 8, 8))
    pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2))
    with pytest.raises(CnnlabError, match=r"output_size=2 \(only 1"):
        from_torch(pool, input_shape=(3, 8, 8))


# -- ONNX ----------------------------------------------------------------------------------------


def test_onnx_export_adds_the_shortcut(rng) -> None:
    ort = pytest.importorskip("onnxruntime")
    from cnnlab.export.onnx import to_onnx

    model = resnet18(seed=1, input_shape=(3, 64, 64), n_classes=5)
    for layer in model.layers:  # statistics that are not the identity
        for key, value in layer.buffers.items():
            low, high = (-0.1, 0.1) if key.endswith("mean") else (0.5, 1.5)
            value[...] = rng.uniform(low, high, value.shape)
    proto = to_onnx(model.eval())
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Add") == 8 and ops.count("Conv") == 20
    assert "GlobalAveragePool" in ops and ops.count("MaxPool") == 1
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.random((3, 3, 64, 64)).astype(np.float32)
    (got,) = session.run(None, {"input": x})
    assert np.abs(model.outputs(x)).max() > 0.1
    assert relative(got, model.outputs(x)) < 1e-4


def test_onnx_export_of_a_block_without_relu_or_shortcut(rng) -> None:
    ort = pytest.importorskip("onnxruntime")
    from cnnlab.export.onnx import to_onnx

    plain = cnnlab.Residual(
        [cnnlab.Conv2D(2, 2, 3, padding=1, rng=0), cnnlab.Dropout(0.2, rng=0)], relu=False
    )
    model = cnnlab.Sequential(
        [plain, basic_block(2, 3, 2, np.random.default_rng(0)), cnnlab.GlobalAvgPool2D()],
        input_shape=(2, 7, 7),
    ).eval()
    proto = to_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    (got,) = session.run(None, {"input": x})
    np.testing.assert_allclose(got, model.outputs(x), rtol=1e-5, atol=1e-6)
