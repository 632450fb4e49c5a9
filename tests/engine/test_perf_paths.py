"""Fast paths of the engine against straightforward reference implementations.

Every trick in ``cnnlab.engine.functional`` and ``layers`` that exists for speed (im2col into
reused buffers, the tap-by-tap input gradient, the 2×2 max-pool tournament, chunked inference)
must compute exactly what a plain loop over the definition computes, ties and odd sizes
included. The array-module seam is checked on the CPU: the NumPy path never imports CuPy.
"""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.engine import backend, functional, layers
from cnnlab.engine.errors import CnnlabError

F64 = np.float64


# -- references: the definitions, written as plainly as possible ------------------------------


def reference_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int):
    """Cross-correlation by its definition: one multiply-and-sum per kernel tap."""
    n, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h_out, w_out = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, c_out, h_out, w_out)) + b[:, None, None]
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * h_out : stride, j : j + stride * w_out : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out


def reference_conv_grads(x, w, g, stride, pad):
    """dL/dx, dL/dW and dL/db of ``reference_conv`` by scattering every tap's contribution."""
    kh, kw = w.shape[2:]
    h_out, w_out = g.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * h_out, stride)
            cols = slice(j, j + stride * w_out, stride)
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", g, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("nohw,oc->nchw", g, w[:, :, i, j])
    dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, g.sum(axis=(0, 2, 3))


def reference_maxpool(x: np.ndarray, k: int, stride: int):
    """Max pooling window by window; the gradient goes to the first maximum (np.argmax)."""
    n, c, h, w = x.shape
    h_out, w_out = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((n, c, h_out, w_out), x.dtype)
    first = np.empty((n, c, h_out, w_out), np.int64)
    for r in range(h_out):
        for s in range(w_out):
            window = x[:, :, r * stride : r * stride + k, s * stride : s * stride + k]
            flat = window.reshape(n, c, k * k)
            out[:, :, r, s] = flat.max(axis=2)
            first[:, :, r, s] = flat.argmax(axis=2)
    return out, first


def reference_maxpool_backward(x_shape, first, g, k, stride):
    dx = np.zeros(x_shape, g.dtype)
    h_out, w_out = g.shape[2:]
    for r in range(h_out):
        for s in range(w_out):
            for t in range(k * k):
                i, j = divmod(t, k)
                dx[:, :, r * stride + i, s * stride + j] += np.where(
                    first[:, :, r, s] == t, g[:, :, r, s], 0
                )
    return dx


# -- convolution --------------------------------------------------------------------------------

CONV_CASES = [
    # (N, C_in, H, W, C_out, kernel, stride, padding)
    (3, 1, 28, 28, 4, 5, 1, 2),
    (2, 3, 9, 7, 5, 3, 1, 0),
    (2, 2, 10, 11, 3, 3, 2, 1),
    (2, 4, 8, 8, 2, (2, 3), 2, 0),
    (1, 2, 7, 7, 3, 7, 1, 3),
    (2, 3, 12, 12, 4, 4, 3, 2),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_and_backward_match_the_definition(case, rng) -> None:
    n, c, h, w, c_out, k, stride, pad = case
    layer = cl.Conv2D(c, c_out, k, stride=stride, padding=pad, dtype=F64, rng=1)
    layer.params["b"][...] = rng.standard_normal(c_out)
    x = rng.standard_normal((n, c, h, w))
    out = layer.forward(x)
    weights, bias = layer.params["W"], layer.params["b"]
    np.testing.assert_allclose(out, reference_conv(x, weights, bias, stride, pad), atol=1e-12)
    g = rng.standard_normal(out.shape)
    dx = layer.backward(g)
    ref_dx, ref_dw, ref_db = reference_conv_grads(x, weights, g, stride, pad)
    np.testing.assert_allclose(dx, ref_dx, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], ref_dw, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], ref_db, atol=1e-12)


def test_conv_input_grad_is_the_adjoint_of_im2col(rng) -> None:
    """⟨im2col(x)·W, g⟩ = ⟨x, conv_input_grad(g)⟩: one is the transpose of the other."""
    x = rng.standard_normal((2, 3, 9, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    cols = functional.im2col(x, (3, 3), 2)  # (N, C, kH, kW, H_out, W_out)
    h_out, w_out = cols.shape[4:]
    out = np.einsum("ockl,nckluv->nouv", w, cols)
    g = rng.standard_normal(out.shape)
    dx = functional.conv_input_grad(g.reshape(2, 4, -1), w, x.shape, 2, (h_out, w_out))
    assert np.isclose((out * g).sum(), (x * dx).sum(), rtol=1e-12)


def test_im2col_layout_is_channel_tap_then_position(rng) -> None:
    x = rng.standard_normal((2, 3, 6, 5))
    cols = functional.im2col(x, (2, 3), 1)
    assert cols.shape == (2, 3, 2, 3, 5, 3) and cols.flags.c_contiguous
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(cols[:, :, i, j], x[:, :, i : i + 5, j : j + 3])


def test_strided_patch_view_is_read_only_and_the_same_for_any_memory_layout(rng) -> None:
    """backend.as_strided builds on the buffer of a contiguous array, else falls back."""
    x = rng.standard_normal((2, 3, 6, 5))
    for source in (x, np.asfortranarray(x), x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)):
        s = source.strides
        view = backend.as_strided(np, source, (2, 3, 5, 4), (s[0], s[1], s[2], s[3]))
        np.testing.assert_array_equal(view, x[:, :, :5, :4])
        assert not view.flags.writeable
        np.testing.assert_array_equal(
            functional.im2col(source, (2, 3), 1), functional.im2col(x, (2, 3), 1)
        )


def test_conv_reused_buffers_never_alias_outputs(rng) -> None:
    """A second batch, smaller then larger, leaves the first batch's output and gradient intact."""
    layer = cl.Conv2D(2, 3, 3, padding=1, dtype=F64, rng=0)
    x1 = rng.standard_normal((4, 2, 6, 6))
    out1 = layer.forward(x1)
    dx1 = layer.backward(np.ones_like(out1))
    kept_out, kept_dx = out1.copy(), dx1.copy()
    for n in (2, 6):
        out = layer.forward(rng.standard_normal((n, 2, 6, 6)))
        layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(out1, kept_out)
    np.testing.assert_array_equal(dx1, kept_dx)
    # and the padding border of the reused buffer is still zero: same input, same output
    np.testing.assert_allclose(layer.forward(x1), kept_out, atol=1e-12)


def test_conv_chunked_inference_equals_whole_batch(rng, monkeypatch) -> None:
    layer = cl.Conv2D(3, 4, 3, padding=1, dtype=F64, rng=0)
    x = rng.standard_normal((7, 3, 8, 8))
    whole = layer.forward(x)  # training mode: one chunk
    layer.training = False
    monkeypatch.setattr(layers, "EVAL_CHUNK_FLOATS", 3 * 3 * 3 * 64 * 2)  # two samples a chunk
    np.testing.assert_allclose(layer.forward(x), whole, atol=1e-12)


def test_conv_skips_the_input_gradient_when_told(rng) -> None:
    layer = cl.Conv2D(1, 2, 3, rng=0)
    out = layer.forward(rng.random((2, 1, 5, 5), dtype=np.float32))
    layer.set_input_grad(False)
    assert layer.backward(np.ones_like(out)) is None
    assert np.abs(layer.grads["W"]).sum() > 0


def test_conv_float32_stays_float32(rng) -> None:
    layer = cl.Conv2D(2, 3, 3, padding=1, rng=0)
    out = layer.forward(rng.random((2, 2, 6, 6), dtype=np.float32))
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == layer.grads["W"].dtype == np.float32


# -- max pooling -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 2, 7, 9), (1, 1, 2, 2), (2, 3, 5, 4)])
def test_maxpool_2x2_fast_path_matches_reference_with_ties(shape, rng) -> None:
    """Small integers make many ties; the gradient must go to the first maximum every time."""
    x = rng.integers(0, 3, size=shape).astype(np.float32)
    pool = cl.MaxPool2D(2)
    out = pool.forward(x)
    assert len(pool.winner_maps()) == 2  # the fast path was taken: two tournament maps
    ref_out, first = reference_maxpool(x, 2, 2)
    np.testing.assert_array_equal(out, ref_out)
    g = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_array_equal(
        pool.backward(g), reference_maxpool_backward(x.shape, first, g, 2, 2)
    )


def test_maxpool_all_equal_window_sends_everything_to_top_left() -> None:
    x = np.ones((1, 1, 2, 2), np.float32)
    pool = cl.MaxPool2D(2)
    pool.forward(x)
    np.testing.assert_array_equal(
        pool.backward(np.full((1, 1, 1, 1), 5.0, np.float32)), [[[[5, 0], [0, 0]]]]
    )


@pytest.mark.parametrize("k, stride", [(3, 3), (3, 2), (2, 1), (3, 1)])
def test_maxpool_general_path_matches_reference_with_ties(k, stride, rng) -> None:
    x = rng.integers(0, 3, size=(2, 2, 9, 8)).astype(np.float32)
    pool = cl.MaxPool2D(k, stride=stride)
    out = pool.forward(x)
    ref_out, first = reference_maxpool(x, k, stride)
    np.testing.assert_array_equal(out, ref_out)
    g = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_allclose(
        pool.backward(g), reference_maxpool_backward(x.shape, first, g, k, stride), atol=1e-6
    )


# -- the whole network -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "lenet5", "simple"])
def test_preset_train_and_eval_forward_agree(name, rng) -> None:
    """Training (one chunk, reused buffers) and inference (chunked) compute the same logits."""
    model = cl.build(name, seed=0)
    for layer in model.layers:
        if isinstance(layer, cl.Dropout):
            layer.p = 0.0
    x = rng.random((5, 1, 28, 28), dtype=np.float32)
    train_logits = model.forward(x).copy()
    model.eval()
    np.testing.assert_allclose(model.forward(x), train_logits, rtol=1e-5, atol=1e-6)


# -- the array-module seam ------------------------------------------------------------------------


def test_numpy_path_never_imports_cupy() -> None:
    code = (
        "import sys, numpy as np, cnnlab as cl\n"
        "m = cl.build('default'); m.to('cpu')\n"
        "x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)\n"
        "y = np.arange(8) % 10\n"
        "cl.fit(m, cl.CrossEntropyLoss(), cl.Adam(m.parameters()), x, y, batch_size=4)\n"
        "m.predict(x)\n"
        "assert 'cupy' not in sys.modules, 'cupy was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_cuda_device_without_cupy_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(CnnlabError, match="pip install cupy"):
        backend.array_module("cuda")


def test_cuda_device_uses_the_cupy_module_and_recognises_its_arrays(monkeypatch) -> None:
    fake = types.ModuleType("cupy")

    class ndarray:  # noqa: N801 - the name CuPy gives its array type
        __module__ = "cupy"

    fake.ndarray = ndarray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert backend.array_module("cuda") is fake
    assert backend.xp_of(ndarray()) is fake
    assert backend.device_of(ndarray()) == "cuda"
    assert backend.xp_of(np.zeros(2)) is np
    assert backend.device_of(np.zeros(2)) == "cpu"


def test_unknown_device_is_refused() -> None:
    with pytest.raises(CnnlabError, match="unknown device 'tpu'"):
        backend.array_module("tpu")
