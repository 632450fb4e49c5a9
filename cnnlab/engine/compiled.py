"""Compiled kernels for the memory-bound steps: the same maths as ``functional``, as loops.

``functional`` stays the definition: vectorised NumPy, one screen per layer. NumPy runs each of
its operations as a separate pass over memory: its 2×2 max-pool is a tournament of four
elementwise passes over strided slices, its ReLU backward a comparison and a multiplication, a
convolution's patches a padded copy then a strided copy in short rows, and the way back of its
input gradient a transposed copy, k² strided additions and another transposed copy. Written as
one loop that reads each input once and writes each result once, Numba compiles them to a
single pass. When Numba is installed (``pip install "cnnlab[fast]"``), these layers run the
kernels on float NumPy batches while training:

- ``MaxPool2D`` (2×2 windows, stride 2) and ``ReLU``, equal to ``functional`` bit for bit (a
  maximum and a selection involve no rounding);
- ``Conv2D`` (``conv2d``, ``conv2d_backward``): the patches (im2col) copied straight from the
  input with the padding's zeros written in the same pass, the bias added in place, and the
  input gradient's patch gradients, one product per sample, added back onto the pixels
  (col2im, im2col's adjoint) straight into NCHW. The matrix products stay the BLAS's, and the
  weight and bias gradients are ``functional``'s. The patches equal the NumPy path's bit for
  bit; the input gradient sums the same products in another order, so outputs and gradients
  agree to float32 rounding (float64 within 1e-12, as the tests check).

Without Numba nothing here is compiled and the NumPy path runs as before;
``set_compiled(False)``, or ``CNNLAB_COMPILED=0`` in the environment, chooses it by hand.

What stays on NumPy, measured (``benchmarks/README.md``): the convolutions' matrix products,
which the BLAS runs faster than direct loops over the filter compiled here (1.2-4× slower on
every preset's layers), and Adam, whose ten whole-array operations per parameter beat a
compiled loop on these small parameters (Numba's call overhead per parameter is larger than the
work).

The kernels run on the calling thread and release the GIL: ``cnnlab.engine.parallel`` already
splits each batch over one thread per core, and each thread's slice runs its own kernels. (A
Numba thread pool inside each kernel was measured too: with other processes on the cores,
every kernel waited for its slowest worker, and layers took 10-20× as long.)

Numba compiles each kernel on its first call for a new element type and caches the machine code
on disk, beside this file, or in the user's cache folder when this folder is read-only
(``NUMBA_CACHE_DIR`` moves it). A compilation says so, once a process, on stderr.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from typing import Any

import numpy as np

from cnnlab.engine import functional

_enabled = os.environ.get("CNNLAB_COMPILED", "1") != "0"
_available: bool | None = None
_compiled: dict[str, Any] = {}
_compile_lock = threading.Lock()
_said_compiling = False


def available() -> bool:
    """Whether Numba is installed (it is not imported until a kernel is first needed)."""
    global _available
    if _available is None:
        try:
            _available = importlib.util.find_spec("numba") is not None
        except (ImportError, ValueError):  # a broken or blocked install
            _available = False
    return _available


def set_compiled(enabled: bool) -> bool:
    """Run the compiled kernels where Numba is installed (True, the default) or the NumPy
    reference everywhere (False). Returns the setting it replaces."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def enabled() -> bool:
    """Whether the layers run the compiled kernels: switched on and Numba installed."""
    return _enabled and available()


def use(x: Any, training: bool = True) -> bool:
    """Whether a layer runs its compiled kernel on ``x``: a float NumPy array of at least two
    rows, while training or once the kernels are loaded. Loading them (importing Numba, reading
    its cache) takes a second or more, which a training run earns back within an epoch; a
    process that only predicts would pay it to save microseconds, so inference keeps the NumPy
    path until something has loaded them (the same answers: pooling and ReLU compute the same
    bits either way)."""
    return (
        _enabled
        and isinstance(x, np.ndarray)
        and x.dtype in (np.float32, np.float64)
        and x.shape[0] >= 2
        and (training or bool(_compiled))
        and available()
    )


def _kernels() -> dict[str, Any]:
    """The compiled kernels, compiled or loaded from the disk cache on first use; the plain
    Python ones where Numba is not installed (which the tests run on tiny arrays)."""
    if not available():
        return _PYTHON_KERNELS
    if not _compiled:
        with _compile_lock:
            if not _compiled:
                import numba

                numba.core.event.register("numba:compile", _notice(numba))
                jit = numba.njit(cache=True, nogil=True)
                _compiled.update({name: jit(f) for name, f in _PYTHON_KERNELS.items()})
    return _compiled


def _notice(numba: Any) -> Any:
    """A listener that says on stderr, once a process, that the kernels are being compiled
    (loading them from the cache says nothing)."""

    class CompilingNotice(numba.core.event.Listener):
        def on_start(self, event: Any) -> None:
            global _said_compiling
            function = getattr(event.data.get("dispatcher"), "py_func", None)
            if not _said_compiling and getattr(function, "__module__", "") == __name__:
                _said_compiling = True
                print(
                    "cnnlab: compiling its fast kernels for this machine; this happens once, "
                    "they are then cached on disk",
                    file=sys.stderr,
                    flush=True,
                )

        def on_end(self, event: Any) -> None:
            pass

    return CompilingNotice()


# -- what the layers call ----------------------------------------------------------------------


def max_pool_2x2(x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """``functional.max_pool_2x2``: ``(N, C, H, W)`` → the ``(N, C, H//2, W//2)`` maxima and the
    same two "who won" maps, ``right_wins`` ``(N, C, 2·H_out, W_out)`` and ``bottom_wins``."""
    n, c, h, w = x.shape
    h_out, w_out = h // 2, w // 2
    out = np.empty((n, c, h_out, w_out), dtype=x.dtype)
    right_wins = np.empty((n, c, 2 * h_out, w_out), dtype=np.bool_)
    bottom_wins = np.empty((n, c, h_out, w_out), dtype=np.bool_)
    _kernels()["pool_forward"](np.ascontiguousarray(x), out, right_wins, bottom_wins)
    return out, (right_wins, bottom_wins)


def max_pool_2x2_backward(
    grad_out: np.ndarray, winners: tuple[np.ndarray, np.ndarray], input_shape: tuple[int, ...]
) -> np.ndarray:
    """``functional.max_pool_2x2_backward``: each gradient of ``(N, C, H_out, W_out)`` to its
    window's winner in ``(N, C, H, W)``, 0 elsewhere."""
    dx = np.zeros(input_shape, dtype=grad_out.dtype)
    right_wins, bottom_wins = (np.ascontiguousarray(m) for m in winners)
    _kernels()["pool_backward"](np.ascontiguousarray(grad_out), right_wins, bottom_wins, dx)
    return dx


def relu(x: np.ndarray) -> np.ndarray:
    """``functional.relu``: max(0, x), any shape."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _kernels()["relu_forward"](x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(grad_out: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``functional.relu_backward``: the gradient where the unit was on (output > 0), else 0."""
    grad_out = np.ascontiguousarray(grad_out)
    dx = np.empty_like(grad_out)
    flat = np.ascontiguousarray(out).reshape(-1)
    _kernels()["relu_backward"](grad_out.reshape(-1), flat, dx.reshape(-1))
    return dx


def conv2d(
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    stride: int,
    padding: int,
    buffer: Any = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``functional.conv2d`` on the whole batch: ``(N, C_in, H, W)`` → ``(N, C_out, H_out,
    W_out)``, with the patches ``(N, C_in, kH, kW, H_out, W_out)`` (the same array
    ``functional.im2col`` makes) and the padded input's shape, for ``conv2d_backward``.

    One compiled pass copies the patches straight from ``x``, writing the padding's zeros
    itself, and another adds the bias in place; the product stays the BLAS's ``matmul``.
    ``buffer`` is the layer's scratch (``Conv2D._buffer``), None for fresh arrays.
    """
    n, c, h, w = x.shape
    c_out, _, kh, kw = weights.shape
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (w + 2 * padding - kw) // stride + 1
    shape = (n, c, kh, kw, h_out, w_out)
    cols = buffer("cols", shape, x.dtype) if buffer else np.empty(shape, dtype=x.dtype)
    kernels = _kernels()
    kernels["im2col"](np.ascontiguousarray(x), stride, padding, cols)
    out = np.empty((n, c_out, h_out * w_out), dtype=x.dtype)
    np.matmul(weights.reshape(c_out, -1), cols.reshape(n, c * kh * kw, -1), out=out)
    kernels["add_bias"](out, np.ascontiguousarray(bias))
    return out.reshape(n, c_out, h_out, w_out), cols, (n, c, h + 2 * padding, w + 2 * padding)


def conv2d_backward(
    grad_out: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    padded_shape: tuple[int, ...],
    stride: int,
    padding: int,
    input_grad: bool = True,
    buffer: Any = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``functional.conv2d_backward``: dL/dy ``(N, C_out, H_out, W_out)`` → ``(dL/dx or None,
    dL/dW, dL/db)``, from what ``conv2d`` (either one) returned for the same batch.

    dL/dW and dL/db are ``functional``'s. dL/dx takes each sample's patch gradients,
    ``W_flatᵀ @ g_n`` ``(C_in·kH·kW, H_out·W_out)``, from one batched ``matmul``, and one
    compiled pass adds them back onto the input's pixels (im2col's adjoint, col2im), sample by
    sample and channel by channel, straight into NCHW without the padding: where
    ``functional.conv_input_grad`` transposes ``g``, makes one product for the whole batch,
    adds kH·kW strided slices and transposes the sum back.
    """
    n, c_out, h_out, w_out = grad_out.shape
    g = np.ascontiguousarray(grad_out).reshape(n, c_out, h_out * w_out)
    _, c, kh, kw = weights.shape
    flat_cols = cols.reshape(n, c * kh * kw, h_out * w_out)
    d_weights = functional.conv_weight_grad(g, flat_cols, buffer).reshape(weights.shape)
    d_bias = functional.conv_bias_grad(g)
    if not input_grad:
        return None, d_weights, d_bias
    shape = (n, c * kh * kw, h_out * w_out)
    patch_grads = (
        buffer("patch_grads", shape, g.dtype) if buffer else np.empty(shape, dtype=g.dtype)
    )
    np.matmul(np.ascontiguousarray(weights.reshape(c_out, -1).T), g, out=patch_grads)
    p = padding
    dx = np.empty((n, c, padded_shape[2] - 2 * p, padded_shape[3] - 2 * p), dtype=g.dtype)
    _kernels()["col2im"](patch_grads.reshape(cols.shape), stride, padding, dx)
    return dx, d_weights, d_bias


# -- the kernels: plain Python loops that Numba compiles ---------------------------------------


def _pool_forward(x: Any, out: Any, right_wins: Any, bottom_wins: Any) -> None:
    """The 2×2 tournament of ``functional.max_pool_2x2``, one window at a time: in each row the
    right column wins only if strictly larger, then the bottom row only if strictly larger, so
    a tie goes to the first value in reading order."""
    n, channels, h_out, w_out = out.shape
    for s in range(n):
        for c in range(channels):
            for y in range(h_out):
                for q in range(w_out):
                    left, right = x[s, c, 2 * y, 2 * q], x[s, c, 2 * y, 2 * q + 1]
                    right_wins[s, c, 2 * y, q] = right > left
                    top = right if right > left else left
                    left, right = x[s, c, 2 * y + 1, 2 * q], x[s, c, 2 * y + 1, 2 * q + 1]
                    right_wins[s, c, 2 * y + 1, q] = right > left
                    bottom = right if right > left else left
                    bottom_wins[s, c, y, q] = bottom > top
                    out[s, c, y, q] = bottom if bottom > top else top


def _pool_backward(g: Any, right_wins: Any, bottom_wins: Any, dx: Any) -> None:
    """Each window's gradient to its winner (``dx`` arrives zeroed)."""
    n, channels, h_out, w_out = g.shape
    for s in range(n):
        for c in range(channels):
            for y in range(h_out):
                for q in range(w_out):
                    row = 2 * y + 1 if bottom_wins[s, c, y, q] else 2 * y
                    col = 2 * q + 1 if right_wins[s, c, row, q] else 2 * q
                    dx[s, c, row, col] = g[s, c, y, q]


def _relu_forward(x: Any, out: Any) -> None:
    for i in range(len(x)):
        out[i] = x[i] if x[i] > 0 else 0


def _relu_backward(g: Any, out: Any, dx: Any) -> None:
    for i in range(len(g)):
        dx[i] = g[i] if out[i] > 0 else 0


def _im2col(x: Any, stride: Any, padding: Any, cols: Any) -> None:
    """``cols[n, c, i, j, y, q] = x[n, c, y·stride + i − padding, q·stride + j − padding]``, 0
    where that lies in the padding. For each tap (i, j), ``lo:hi`` are the output columns whose
    input column is inside the picture; each row then copies one run of a row of ``x``.
    (Indices that cannot be negative are unsigned: Numba then drops its check for negative
    indices, which kept these short loops from being vectorised: 2× slower.)"""
    n, c, h, w = x.shape
    kh, kw, h_out, w_out = cols.shape[2:]
    for s in range(n):
        for ch in range(c):
            src, dst = x[s, ch], cols[s, ch]
            for i in range(kh):
                for j in range(kw):
                    lo = min(w_out, max(0, (padding - j + stride - 1) // stride))
                    hi = max(lo, min(w_out, (w - 1 + padding - j) // stride + 1))
                    start = np.uint64(max(0, lo * stride + j - padding))
                    for y in range(h_out):
                        row, out = y * stride + i - padding, dst[i, j, y]
                        if row < 0 or row >= h:
                            out[:] = 0
                            continue
                        line = src[np.uint64(row)]
                        for q in range(lo):
                            out[q] = 0
                        for q in range(hi - lo):
                            out[np.uint64(lo + q)] = line[start + np.uint64(q * stride)]
                        for q in range(hi, w_out):
                            out[q] = 0


def _col2im(cols: Any, stride: Any, padding: Any, dx: Any) -> None:
    """The adjoint of ``_im2col``: each entry of ``cols`` added onto the pixel of ``dx`` it was
    copied from (``dx`` is overwritten; what falls in the padding is dropped). Taps are added in
    reading order, (0, 0), (0, 1), …, as ``functional.conv_input_grad`` adds them."""
    n, c, kh, kw, h_out, w_out = cols.shape
    h, w = dx.shape[2], dx.shape[3]
    for s in range(n):
        for ch in range(c):
            src, plane = cols[s, ch], dx[s, ch]
            plane[:, :] = 0
            for i in range(kh):
                for j in range(kw):
                    lo = min(w_out, max(0, (padding - j + stride - 1) // stride))
                    hi = max(lo, min(w_out, (w - 1 + padding - j) // stride + 1))
                    start = np.uint64(max(0, lo * stride + j - padding))
                    for y in range(h_out):
                        row = y * stride + i - padding
                        if row < 0 or row >= h:
                            continue
                        line, share = plane[np.uint64(row)], src[i, j, y]
                        for q in range(hi - lo):
                            line[start + np.uint64(q * stride)] += share[np.uint64(lo + q)]


def _add_bias(out: Any, bias: Any) -> None:
    """``out[n, c, :] += bias[c]`` in place, ``out`` ``(N, C, P)``."""
    n, channels, p = out.shape
    for s in range(n):
        for c in range(channels):
            value, row = bias[c], out[s, c]
            for q in range(p):
                row[q] += value


_PYTHON_KERNELS = {
    "pool_forward": _pool_forward,
    "pool_backward": _pool_backward,
    "relu_forward": _relu_forward,
    "relu_backward": _relu_backward,
    "im2col": _im2col,
    "col2im": _col2im,
    "add_bias": _add_bias,
}
