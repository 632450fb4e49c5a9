"""Tests for cnnlab.export.pytorch: to_torch / from_torch agree with cnnlab and with each other."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import cnnlab
from cnnlab.engine.errors import CnnlabError, MissingPackageError, install_hint
from cnnlab.export.pytorch import from_torch, to_torch

torch = pytest.importorskip("torch")
nn = torch.nn


def zoo(dtype: type = np.float32) -> cnnlab.Sequential:
    """A model using every layer type, batch norm included."""
    layers = [
        cnnlab.Conv2D(1, 4, 3, padding=1, rng=0, dtype=dtype),
        cnnlab.BatchNorm2D(4, dtype=dtype),
        cnnlab.AvgPool2D(2, dtype=dtype),
        cnnlab.Tanh(dtype=dtype),
        cnnlab.Conv2D(4, 6, (3, 2), stride=2, rng=1, dtype=dtype),
        cnnlab.MaxPool2D(2, stride=1, dtype=dtype),
        cnnlab.Sigmoid(dtype=dtype),
        cnnlab.Flatten(dtype=dtype),
        cnnlab.Dense(6 * 5 * 6, 12, rng=2, dtype=dtype),
        cnnlab.BatchNorm1D(12, dtype=dtype),
        cnnlab.ReLU(dtype=dtype),
        cnnlab.Dropout(0.3, rng=3, dtype=dtype),
        cnnlab.Dense(12, 10, rng=4, dtype=dtype),
        cnnlab.Softmax(dtype=dtype),
    ]
    return cnnlab.Sequential(layers, input_shape=(1, 28, 28))


def nudge(model: cnnlab.Sequential, rng: np.random.Generator, steps: int = 3) -> None:
    """A few SGD steps on random digits, so biases and running statistics are not defaults."""
    opt = cnnlab.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = cnnlab.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        x = rng.random((16, 1, 28, 28)).astype(model.dtype)
        y = rng.integers(0, 10, 16)
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        opt.step()
    model.eval()


def models() -> list[tuple[str, cnnlab.Sequential]]:
    rng = np.random.default_rng(7)
    out = []
    for name in ("default", "lenet5", "simple"):
        model = cnnlab.build(name, seed=3)
        nudge(model, rng)
        out.append((name, model))
    model = zoo()
    nudge(model, rng)
    out.append(("zoo", model))
    return out


MODELS = models()


def digits(n: int = 24, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(11).random((n, 1, 28, 28)).astype(dtype)


@pytest.mark.parametrize(("name", "model"), MODELS, ids=[n for n, _ in MODELS])
def test_to_torch_matches_cnnlab(name: str, model: cnnlab.Sequential) -> None:
    x = digits()
    module = to_torch(model)
    assert isinstance(module, nn.Sequential)
    assert not module.training
    assert all(p.dtype == torch.float32 for p in module.parameters())
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    want = model.forward(x)
    assert got.shape == want.shape == (24, 10)
    assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize(("name", "model"), MODELS, ids=[n for n, _ in MODELS])
def test_round_trip_keeps_weights_and_predictions(name: str, model: cnnlab.Sequential) -> None:
    back = from_torch(to_torch(model), meta=model.meta)
    for key in ("dtype", "input_shape", "meta"):
        assert back.config()[key] == model.config()[key]
    assert [type(a) for a in back.layers] == [type(b) for b in model.layers]
    ours, theirs = model.state_arrays(), back.state_arrays()
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(theirs[key], ours[key], err_msg=key)
    x = digits()
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_layer_settings_survive_round_trip() -> None:
    model = MODELS[-1][1]
    back = from_torch(to_torch(model))
    for ours, theirs in zip(model.layers, back.layers, strict=True):
        config = ours.config()
        config.pop("init", None)  # torch has no record of how weights were drawn
        assert {k: v for k, v in theirs.config().items() if k != "init"} == config


def test_float64_and_training_mode_are_kept() -> None:
    model = zoo(np.float64).train()
    module = to_torch(model)
    assert module.training
    assert all(p.dtype == torch.float64 for p in module.parameters())
    back = from_torch(module)
    assert back.dtype == np.float64 and back.training
    back.eval()
    model.eval()
    x = digits(8, np.float64)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_from_torch_matches_torch_module() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 5, 5, padding=(2, 2), bias=False),
        nn.BatchNorm2d(5),
        nn.MaxPool2d((2, 2)),
        nn.ReLU(inplace=True),
        nn.Sequential(nn.Conv2d(5, 7, 3, stride=(2, 2), padding="valid"), nn.Tanh()),
        nn.Flatten(),
        nn.Linear(7 * 6 * 6, 10, bias=False),
        nn.BatchNorm1d(10, affine=False),
        nn.Softmax(dim=-1),
    )
    module.train()
    with torch.no_grad():  # give batch norm non-default running statistics
        module(torch.rand(32, 1, 28, 28) * 3)
    module.eval()
    model = from_torch(module, meta={"preset": "hand-made"})
    assert model.meta == {"preset": "hand-made"}
    assert len(model.layers) == 10  # the nested Sequential is flattened
    np.testing.assert_array_equal(model.layers[0].params["b"], np.zeros(5, np.float32))
    x = digits()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = model.forward(x)
    assert np.abs(got - want).max() <= 1e-5
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


REFUSED = [
    (nn.Sequential(nn.Flatten(), nn.GELU()), "GELU"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), "dilation"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), "groups=2"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), "padding_mode"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=(1, 2))), "padding=(1, 2)"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding="same")), "padding='same'"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, stride=(1, 2))), "stride=(1, 2)"),
    (nn.Sequential(nn.ConvTranspose2d(1, 2, 3)), "ConvTranspose2d"),
    (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode"),
    (nn.Sequential(nn.AvgPool2d(3, padding=1)), "padding=1"),
    (nn.Sequential(nn.MaxPool2d(2, dilation=2)), "dilation=2"),
    (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), "divisor_override"),
    (nn.Sequential(nn.BatchNorm2d(1, track_running_stats=False)), "track_running_stats"),
    (nn.Sequential(nn.BatchNorm2d(1, momentum=None)), "momentum=None"),
    (nn.Sequential(nn.Flatten(), nn.Softmax(dim=0)), "dim=0"),
    (nn.Sequential(nn.Flatten(start_dim=2)), "start_dim=2"),
    (nn.Sequential(nn.Dropout2d(0.5)), "Dropout2d"),
    (nn.Sequential(), "empty"),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10).half()), "float16"),
    (nn.Linear(784, 10), "expected a torch.nn.Sequential"),
]


@pytest.mark.parametrize(("module", "phrase"), REFUSED, ids=[p for _, p in REFUSED])
def test_from_torch_refuses_what_cnnlab_cannot_run(module: object, phrase: str) -> None:
    with pytest.raises(CnnlabError, match="from_torch") as info:
        from_torch(module)
    assert phrase in str(info.value)
    assert "\n" not in str(info.value)


def test_from_torch_checks_shapes_fit_the_input() -> None:
    module = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(CnnlabError, match="100 input features"):
        from_torch(module)
    assert from_torch(module, input_shape=(1, 10, 10)).output_shape() == (10,)


def test_to_torch_refuses_non_models() -> None:
    with pytest.raises(CnnlabError, match="expected a cnnlab Sequential, got list"):
        to_torch([cnnlab.ReLU()])


def test_missing_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    for call in (lambda: to_torch(MODELS[0][1]), lambda: from_torch(object())):
        with pytest.raises(MissingPackageError, match=re.escape(install_hint("torch"))):
            call()
