"""The layers of a convolutional network, each with an explicit forward and backward pass.

Conventions follow PyTorch: images are NCHW, conv weights are ``(C_out, C_in, kH, kW)`` and dense
weights ``(out_features, in_features)``. Every layer

- validates its arguments in ``__init__`` and echoes a bad value in the error;
- holds ``params`` and ``grads``, dicts of arrays with the same keys and shapes;
- ``forward(x)`` returns the output and caches only what ``backward`` needs;
- ``backward(grad_out)`` returns dL/dx and writes the parameter gradients into ``grads``.

Nothing here loops over samples or pixels: convolution is one matrix product over an im2col
view, pooling takes the elementwise maximum of a few strided slices.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from cnnlab.engine.backend import as_strided, xp_of
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.rng import resolve_rng

FLOAT_DTYPES = (np.float32, np.float64)


def _check_int(layer: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise CnnlabError(f"{layer}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_pair(layer: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise CnnlabError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
        return (
            _check_int(layer, name, value[0], minimum),
            _check_int(layer, name, value[1], minimum),
        )
    size = _check_int(layer, name, value, minimum)
    return (size, size)


def _check_dtype(layer: str, dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise CnnlabError(f"{layer}: dtype must be float32 or float64, got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise CnnlabError(f"{layer}: dtype must be float32 or float64, got {resolved}")
    return resolved


def init_weights(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    fan_in: int,
    fan_out: int,
    init: str,
    dtype: np.dtype,
) -> np.ndarray:
    """Random weights: ``"he"`` (normal, std sqrt(2/fan_in), for ReLU nets) or ``"glorot"``.

    Glorot is uniform in ±sqrt(6/(fan_in+fan_out)) and suits sigmoid and tanh, which are close to
    linear around zero.
    """
    if init == "he":
        return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


class Layer:
    """Base class: parameters, their gradients, a training flag and input validation.

    ``buffers`` holds state that is saved with the model but not trained (BatchNorm's running
    statistics). ``check_finite`` makes ``forward`` refuse NaN and inf; ``Sequential`` checks
    its own input once and turns it off for the layers inside, which would only repeat the scan.
    """

    has_input_grad = True

    def __init__(self, dtype: Any = np.float32) -> None:
        self.dtype = _check_dtype(type(self).__name__, dtype)
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.training = True
        self.check_finite = True

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any) -> Any:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample's output for one sample's input shape (no batch axis)."""
        return tuple(input_shape)

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def _add_param(self, name: str, value: np.ndarray) -> None:
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def astype(self, dtype: Any) -> Layer:
        """Convert parameters, gradients and buffers to ``dtype`` in place; returns self."""
        self.dtype = _check_dtype(type(self).__name__, dtype)
        for store in (self.params, self.grads, self.buffers):
            for key, value in store.items():
                store[key] = value.astype(self.dtype)
        return self

    def __repr__(self) -> str:
        # Show only what differs from the constructor's defaults: Conv2D(1, 6, 5, padding=2).
        defaults = {
            name: p.default
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        args = [
            repr(v) if k not in defaults else f"{k}={v!r}"
            for k, v in self.config().items()
            if k not in defaults or defaults[k] != v
        ]
        return f"{type(self).__name__}({', '.join(args)})"

    def _check_input(self, x: Any, expected: str, ndim: int, sizes: dict[int, int]) -> None:
        """Raise a CnnlabError naming this layer unless ``x`` has the expected rank and sizes.

        ``sizes`` maps an axis to the size it must have, e.g. ``{1: in_channels}``.
        """
        if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
            raise CnnlabError(f"{self!r}: expected an array of shape {expected}, got {type(x)}")
        if x.ndim != ndim or any(x.shape[axis] != size for axis, size in sizes.items()):
            raise CnnlabError(f"{self!r}: expected input of shape {expected}, got {x.shape}")
        if x.dtype != self.dtype:
            raise CnnlabError(
                f"{self!r}: expected {self.dtype} input, got {x.dtype}; "
                f"convert it with x.astype(np.{self.dtype})"
            )
        if self.check_finite and not bool(xp_of(x).isfinite(x).all()):
            raise CnnlabError(f"{self!r}: input contains NaN or inf")


class Conv2D(Layer):
    """2-D convolution: a bank of filters slides over the image, one activation map per filter.

    Input ``(N, C_in, H, W)``, output ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H + 2·padding − kH) // stride + 1``. Weights ``W`` are ``(C_out, C_in, kH, kW)``,
    bias ``b`` is ``(C_out,)``. Each output entry is the multiply-and-sum of one filter with the
    patch of the image under it, plus the bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        *,
        init: str = "he",
        rng: np.random.Generator | int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        name = "Conv2D"
        self.in_channels = _check_int(name, "in_channels", in_channels, 1)
        self.out_channels = _check_int(name, "out_channels", out_channels, 1)
        self.kernel_size = _check_pair(name, "kernel_size", kernel_size, 1)
        self.stride = _check_int(name, "stride", stride, 1)
        self.padding = _check_int(name, "padding", padding, 0)
        if init not in ("he", "glorot"):
            raise CnnlabError(f"Conv2D: init must be 'he' or 'glorot', got {init!r}")
        self.init = init
        kh, kw = self.kernel_size
        fan_in, fan_out = self.in_channels * kh * kw, self.out_channels * kh * kw
        shape = (self.out_channels, self.in_channels, kh, kw)
        self._add_param(
            "W", init_weights(resolve_rng(rng), shape, fan_in, fan_out, init, self.dtype)
        )
        self._add_param("b", np.zeros(self.out_channels, dtype=self.dtype))
        self._cols: Any = None
        self._padded_shape: tuple[int, ...] = ()
        self._buffers: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        kh, kw = self.kernel_size
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": kh if kh == kw else [kh, kw],
            "stride": self.stride,
            "padding": self.padding,
            "init": self.init,
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise CnnlabError(
                f"{self!r}: expects input ({self.in_channels}, H, W), got {tuple(input_shape)}"
            )
        _, h, w = input_shape
        kh, kw = self.kernel_size
        p, s = self.padding, self.stride
        h_out, w_out = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
        if h_out < 1 or w_out < 1:
            raise CnnlabError(
                f"{self!r}: input {h}×{w} (padding {p}) is smaller than the {kh}×{kw} kernel"
            )
        return (self.out_channels, h_out, w_out)

    def forward(self, x: Any) -> Any:
        """``(N, C_in, H, W)`` → ``(N, C_out, H_out, W_out)``."""
        self._check_input(x, f"(N, {self.in_channels}, H, W)", 4, {1: self.in_channels})
        _, h_out, w_out = self.output_shape(x.shape[1:])
        xp = xp_of(x)
        n = x.shape[0]
        weights = self.params["W"].reshape(self.out_channels, -1)  # (C_out, C_in·kH·kW)
        out = xp.empty((n, self.out_channels, h_out * w_out), dtype=x.dtype)
        # Training keeps the whole batch's patches for backward; inference needs them only
        # briefly, so it goes through the batch in chunks and reuses one small buffer.
        chunk = max(n, 1) if self.training else max(1, EVAL_CHUNK_FLOATS // self._cols_size(x))
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            padded = self._padded(x[start:stop])
            cols = im2col(padded, self.kernel_size, self.stride, self._buffer)
            # One matrix product per sample, written straight into NCHW order.
            xp.matmul(
                weights, cols.reshape(stop - start, weights.shape[1], -1), out=out[start:stop]
            )
            # Kept for backward whenever the batch went through in one piece (always while
            # training; in evaluation for batches small enough, e.g. a saliency map).
            self._cols, self._padded_shape = (
                (cols, padded.shape) if stop - start == n else (None, ())
            )
        out += self.params["b"][:, None]
        return out.reshape(n, self.out_channels, h_out, w_out)

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, C_out, H_out, W_out)`` → dL/dx ``(N, C_in, H, W)``; fills dW and db."""
        n, c_out, h_out, w_out = grad_out.shape
        if self._cols is None or self._padded_shape[0] != n:
            raise CnnlabError(
                f"{self!r}: backward needs the forward pass of the same batch first (an "
                "evaluation-mode forward of a large batch keeps nothing for backward)"
            )
        g = grad_out.reshape(n, c_out, h_out * w_out)  # (N, C_out, H_out·W_out)
        cols = self._cols.reshape(n, -1, h_out * w_out)  # (N, C_in·kH·kW, H_out·W_out)
        self.grads["W"][...] = conv_weight_grad(g, cols, self._buffer).reshape(
            self.params["W"].shape
        )
        self.grads["b"][...] = g.sum(axis=(0, 2))
        if not self.has_input_grad:
            return None
        dx = conv_input_grad(
            g, self.params["W"], self._padded_shape, self.stride, (h_out, w_out), self._buffer
        )
        p = self.padding
        return dx[:, :, p : dx.shape[2] - p, p : dx.shape[3] - p] if p else dx

    def _cols_size(self, x: Any) -> int:
        """The number of patch entries one sample of ``x`` unfolds into."""
        kh, kw = self.kernel_size
        _, h_out, w_out = self.output_shape(x.shape[1:])
        return self.in_channels * kh * kw * h_out * w_out

    def _padded(self, x: Any) -> Any:
        """``x`` with ``padding`` zeros around H and W, in a buffer whose border stays zero."""
        p = self.padding
        if not p:
            return x
        n, c, h, w = x.shape
        padded = self._buffer("padded", (n, c, h + 2 * p, w + 2 * p), x.dtype, zero=True)
        padded[:, :, p : p + h, p : p + w] = x
        return padded

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any, zero: bool = False) -> Any:
        """A scratch array of ``shape``, kept between calls so big batches are not reallocated.

        Fresh pages cost a page fault each; reusing the same buffers every step avoids that.
        Only internal scratch lives here, never an array that is returned. A buffer keeps the
        largest batch seen and hands out its first ``shape[0]`` rows (still contiguous).
        """
        xp = xp_of(self.params["W"])
        held = self._buffers.get(name)
        if (
            held is None
            or held.shape[1:] != shape[1:]
            or held.shape[0] < shape[0]
            or held.dtype != dtype
            or xp_of(held) is not xp
        ):
            held = (xp.zeros if zero else xp.empty)(shape, dtype=dtype)
            self._buffers[name] = held
        return held[: shape[0]]


# Inference converts at most this many patch entries at a time (16 MiB of float32).
EVAL_CHUNK_FLOATS = 1 << 22


def im2col(x: Any, kernel_size: tuple[int, int], stride: int, buffer: Any = None) -> Any:
    """Every kernel-sized patch of ``x``: ``(N, C, H, W)`` → ``(N, C, kH, kW, H_out, W_out)``.

    The patches are first a strided view with no copy: entry ``[n, c, i, j, y, x]`` is
    ``x[n, c, y·stride + i, x·stride + j]``. The one contiguous copy lays them out so that
    ``cols.reshape(N, C·kH·kW, H_out·W_out)`` is, per sample, the matrix whose product with the
    ``(C_out, C·kH·kW)`` weights is the output in NCHW order. Its innermost axis runs along a
    row of ``x``, so the copy reads contiguous runs. ``buffer(name, shape, dtype)``, if given,
    supplies the array to copy into.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    kh, kw = kernel_size
    h_out, w_out = (h - kh) // stride + 1, (w - kw) // stride + 1
    s_n, s_c, s_h, s_w = x.strides
    patches = as_strided(
        xp,
        x,
        (n, c, kh, kw, h_out, w_out),
        (s_n, s_c, s_h, s_w, s_h * stride, s_w * stride),
    )  # a read-only view; building it directly is 5× cheaper than sliding_window_view
    if buffer is None:
        return xp.ascontiguousarray(patches)
    cols = buffer("cols", patches.shape, x.dtype)
    cols[...] = patches
    return cols


def _scratch(buffer: Any, xp: Any) -> Any:
    """``buffer`` (a layer's reused scratch arrays) if given, else a maker of fresh arrays."""
    return buffer or (lambda _name, shape, dtype: xp.empty(shape, dtype=dtype))


def conv_weight_grad(g: Any, cols: Any, buffer: Any = None) -> Any:
    """dL/dW of a convolution: ``Σ_n g_n @ cols_nᵀ`` → ``(C_out, C_in·kH·kW)``.

    ``g`` is ``(N, C_out, P)`` and ``cols`` ``(N, C_in·kH·kW, P)`` with ``P = H_out·W_out``.
    On small maps (P ≤ 256: every layer after the first pooling) the product is taken
    transposed, ``cols_n @ g_nᵀ`` with ``g`` copied to ``(N, P, C_out)``, because OpenBLAS runs
    about 2× faster with two contiguous operands than with a transposed one; on large maps
    that copy costs more than it saves.
    """
    xp = xp_of(g)
    n, c_out, p = g.shape
    k = cols.shape[1]
    make = _scratch(buffer, xp)
    if p <= 256:
        g_t = xp.ascontiguousarray(g.transpose(0, 2, 1))  # (N, P, C_out)
        per_sample = make("dW", (n, k, c_out), g.dtype)
        xp.matmul(cols, g_t, out=per_sample)  # (N, C_in·kH·kW, C_out)
        return per_sample.sum(axis=0).T
    per_sample = make("dW", (n, c_out, k), g.dtype)
    xp.matmul(g, cols.transpose(0, 2, 1), out=per_sample)  # (N, C_out, C_in·kH·kW)
    return per_sample.sum(axis=0)


def conv_input_grad(
    g: Any,
    weights: Any,
    input_shape: tuple[int, ...],
    stride: int,
    out_hw: tuple[int, int],
    buffer: Any = None,
) -> Any:
    """dL/dx of a convolution: ``g`` ``(N, C_out, H_out·W_out)`` → ``(N, C_in, H, W)``.

    Kernel tap (i, j) multiplied every input pixel of one strided slice of ``x`` by
    ``W[:, :, i, j]``, so its share of the gradient is ``W[:, :, i, j]ᵀ @ g``, added back onto
    that same slice. All kH·kW shares come from one matrix product over the whole batch, laid
    out with the batch axis last, ``(C_in, H, W, N)``: then every add runs along contiguous
    stretches of ``W_out·N`` values instead of short rows of ``W_out``, which is what made this
    the slowest part of training (``lenet5`` conv2: 5.3 → 3.5 ms a batch of 128). One
    transposed copy at the end returns NCHW.
    """
    xp = xp_of(g)
    n, c, h, w = input_shape
    c_out, _, kh, kw = weights.shape
    h_out, w_out = out_hw
    make = _scratch(buffer, xp)
    g_t = make("g_t", (c_out, h_out * w_out * n), g.dtype)
    g_t.reshape(c_out, h_out * w_out, n)[...] = g.transpose(1, 2, 0)  # (C_out, P, N)
    taps = xp.ascontiguousarray(weights.transpose(2, 3, 1, 0))  # (kH, kW, C_in, C_out)
    shares = make("shares", (kh * kw * c, h_out * w_out * n), g.dtype)
    xp.matmul(taps.reshape(kh * kw * c, c_out), g_t, out=shares)
    shares = shares.reshape(kh, kw, c, h_out, w_out, n)
    dx_t = xp.zeros((c, h, w, n), dtype=g.dtype)
    for i in range(kh):
        rows = slice(i, i + stride * h_out, stride)
        for j in range(kw):
            dx_t[:, rows, j : j + stride * w_out : stride] += shares[i, j]
    return xp.ascontiguousarray(dx_t.transpose(3, 0, 1, 2))  # (N, C_in, H, W)


class _Pool2D(Layer):
    """Shared shape logic of the pooling layers: non-overlapping windows unless ``stride`` says."""

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | None = None, dtype: Any = np.float32
    ) -> None:
        super().__init__(dtype)
        name = type(self).__name__
        self.kernel_size = _check_pair(name, "kernel_size", kernel_size, 1)
        self.stride = (
            self.kernel_size[0] if stride is None else _check_int(name, "stride", stride, 1)
        )
        self._input_shape: tuple[int, ...] = ()

    def config(self) -> dict[str, Any]:
        kh, kw = self.kernel_size
        stride = None if self.stride == kh else self.stride  # None: the window size
        return {"kernel_size": kh if kh == kw else [kh, kw], "stride": stride}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = input_shape
        kh, kw = self.kernel_size
        if h < kh or w < kw:
            raise CnnlabError(f"{self!r}: input {h}×{w} is smaller than the {kh}×{kw} window")
        return (c, (h - kh) // self.stride + 1, (w - kw) // self.stride + 1)

    def _taps(self, h_out: int, w_out: int) -> list[tuple[int, tuple[slice, slice]]]:
        """For each window position (i, j): its index and the strided slice of input it reads."""
        kh, kw = self.kernel_size
        s = self.stride
        return [
            (
                i * kw + j,
                (slice(i, i + s * (h_out - 1) + 1, s), slice(j, j + s * (w_out - 1) + 1, s)),
            )
            for i in range(kh)
            for j in range(kw)
        ]

    def _start(self, x: Any) -> tuple[int, int]:
        self._check_input(x, "(N, C, H, W)", 4, {})
        _, h_out, w_out = self.output_shape(x.shape[1:])
        self._input_shape = x.shape
        return h_out, w_out


class MaxPool2D(_Pool2D):
    """Max pooling: keep the largest value of each window. ``(N, C, H, W)`` → ``(N, C, H', W')``.

    The backward pass sends each gradient to the position that held the maximum (the first one,
    as PyTorch does, when several tie).
    """

    def forward(self, x: Any) -> Any:
        h_out, w_out = self._start(x)
        if self.kernel_size == (2, 2) and self.stride == 2:
            out, self._winner = maxpool_2x2(x, h_out, w_out)
            return out
        xp = xp_of(x)
        taps = self._taps(h_out, w_out)
        out = x[:, :, taps[0][1][0], taps[0][1][1]].copy()
        winner = xp.zeros(out.shape, dtype=np.uint8)  # which tap held the max, for backward
        for index, (rows, cols) in taps[1:]:
            candidate = x[:, :, rows, cols]
            better = candidate > out
            xp.copyto(out, candidate, where=better)
            xp.copyto(winner, index, where=better)
        self._winner = winner
        return out

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, C, H', W')`` → dL/dx ``(N, C, H, W)``."""
        if isinstance(self._winner, tuple):
            return maxpool_2x2_backward(grad_out, self._winner, self._input_shape)
        xp = xp_of(grad_out)
        dx = xp.zeros(self._input_shape, dtype=grad_out.dtype)
        h_out, w_out = grad_out.shape[2:]
        for index, (rows, cols) in self._taps(h_out, w_out):
            dx[:, :, rows, cols] += grad_out * (self._winner == index)  # grad where it won
        return dx

    def winner_maps(self) -> tuple[Any, ...]:
        """Who won each window in the last forward pass: the 2×2 tournament's two boolean maps,
        or, for other windows, one map of the winning tap's index."""
        return self._winner if isinstance(self._winner, tuple) else (self._winner,)


def maxpool_2x2(x: Any, h_out: int, w_out: int) -> tuple[Any, tuple[Any, Any]]:
    """2×2 max pooling with stride 2, the common case, as a two-round tournament.

    ``x`` is ``(N, C, H, W)``; returns the ``(N, C, H_out, W_out)`` maxima and two boolean maps
    saying who won: ``right_wins`` ``(N, C, 2·H_out, W_out)``, the right column of each row of
    a window, and ``bottom_wins`` ``(N, C, H_out, W_out)``, the bottom row. Round one compares
    the two columns of every row in one pass over the image; round two compares the winners of
    each pair of rows. Only a strict win counts, so a tie goes to the first value in reading
    order, as in PyTorch and the general scan of ``MaxPool2D``. Four elementwise passes replace
    the general path's masked copies, which take 3× as long.
    """
    xp = xp_of(x)
    # An odd last row or column is never pooled. Cropping it leaves rows with a gap between
    # them, and NumPy then loops over every short row; one copy makes the passes below run
    # over the whole array at once (pool2 of `simple`, 11×11 maps: 2× faster).
    x = xp.ascontiguousarray(x[:, :, : 2 * h_out, : 2 * w_out])
    left, right = x[:, :, :, 0::2], x[:, :, :, 1::2]
    right_wins = right > left  # (N, C, 2·H_out, W_out)
    row_max = xp.maximum(left, right)
    top, bottom = row_max[:, :, 0::2], row_max[:, :, 1::2]
    bottom_wins = bottom > top  # (N, C, H_out, W_out)
    return xp.maximum(top, bottom), (right_wins, bottom_wins)


def maxpool_2x2_backward(
    grad_out: Any, winners: tuple[Any, Any], input_shape: tuple[int, ...]
) -> Any:
    """Route each gradient of ``(N, C, H_out, W_out)`` to its window's winner: ``(N, C, H, W)``.

    The tournament played backwards: round two sends each gradient to the winning row of its
    window (0 to the other), round one sends that to the winning column. Windows do not
    overlap, so the writes fill the input (only an odd last row or column is left out, and it
    stays 0).
    """
    xp = xp_of(grad_out)
    right_wins, bottom_wins = winners
    n, c, h, w = input_shape
    h_out, w_out = grad_out.shape[2:]
    # grad · mask is grad where that row (column) won, else ±0.
    rows = xp.empty((n, c, 2 * h_out, w_out), dtype=grad_out.dtype)
    xp.multiply(grad_out, ~bottom_wins, out=rows[:, :, 0::2])
    xp.multiply(grad_out, bottom_wins, out=rows[:, :, 1::2])
    pooled = xp.empty((n, c, 2 * h_out, 2 * w_out), dtype=grad_out.dtype)
    xp.multiply(rows, ~right_wins, out=pooled[:, :, :, 0::2])
    xp.multiply(rows, right_wins, out=pooled[:, :, :, 1::2])
    if (h, w) == pooled.shape[2:]:
        return pooled
    dx = xp.zeros(input_shape, dtype=grad_out.dtype)  # the unpooled odd row/column gets 0
    dx[:, :, : 2 * h_out, : 2 * w_out] = pooled
    return dx


class AvgPool2D(_Pool2D):
    """Average pooling: the mean of each window. ``(N, C, H, W)`` → ``(N, C, H', W')``."""

    def forward(self, x: Any) -> Any:
        h_out, w_out = self._start(x)
        taps = self._taps(h_out, w_out)
        out = x[:, :, taps[0][1][0], taps[0][1][1]].copy()
        for _, (rows, cols) in taps[1:]:
            out += x[:, :, rows, cols]
        return out / len(taps)

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, C, H', W')`` → dL/dx ``(N, C, H, W)``: each input gets 1/(kH·kW) of it."""
        xp = xp_of(grad_out)
        dx = xp.zeros(self._input_shape, dtype=grad_out.dtype)
        h_out, w_out = grad_out.shape[2:]
        taps = self._taps(h_out, w_out)
        share = grad_out / len(taps)
        for _, (rows, cols) in taps:
            dx[:, :, rows, cols] += share
        return dx


class _Elementwise(Layer):
    """An activation applied to every entry; input and output have any shape ``(N, ...)``."""

    def _check(self, x: Any) -> None:
        if not hasattr(x, "ndim") or x.ndim < 1:
            raise CnnlabError(f"{self!r}: expected an array of shape (N, ...), got {type(x)}")
        self._check_input(x, "(N, ...)", x.ndim, {})


class ReLU(_Elementwise):
    """max(0, x). Its gradient is 1 where the input was positive, else 0: no vanishing."""

    def forward(self, x: Any) -> Any:
        self._check(x)
        out = xp_of(x).maximum(x, 0)
        self._out = out
        return out

    def backward(self, grad_out: Any) -> Any:
        # grad · (out > 0): 0 where the unit was off. Multiplying by the mask is 7× faster
        # than np.where(mask, grad, 0), whose scalar branch takes NumPy's slow path.
        return grad_out * (self._out > 0)


class Sigmoid(_Elementwise):
    """1 / (1 + e^−x). Its gradient s(1 − s) is at most 1/4 and vanishes for large |x|."""

    def forward(self, x: Any) -> Any:
        self._check(x)
        xp = xp_of(x)
        out = 0.5 * (1.0 + xp.tanh(0.5 * x))  # the same function, stable for any x
        self._out = out
        return out

    def backward(self, grad_out: Any) -> Any:
        return grad_out * self._out * (1.0 - self._out)


class Tanh(_Elementwise):
    """tanh(x). Its gradient 1 − tanh² vanishes for large |x|."""

    def forward(self, x: Any) -> Any:
        self._check(x)
        out = xp_of(x).tanh(x)
        self._out = out
        return out

    def backward(self, grad_out: Any) -> Any:
        return grad_out * (1.0 - self._out * self._out)


class Softmax(Layer):
    """Turn scores into probabilities over the last axis. ``(N, K)`` → ``(N, K)``, rows sum to 1."""

    def forward(self, x: Any) -> Any:
        self._check_input(x, "(N, K)", 2, {})
        xp = xp_of(x)
        e = xp.exp(x - x.max(axis=1, keepdims=True))
        out = e / e.sum(axis=1, keepdims=True)
        self._out = out
        return out

    def backward(self, grad_out: Any) -> Any:
        s = self._out
        return s * (grad_out - (grad_out * s).sum(axis=1, keepdims=True))


class Flatten(Layer):
    """Flatten all axes but the batch axis: ``(N, C, H, W)`` → ``(N, C·H·W)``."""

    def forward(self, x: Any) -> Any:
        if not hasattr(x, "ndim") or x.ndim < 2:
            raise CnnlabError(
                f"{self!r}: expected input of shape (N, ...), got {getattr(x, 'shape', type(x))}"
            )
        self._check_input(x, "(N, ...)", x.ndim, {})
        self._input_shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C·H·W)

    def backward(self, grad_out: Any) -> Any:
        return grad_out.reshape(self._input_shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)


class Dense(Layer):
    """Fully connected layer: ``y = x Wᵀ + b``. ``(N, in_features)`` → ``(N, out_features)``.

    Weights ``W`` are ``(out_features, in_features)``, bias ``b`` is ``(out_features,)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "he",
        rng: np.random.Generator | int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        self.in_features = _check_int("Dense", "in_features", in_features, 1)
        self.out_features = _check_int("Dense", "out_features", out_features, 1)
        if init not in ("he", "glorot"):
            raise CnnlabError(f"Dense: init must be 'he' or 'glorot', got {init!r}")
        self.init = init
        shape = (self.out_features, self.in_features)
        weights = init_weights(
            resolve_rng(rng), shape, self.in_features, self.out_features, init, self.dtype
        )
        self._add_param("W", weights)
        self._add_param("b", np.zeros(self.out_features, dtype=self.dtype))

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "init": self.init,
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(input_shape) != (self.in_features,):
            raise CnnlabError(
                f"{self!r}: expects {self.in_features} input features, "
                f"got shape {tuple(input_shape)}"
            )
        return (self.out_features,)

    def forward(self, x: Any) -> Any:
        """``(N, in_features)`` → ``(N, out_features)``."""
        self._check_input(x, f"(N, {self.in_features})", 2, {1: self.in_features})
        self._x = x
        return x @ self.params["W"].T + self.params["b"]

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, out_features)`` → dL/dx ``(N, in_features)``; fills dW and db."""
        self.grads["W"][...] = grad_out.T @ self._x
        self.grads["b"][...] = grad_out.sum(axis=0)
        if not self.has_input_grad:
            return None
        return grad_out @ self.params["W"]


class Dropout(Layer):
    """Zero each input with probability ``p`` while training, scaling the rest by 1/(1 − p).

    In evaluation mode it passes the input through unchanged. Shape ``(N, ...)`` is preserved.
    """

    def __init__(
        self,
        p: float = 0.5,
        *,
        rng: np.random.Generator | int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
            raise CnnlabError(f"Dropout: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        # A private generator, so dropout masks do not depend on how many layers were built.
        self.rng = np.random.default_rng(resolve_rng(rng).integers(2**63))

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, x: Any) -> Any:
        if not hasattr(x, "ndim") or x.ndim < 1:
            raise CnnlabError(f"{self!r}: expected an array of shape (N, ...), got {type(x)}")
        self._check_input(x, "(N, ...)", x.ndim, {})
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        xp = xp_of(x)
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        self._mask = xp.asarray(keep.astype(self.dtype) / self.dtype.type(1.0 - self.p))
        return x * self._mask

    def backward(self, grad_out: Any) -> Any:
        return grad_out if self._mask is None else grad_out * self._mask


class _BatchNorm(Layer):
    """Normalise each feature over the batch, then scale by ``W`` (γ) and shift by ``b`` (β).

    Training uses the batch's mean and (biased) variance and updates the running statistics
    (unbiased variance, ``momentum`` 0.1, as PyTorch); evaluation uses the running statistics.
    """

    axes: tuple[int, ...] = ()
    expected = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        name = type(self).__name__
        self.num_features = _check_int(name, "num_features", num_features, 1)
        if not isinstance(eps, int | float) or not eps > 0:
            raise CnnlabError(f"{name}: eps must be > 0, got {eps!r}")
        if not isinstance(momentum, int | float) or not 0.0 <= momentum <= 1.0:
            raise CnnlabError(f"{name}: momentum must be in [0, 1], got {momentum!r}")
        self.eps, self.momentum = float(eps), float(momentum)
        self._add_param("W", np.ones(self.num_features, dtype=self.dtype))
        self._add_param("b", np.zeros(self.num_features, dtype=self.dtype))
        self.buffers["running_mean"] = np.zeros(self.num_features, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(self.num_features, dtype=self.dtype)

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != len(self.axes) or input_shape[0] != self.num_features:
            expected = self.expected.format(self.num_features).replace("N, ", "")
            raise CnnlabError(f"{self!r}: expects input {expected}, got {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: Any) -> Any:
        expected = self.expected.format(self.num_features)
        self._check_input(x, expected, len(self.axes) + 1, {1: self.num_features})
        xp = xp_of(x)
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)  # (N, C, P): P positions per sample (1 for BatchNorm1D)
        count = x3.shape[0] * x3.shape[2]
        if self.training:
            # einsum sums over N and P in one pass; reductions over (0, 2) take 3-8× longer.
            mean = xp.einsum("ncp->c", x3) / count
            centered = x3 - mean[:, None]
            var = xp.einsum("ncp,ncp->c", centered, centered) / count
            m = self.momentum
            unbiased = var * (count / max(count - 1, 1))
            self.buffers["running_mean"][...] = (1 - m) * self.buffers["running_mean"] + m * mean
            self.buffers["running_var"][...] = (1 - m) * self.buffers["running_var"] + m * unbiased
        else:
            var = self.buffers["running_var"]
            centered = x3 - self.buffers["running_mean"][:, None]
        inv_std = (1.0 / xp.sqrt(var + self.dtype.type(self.eps))).astype(self.dtype)
        x_hat = xp.multiply(centered, inv_std[:, None], out=centered)  # (N, C, P)
        self._x_hat, self._inv_std = x_hat, inv_std
        out = x_hat * self.params["W"][:, None]
        out += self.params["b"][:, None]
        return out.reshape(x.shape)

    def backward(self, grad_out: Any) -> Any:
        xp = xp_of(grad_out)
        x_hat, inv_std = self._x_hat, self._inv_std
        g = grad_out.reshape(x_hat.shape)  # (N, C, P)
        self.grads["W"][...] = xp.einsum("ncp,ncp->c", g, x_hat)
        self.grads["b"][...] = xp.einsum("ncp->c", g)
        scale = (self.params["W"] * inv_std)[:, None]
        if not self.training:
            return (g * scale).reshape(grad_out.shape)
        # The batch statistics depend on every input, hence the two mean terms:
        # dx = γ/σ · (g − mean(g) − x̂ · mean(g·x̂)), means over N and P.
        count = x_hat.shape[0] * x_hat.shape[2]
        dx = x_hat * (self.grads["W"] / count)[:, None]
        xp.subtract(g, dx, out=dx)
        dx -= (self.grads["b"] / count)[:, None]
        dx *= scale
        return dx.reshape(grad_out.shape)


class BatchNorm2D(_BatchNorm):
    """Batch normalisation per channel of ``(N, C, H, W)``; output has the same shape."""

    axes = (0, 2, 3)
    expected = "(N, {}, H, W)"


class BatchNorm1D(_BatchNorm):
    """Batch normalisation per feature of ``(N, F)``; output has the same shape."""

    axes = (0,)
    expected = "(N, {})"


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Conv2D,
        MaxPool2D,
        AvgPool2D,
        ReLU,
        Sigmoid,
        Tanh,
        Softmax,
        Flatten,
        Dense,
        Dropout,
        BatchNorm2D,
        BatchNorm1D,
    )
}
