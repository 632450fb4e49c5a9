"""Residual blocks, global average pooling and padded max pooling: hand-computed cases, float64
finite differences, parity with PyTorch on random shapes, and everything a block must survive
inside a model (files, threads, dtype, copies, hostile architectures)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.engine import limits
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.gradcheck import check_layer, gradient_check
from cnnlab.engine.layers import GlobalAvgPool2D, Residual
from cnnlab.engine.parallel import DataParallel
from cnnlab.engine.serialize import model_from_config

F64 = np.float64
torch = pytest.importorskip("torch")
torch.set_num_threads(2)


def basic_block(c_in: int, c_out: int, stride: int, rng, dtype=F64) -> Residual:
    """ResNet's basic block: conv 3×3 → BN → ReLU → conv 3×3 → BN, plus the shortcut."""
    body = [
        cl.Conv2D(c_in, c_out, 3, stride, 1, rng=rng, dtype=dtype),
        cl.BatchNorm2D(c_out, dtype=dtype),
        cl.ReLU(dtype=dtype),
        cl.Conv2D(c_out, c_out, 3, 1, 1, rng=rng, dtype=dtype),
        cl.BatchNorm2D(c_out, dtype=dtype),
    ]
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = [
            cl.Conv2D(c_in, c_out, 1, stride, rng=rng, dtype=dtype),
            cl.BatchNorm2D(c_out, dtype=dtype),
        ]
    return Residual(body, shortcut, dtype=dtype)


def small_resnet(rng, dtype=F64) -> cl.Sequential:
    return cl.Sequential(
        [
            cl.Conv2D(3, 4, 3, padding=1, rng=rng, dtype=dtype),
            cl.BatchNorm2D(4, dtype=dtype),
            cl.ReLU(dtype=dtype),
            cl.MaxPool2D(3, 2, padding=1, dtype=dtype),
            basic_block(4, 4, 1, rng, dtype),
            basic_block(4, 6, 2, rng, dtype),
            GlobalAvgPool2D(dtype=dtype),
            cl.Dense(6, 3, rng=rng, dtype=dtype),
        ],
        input_shape=(3, 9, 9),
    )


def randomise_statistics(model_or_layers, rng) -> None:
    """Non-trivial batch-norm scales, shifts and running statistics (fresh ones are 1 and 0)."""
    layers = model_or_layers.layers if hasattr(model_or_layers, "layers") else model_or_layers
    for layer in layers:
        for key, value in {**layer.params, **layer.buffers}.items():
            if value.ndim == 1 and not key.endswith(".b") and key != "b":
                value[...] = rng.uniform(0.5, 1.5, value.shape)


# -- hand-computed -----------------------------------------------------------------------------


def test_a_tiny_block_by_hand() -> None:
    """body: y = W x (a 2×2 dense layer), identity shortcut, then ReLU."""
    dense = cl.Dense(2, 2, dtype=F64)
    dense.params["W"][...] = [[1.0, 2.0], [0.0, -3.0]]
    dense.params["b"][...] = [0.5, 0.0]
    block = Residual([dense], dtype=F64)
    x = np.array([[1.0, 1.0]])
    # W x + b = [3.5, -3]; plus x = [4.5, -2]; relu → [4.5, 0]
    np.testing.assert_array_equal(block.forward(x), [[4.5, 0.0]])
    dx = block.backward(np.array([[1.0, 1.0]]))
    # dL/dsum = [1, 0] (the second unit is off); dx = Wᵀ [1, 0] + [1, 0] = [2, 2]
    np.testing.assert_array_equal(dx, [[2.0, 2.0]])
    np.testing.assert_array_equal(block.grads["body.0.W"], [[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(block.grads["body.0.b"], [1.0, 0.0])
    no_relu = Residual([dense], relu=False, dtype=F64)
    np.testing.assert_array_equal(no_relu.forward(x), [[4.5, -2.0]])


def test_global_average_pooling_by_hand() -> None:
    layer = GlobalAvgPool2D(dtype=F64)
    x = np.arange(8, dtype=F64).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(layer.forward(x), [[1.5, 5.5]])
    np.testing.assert_array_equal(
        layer.backward(np.array([[4.0, 8.0]])), [[[[1, 1], [1, 1]], [[2, 2], [2, 2]]]]
    )
    assert layer.output_shape((2, 5, 7)) == (2,)


def test_padded_max_pooling_by_hand() -> None:
    """3×3 windows, stride 2, padding 1 over a 3×3 map: the border never wins, even negative."""
    layer = cl.MaxPool2D(3, 2, padding=1, dtype=F64)
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    out = layer.forward(x)
    np.testing.assert_array_equal(out, [[[[-1.0, -2.0], [-4.0, -5.0]]]])
    dx = layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    assert layer.config() == {"kernel_size": 3, "stride": 2, "padding": 1}
    assert "padding" not in cl.MaxPool2D(2).config()  # the description files always held
    with pytest.raises(CnnlabError, match="padding must be at most half"):
        cl.MaxPool2D(3, padding=2)


# -- finite differences ------------------------------------------------------------------------


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(2, 2, 1), (2, 3, 2)])
def test_block_gradients_match_finite_differences(c_in, c_out, stride, rng) -> None:
    """In evaluation mode every gradient; in training mode all but the biases of the convs
    right before a batch norm, which the normalisation cancels: theirs is 0 (and the central
    difference pure rounding noise)."""
    block = basic_block(c_in, c_out, stride, rng)
    randomise_statistics(block.sublayers(), rng)
    x = rng.standard_normal((2, c_in, 5, 5))
    assert not check_layer(block.eval(), x, rng)
    cancelled = [f"{path}.{i}.b" for path, i in (("body", 0), ("body", 3), ("shortcut", 0))]
    found = check_layer(block.train(), x, rng)
    assert not [m for m in found if not any(f" d{key}:" in m for key in cancelled)]
    for key in cancelled[: 3 if block.shortcut else 2]:
        assert np.abs(block.grads[key]).max() < 1e-12


def test_pooling_gradients_match_finite_differences(rng) -> None:
    assert not check_layer(GlobalAvgPool2D(dtype=F64), rng.standard_normal((2, 3, 4, 3)), rng)
    distinct = rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) + rng.uniform(0, 0.1)
    assert not check_layer(cl.MaxPool2D(3, 2, padding=1, dtype=F64), distinct.astype(F64), rng)


def test_a_small_resnet_passes_the_gradient_checks(rng) -> None:
    model = small_resnet(rng)
    x = rng.standard_normal((4, 3, 9, 9))
    y = rng.integers(0, 3, 4)
    assert gradient_check(model, x, y, entries=4).passed


# -- PyTorch -----------------------------------------------------------------------------------


def torch_block(block: Residual, x):
    """What PyTorch computes for ``block`` (training mode), from the block's own weights."""
    F = torch.nn.functional
    weights = {k: torch.tensor(v, requires_grad=True) for k, v in block.params.items()}

    def path(name: str, layers, y):
        for i, layer in enumerate(layers):
            key = f"{name}.{i}."
            if isinstance(layer, cl.Conv2D):
                y = F.conv2d(y, weights[key + "W"], weights[key + "b"], layer.stride, layer.padding)
            elif isinstance(layer, cl.BatchNorm2D):
                y = F.batch_norm(y, None, None, weights[key + "W"], weights[key + "b"], True)
            else:
                y = F.relu(y)
        return y

    shortcut = path("shortcut", block.shortcut, x) if block.shortcut else x
    return F.relu(path("body", block.body, x) + shortcut), weights


def random_block_configs(count: int) -> list[tuple[int, int, int, int, int, int]]:
    rng = np.random.default_rng(2028)
    out = []
    for _ in range(count):
        c_in = int(rng.integers(1, 5))
        stride = int(rng.integers(1, 3))
        c_out = c_in if rng.random() < 0.4 and stride == 1 else int(rng.integers(1, 6))
        n, h, w = int(rng.integers(2, 4)), int(rng.integers(3, 9)), int(rng.integers(3, 9))
        out.append((n, c_in, c_out, stride, h, w))
    return out


@pytest.mark.parametrize(("n", "c_in", "c_out", "stride", "h", "w"), random_block_configs(6))
def test_block_matches_torch(n, c_in, c_out, stride, h, w, rng) -> None:
    block = basic_block(c_in, c_out, stride, rng)
    randomise_statistics(block.sublayers(), rng)
    x = rng.standard_normal((n, c_in, h, w))
    y = block.forward(x)
    g = rng.standard_normal(y.shape)
    dx = block.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt, weights = torch_block(block, xt)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for key, tensor in weights.items():
        np.testing.assert_allclose(
            block.grads[key], tensor.grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=key
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pooling_matches_torch(seed) -> None:
    rng = np.random.default_rng(seed)
    n, c, h, w = (int(v) for v in rng.integers(1, 9, 4))
    h, w = h + 2, w + 2
    x = rng.standard_normal((n, c, h, w))
    for layer, fn in (
        (GlobalAvgPool2D(dtype=F64), lambda t: t.mean(dim=(2, 3))),
        (
            cl.MaxPool2D(3, 2, padding=1, dtype=F64),
            lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1),
        ),
    ):
        y = layer.forward(x)
        g = rng.standard_normal(y.shape)
        xt = torch.tensor(x, requires_grad=True)
        yt = fn(xt)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12, atol=1e-15)


# -- a block inside a model --------------------------------------------------------------------


def test_a_model_with_blocks_saves_and_loads(tmp_path: Path, rng) -> None:
    model = small_resnet(rng, np.float32)
    randomise_statistics(model, rng)
    model.save(tmp_path / "m.npz")
    loaded = cl.Sequential.load(tmp_path / "m.npz")
    assert loaded.config() == model.config()
    block = loaded.config()["layers"][5]
    assert block["type"] == "Residual" and len(block["shortcut"]) == 2  # nested descriptions
    assert "layers.5.body.3.W" in model.state_arrays()
    assert "layers.5.buffers.shortcut.1.running_var" in model.state_arrays()
    x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(loaded.outputs(x), model.outputs(x))
    assert loaded.num_params() == model.num_params()
    assert "Residual(4→6, stride 2, projection shortcut)" in loaded.summary()


def test_parameters_are_the_sublayers_arrays(rng) -> None:
    """An optimizer, a dtype change, a device move and a deep copy all reach the sub-layers."""
    block = basic_block(2, 3, 2, rng, np.float32)
    conv = block.body[0]
    assert block.params["body.0.W"] is conv.params["W"]
    model = cl.Sequential([block], input_shape=(2, 6, 6))
    assert len(model.parameters()) == 3 * 2 + 2 * 2 + 2  # 3 convs, 3 batch norms
    model.astype(F64)
    assert conv.params["W"].dtype == F64 and block.params["body.0.W"] is conv.params["W"]
    model.to("cpu")
    assert block.params["body.0.W"] is conv.params["W"]
    twin = copy.deepcopy(model)
    twin.layers[0].params["body.0.W"] += 1.0
    assert twin.layers[0].body[0].params["W"] is twin.layers[0].params["body.0.W"]
    assert not np.shares_memory(twin.layers[0].params["body.0.W"], conv.params["W"])
    model.eval()
    assert not block.body[1].training and not block.shortcut[1].training


@pytest.mark.parametrize("count", [2, 3])
def test_threads_give_the_whole_batch_gradients(count, rng) -> None:
    """Batch norm inside a block sees the whole batch when the batch is split over threads."""
    whole, split = small_resnet(np.random.default_rng(5)), small_resnet(np.random.default_rng(5))
    x, y = rng.standard_normal((70, 3, 9, 9)), rng.integers(0, 3, 70)
    loss_fn = cl.CrossEntropyLoss()
    loss = loss_fn.forward(whole.forward(x), y)
    dx = whole.backward(loss_fn.backward())
    with DataParallel(split, count) as net:
        assert loss_fn.forward(net.forward(x), y) == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(net.backward(loss_fn.backward()), dx, rtol=1e-9, atol=1e-14)
    for (name, _, g), (_, _, got) in zip(
        whole.named_parameters(), split.named_parameters(), strict=True
    ):
        np.testing.assert_allclose(
            got, g, rtol=0, atol=1e-11 * max(np.abs(g).max(), 1e-3), err_msg=name
        )
    for a, b in zip(whole.state_arrays().values(), split.state_arrays().values(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    proba = whole.predict_proba(x.astype(F64), batch_size=16)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_a_block_whose_paths_disagree_is_refused(rng) -> None:
    block = Residual([cl.Conv2D(2, 3, 3, padding=1, rng=rng)])  # identity shortcut: 2 channels
    with pytest.raises(CnnlabError, match="shortcut a strided 1×1 conv"):
        cl.Sequential([block], input_shape=(2, 5, 5))
    with pytest.raises(CnnlabError, match="body must be a list of layers"):
        Residual([])
    with pytest.raises(CnnlabError, match="is float64, the block float32"):
        Residual([cl.ReLU(dtype=F64)])


# -- hostile architectures ---------------------------------------------------------------------


def nest(depth: int) -> dict:
    spec: dict = {"type": "ReLU"}
    for _ in range(depth):
        spec = {"type": "Residual", "body": [spec], "shortcut": None, "relu": True}
    return spec


def test_blocks_nest_only_so_deep() -> None:
    model = model_from_config(
        cl.Sequential, {"layers": [nest(limits.MAX_DEPTH)], "input_shape": [2, 3, 3]}
    )
    assert model.output_shape() == (2, 3, 3)
    with pytest.raises(CnnlabError, match=f"nested more than {limits.MAX_DEPTH} deep"):
        model_from_config(cl.Sequential, {"layers": [nest(limits.MAX_DEPTH + 1)]})
    # Far deeper than Python's recursion: the walk that refuses it does not recurse.
    with pytest.raises(CnnlabError, match="nested more than"):
        model_from_config(cl.Sequential, {"layers": [nest(20_000)]})


def test_layers_inside_blocks_count_towards_the_limits(tmp_path: Path, rng) -> None:
    many = {"type": "Residual", "body": [{"type": "ReLU"}] * limits.MAX_LAYERS}
    with pytest.raises(CnnlabError, match="blocks' layers included"):
        model_from_config(cl.Sequential, {"layers": [many]})
    wide = {"type": "Conv2D", "in_channels": 2, "out_channels": 5000, "kernel_size": 1}
    with pytest.raises(CnnlabError, match="out_channels 5000, more than the limit"):
        model_from_config(cl.Sequential, {"layers": [{"type": "Residual", "body": [wide]}]})
    with pytest.raises(CnnlabError, match="body item 0 is not a layer description"):
        model_from_config(cl.Sequential, {"layers": [{"type": "Residual", "body": ["ReLU"]}]})
    with pytest.raises(CnnlabError, match="unknown type 'Bogus'"):
        model_from_config(
            cl.Sequential, {"layers": [{"type": "Residual", "body": [{"type": "Bogus"}]}]}
        )
    # A conv inside a block whose unfolded input is too big for one sample.
    conv = {"type": "Conv2D", "in_channels": 64, "out_channels": 1, "kernel_size": 9, "padding": 4}
    config = {"layers": [{"type": "Residual", "body": [conv], "shortcut": [conv]}]}
    model = model_from_config(cl.Sequential, {"layers": config["layers"]})
    with pytest.raises(CnnlabError, match="more than the limit of"):
        limits.check_activations(model.layers, (64, 64, 64), "hostile")


def test_a_hostile_model_file_with_blocks_is_one_line_and_bounded(tmp_path: Path) -> None:
    """Through ``Sequential.load``: a block nesting far too deep, and a block declaring a conv
    of 4,096² 7×7 filters the file does not hold (with the seed model's own layers)."""
    from hostile_files import model_file, peak_bytes, seed_model

    paths = []
    for depth, phrase in ((50, "nested more than"), (5_000, "not valid JSON")):
        opening = '{"type": "Residual", "body": [' * depth
        raw = json.dumps(seed_model().config()).replace(
            '"layers": [', '"layers": [' + opening + '{"type": "ReLU"}' + "]}" * depth + ", "
        )
        paths.append(tmp_path / f"deep{depth}.npz")
        paths[-1].write_bytes(model_file(raw=raw))
        with pytest.raises(CnnlabError, match=phrase):
            cl.Sequential.load(paths[-1])
    conv = {"type": "Conv2D", "in_channels": 4096, "out_channels": 4096, "kernel_size": 7}
    config = seed_model().config()
    config["layers"].insert(0, {"type": "Residual", "body": [conv], "shortcut": None})
    huge = tmp_path / "huge.npz"
    huge.write_bytes(model_file(config))
    with pytest.raises(CnnlabError, match="declares 822,"):
        cl.Sequential.load(huge)
    for path in (*paths, huge):
        assert peak_bytes(cl.Sequential.load, path) < 200 << 20
