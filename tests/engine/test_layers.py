"""Layers: hand-computed forward and backward passes, float64 gradient checks, bad input."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import CnnlabError
from cnnlab.engine.gradcheck import check_layer

F64 = np.float64


# -- hand-computed cases -------------------------------------------------------------------------

# The article's picture: a 6×6 image and a 4×4 filter slid over it with stride 1 → a 3×3 map.
IMAGE = np.array(
    [
        [3, 0, 1, 2, 0, 1],
        [1, 2, 0, 0, 3, 1],
        [0, 1, 3, 1, 0, 2],
        [2, 0, 1, 2, 1, 0],
        [1, 3, 0, 0, 2, 1],
        [0, 1, 2, 3, 0, 1],
    ],
    dtype=F64,
)
FILTER = np.array(
    [
        [1, 0, -1, 0],
        [2, 0, 0, 1],
        [0, 1, 0, 0],
        [0, 0, -1, 1],
    ],
    dtype=F64,
)
# Top-left entry, the filter over IMAGE[0:4, 0:4], multiply and sum row by row:
#   row 0: 3·1 + 0·0 + 1·(−1) + 2·0 =  2
#   row 1: 1·2 + 2·0 + 0·0    + 0·1 =  2
#   row 2: 0·0 + 1·1 + 3·0    + 1·0 =  1
#   row 3: 2·0 + 0·0 + 1·(−1) + 2·1 =  1          → 2 + 2 + 1 + 1 = 6
# Entry (0, 1), IMAGE[0:4, 1:5]: (0−2) + (4+3) + 3 + (−2+1) = 7. No flip: it is cross-correlation,
# as in PyTorch; a flipped filter would give 7 at (0, 0).
EXPECTED_MAP = np.array([[6, 7, 2], [2, 7, 6], [7, -2, 6]], dtype=F64)


def conv_with(weights: np.ndarray, bias: np.ndarray, **kwargs) -> cl.Conv2D:
    c_out, c_in, kh, kw = weights.shape
    layer = cl.Conv2D(c_in, c_out, (kh, kw), dtype=F64, rng=0, **kwargs)
    layer.params["W"][...] = weights
    layer.params["b"][...] = bias
    return layer


def test_conv_hand_computed_6x6_by_4x4() -> None:
    layer = conv_with(FILTER[None, None], np.zeros(1))
    out = layer.forward(IMAGE[None, None])
    assert out.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], EXPECTED_MAP)


def test_conv_hand_computed_bias_channels_and_batch() -> None:
    # Two filters (the second is minus the first) over a 2-image batch with biases 1 and −1.
    weights = np.stack([FILTER, -FILTER])[:, None]  # (2, 1, 4, 4)
    layer = conv_with(weights, np.array([1.0, -1.0]))
    out = layer.forward(np.stack([IMAGE, 2 * IMAGE])[:, None])
    np.testing.assert_array_equal(out[0, 0], EXPECTED_MAP + 1)
    np.testing.assert_array_equal(out[0, 1], -EXPECTED_MAP - 1)
    np.testing.assert_array_equal(out[1, 0], 2 * EXPECTED_MAP + 1)


def test_conv_hand_computed_stride_and_padding() -> None:
    # 3×3 input, 2×2 all-ones filter, padding 1, stride 2 → 2×2 output: windows of the padded
    # 5×5 image at rows/cols {0, 2}: [[x00], [x01+x02]] etc.
    x = np.arange(1, 10, dtype=F64).reshape(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    layer = conv_with(np.ones((1, 1, 2, 2)), np.zeros(1), stride=2, padding=1)
    out = layer.forward(x)
    # (0,0): only x00 = 1;  (0,1): x01 + x02 = 5;  (1,0): x10 + x20 = 11;  (1,1): 5+6+8+9 = 28
    np.testing.assert_array_equal(out[0, 0], [[1, 5], [11, 28]])


def test_conv_hand_computed_backward() -> None:
    # One 2×2 filter on a 3×3 image: each input pixel collects the filter weights that touched it.
    x = np.arange(1, 10, dtype=F64).reshape(1, 1, 3, 3)
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    layer = conv_with(w[None, None], np.zeros(1))
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 2, 2)))
    # dx[i, j] = Σ of w over the placements covering (i, j)
    np.testing.assert_array_equal(dx[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    # dW[a, b] = Σ over outputs of x[i+a, j+b]: (1+2+4+5), (2+3+5+6), (4+5+7+8), (5+6+8+9)
    np.testing.assert_array_equal(layer.grads["W"][0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(layer.grads["b"], [4])


POOL_X = np.array(
    [
        [1, 3, 2, 1],
        [4, 2, 0, 5],
        [7, 7, 1, 1],
        [0, 6, 1, 1],
    ],
    dtype=F64,
)[None, None]


def test_maxpool_hand_computed_with_ties() -> None:
    layer = cl.MaxPool2D(2, dtype=F64)
    out = layer.forward(POOL_X)
    np.testing.assert_array_equal(out[0, 0], [[4, 5], [7, 1]])
    dx = layer.backward(np.array([[10.0, 20.0], [30.0, 40.0]])[None, None])
    expected = np.zeros((4, 4))
    expected[1, 0] = 10  # 4 wins window (0, 0)
    expected[1, 3] = 20  # 5 wins window (0, 1)
    expected[2, 0] = 30  # 7 and 7 tie: the first in row-major order wins, as in PyTorch
    expected[2, 2] = 40  # all four are 1: the first wins
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool_overlapping_windows_route_to_shared_winner() -> None:
    # kernel 2, stride 1 on a 3×3: the centre 9 wins all four windows and collects every gradient.
    x = np.array([[1, 2, 3], [4, 9, 5], [6, 7, 8]], dtype=F64)[None, None]
    layer = cl.MaxPool2D(2, stride=1, dtype=F64)
    np.testing.assert_array_equal(layer.forward(x)[0, 0], [[9, 9], [9, 9]])
    dx = layer.backward(np.array([[1.0, 2.0], [3.0, 4.0]])[None, None])
    expected = np.zeros((3, 3))
    expected[1, 1] = 10
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("side", [16, 17, 64])
def test_maxpool_windows_of_more_than_256_taps_route_to_the_right_winner(side: int) -> None:
    """A 17×17 window has 289 taps: the winner's index no longer fits a byte."""
    x = np.zeros((1, 1, side, side), dtype=F64)
    x[0, 0, -1, -2] = 1.0  # the second-to-last tap
    layer = cl.MaxPool2D(side, dtype=F64)
    assert layer.forward(x).item() == 1.0
    expected = np.zeros_like(x)
    expected[0, 0, -1, -2] = 3.0
    np.testing.assert_array_equal(layer.backward(np.full((1, 1, 1, 1), 3.0)), expected)


def test_avgpool_hand_computed() -> None:
    layer = cl.AvgPool2D(2, dtype=F64)
    out = layer.forward(POOL_X)
    # (1+3+4+2)/4, (2+1+0+5)/4, (7+7+0+6)/4, (1+1+1+1)/4
    np.testing.assert_array_equal(out[0, 0], [[2.5, 2.0], [5.0, 1.0]])
    dx = layer.backward(np.array([[4.0, 8.0], [12.0, 16.0]])[None, None])
    np.testing.assert_array_equal(
        dx[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )


def test_pool_stride_not_equal_kernel_shape() -> None:
    x = np.arange(49, dtype=F64).reshape(1, 1, 7, 7)
    layer = cl.MaxPool2D(3, stride=2, dtype=F64)
    out = layer.forward(x)
    assert out.shape == (1, 1, 3, 3)
    # x[i, j] = 7i + j grows to the bottom right: each window's max is its bottom-right corner
    np.testing.assert_array_equal(out[0, 0], [[16, 18, 20], [30, 32, 34], [44, 46, 48]])
    avg = cl.AvgPool2D(3, stride=2, dtype=F64).forward(x)
    np.testing.assert_array_equal(avg[0, 0], [[8, 10, 12], [22, 24, 26], [36, 38, 40]])


def test_activations_hand_computed() -> None:
    ln2, ln3 = math.log(2), math.log(3)
    x = np.array([[-2.0, 0.0, ln2, ln3]])
    relu, sig, tanh = cl.ReLU(dtype=F64), cl.Sigmoid(dtype=F64), cl.Tanh(dtype=F64)
    np.testing.assert_array_equal(relu.forward(x), [[0, 0, ln2, ln3]])
    # ReLU'(0) is taken as 0, as in PyTorch
    np.testing.assert_array_equal(relu.backward(np.full((1, 4), 5.0)), [[0, 0, 5, 5]])
    # σ(ln 3) = 1/(1 + 1/3) = 3/4; σ'(ln 3) = 3/4 · 1/4 = 3/16
    s = sig.forward(x)
    np.testing.assert_allclose(s[0, 1:], [0.5, 2 / 3, 0.75], rtol=1e-15)
    np.testing.assert_allclose(sig.backward(np.ones((1, 4)))[0, 3], 3 / 16, rtol=1e-15)
    # tanh(ln 2) = (2 − 1/2)/(2 + 1/2) = 0.6; tanh'(ln 2) = 1 − 0.36 = 0.64
    t = tanh.forward(x)
    np.testing.assert_allclose(t[0, 2], 0.6, rtol=1e-15)
    np.testing.assert_allclose(tanh.backward(np.ones((1, 4)))[0, 2], 0.64, rtol=1e-14)
    assert t[0, 1] == 0.0


def test_sigmoid_is_stable_for_large_inputs() -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = cl.Sigmoid(dtype=F64).forward(np.array([[-1000.0, 1000.0]]))
    np.testing.assert_array_equal(out, [[0.0, 1.0]])


def test_softmax_hand_computed() -> None:
    layer = cl.Softmax(dtype=F64)
    out = layer.forward(np.array([[0.0, math.log(2), math.log(3)], [1000.0, 1000.0, 1000.0]]))
    np.testing.assert_allclose(out, [[1 / 6, 2 / 6, 3 / 6], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-14)
    # Jacobian-vector product: s ⊙ (g − s·g). With g = e_2: s_2 (δ − s) row.
    dx = layer.backward(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    s = np.array([1, 2, 3]) / 6
    np.testing.assert_allclose(dx[0], s * (np.array([0, 0, 1]) - s[2]), rtol=1e-14)
    np.testing.assert_array_equal(dx[1], [0, 0, 0])


def test_dense_hand_computed() -> None:
    layer = cl.Dense(2, 3, dtype=F64, rng=0)
    layer.params["W"][...] = [[1, 2], [3, 4], [5, 6]]
    layer.params["b"][...] = [1, 0, -1]
    x = np.array([[1.0, 1.0], [2.0, -1.0]])
    # row 0: [1+2+1, 3+4+0, 5+6−1]; row 1: [2−2+1, 6−4+0, 10−6−1]
    np.testing.assert_array_equal(layer.forward(x), [[4, 7, 10], [1, 2, 3]])
    dx = layer.backward(np.ones((2, 3)))
    np.testing.assert_array_equal(dx, [[9, 12], [9, 12]])  # column sums of W
    np.testing.assert_array_equal(layer.grads["W"], [[3, 0]] * 3)  # Σ_n x_n per row
    np.testing.assert_array_equal(layer.grads["b"], [2, 2, 2])


def test_flatten() -> None:
    layer = cl.Flatten(dtype=F64)
    x = np.arange(24, dtype=F64).reshape(2, 3, 2, 2)
    out = layer.forward(x)
    assert out.shape == (2, 12)
    np.testing.assert_array_equal(out[1], np.arange(12, 24))
    back = layer.backward(out * 2)
    np.testing.assert_array_equal(back, x * 2)
    assert layer.output_shape((3, 2, 2)) == (12,)


def test_dropout_eval_is_identity() -> None:
    layer = cl.Dropout(0.5, dtype=F64, rng=0)
    layer.training = False
    x = np.random.default_rng(0).standard_normal((4, 5))
    assert layer.forward(x) is x or np.array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(np.ones((4, 5))), np.ones((4, 5)))


def test_dropout_train_fraction_scale_and_mask() -> None:
    p = 0.3
    layer = cl.Dropout(p, dtype=F64, rng=42)
    x = np.full((200, 500), 2.0)
    out = layer.forward(x)
    dropped = out == 0
    assert abs(dropped.mean() - p) < 0.005  # 100,000 draws: sd ≈ 0.0015
    np.testing.assert_allclose(out[~dropped], 2.0 / (1 - p), rtol=1e-15)
    grad = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad == 0, dropped)  # the same mask on the way back
    np.testing.assert_allclose(grad[~dropped], 1 / (1 - p), rtol=1e-15)
    # a second forward draws a new mask; same seed, same masks
    assert not np.array_equal(layer.forward(x) == 0, dropped)
    again = cl.Dropout(p, dtype=F64, rng=42)
    np.testing.assert_array_equal(again.forward(x), out)


def test_batchnorm1d_hand_computed() -> None:
    eps = 1e-5
    layer = cl.BatchNorm1D(2, eps=eps, dtype=F64)
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    out = layer.forward(x)
    # feature 0: mean 2, biased var 1; feature 1: mean 4, biased var 4
    a, b = 1 / math.sqrt(1 + eps), 2 / math.sqrt(4 + eps)
    np.testing.assert_allclose(out, [[-a, -b], [a, b]], rtol=1e-14)
    # running stats: momentum 0.1, unbiased variance (N/(N−1) = 2): var' = [2, 8]
    np.testing.assert_allclose(layer.buffers["running_mean"], [0.2, 0.4], rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], [0.9 + 0.2, 0.9 + 0.8], rtol=1e-14)
    # γ, β apply after normalising
    layer.params["W"][...] = [2.0, 3.0]
    layer.params["b"][...] = [1.0, -1.0]
    out = layer.forward(x)
    np.testing.assert_allclose(out, [[1 - 2 * a, -1 - 3 * b], [1 + 2 * a, -1 + 3 * b]], rtol=1e-14)
    # gradient of Σ y w.r.t. x is zero in training mode (the batch mean absorbs a shift)
    np.testing.assert_allclose(layer.backward(np.ones((2, 2))), 0, atol=1e-15)
    np.testing.assert_allclose(layer.grads["b"], [2, 2])
    # evaluation: the running statistics, not the batch's
    layer.training = False
    rm, rv = layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()
    out = layer.forward(x)
    np.testing.assert_allclose(
        out, np.array([2.0, 3.0]) * (x - rm) / np.sqrt(rv + eps) + [1.0, -1.0], rtol=1e-14
    )
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm)  # eval leaves them


def test_batchnorm2d_hand_computed() -> None:
    # One channel, two 1×2 images: values 1, 3 | 5, 7 → mean 4, biased var 5.
    layer = cl.BatchNorm2D(1, eps=1e-5, dtype=F64)
    x = np.array([1.0, 3.0, 5.0, 7.0]).reshape(2, 1, 1, 2)
    out = layer.forward(x)
    np.testing.assert_allclose(
        out.ravel(), (np.array([1, 3, 5, 7]) - 4) / math.sqrt(5 + 1e-5), rtol=1e-14
    )
    np.testing.assert_allclose(layer.buffers["running_var"], [0.9 + 0.1 * 20 / 3], rtol=1e-14)


# -- gradient checks (float64, central differences) ---------------------------------------------


def distinct(rng: np.random.Generator, shape: tuple[int, ...], gap: float = 0.05) -> np.ndarray:
    """Distinct values with gaps of ``gap`` (far from max-pool ties), shuffled, roughly centred."""
    n = math.prod(shape)
    return (rng.permutation(n) - n / 2).astype(F64).reshape(shape) * gap


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values with |x| in [0.1, 1.1): no ReLU kink within reach of the finite difference."""
    return rng.choice([-1.0, 1.0], size=shape) * (0.1 + rng.random(shape))


CONV_CASES = [
    # in, out, kernel, stride, padding, N, H, W
    (2, 3, 3, 1, 0, 2, 6, 6),
    (2, 3, 3, 2, 1, 2, 7, 7),
    (1, 2, (2, 3), 1, 2, 1, 5, 6),
    (3, 2, (3, 1), 2, 0, 2, 7, 5),
    (2, 2, (1, 2), 2, 2, 1, 4, 5),
    (2, 2, 1, 1, 0, 1, 3, 3),
    (1, 1, 4, 2, 1, 2, 8, 6),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_gradcheck_conv(case, rng) -> None:
    c_in, c_out, k, s, p, n, h, w = case
    layer = cl.Conv2D(c_in, c_out, k, stride=s, padding=p, dtype=F64, rng=1)
    layer.params["b"][...] = rng.standard_normal(c_out)
    assert not check_layer(layer, rng.standard_normal((n, c_in, h, w)), rng)


POOL_CASES = [(2, None, 4, 4), (2, 1, 5, 4), (3, 2, 7, 7), ((2, 3), 2, 6, 7), (2, 3, 8, 7)]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("cls", [cl.MaxPool2D, cl.AvgPool2D])
def test_gradcheck_pool(cls, case, rng) -> None:
    k, s, h, w = case
    layer = cls(k, stride=s, dtype=F64)
    assert not check_layer(layer, distinct(rng, (2, 2, h, w)), rng)


@pytest.mark.parametrize("cls", [cl.ReLU, cl.Sigmoid, cl.Tanh])
def test_gradcheck_activation(cls, rng) -> None:
    assert not check_layer(cls(dtype=F64), away_from_zero(rng, (3, 2, 3, 2)), rng)
    assert not check_layer(cls(dtype=F64), away_from_zero(rng, (4, 5)), rng)


def test_gradcheck_softmax(rng) -> None:
    assert not check_layer(cl.Softmax(dtype=F64), rng.standard_normal((3, 5)) * 2, rng)


def test_gradcheck_flatten(rng) -> None:
    assert not check_layer(cl.Flatten(dtype=F64), rng.standard_normal((2, 3, 2, 2)), rng)


def test_gradcheck_dense(rng) -> None:
    layer = cl.Dense(5, 4, dtype=F64, rng=2)
    layer.params["b"][...] = rng.standard_normal(4)
    assert not check_layer(layer, rng.standard_normal((3, 5)), rng)


def test_gradcheck_dropout_fixed_mask(rng) -> None:
    layer = cl.Dropout(0.4, dtype=F64, rng=0)

    def replay() -> None:  # the same mask for every forward pass
        layer.rng = np.random.default_rng(7)

    assert not check_layer(layer, rng.standard_normal((4, 6)), rng, before_forward=replay)
    replay()
    assert (layer.forward(np.ones((4, 6))) == 0).any()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,shape", [(cl.BatchNorm1D, (5, 3)), (cl.BatchNorm2D, (3, 3, 2, 2))])
def test_gradcheck_batchnorm(cls, shape, training, rng) -> None:
    layer = cls(3, dtype=F64)
    layer.params["W"][...] = 1 + rng.random(3)
    layer.params["b"][...] = rng.standard_normal(3)
    layer.buffers["running_mean"][...] = rng.standard_normal(3)
    layer.buffers["running_var"][...] = 0.5 + rng.random(3)
    layer.training = training
    assert not check_layer(layer, rng.standard_normal(shape) * 2 + 1, rng)


# -- bad input ----------------------------------------------------------------------------------


def test_conv_wrong_rank_names_layer_and_shapes() -> None:
    layer = cl.Conv2D(1, 6, 5, padding=2)
    with pytest.raises(CnnlabError) as err:
        layer.forward(np.zeros((2, 28, 28), np.float32))
    msg = str(err.value)
    assert "Conv2D" in msg and "(N, 1, H, W)" in msg and "(2, 28, 28)" in msg
    assert isinstance(err.value, ValueError)


def test_conv_wrong_channels_names_layer_and_shapes() -> None:
    layer = cl.Conv2D(3, 6, 5)
    with pytest.raises(CnnlabError, match=r"Conv2D.*\(N, 3, H, W\).*\(2, 1, 28, 28\)"):
        layer.forward(np.zeros((2, 1, 28, 28), np.float32))


def test_conv_input_smaller_than_kernel() -> None:
    with pytest.raises(CnnlabError, match="smaller than the 5×5 kernel"):
        cl.Conv2D(1, 2, 5).forward(np.zeros((1, 1, 3, 3), np.float32))


def test_wrong_dtype_is_refused() -> None:
    for layer, shape in [
        (cl.Conv2D(1, 2, 3), (1, 1, 5, 5)),
        (cl.Dense(4, 2), (1, 4)),
        (cl.MaxPool2D(2), (1, 1, 4, 4)),
        (cl.ReLU(), (1, 4)),
        (cl.BatchNorm1D(4), (2, 4)),
    ]:
        with pytest.raises(CnnlabError, match=r"expected float32 input, got float64"):
            layer.forward(np.zeros(shape, np.float64))
    with pytest.raises(CnnlabError, match="uint8"):
        cl.Conv2D(1, 2, 3).forward(np.zeros((1, 1, 5, 5), np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(bad) -> None:
    x = np.ones((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 3] = bad
    with pytest.raises(CnnlabError, match=r"Conv2D.*NaN or inf"):
        cl.Conv2D(1, 2, 3).forward(x)


def test_dense_wrong_features() -> None:
    with pytest.raises(CnnlabError, match=r"Dense\(400, 120\).*\(N, 400\).*\(8, 256\)"):
        cl.Dense(400, 120).forward(np.zeros((8, 256), np.float32))


def test_non_array_input() -> None:
    with pytest.raises(CnnlabError, match="Dense"):
        cl.Dense(2, 2).forward([[1.0, 2.0]])
    with pytest.raises(CnnlabError, match="ReLU"):
        cl.ReLU().forward(3.0)


def test_softmax_and_batchnorm_wrong_shape() -> None:
    with pytest.raises(CnnlabError, match=r"Softmax.*\(N, K\).*\(2, 3, 4\)"):
        cl.Softmax().forward(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(CnnlabError, match=r"BatchNorm2D\(4\).*\(2, 3, 5, 5\)"):
        cl.BatchNorm2D(4).forward(np.zeros((2, 3, 5, 5), np.float32))


def test_batchnorm_wrong_shape_states_expected_size() -> None:
    with pytest.raises(CnnlabError, match=r"\(N, 4, H, W\).*\(2, 3, 5, 5\)"):
        cl.BatchNorm2D(4).forward(np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(CnnlabError, match=r"\(N, 4\).*\(2, 3\)"):
        cl.BatchNorm1D(4).forward(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    "build,echo",
    [
        (lambda: cl.Conv2D(1, 6, 0), "got 0"),
        (lambda: cl.Conv2D(1, 6, (3, 0)), "got 0"),
        (lambda: cl.Conv2D(1, 6, (3, 3, 3)), "got (3, 3, 3)"),
        (lambda: cl.Conv2D(1, 6, 3, stride=0), "got 0"),
        (lambda: cl.Conv2D(1, 6, 3, padding=-1), "got -1"),
        (lambda: cl.Conv2D(0, 6, 3), "got 0"),
        (lambda: cl.Conv2D(1, 6, 2.5), "got 2.5"),
        (lambda: cl.Conv2D(1, 6, True), "got True"),
        (lambda: cl.Conv2D(1, 6, 3, init="xavier"), "got 'xavier'"),
        (lambda: cl.Conv2D(1, 6, 3, dtype=np.int32), "int32"),
        (lambda: cl.Dense(0, 3), "got 0"),
        (lambda: cl.Dense(3, -2), "got -2"),
        (lambda: cl.MaxPool2D(0), "got 0"),
        (lambda: cl.AvgPool2D(2, stride=0), "got 0"),
        (lambda: cl.Dropout(1.0), "got 1.0"),
        (lambda: cl.Dropout(-0.1), "got -0.1"),
        (lambda: cl.Dropout("0.5"), "got '0.5'"),
        (lambda: cl.BatchNorm2D(0), "got 0"),
        (lambda: cl.BatchNorm1D(4, eps=0), "got 0"),
        (lambda: cl.BatchNorm1D(4, momentum=1.5), "got 1.5"),
        (lambda: cl.ReLU(dtype="float16"), "float16"),
    ],
)
def test_invalid_hyperparameters_rejected_with_value(build, echo) -> None:
    with pytest.raises(CnnlabError) as err:
        build()
    assert echo in str(err.value)


def test_output_shape_formula() -> None:
    assert cl.Conv2D(1, 6, 5, padding=2).output_shape((1, 28, 28)) == (6, 28, 28)
    assert cl.Conv2D(3, 4, (3, 5), stride=2, padding=1).output_shape((3, 9, 11)) == (4, 5, 5)
    assert cl.MaxPool2D(3, stride=2).output_shape((2, 7, 8)) == (2, 3, 3)
    with pytest.raises(CnnlabError, match="smaller than the 3×3 window"):
        cl.MaxPool2D(3).output_shape((1, 2, 5))


def test_float32_forward_matches_float64() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 6))
    a = cl.Conv2D(2, 3, 3, padding=1, rng=5)
    b = cl.Conv2D(2, 3, 3, padding=1, rng=5).astype(F64)
    out32 = a.forward(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, b.forward(x), rtol=1e-4, atol=1e-5)


# -- evaluation mode and returned arrays ------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES[:3], ids=str)
def test_conv_backward_after_eval_forward_is_right_or_refused(case, rng) -> None:
    # Input gradients of a model in evaluation mode are what saliency maps need: backward must
    # either be right or refuse with a clear CnnlabError, never crash or use stale patches.
    c_in, c_out, k, s, p, n, h, w = case
    layer = cl.Conv2D(c_in, c_out, k, stride=s, padding=p, dtype=F64, rng=1)
    x1, x2 = rng.standard_normal((n + 1, c_in, h, w)), rng.standard_normal((n, c_in, h, w))
    reference = cl.Conv2D(c_in, c_out, k, stride=s, padding=p, dtype=F64, rng=1)
    g = rng.standard_normal(reference.forward(x2).shape)
    expected_dx = np.array(reference.backward(g))
    layer.training = False
    with contextlib.suppress(CnnlabError):
        assert not check_layer(layer, x2, rng)
    layer.training = True
    layer.forward(x1)
    layer.training = False
    layer.forward(x2)
    try:
        dx = layer.backward(g)
    except CnnlabError:
        return
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], reference.grads["W"], rtol=1e-12)


def test_conv_eval_forward_matches_train_forward_in_chunks(monkeypatch) -> None:
    from cnnlab.engine import layers

    # Force evaluation to go through the batch a sample or two at a time, if it chunks at all.
    monkeypatch.setattr(layers, "EVAL_CHUNK_FLOATS", 300, raising=False)
    rng = np.random.default_rng(0)
    layer = cl.Conv2D(2, 3, 3, padding=1, stride=2, dtype=F64, rng=0)
    layer.params["b"][...] = [0.5, -1, 2]
    x = rng.standard_normal((7, 2, 9, 8))
    train_out = np.array(layer.forward(x))
    layer.training = False
    np.testing.assert_allclose(layer.forward(x), train_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.forward(x[:3]), train_out[:3], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: cl.Conv2D(2, 3, 3, padding=1, dtype=F64, rng=0), (3, 2, 6, 6)),
        (lambda: cl.Conv2D(2, 3, (2, 3), stride=2, dtype=F64, rng=0), (3, 2, 7, 7)),
        (lambda: cl.MaxPool2D(2, dtype=F64), (3, 2, 6, 6)),
        (lambda: cl.AvgPool2D(3, stride=2, dtype=F64), (3, 2, 7, 7)),
        (lambda: cl.Dense(6, 4, dtype=F64, rng=0), (3, 6)),
        (lambda: cl.BatchNorm2D(2, dtype=F64), (3, 2, 4, 4)),
    ],
)
def test_returned_arrays_are_not_overwritten_by_later_calls(make, shape) -> None:
    # Layers may reuse scratch buffers, but never for an array they hand back.
    rng = np.random.default_rng(0)
    layer = make()
    x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
    out1 = layer.forward(x1)
    saved_out1 = np.array(out1)
    g1 = rng.standard_normal(out1.shape)
    dx1 = layer.backward(g1)
    saved_dx1 = np.array(dx1)
    out2 = layer.forward(x2)
    layer.backward(rng.standard_normal(out2.shape))
    np.testing.assert_array_equal(out1, saved_out1)
    np.testing.assert_array_equal(dx1, saved_dx1)
