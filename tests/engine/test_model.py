"""Sequential: the documented contract, whole-model gradients, summary, inference, model files."""

from __future__ import annotations

import json
import pickle
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import CnnlabError
from cnnlab.engine import serialize
from cnnlab.engine.errors import PickleRefusedError
from cnnlab.engine.gradcheck import check_model, mismatch

F64 = np.float64


def contract_batch(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


# -- the documented contract, line for line as a user writes it ---------------------------------


def test_contract_cross_entropy_sgd() -> None:
    x, y = contract_batch()
    import numpy as np

    import cnnlab as cl

    model = cl.Sequential([
        cl.Conv2D(1, 6, 5, padding=2), cl.ReLU(), cl.MaxPool2D(2),
        cl.Conv2D(6, 16, 5), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(),
        cl.Dense(400, 120), cl.ReLU(), cl.Dense(120, 84), cl.ReLU(), cl.Dense(84, 10),
    ])  # fmt: skip
    loss_fn = cl.CrossEntropyLoss()
    opt = cl.SGD(model.parameters(), lr=0.1)
    before = [p.copy() for p, _ in model.parameters()]
    logits = model.forward(x); loss = loss_fn.forward(logits, y); model.backward(loss_fn.backward()); opt.step(); opt.zero_grad()  # noqa: E501, E702  # fmt: skip
    assert model.layers[0].params["W"].shape == (6, 1, 5, 5)
    assert logits.shape == (8, 10) and logits.dtype == np.float32
    assert isinstance(loss, float) and np.isfinite(loss)
    assert all(
        not np.array_equal(b, p) for b, (p, _) in zip(before, model.parameters(), strict=True)
    )
    assert all(not g.any() for _, g in model.parameters())
    assert model.num_params() == 61_706


def test_contract_mse_softmax_variant() -> None:
    x, y = contract_batch()
    model = cl.Sequential([
        cl.Conv2D(1, 6, 5, padding=2), cl.ReLU(), cl.MaxPool2D(2),
        cl.Conv2D(6, 16, 5), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(),
        cl.Dense(400, 120), cl.ReLU(), cl.Dense(120, 84), cl.ReLU(), cl.Dense(84, 10),
        cl.Softmax(),
    ])  # fmt: skip
    loss_fn = cl.MSELoss()
    opt = cl.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        probs = model.forward(x)
        losses.append(loss_fn.forward(probs, y))
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert 0 < losses[0] < 1 and all(np.isfinite(losses))
    assert model.layers[0].params["W"].shape == (6, 1, 5, 5)


def test_contract_adam_variant() -> None:
    x, y = contract_batch()
    model = cl.Sequential([
        cl.Conv2D(1, 6, 5, padding=2), cl.ReLU(), cl.MaxPool2D(2),
        cl.Conv2D(6, 16, 5), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(),
        cl.Dense(400, 120), cl.ReLU(), cl.Dense(120, 84), cl.ReLU(), cl.Dense(84, 10),
    ])  # fmt: skip
    loss_fn = cl.CrossEntropyLoss()
    opt = cl.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        logits = model.forward(x); losses.append(loss_fn.forward(logits, y)); model.backward(loss_fn.backward()); opt.step(); opt.zero_grad()  # noqa: E501, E702  # fmt: skip
    assert losses[-1] < losses[0]  # it learns to fit one batch
    assert model.layers[0].params["W"].shape == (6, 1, 5, 5)


# -- whole-model gradient check -------------------------------------------------------------------


def mini_lenet(seed: int = 0) -> cl.Sequential:
    rng = np.random.default_rng(seed)
    kw = {"rng": rng, "dtype": F64}
    return cl.Sequential(
        [
            cl.Conv2D(1, 3, 3, padding=1, **kw), cl.ReLU(dtype=F64), cl.MaxPool2D(2, dtype=F64),
            cl.Conv2D(3, 4, 3, **kw), cl.ReLU(dtype=F64), cl.MaxPool2D(2, dtype=F64),
            cl.Flatten(dtype=F64),
            cl.Dense(16, 8, **kw), cl.Tanh(dtype=F64),
            cl.Dense(8, 5, **kw),
        ],
        input_shape=(1, 12, 12),
    )  # fmt: skip


def test_gradcheck_mini_lenet_cross_entropy(rng) -> None:
    model = mini_lenet()
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape) * 0.1
    x = rng.standard_normal((2, 1, 12, 12))
    assert not check_model(model, cl.CrossEntropyLoss(), x, np.array([1, 4]))


def test_gradcheck_mini_model_softmax_mse_with_batchnorm(rng) -> None:
    kw = {"rng": 3, "dtype": F64}
    model = cl.Sequential([
        cl.Conv2D(1, 2, (3, 2), stride=2, padding=1, **kw), cl.BatchNorm2D(2, dtype=F64),
        cl.Sigmoid(dtype=F64), cl.AvgPool2D(2, stride=1, dtype=F64), cl.Flatten(dtype=F64),
        cl.Dense(2 * 5 * 6, 6, **kw), cl.BatchNorm1D(6, dtype=F64), cl.Tanh(dtype=F64),
        cl.Dense(6, 4, **kw), cl.Softmax(dtype=F64),
    ])  # fmt: skip
    assert not check_model(
        model, cl.MSELoss(), rng.standard_normal((3, 1, 12, 12)), np.array([0, 3, 1])
    )


def test_gradcheck_whole_model_astype_float64(rng) -> None:
    model = cl.build("lenet5", seed=1).astype(F64)
    assert model.dtype == F64 and all(p.dtype == F64 for p, _ in model.parameters())
    x = rng.random((1, 1, 28, 28))
    loss_fn = cl.CrossEntropyLoss()
    loss_fn.forward(model.forward(x), np.array([3]))
    model.backward(loss_fn.backward())
    # spot-check a few entries of each gradient (the full check is on the mini model)
    for name, param, grad in model.named_parameters():
        flat, gflat = param.reshape(-1), grad.reshape(-1).copy()
        idx = np.random.default_rng(0).choice(flat.size, size=min(4, flat.size), replace=False)
        numeric = []
        for i in idx:
            old = flat[i]
            flat[i] = old + 1e-6
            plus = loss_fn.forward(model.forward(x), np.array([3]))
            flat[i] = old - 1e-6
            minus = loss_fn.forward(model.forward(x), np.array([3]))
            flat[i] = old
            numeric.append((plus - minus) / 2e-6)
        assert not mismatch(name, gflat[idx], np.array(numeric), 1e-5)


# -- Sequential construction and input errors ------------------------------------------------------


def test_sequential_mismatched_layers_fail_at_construction() -> None:
    with pytest.raises(CnnlabError, match=r"layer 2: Dense\(100, 10\).*100.*\(1176,\)"):
        cl.Sequential(
            [cl.Conv2D(1, 6, 5), cl.Flatten(), cl.Dense(100, 10)], input_shape=(1, 18, 18)
        )
    with pytest.raises(CnnlabError, match="layer 0"):
        cl.Sequential([cl.Conv2D(1, 6, 5)], input_shape=(1, 3, 3))
    with pytest.raises(CnnlabError, match="empty"):
        cl.Sequential([])
    with pytest.raises(CnnlabError, match="item 1 is not a cnnlab layer"):
        cl.Sequential([cl.ReLU(), "relu"])
    with pytest.raises(CnnlabError, match="one dtype"):
        cl.Sequential([cl.ReLU(), cl.Tanh(dtype=F64)])


def test_sequential_bad_input() -> None:
    model = cl.build("lenet5")
    with pytest.raises(CnnlabError, match=r"\(N, 1, 28, 28\).*\(4, 28, 28\)"):
        model.forward(np.zeros((4, 28, 28), np.float32))
    with pytest.raises(CnnlabError, match=r"\(N, 1, 28, 28\).*\(4, 3, 28, 28\)"):
        model.forward(np.zeros((4, 3, 28, 28), np.float32))
    with pytest.raises(CnnlabError, match=r"expected float32 input, got uint8.*/ 255"):
        model.forward(np.zeros((4, 1, 28, 28), np.uint8))
    with pytest.raises(CnnlabError, match=r"expected float32 input, got float64"):
        model.forward(np.zeros((4, 1, 28, 28)))
    x = np.zeros((4, 1, 28, 28), np.float32)
    x[2, 0, 5, 5] = np.nan
    with pytest.raises(CnnlabError, match="NaN or inf"):
        model.forward(x)
    with pytest.raises(CnnlabError, match="expected an array"):
        model.forward([[1, 2]])


def test_sequential_without_input_shape_names_the_failing_layer() -> None:
    model = cl.Sequential([cl.Conv2D(1, 4, 3), cl.ReLU(), cl.Flatten(), cl.Dense(100, 10)])
    with pytest.raises(
        CnnlabError, match=r"layer 0: Conv2D\(1, 4, 3\).*\(N, 1, H, W\).*\(2, 3, 12, 12\)"
    ):
        model.forward(np.zeros((2, 3, 12, 12), np.float32))
    with pytest.raises(CnnlabError, match=r"layer 3: Dense\(100, 10\).*\(N, 100\).*\(2, 144\)"):
        model.forward(np.zeros((2, 1, 8, 8), np.float32))


# -- summary and inference ----------------------------------------------------------------------


def test_lenet5_summary() -> None:
    model = cl.build("lenet5")
    text = model.summary()
    assert model.num_params() == 61_706
    assert "61,706" in text
    expected = [
        ("Conv2D", "(6, 28, 28)", "156"),
        ("MaxPool2D", "(6, 14, 14)", "0"),
        ("ReLU", "(6, 14, 14)", "0"),
        ("Conv2D", "(16, 10, 10)", "2,416"),
        ("MaxPool2D", "(16, 5, 5)", "0"),
        ("ReLU", "(16, 5, 5)", "0"),
        ("Flatten", "(400,)", "0"),
        ("Dense", "(120,)", "48,120"),
        ("ReLU", "(120,)", "0"),
        ("Dense", "(84,)", "10,164"),
        ("ReLU", "(84,)", "0"),
        ("Dense", "(10,)", "850"),
    ]
    rows = [line for line in text.splitlines() if line[:1].isdigit()]
    assert len(rows) == len(model.layers) == len(expected)
    for i, (row, (kind, shape, count)) in enumerate(zip(rows, expected, strict=True)):
        cells = row.split()
        assert cells[0] == str(i) and row.split("  ")[1].strip().startswith(kind)
        assert shape in row and cells[-1] == count, row
    assert model.shapes() == [eval(s) for _, s, _ in expected]


def test_summary_needs_input_shape() -> None:
    model = cl.Sequential([cl.Flatten(), cl.Dense(4, 2)])
    with pytest.raises(CnnlabError, match="input_shape"):
        model.summary()
    assert "(2,)" in model.summary((1, 2, 2))


class TableCells(HTMLParser):
    """The text of every cell of an HTML table, row by row, and its caption."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.caption = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in in ("td", "th"):
            self.rows[-1][-1] += data
        elif self._in == "caption":
            self.caption += data


def test_jupyter_shows_the_summary_as_an_html_table() -> None:
    model = cl.build("lenet5")
    table = TableCells()
    table.feed(model._repr_html_())
    assert table.rows[0] == ["#", "layer", "output shape", "params"]
    assert len(table.rows) == 1 + len(model.layers)
    for i, (layer, shape) in enumerate(zip(model.layers, model.shapes(), strict=True)):
        # the text summary's cells, repr quotes and all (escaped in the page, read back here)
        assert table.rows[1 + i] == [str(i), repr(layer), str(shape), f"{layer.num_params():,}"]
    assert "total parameters: 61,706" in table.caption
    assert "'glorot'" in table.rows[-1][1]


def test_html_summary_falls_back_to_the_plain_repr_without_an_input_shape() -> None:
    assert cl.Sequential([cl.Flatten(), cl.Dense(4, 2)])._repr_html_() is None
    model = cl.Sequential([cl.Flatten(), cl.Dense(4, 2)], input_shape=(1, 2, 2))
    table = TableCells()
    table.feed(model._repr_html_())
    assert table.rows[1:] == [
        ["0", "Flatten()", "(4,)", "0"],
        ["1", repr(model.layers[1]), "(2,)", "10"],
    ]
    assert "(input (1, 2, 2), float32)" in table.caption


@pytest.mark.parametrize("preset", ["lenet5", "simple", "default", "fast"])
def test_predict_proba_rows_sum_to_one_and_restore_mode(preset) -> None:
    model = cl.build(preset)
    x, _ = contract_batch(7)
    assert model.training
    probs = model.predict_proba(x, batch_size=3)
    assert probs.shape == (7, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert (probs >= 0).all()
    assert model.training  # restored
    model.eval()
    # eval mode: deterministic (up to float32 rounding, as BLAS blocks by batch size)
    np.testing.assert_allclose(model.predict_proba(x), probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(model.predict_proba(x), model.predict_proba(x))
    assert not model.training
    np.testing.assert_array_equal(model.predict(x), model.predict_proba(x).argmax(axis=1))
    with pytest.raises(CnnlabError, match="batch_size"):
        model.predict_proba(x, batch_size=0)


def test_predict_proba_with_softmax_last_layer_is_not_softmaxed_twice() -> None:
    model = cl.Sequential([cl.Flatten(), cl.Dense(4, 3, rng=0), cl.Softmax()])
    x = np.random.default_rng(0).random((5, 1, 2, 2), dtype=np.float32)
    np.testing.assert_allclose(model.predict_proba(x), model.forward(x), rtol=1e-6)


def test_train_eval_switch_dropout_and_batchnorm() -> None:
    model = cl.Sequential([cl.Flatten(), cl.BatchNorm1D(4), cl.Dropout(0.5, rng=0)])
    x = np.random.default_rng(0).random((6, 1, 2, 2), dtype=np.float32)
    assert not np.array_equal(model.forward(x), model.forward(x))  # new masks
    model.eval()
    np.testing.assert_array_equal(model.forward(x), model.forward(x))


def test_train_takes_a_mode_as_in_pytorch() -> None:
    model = cl.Sequential([cl.Flatten(), cl.BatchNorm1D(4), cl.Dropout(0.5, rng=0)])
    assert model.train(False) is model and not model.training
    assert not any(layer.training for layer in model.layers)
    assert model.train() is model and all(layer.training for layer in model.layers)
    assert not model.eval().training and model.train(True).training


# -- model files -----------------------------------------------------------------------------------


def bn_model() -> cl.Sequential:
    model = cl.Sequential(
        [
            cl.Conv2D(1, 4, 3, padding=1, rng=0), cl.BatchNorm2D(4), cl.ReLU(),
            cl.MaxPool2D(3, stride=2), cl.Conv2D(4, 4, (3, 2), stride=2, rng=1),
            cl.AvgPool2D(2, stride=1),
            cl.Flatten(), cl.Dropout(0.25, rng=2), cl.Dense(4, 6, rng=3), cl.BatchNorm1D(6),
            cl.Tanh(), cl.Dense(6, 3, init="glorot", rng=4),
        ],
        input_shape=(1, 12, 12),
        meta={"dataset": "mnist", "classes": ["a", "b", "c"], "recipe": {"lr": 0.1}},
    )  # fmt: skip
    x = np.random.default_rng(0).random((8, 1, 12, 12), dtype=np.float32)
    model.forward(x)  # give BatchNorm non-trivial running statistics
    model.forward(x * 2)
    return model


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = bn_model()
    path = tmp_path / "model.npz"
    model.save(path)
    back = cl.Sequential.load(path)
    assert back.config() == model.config()
    assert back.meta == model.meta and back.input_shape == (1, 12, 12)
    assert [repr(a) for a in back.layers] == [repr(b) for b in model.layers]
    for (name, array), (name2, array2) in zip(
        sorted(model.state_arrays().items()), sorted(back.state_arrays().items()), strict=True
    ):
        assert name == name2 and array.dtype == array2.dtype
        np.testing.assert_array_equal(array, array2)
    assert any(".buffers.running_var" in k for k in back.state_arrays())
    x = np.random.default_rng(1).random((5, 1, 12, 12), dtype=np.float32)
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


@pytest.mark.parametrize("preset", ["lenet5", "simple", "default", "fast"])
def test_preset_save_load_round_trip(tmp_path: Path, preset) -> None:
    # Pools with the default stride save stride=None; the loader must accept it (fixed in aed2e17).
    model = cl.build(preset, seed=2)
    model.save(tmp_path / "m.npz")
    back = cl.Sequential.load(tmp_path / "m.npz")
    assert back.config() == model.config()
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))


def test_save_load_float64_and_extras(tmp_path: Path) -> None:
    model = bn_model().astype(F64)
    path = tmp_path / "m.npz"
    model.save(path, extra={"optimizer.0": np.arange(3.0)})
    back, extras = serialize.load_with_extras(cl.Sequential, path)
    assert back.dtype == F64
    np.testing.assert_array_equal(extras["optimizer.0"], np.arange(3.0))
    x = np.random.default_rng(1).random((3, 1, 12, 12))
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))
    with pytest.raises(CnnlabError, match="clashes"):
        model.save(path, extra={"layers.0.W": np.zeros(1)})
    with pytest.raises(CnnlabError, match=r"'velocity'.*checkpoint"):
        model.save(path, extra={"velocity": np.zeros(1)})


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a model file with its arrays (and config dict) changed by ``edit(arrays, config)``."""
    with np.load(src, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    config = json.loads(str(arrays["cnnlab"]))
    edit(arrays, config)
    arrays["cnnlab"] = np.array(json.dumps(config))
    np.savez(dst, **arrays)
    return dst


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "good.npz"
    bn_model().save(path)
    return path


def test_pickled_config_is_refused(saved: Path, tmp_path: Path) -> None:
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["cnnlab"] = np.array([{"format": "cnnlab-model"}], dtype=object)
    bad = tmp_path / "bad.npz"
    np.savez(bad, allow_pickle=True, **arrays)
    with pytest.raises(PickleRefusedError, match=f"{bad}: refused: .*pickle"):
        cl.Sequential.load(bad)


def test_pickled_weight_is_refused(saved: Path, tmp_path: Path) -> None:
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["layers.0.W"] = np.array([object(), 1], dtype=object)
    bad = tmp_path / "bad.npz"
    np.savez(bad, allow_pickle=True, **arrays)
    with pytest.raises(PickleRefusedError, match=f"{bad}: refused: .*pickle"):
        cl.Sequential.load(bad)


class Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle was executed')",))


def test_plain_pickle_renamed_npz_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.npz"
    bad.write_bytes(pickle.dumps({"weights": Boom()}))
    with pytest.raises(CnnlabError) as err:
        cl.Sequential.load(bad)
    assert "pickle" in str(err.value) or "not a cnnlab model" in str(err.value)


def test_npy_with_pickle_inside_zip_is_refused(tmp_path: Path) -> None:
    # A hand-made archive whose "cnnlab.npy" member is an object array (pickle payload).
    bad = tmp_path / "model.npz"
    with zipfile.ZipFile(bad, "w") as archive, archive.open("cnnlab.npy", "w") as handle:
        np.save(handle, np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(PickleRefusedError, match=f"{bad}: refused: .*pickle"):
        cl.Sequential.load(bad)


def test_pickle_refusal_is_a_type_whatever_the_message(saved: Path, tmp_path: Path) -> None:
    # The reader used to signal a pickle with the message "pickle" and re-word it by matching
    # that text; now the type carries it, so it reaches the caller as PickleRefusedError.
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["layers.0.b"] = np.array([None], dtype=object)
    bad = tmp_path / "bad.npz"
    np.savez(bad, allow_pickle=True, **arrays)
    with pytest.raises(PickleRefusedError) as err:
        cl.Sequential.load(bad)
    assert isinstance(err.value, CnnlabError) and str(err.value) != "pickle"
    assert "\n" not in str(err.value)


def test_truncated_file_is_refused(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(CnnlabError, match=r"damaged|truncated|not a cnnlab"):
            cl.Sequential.load(bad)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bad = tmp_path / "random.npz"
    bad.write_bytes(rng.bytes(5000))
    with pytest.raises(CnnlabError, match="not a cnnlab model"):
        cl.Sequential.load(bad)
    bad.write_bytes(b"PK\x03\x04" + rng.bytes(5000))
    with pytest.raises(CnnlabError, match="damaged"):
        cl.Sequential.load(bad)
    bad.write_bytes(b"")
    with pytest.raises(CnnlabError, match="not a cnnlab model"):
        cl.Sequential.load(bad)


def test_wrong_weight_shape_is_refused(saved: Path, tmp_path: Path) -> None:
    def edit(arrays, config):
        arrays["layers.8.W"] = np.zeros((6, 9), np.float32)

    bad = rewrite(saved, tmp_path / "bad.npz", edit)
    with pytest.raises(CnnlabError, match=r"layers\.8\.W has shape \(6, 9\).*needs \(6, 4\)"):
        cl.Sequential.load(bad)


def test_wrong_weight_dtype_is_refused(saved: Path, tmp_path: Path) -> None:
    def edit(arrays, config):
        arrays["layers.8.W"] = arrays["layers.8.W"].astype(np.float64)

    with pytest.raises(CnnlabError, match=r"layers\.8\.W.*float64.*float32"):
        cl.Sequential.load(rewrite(saved, tmp_path / "bad.npz", edit))


def test_missing_weight_is_refused(saved: Path, tmp_path: Path) -> None:
    def edit(arrays, config):
        del arrays["layers.1.buffers.running_mean"]

    with pytest.raises(CnnlabError, match=r"layers\.1\.buffers\.running_mean are missing"):
        cl.Sequential.load(rewrite(saved, tmp_path / "bad.npz", edit))


def test_stray_weight_is_refused(saved: Path, tmp_path: Path) -> None:
    def edit(arrays, config):
        arrays["layers.2.W"] = np.zeros(3, np.float32)

    with pytest.raises(CnnlabError, match=r"layers\.2\.W.*belong to no layer"):
        cl.Sequential.load(rewrite(saved, tmp_path / "bad.npz", edit))


def test_unknown_layer_type_is_refused(saved: Path, tmp_path: Path) -> None:
    def edit(arrays, config):
        config["layers"][2]["type"] = "Exec"

    with pytest.raises(CnnlabError, match=r"layer 2 has unknown type 'Exec'; known: Conv2D"):
        cl.Sequential.load(rewrite(saved, tmp_path / "bad.npz", edit))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda a, c: c["layers"][0].update(kernel_size=0), "layer 0.*kernel_size.*got 0"),
        (lambda a, c: c["layers"][0].update(evil={"a": 1}), "evil"),
        (lambda a, c: c["layers"][0].update(bogus=1), "layer 0 \\(Conv2D\\) has a bad argument"),
        (lambda a, c: c.update(format="other"), "not a cnnlab model"),
        (lambda a, c: c.update(version=99), "version 99"),
        (lambda a, c: c.update(dtype="float16"), "dtype 'float16'"),
        (lambda a, c: c.update(layers=[]), "no layers"),
        (lambda a, c: c.update(input_shape=[1, 2, 2]), "do not fit"),
    ],
)
def test_bad_architecture_is_refused(saved: Path, tmp_path: Path, edit, match) -> None:
    with pytest.raises(CnnlabError, match=match):
        cl.Sequential.load(rewrite(saved, tmp_path / "bad.npz", edit))


def test_missing_config_and_bad_json_are_refused(saved: Path, tmp_path: Path) -> None:
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    no_config = {k: v for k, v in arrays.items() if k != "cnnlab"}
    np.savez(tmp_path / "a.npz", **no_config)
    with pytest.raises(CnnlabError, match="not a cnnlab model"):
        cl.Sequential.load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", **{**no_config, "cnnlab": np.array("{not json")})
    with pytest.raises(CnnlabError, match="not valid JSON"):
        cl.Sequential.load(tmp_path / "b.npz")


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="no such file"):
        cl.Sequential.load(tmp_path / "nope.npz")
    with pytest.raises(CnnlabError, match="is a folder"):
        cl.Sequential.load(tmp_path)


# -- regressions for engine bugs these tests found ---------------------------------------------


@pytest.mark.parametrize(
    "layers,input_shape,match",
    [
        (
            lambda: [cl.Conv2D(1, 6, 3), cl.Conv2D(3, 6, 3)],
            (1, 8, 8),
            r"layer 1: Conv2D.*\(6, 6, 6\)",
        ),
        (lambda: [cl.Conv2D(1, 6, 3)], (3, 8, 8), r"layer 0: Conv2D.*\(3, 8, 8\)"),
        (lambda: [cl.Conv2D(1, 6, 3), cl.BatchNorm2D(4)], (1, 8, 8), r"layer 1: BatchNorm2D\(4\)"),
        (
            lambda: [cl.Flatten(), cl.BatchNorm1D(5)],
            (1, 2, 2),
            r"layer 1: BatchNorm1D\(5\).*\(4,\)",
        ),
    ],
)
def test_sequential_channel_mismatch_fails_at_construction(layers, input_shape, match) -> None:
    with pytest.raises(CnnlabError, match=match):
        cl.Sequential(layers(), input_shape=input_shape)


def test_sequential_missing_channel_axis_hint() -> None:
    with pytest.raises(CnnlabError, match=r"x\[:, None\]"):
        cl.build("lenet5").forward(np.zeros((4, 28, 28), np.float32))
