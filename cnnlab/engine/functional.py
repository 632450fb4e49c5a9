"""The maths of the layers as plain functions: arrays in, arrays out, no state.

``cnnlab.engine.layers`` holds the classes (parameters, validation, what to cache between the
passes); they call these, as ``torch.nn`` calls ``torch.nn.functional``. Shapes follow PyTorch:
images NCHW, conv weights ``(C_out, C_in, kH, kW)``, dense weights ``(out, in)``. Each
``*_backward`` takes dL/d(output) and what its forward returned for it, and gives dL/d(input)
(and the parameter gradients where there are any).

Nothing here loops over samples or pixels: convolution is one matrix product over an im2col
view, pooling takes the elementwise maximum of a few strided slices. ``buffer(name, shape,
dtype)``, where a function takes one, supplies reused scratch arrays (see ``Conv2D._buffer``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnlab.engine.backend import as_strided, xp_of

# -- initialisation ------------------------------------------------------------------------------


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


# -- convolution -----------------------------------------------------------------------------------


def _scratch(buffer: Any, xp: Any) -> Any:
    """``buffer`` (a layer's reused scratch arrays) if given, else a maker of fresh arrays."""
    return buffer or (
        lambda _name, shape, dtype, zero=False: (xp.zeros if zero else xp.empty)(shape, dtype=dtype)
    )


def conv_output_size(hw: tuple[int, int], kernel: tuple[int, int], stride: int, padding: int):
    """``(H_out, W_out)`` of a convolution or pooling window over an ``(H, W)`` map."""
    (h, w), (kh, kw) = hw, kernel
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def pad(x: Any, padding: int, buffer: Any = None) -> Any:
    """``x`` ``(N, C, H, W)`` with ``padding`` zeros around H and W.

    With a ``buffer``, the padded array is a reused scratch array whose border stays zero, so
    only the interior is written each call.
    """
    if not padding:
        return x
    n, c, h, w = x.shape
    p = padding
    make = _scratch(buffer, xp_of(x))
    padded = make("padded", (n, c, h + 2 * p, w + 2 * p), x.dtype, zero=True)
    padded[:, :, p : p + h, p : p + w] = x
    return padded


def im2col(x: Any, kernel_size: tuple[int, int], stride: int, buffer: Any = None) -> Any:
    """Every kernel-sized patch of ``x``: ``(N, C, H, W)`` → ``(N, C, kH, kW, H_out, W_out)``.

    The patches are first a strided view with no copy: entry ``[n, c, i, j, y, x]`` is
    ``x[n, c, y·stride + i, x·stride + j]``. The one contiguous copy lays them out so that
    ``cols.reshape(N, C·kH·kW, H_out·W_out)`` is, per sample, the matrix whose product with the
    ``(C_out, C·kH·kW)`` weights is the output in NCHW order. Its innermost axis runs along a
    row of ``x``, so the copy reads contiguous runs.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    kh, kw = kernel_size
    h_out, w_out = conv_output_size((h, w), kernel_size, stride, 0)
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


def conv2d(
    x: Any,
    weights: Any,
    bias: Any,
    stride: int,
    padding: int,
    chunk: int | None = None,
    buffer: Any = None,
) -> tuple[Any, Any, tuple[int, ...]]:
    """Convolution ``(N, C_in, H, W)`` → ``(N, C_out, H_out, W_out)``, plus what backward needs.

    Returns ``(out, cols, padded_shape)``: the patches of the padded input and its shape, or
    ``(out, None, ())`` when the batch went through in chunks of ``chunk`` samples (inference
    on a large batch, which then needs only one chunk's patches at a time).
    """
    xp = xp_of(x)
    n = x.shape[0]
    c_out, _, kh, kw = weights.shape
    h_out, w_out = conv_output_size(x.shape[2:], (kh, kw), stride, padding)
    flat = weights.reshape(c_out, -1)  # (C_out, C_in·kH·kW)
    out = xp.empty((n, c_out, h_out * w_out), dtype=x.dtype)
    chunk = chunk or max(n, 1)
    kept: tuple[Any, tuple[int, ...]] = (None, ())
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        padded = pad(x[start:stop], padding, buffer)
        cols = im2col(padded, (kh, kw), stride, buffer)
        # One matrix product per sample, written straight into NCHW order.
        xp.matmul(flat, cols.reshape(stop - start, flat.shape[1], -1), out=out[start:stop])
        kept = (cols, padded.shape) if stop - start == n else (None, ())
    out += bias[:, None]
    return out.reshape(n, c_out, h_out, w_out), kept[0], kept[1]


def conv2d_backward(
    grad_out: Any,
    cols: Any,
    weights: Any,
    padded_shape: tuple[int, ...],
    stride: int,
    padding: int,
    input_grad: bool = True,
    buffer: Any = None,
) -> tuple[Any, Any, Any]:
    """dL/dy ``(N, C_out, H_out, W_out)`` → ``(dL/dx or None, dL/dW, dL/db)``.

    ``cols`` and ``padded_shape`` are what ``conv2d`` returned for the same batch.
    """
    n, c_out, h_out, w_out = grad_out.shape
    g = grad_out.reshape(n, c_out, h_out * w_out)  # (N, C_out, H_out·W_out)
    cols = cols.reshape(n, -1, h_out * w_out)  # (N, C_in·kH·kW, H_out·W_out)
    d_weights = conv_weight_grad(g, cols, buffer).reshape(weights.shape)
    d_bias = conv_bias_grad(g)
    if not input_grad:
        return None, d_weights, d_bias
    dx = conv_input_grad(g, weights, padded_shape, stride, (h_out, w_out), buffer)
    p = padding
    return (dx[:, :, p : dx.shape[2] - p, p : dx.shape[3] - p] if p else dx), d_weights, d_bias


def conv_bias_grad(g: Any) -> Any:
    """dL/db of a convolution: ``g`` ``(N, C_out, P)`` summed over N and P → ``(C_out,)``."""
    # einsum sums over N and P in one pass, 3× faster than g.sum(axis=(0, 2)) (simple conv1,
    # batch 128: 0.50 → 0.15 ms), as accurate in float32 (both 3e-7 of the float64 sum).
    return xp_of(g).einsum("ncp->c", g)


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


# -- pooling -------------------------------------------------------------------------------------


def pool_taps(
    kernel_size: tuple[int, int], stride: int, out_hw: tuple[int, int]
) -> list[tuple[slice, slice]]:
    """For each window position (i, j), in reading order: the strided slice of input it reads."""
    (kh, kw), (h_out, w_out), s = kernel_size, out_hw, stride
    return [
        (slice(i, i + s * (h_out - 1) + 1, s), slice(j, j + s * (w_out - 1) + 1, s))
        for i in range(kh)
        for j in range(kw)
    ]


def max_pool2d(x: Any, kernel_size: tuple[int, int], stride: int) -> tuple[Any, tuple[Any, ...]]:
    """Max pooling ``(N, C, H, W)`` → ``(N, C, H', W')`` and the maps of who won each window.

    2×2 windows with stride 2 (the common case) take the tournament of ``max_pool_2x2``, which
    gives two boolean maps; other windows scan their taps and give one map of the winning
    tap's index. Either way a tie goes to the first value in reading order, as in PyTorch.
    """
    h_out, w_out = conv_output_size(x.shape[2:], kernel_size, stride, 0)
    if kernel_size == (2, 2) and stride == 2:
        return max_pool_2x2(x, h_out, w_out)
    xp = xp_of(x)
    taps = pool_taps(kernel_size, stride, (h_out, w_out))
    out = x[:, :, taps[0][0], taps[0][1]].copy()
    # Which tap held the max, for backward: a byte while the taps fit one (kernels to 16×16).
    index_type = np.uint8 if len(taps) <= 256 else np.uint16
    winner = xp.zeros(out.shape, dtype=index_type)
    for index, (rows, cols) in enumerate(taps[1:], start=1):
        candidate = x[:, :, rows, cols]
        better = candidate > out
        xp.copyto(out, candidate, where=better)
        xp.copyto(winner, index, where=better)
    return out, (winner,)


def max_pool2d_backward(
    grad_out: Any,
    winners: tuple[Any, ...],
    input_shape: tuple[int, ...],
    kernel_size: tuple[int, int],
    stride: int,
) -> Any:
    """dL/dy ``(N, C, H', W')`` → dL/dx ``(N, C, H, W)``: each gradient goes to its winner."""
    if len(winners) == 2:
        return max_pool_2x2_backward(grad_out, winners, input_shape)
    xp = xp_of(grad_out)
    dx = xp.zeros(input_shape, dtype=grad_out.dtype)
    for index, (rows, cols) in enumerate(pool_taps(kernel_size, stride, grad_out.shape[2:])):
        dx[:, :, rows, cols] += grad_out * (winners[0] == index)  # grad where it won
    return dx


def max_pool_2x2(x: Any, h_out: int, w_out: int) -> tuple[Any, tuple[Any, Any]]:
    """2×2 max pooling with stride 2, the common case, as a two-round tournament.

    ``x`` is ``(N, C, H, W)``; returns the ``(N, C, H_out, W_out)`` maxima and two boolean maps
    saying who won: ``right_wins`` ``(N, C, 2·H_out, W_out)``, the right column of each row of
    a window, and ``bottom_wins`` ``(N, C, H_out, W_out)``, the bottom row. Round one compares
    the two columns of every row in one pass over the image; round two compares the winners of
    each pair of rows. Only a strict win counts, so a tie goes to the first value in reading
    order, as in PyTorch and the general scan of ``max_pool2d``. Four elementwise passes replace
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


def max_pool_2x2_backward(
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


def avg_pool2d(x: Any, kernel_size: tuple[int, int], stride: int) -> Any:
    """Average pooling: the mean of each window. ``(N, C, H, W)`` → ``(N, C, H', W')``."""
    taps = pool_taps(kernel_size, stride, conv_output_size(x.shape[2:], kernel_size, stride, 0))
    out = x[:, :, taps[0][0], taps[0][1]].copy()
    for rows, cols in taps[1:]:
        out += x[:, :, rows, cols]
    return out / len(taps)


def avg_pool2d_backward(
    grad_out: Any, input_shape: tuple[int, ...], kernel_size: tuple[int, int], stride: int
) -> Any:
    """dL/dy ``(N, C, H', W')`` → dL/dx ``(N, C, H, W)``: each input gets 1/(kH·kW) of it."""
    xp = xp_of(grad_out)
    dx = xp.zeros(input_shape, dtype=grad_out.dtype)
    taps = pool_taps(kernel_size, stride, grad_out.shape[2:])
    share = grad_out / len(taps)
    for rows, cols in taps:
        dx[:, :, rows, cols] += share
    return dx


# -- activations (any shape; backward takes the forward's output) --------------------------------


def relu(x: Any) -> Any:
    """max(0, x)."""
    return xp_of(x).maximum(x, 0)


def relu_backward(grad_out: Any, out: Any) -> Any:
    """grad · (out > 0): 0 where the unit was off."""
    # Multiplying by the mask is 7× faster than np.where(mask, grad, 0), whose scalar branch
    # takes NumPy's slow path.
    return grad_out * (out > 0)


def sigmoid(x: Any) -> Any:
    """1 / (1 + e^−x), computed as ½(1 + tanh(x/2)): the same function, stable for any x."""
    return 0.5 * (1.0 + xp_of(x).tanh(0.5 * x))


def sigmoid_backward(grad_out: Any, out: Any) -> Any:
    """grad · s(1 − s)."""
    return grad_out * out * (1.0 - out)


def tanh(x: Any) -> Any:
    return xp_of(x).tanh(x)


def tanh_backward(grad_out: Any, out: Any) -> Any:
    """grad · (1 − tanh²)."""
    return grad_out * (1.0 - out * out)


def softmax(x: Any) -> Any:
    """Probabilities over the last axis of ``(N, K)`` scores; the max is subtracted first."""
    xp = xp_of(x)
    e = xp.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(grad_out: Any, out: Any) -> Any:
    """``s · (g − Σ g·s)`` per row: the softmax Jacobian times the gradient."""
    return out * (grad_out - (grad_out * out).sum(axis=1, keepdims=True))


# -- dense, dropout, batch norm ------------------------------------------------------------------


def dense(x: Any, weights: Any, bias: Any) -> Any:
    """``x Wᵀ + b``: ``(N, in)`` → ``(N, out)``."""
    return x @ weights.T + bias


def dense_backward(
    grad_out: Any, x: Any, weights: Any, input_grad: bool = True
) -> tuple[Any, Any, Any]:
    """dL/dy ``(N, out)`` → ``(dL/dx (N, in) or None, dL/dW, dL/db)``."""
    dx = grad_out @ weights if input_grad else None
    return dx, grad_out.T @ x, grad_out.sum(axis=0)


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype: Any) -> Any:
    """Inverted dropout's multiplier: 0 with probability ``p``, else 1/(1 − p) (NumPy array)."""
    dtype = np.dtype(dtype)
    keep = rng.random(shape, dtype=np.float32) >= p
    return keep.astype(dtype) / dtype.type(1.0 - p)


def batch_norm(
    x3: Any,
    weight: Any,
    bias: Any,
    running_mean: Any,
    running_var: Any,
    *,
    training: bool,
    momentum: float,
    eps: float,
    shard: Any = None,
) -> tuple[Any, Any, Any]:
    """Normalise ``x3`` ``(N, C, P)`` per channel over N and P, then scale and shift.

    Training uses the batch's mean and (biased) variance and updates ``running_mean`` and
    ``running_var`` in place (unbiased variance, as PyTorch); evaluation uses them instead.
    When ``x3`` is one slice of a batch split over threads, ``shard``
    (``cnnlab.engine.parallel.Shard``) adds the slices' sums, so the statistics are the whole
    batch's, and only the first slice updates the running statistics.
    Returns ``(out, x_hat, inv_std)``, the last two for ``batch_norm_backward``.
    """
    xp = xp_of(x3)
    count = _batch_rows(x3, shard) * x3.shape[2]
    if training:
        # einsum sums over N and P in one pass; reductions over (0, 2) take 3-8× longer.
        mean = _whole_batch(xp.einsum("ncp->c", x3), shard) / count
        centered = x3 - mean[:, None]
        var = _whole_batch(xp.einsum("ncp,ncp->c", centered, centered), shard) / count
        m = momentum
        unbiased = var * (count / max(count - 1, 1))
        if shard is None or shard.index == 0:
            running_mean[...] = (1 - m) * running_mean + m * mean
            running_var[...] = (1 - m) * running_var + m * unbiased
    else:
        var = running_var
        centered = x3 - running_mean[:, None]
    inv_std = (1.0 / xp.sqrt(var + x3.dtype.type(eps))).astype(x3.dtype)
    x_hat = xp.multiply(centered, inv_std[:, None], out=centered)  # (N, C, P)
    out = x_hat * weight[:, None]
    out += bias[:, None]
    return out, x_hat, inv_std


def batch_norm_backward(
    g: Any, x_hat: Any, inv_std: Any, weight: Any, *, training: bool, shard: Any = None
) -> tuple[Any, Any, Any]:
    """dL/dy ``(N, C, P)`` → ``(dL/dx (N, C, P), dL/dγ, dL/dβ)``.

    With a ``shard`` (see ``batch_norm``) dL/dγ and dL/dβ are this slice's shares; dL/dx
    uses the whole batch's.
    """
    xp = xp_of(g)
    d_weight = xp.einsum("ncp,ncp->c", g, x_hat)
    d_bias = xp.einsum("ncp->c", g)
    scale = (weight * inv_std)[:, None]
    if not training:
        return g * scale, d_weight, d_bias
    # The batch statistics depend on every input, hence the two mean terms:
    # dx = γ/σ · (g − mean(g) − x̂ · mean(g·x̂)), means over N and P.
    count = _batch_rows(x_hat, shard) * x_hat.shape[2]
    sums = (d_weight, d_bias) if shard is None else shard.sum(xp.stack([d_weight, d_bias]))
    dx = x_hat * (sums[0] / count)[:, None]
    xp.subtract(g, dx, out=dx)
    dx -= (sums[1] / count)[:, None]
    dx *= scale
    return dx, d_weight, d_bias


def _batch_rows(x3: Any, shard: Any) -> int:
    """How many rows the whole batch has: ``x3``'s own, or all the shards' together."""
    return x3.shape[0] if shard is None else shard.rows


def _whole_batch(partial: Any, shard: Any) -> Any:
    """A per-channel sum over this slice's rows → the sum over the whole batch."""
    return partial if shard is None else shard.sum(partial)


# -- residual blocks and global pooling ---------------------------------------------------------


def residual_join(body: Any, shortcut: Any, relu_after: bool) -> Any:
    """A residual block's output: ``body + shortcut``, through a ReLU when ``relu_after``.

    Both are ``(N, ...)`` of one shape: what the block's main path and its shortcut made of
    the same input.
    """
    out = body + shortcut
    return relu(out) if relu_after else out


def residual_join_backward(grad_out: Any, out: Any, relu_after: bool) -> Any:
    """dL/d(body + shortcut) from dL/dy and the join's output; both branches receive it whole."""
    return relu_backward(grad_out, out) if relu_after else grad_out


def global_avg_pool2d(x: Any) -> Any:
    """The mean of each channel over the whole map: ``(N, C, H, W)`` → ``(N, C)``."""
    return x.mean(axis=(2, 3), dtype=x.dtype)


def global_avg_pool2d_backward(grad_out: Any, input_shape: tuple[int, ...]) -> Any:
    """dL/dy ``(N, C)`` → dL/dx ``(N, C, H, W)``: every position gets 1/(H·W) of its channel's."""
    h, w = input_shape[2:]
    share = grad_out / (h * w)
    return xp_of(grad_out).broadcast_to(share[:, :, None, None], input_shape).copy()
