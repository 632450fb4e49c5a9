"""The compiled kernels against the NumPy reference in ``functional``.

Where Numba is installed the kernels run compiled and the layers use them; where it is not,
the same kernels run as plain Python (these tests call them on small arrays) and the layers
keep the NumPy path. Either way every test below runs and checks something.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.engine import compiled, functional
from cnnlab.engine.gradcheck import check_layer

F64 = np.float64


@pytest.fixture(autouse=True)
def compiled_on():
    """Each test starts with the compiled path switched on and leaves the setting as it was."""
    previous = cl.set_compiled(True)
    yield
    cl.set_compiled(previous)


def ties(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Small integers: many equal values, so every tie rule of the 2×2 tournament is met."""
    return rng.integers(-2, 3, size=shape).astype(dtype)


POOL_SHAPES = [(2, 3, 4, 4), (3, 2, 7, 5), (2, 1, 6, 9), (4, 2, 2, 3), (2, 5, 11, 11)]


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, F64])
@pytest.mark.parametrize("values", ["ties", "normal"])
def test_max_pool_equals_the_tournament(shape, dtype, values, rng) -> None:
    x = ties(rng, shape, dtype) if values == "ties" else rng.standard_normal(shape).astype(dtype)
    h_out, w_out = shape[2] // 2, shape[3] // 2
    expected, expected_winners = functional.max_pool_2x2(x, h_out, w_out)
    out, winners = compiled.max_pool_2x2(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)  # a maximum is exact: no rounding to allow
    for mine, theirs in zip(winners, expected_winners, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    g = rng.standard_normal(out.shape).astype(dtype)
    dx = compiled.max_pool_2x2_backward(g, winners, shape)
    np.testing.assert_array_equal(dx, functional.max_pool_2x2_backward(g, winners, shape))


def test_max_pool_hand_computed() -> None:
    # One 2×3 map: the window holds 1 2 / 2 1 (a tie between 2s: the first in reading order
    # wins, the top right); the odd last column is never pooled and gets no gradient.
    x = np.array([[[[1.0, 2.0, 9.0], [2.0, 1.0, 9.0]]]] * 2, dtype=np.float32)
    out, winners = compiled.max_pool_2x2(x)
    assert out[:, 0, 0, 0].tolist() == [2.0, 2.0]
    dx = compiled.max_pool_2x2_backward(np.full((2, 1, 1, 1), 5.0, np.float32), winners, x.shape)
    assert dx[0, 0].tolist() == [[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_relu_equals_the_reference(dtype, rng) -> None:
    x = ties(rng, (3, 4, 5, 3), dtype) * rng.random((3, 4, 5, 3)).astype(dtype)  # zeros too
    out = compiled.relu(x)
    np.testing.assert_array_equal(out, functional.relu(x))
    g = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(
        compiled.relu_backward(g, out), functional.relu_backward(g, functional.relu(x))
    )
    assert compiled.relu(x[:, 1]).shape == x[:, 1].shape  # a strided view works too


@pytest.mark.parametrize(
    "layer",
    [lambda: cl.MaxPool2D(2, dtype=F64), lambda: cl.ReLU(dtype=F64)],
    ids=["MaxPool2D", "ReLU"],
)
@pytest.mark.parametrize("use_compiled", [True, False])
def test_gradcheck_of_the_dispatched_layers(layer, use_compiled, rng) -> None:
    cl.set_compiled(use_compiled)
    n = 12
    x = (rng.permutation(n * 2 * 5 * 6) - 150).astype(F64).reshape(n, 2, 5, 6) * 0.05 + 0.025
    assert not check_layer(layer(), x, rng)  # distinct values, none at a ReLU kink


# (N, C_in, H, W), (C_out, kH, kW), stride, padding: odd sizes, strides that skip the last
# rows, padding wider than the reach of some taps, a 1×1 kernel, a kernel as big as the input.
CONV_CASES = [
    ((2, 3, 7, 9), (4, 3, 3), 1, 0),
    ((3, 2, 8, 8), (5, 3, 2), 2, 1),
    ((2, 1, 5, 5), (2, 5, 5), 1, 2),
    ((4, 3, 10, 7), (2, 3, 3), 3, 2),
    ((2, 2, 4, 4), (3, 1, 1), 1, 0),
    ((2, 1, 3, 3), (1, 3, 3), 1, 3),
    ((3, 4, 9, 6), (6, 4, 2), 2, 0),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_conv_equals_the_reference(case, dtype, rng) -> None:
    (n, c, h, w), (c_out, kh, kw), stride, padding = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weights = rng.standard_normal((c_out, c, kh, kw)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    expected, expected_cols, expected_padded = functional.conv2d(x, weights, bias, stride, padding)
    out, cols, padded = compiled.conv2d(x, weights, bias, stride, padding)
    assert out.dtype == dtype and padded == expected_padded
    np.testing.assert_array_equal(cols, expected_cols)  # patches are copies: exact
    # Float32: the products may sum in another order; float64 within 1e-12.
    close = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 0, "atol": 1e-12}
    np.testing.assert_allclose(out, expected, **close)
    g = rng.standard_normal(out.shape).astype(dtype)
    reference = functional.conv2d_backward(g, cols, weights, padded, stride, padding)
    mine = compiled.conv2d_backward(g, cols, weights, padded, stride, padding)
    assert mine[0].shape == x.shape
    for a, b in zip(mine, reference, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **close)
    no_dx = compiled.conv2d_backward(g, cols, weights, padded, stride, padding, input_grad=False)
    assert no_dx[0] is None
    np.testing.assert_array_equal(no_dx[1], mine[1])


def test_conv_hand_computed() -> None:
    # A 2×2 picture 1 2 / 3 4, padding 1, a 2×2 kernel of ones, stride 2: the four windows each
    # hold one pixel and three zeros of the padding, so the output is the picture plus the bias.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]] * 2, dtype=np.float32)
    weights = np.ones((1, 1, 2, 2), np.float32)
    out, cols, padded = compiled.conv2d(x, weights, np.array([0.5], np.float32), 2, 1)
    assert padded == (2, 1, 4, 4)
    assert out[0, 0].tolist() == [[1.5, 2.5], [3.5, 4.5]]
    # Backward: each output's gradient goes back to the one pixel its window held.
    g = np.array([[[[10.0, 20.0], [30.0, 40.0]]]] * 2, dtype=np.float32)
    dx, d_weights, d_bias = compiled.conv2d_backward(g, cols, weights, padded, 2, 1)
    assert dx[0, 0].tolist() == [[10.0, 20.0], [30.0, 40.0]]
    assert d_bias.tolist() == [200.0]  # two samples of 10 + 20 + 30 + 40
    # Each tap saw one pixel: tap (1, 1) the top-left window's 1 (gradient 10), tap (1, 0) the
    # top right's 2 (20), tap (0, 1) 3 (30), tap (0, 0) 4 (40); two samples of each.
    assert d_weights[0, 0].tolist() == [[2 * 160.0, 2 * 90.0], [2 * 40.0, 2 * 10.0]]


@pytest.mark.parametrize("case", CONV_CASES[:4], ids=str)
def test_col2im_is_the_adjoint_of_im2col(case, rng) -> None:
    # <im2col(x), c> = <x, col2im(c)> for any x and c: col2im adds each entry back exactly
    # where im2col copied it from, and drops what came from the padding. Checked on the plain
    # Python kernels too, which run where Numba is not installed.
    (n, c, h, w), (_, kh, kw), stride, padding = case
    x = rng.standard_normal((n, c, h, w))
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (w + 2 * padding - kw) // stride + 1
    for kernels in (compiled._kernels(), compiled._PYTHON_KERNELS):
        cols = np.full((n, c, kh, kw, h_out, w_out), np.nan)
        kernels["im2col"](x, stride, padding, cols)
        np.testing.assert_array_equal(
            cols, functional.im2col(functional.pad(x, padding), (kh, kw), stride)
        )
        c_in = rng.standard_normal(cols.shape)
        dx = np.full(x.shape, np.nan)
        kernels["col2im"](c_in, stride, padding, dx)
        assert abs(np.sum(cols * c_in) - np.sum(x * dx)) < 1e-12 * np.abs(cols * c_in).sum()


@pytest.mark.parametrize("use_compiled", [True, False])
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (1, 2)])
def test_gradcheck_of_the_convolution(use_compiled, stride, padding, rng) -> None:
    cl.set_compiled(use_compiled)
    layer = cl.Conv2D(2, 3, 3, stride=stride, padding=padding, rng=0, dtype=F64)
    x = rng.standard_normal((3, 2, 6, 7))
    assert not check_layer(layer, x, rng)


def test_layers_use_the_kernels_only_where_numba_is(rng, monkeypatch) -> None:
    calls: list[str] = []
    names = ("max_pool_2x2", "max_pool_2x2_backward", "relu", "relu_backward", "conv2d")
    for name in (*names, "conv2d_backward"):
        original = getattr(compiled, name)
        monkeypatch.setattr(
            compiled, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a)
        )
    monkeypatch.setattr(cl.ReLU, "kernels", (compiled.relu, compiled.relu_backward))
    model = cl.Sequential([cl.Conv2D(2, 3, 3, padding=1, rng=0), cl.MaxPool2D(2), cl.ReLU()])
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    fast = model.forward(x)
    fast_dx = model.backward(np.ones_like(fast))
    expected = 6 if compiled.available() else 0
    assert len(calls) == expected
    cl.set_compiled(False)
    np.testing.assert_allclose(model.forward(x), fast, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.backward(np.ones_like(fast)), fast_dx, rtol=1e-6, atol=1e-6)
    model.forward(x[:1])  # one row: the NumPy path either way
    assert len(calls) == expected


def _train(preset: str, threads: int, use_compiled: bool) -> list[np.ndarray]:
    cl.set_compiled(use_compiled)
    previous = cl.set_threads(threads)
    try:
        rng = np.random.default_rng(0)
        x = rng.random((96, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, 96)
        model = cl.build(preset, seed=0)
        adam = cl.Adam(model.parameters(), 1e-3)
        cl.fit(model, cl.CrossEntropyLoss(), adam, x, y, epochs=1, batch_size=48, seed=0)
        return [p.copy() for p, _ in model.parameters()]
    finally:
        cl.set_threads(previous)


def test_training_is_reproducible_and_close_to_numpy() -> None:
    # simple has dropout; two threads split each batch of 48 rows in two.
    first, second = _train("simple", 2, True), _train("simple", 2, True)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    reference = _train("simple", 2, False)
    for a, b in zip(first, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_without_numba_the_numpy_path_runs() -> None:
    # Importing cnnlab and predicting never import Numba, even where it is installed; and in a
    # process where importing Numba fails, nothing is compiled and training runs on NumPy.
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import cnnlab as cl\n"
        "from cnnlab.engine import compiled\n"
        "model = cl.build('lenet5', seed=0)\n"
        "model.predict_proba(np.zeros((40, 1, 28, 28), np.float32))\n"
        "assert 'numba' not in sys.modules, 'a prediction imported numba'\n"
        "sys.modules['numba'] = None\n"
        "compiled._available = None\n"
        "assert not compiled.available() and not compiled.enabled()\n"
        "x = np.random.default_rng(0).random((40, 1, 28, 28), dtype=np.float32)\n"
        "cl.fit(model, cl.CrossEntropyLoss(), cl.Adam(model.parameters()), x,\n"
        "       np.arange(40) % 10, epochs=1, batch_size=20, seed=0)\n"
        "print('trained')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "trained"
    assert "compiling" not in done.stderr


def test_the_switch_and_the_environment_variable() -> None:
    assert cl.set_compiled(False) is True
    assert not compiled.enabled()
    assert cl.set_compiled(True) is False
    assert compiled.enabled() == compiled.available()
    code = "from cnnlab.engine import compiled; print(compiled.enabled())"
    env = {**os.environ, "CNNLAB_COMPILED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_a_first_compilation_says_so_once(tmp_path) -> None:
    # A fresh cache folder: the first process compiles and says so once on stderr; the second
    # loads the cache silently. Without Numba neither says anything.
    code = (
        "import numpy as np, cnnlab as cl\n"
        "layer = cl.MaxPool2D(2)\n"
        "for dtype in (np.float32, np.float64):\n"
        "    layer = cl.MaxPool2D(2, dtype=dtype)\n"
        "    layer.backward(layer.forward(np.ones((2, 1, 4, 4), dtype)))\n"
        "from cnnlab.engine import compiled\n"
        "print(compiled.available())\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    said, available = [], []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        said.append(done.stderr.count("cnnlab: compiling"))
        available.append(done.stdout.strip())
    assert said == ([1, 0] if available == ["True", "True"] else [0, 0])
    assert available in (["True", "True"], ["False", "False"])
