"""The layers of a convolutional network: thin classes over the maths in ``functional``.

Conventions follow PyTorch: images are NCHW, conv weights are ``(C_out, C_in, kH, kW)`` and dense
weights ``(out_features, in_features)``. Every layer

- validates its arguments in ``__init__`` and echoes a bad value in the error;
- holds ``params`` and ``grads``, dicts of arrays with the same keys and shapes;
- ``forward(x)`` returns the output and caches only what ``backward`` needs;
- ``backward(grad_out)`` returns dL/dx and writes the parameter gradients into ``grads``.

The arithmetic itself lives in ``cnnlab.engine.functional``, as plain functions.
"""

from __future__ import annotations

import copy
import inspect
import math
import threading
from typing import Any

import numpy as np

from cnnlab.engine import compiled, validate
from cnnlab.engine import functional as F
from cnnlab.engine.backend import xp_of
from cnnlab.engine.errors import CnnlabError, NonFiniteError
from cnnlab.engine.rng import resolve_rng

# This module holds all twelve layer classes (about 580 lines, over the ~500 aimed for) so that
# the layer API, LAYER_TYPES and the file format's type names stay in one place; the maths is in
# functional.py and what is left here is each layer's validation, state and caching.

# Inference converts at most this many patch entries at a time (16 MiB of float32).
EVAL_CHUNK_FLOATS = 1 << 22


class Layer:
    """Base class: parameters, their gradients, the mode switches and input validation.

    ``buffers`` holds state that is saved with the model but not trained (BatchNorm's running
    statistics). ``training`` is the mode (``train()``/``eval()`` set it). Two switches let a
    container skip work: ``set_input_check(False)`` stops ``forward`` from scanning its input
    for NaN and inf (``Sequential`` checks its own input once), ``set_input_grad(False)`` lets
    ``backward`` return None instead of dL/dx (nothing needs it before the first layer).
    """

    def __init__(self, dtype: Any = np.float32) -> None:
        self.dtype = validate.float_dtype(type(self).__name__, dtype)
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.training = True
        self._input_check = True
        self._input_grad = True
        # Set on a replica that sees one slice of a batch split over threads
        # (``cnnlab.engine.parallel.Shard``); None when the layer sees the whole batch.
        self.shard: Any = None

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any) -> Any:
        raise NotImplementedError

    def train(self, mode: bool = True) -> Layer:
        """Training mode (or evaluation mode with ``mode=False``); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Evaluation mode: dropout passes through, batch norm uses running statistics."""
        return self.train(False)

    def set_input_check(self, enabled: bool) -> None:
        """Whether ``forward`` refuses an input holding NaN or inf (on by default)."""
        self._input_check = bool(enabled)

    def set_input_grad(self, enabled: bool) -> None:
        """Whether ``backward`` computes dL/dx (on by default); off, it returns None."""
        self._input_grad = bool(enabled)

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

    def replica(self) -> Layer:
        """A copy for another thread: the same ``params`` and ``buffers`` (the very arrays),
        its own ``grads`` and caches."""
        twin = copy.copy(self)
        twin.grads = {key: np.zeros_like(value) for key, value in self.grads.items()}
        return twin

    def astype(self, dtype: Any) -> Layer:
        """Convert parameters, gradients and buffers to ``dtype`` in place; returns self."""
        self.dtype = validate.float_dtype(type(self).__name__, dtype)
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

    def _check_input(self, x: Any, expected: str, ndim: int | None, sizes: dict[int, int]) -> None:
        """Raise a CnnlabError naming this layer unless ``x`` has the expected rank and sizes.

        ``ndim`` None accepts any rank of at least 1 (activations, dropout); ``sizes`` maps an
        axis to the size it must have, e.g. ``{1: in_channels}``.
        """
        if not hasattr(x, "ndim") or not hasattr(x, "dtype") or x.ndim < 1:
            raise CnnlabError(f"{self!r}: expected an array of shape {expected}, got {type(x)}")
        if (ndim is not None and x.ndim != ndim) or any(
            x.shape[axis] != size for axis, size in sizes.items()
        ):
            raise CnnlabError(f"{self!r}: expected input of shape {expected}, got {x.shape}")
        if x.dtype != self.dtype:
            raise CnnlabError(
                f"{self!r}: expected {self.dtype} input, got {x.dtype}; "
                f"convert it with x.astype(np.{self.dtype})"
            )
        if self._input_check and not bool(xp_of(x).isfinite(x).all()):
            raise NonFiniteError(f"{self!r}: input contains NaN or inf")


def _init_choice(who: str, init: Any) -> str:
    return validate.choice(who, "init", init, ("he", "glorot"))


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
        self.in_channels = validate.integer(name, "in_channels", in_channels, 1)
        self.out_channels = validate.integer(name, "out_channels", out_channels, 1)
        self.kernel_size = validate.pair(name, "kernel_size", kernel_size, 1)
        self.stride = validate.integer(name, "stride", stride, 1)
        self.padding = validate.integer(name, "padding", padding, 0)
        self.init = _init_choice(name, init)
        kh, kw = self.kernel_size
        fan_in, fan_out = self.in_channels * kh * kw, self.out_channels * kh * kw
        shape = (self.out_channels, self.in_channels, kh, kw)
        self._add_param(
            "W", F.init_weights(resolve_rng(rng), shape, fan_in, fan_out, init, self.dtype)
        )
        self._add_param("b", np.zeros(self.out_channels, dtype=self.dtype))
        self._cols: Any = None
        self._padded_shape: tuple[int, ...] = ()
        # Scratch arrays are per thread: the web lab predicts from several threads with one
        # model, and shared ones gave 20 of 1,600 concurrent predictions another input's answer.
        self._scratch = threading.local()

    def __getstate__(self) -> dict[str, Any]:  # copies (a replica, deepcopy) get fresh scratch
        return {k: v for k, v in self.__dict__.items() if k != "_scratch"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._scratch = threading.local()

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
        h_out, w_out = F.conv_output_size((h, w), self.kernel_size, self.stride, self.padding)
        if h_out < 1 or w_out < 1:
            kh, kw = self.kernel_size
            raise CnnlabError(
                f"{self!r}: input {h}×{w} (padding {self.padding}) is smaller than the "
                f"{kh}×{kw} kernel"
            )
        return (self.out_channels, h_out, w_out)

    def forward(self, x: Any) -> Any:
        """``(N, C_in, H, W)`` → ``(N, C_out, H_out, W_out)``."""
        self._check_input(x, f"(N, {self.in_channels}, H, W)", 4, {1: self.in_channels})
        _, h_out, w_out = self.output_shape(x.shape[1:])
        # Training keeps the whole batch's patches for backward; inference needs them only
        # briefly, so it goes through the batch in chunks and reuses one small buffer. The
        # patches are kept whenever the batch went through in one piece (always while training;
        # in evaluation for batches small enough, e.g. a saliency map).
        chunk = None
        if not self.training:
            kh, kw = self.kernel_size
            chunk = max(1, EVAL_CHUNK_FLOATS // (self.in_channels * kh * kw * h_out * w_out))
        W, b = self.params["W"], self.params["b"]
        if compiled.use(x, self.training) and (chunk is None or chunk >= x.shape[0]):
            # Patches and bias in compiled passes: 1.2-1.6× faster (benchmarks/README.md).
            out, self._cols, self._padded_shape = compiled.conv2d(
                x, W, b, self.stride, self.padding, self._buffer
            )
            return out
        out, self._cols, self._padded_shape = F.conv2d(
            x, W, b, self.stride, self.padding, chunk, self._buffer
        )
        return out

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, C_out, H_out, W_out)`` → dL/dx ``(N, C_in, H, W)``; fills dW and db."""
        if self._cols is None or self._padded_shape[0] != grad_out.shape[0]:
            raise CnnlabError(
                f"{self!r}: backward needs the forward pass of the same batch first (an "
                "evaluation-mode forward of a large batch keeps nothing for backward)"
            )
        # dL/dx added back onto the pixels by one compiled pass: 1.1-1.6× faster where it is
        # computed (benchmarks/README.md).
        fast = compiled.use(grad_out, self.training)
        dx, self.grads["W"][...], self.grads["b"][...] = (
            compiled.conv2d_backward if fast else F.conv2d_backward
        )(
            grad_out,
            self._cols,
            self.params["W"],
            self._padded_shape,
            self.stride,
            self.padding,
            self._input_grad,
            self._buffer,
        )
        return dx

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any, zero: bool = False) -> Any:
        """A scratch array of ``shape``, kept between calls so big batches are not reallocated.

        Fresh pages cost a page fault each; reusing the same buffers every step avoids that.
        Only internal scratch lives here, never an array that is returned. A buffer keeps the
        largest batch seen and hands out its first ``shape[0]`` rows (still contiguous). A
        ``zero`` buffer is zeroed when made and its users only ever write its interior. Each
        thread has its own.
        """
        xp = xp_of(self.params["W"])
        buffers = self._scratch.__dict__  # this thread's
        held = buffers.get(name)
        if (
            held is None
            or held.shape[1:] != shape[1:]
            or held.shape[0] < shape[0]
            or held.dtype != dtype
            or xp_of(held) is not xp
        ):
            held = (xp.zeros if zero else xp.empty)(shape, dtype=dtype)
            buffers[name] = held
        return held[: shape[0]]


class _Pool2D(Layer):
    """Shared shape logic of the pooling layers: non-overlapping windows unless ``stride`` says."""

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | None = None, dtype: Any = np.float32
    ) -> None:
        super().__init__(dtype)
        name = type(self).__name__
        self.kernel_size = validate.pair(name, "kernel_size", kernel_size, 1)
        self.stride = (
            self.kernel_size[0] if stride is None else validate.integer(name, "stride", stride, 1)
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
        return (c, *F.conv_output_size((h, w), self.kernel_size, self.stride, 0))

    def _start(self, x: Any) -> None:
        self._check_input(x, "(N, C, H, W)", 4, {})
        self.output_shape(x.shape[1:])
        self._input_shape = x.shape


class MaxPool2D(_Pool2D):
    """Max pooling: keep the largest value of each window. ``(N, C, H, W)`` → ``(N, C, H', W')``.

    The backward pass sends each gradient to the position that held the maximum (the first one,
    as PyTorch does, when several tie). ``padding`` surrounds the map with −inf, which never
    wins a window (ResNet's stem pools 3×3 windows, stride 2, padding 1).
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | None = None,
        padding: int = 0,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(kernel_size, stride, dtype)
        self.padding = validate.integer("MaxPool2D", "padding", padding, 0)
        if self.padding > min(self.kernel_size) // 2:
            raise CnnlabError(
                f"MaxPool2D: padding must be at most half the window {self.kernel_size}, "
                f"got {padding}"
            )

    def config(self) -> dict[str, Any]:
        # Without padding the description is the one files have always held.
        return {**super().config(), **({"padding": self.padding} if self.padding else {})}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if not self.padding:
            return super().output_shape(input_shape)
        c, h, w = input_shape
        p = self.padding
        return (c, *F.conv_output_size((h, w), self.kernel_size, self.stride, p))

    def forward(self, x: Any) -> Any:
        self._start(x)
        two_by_two = self.kernel_size == (2, 2) and self.stride == 2 and not self.padding
        if two_by_two and compiled.use(x, self.training):  # 2.6-18× faster (benchmarks/README.md)
            out, self._winners = compiled.max_pool_2x2(x)
            return out
        if self.padding:
            p = self.padding
            x = xp_of(x).pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
        out, self._winners = F.max_pool2d(x, self.kernel_size, self.stride)
        return out

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, C, H', W')`` → dL/dx ``(N, C, H, W)``."""
        if len(self._winners) == 2 and not self.padding and compiled.use(grad_out, self.training):
            return compiled.max_pool_2x2_backward(  # 2-4× faster (benchmarks/README.md)
                grad_out, self._winners, self._input_shape
            )
        n, c, h, w = self._input_shape
        p = self.padding
        dx = F.max_pool2d_backward(
            grad_out, self._winners, (n, c, h + 2 * p, w + 2 * p), self.kernel_size, self.stride
        )
        return dx[:, :, p : p + h, p : p + w] if p else dx

    def winner_maps(self) -> tuple[Any, ...]:
        """Who won each window in the last forward pass: the 2×2 tournament's two boolean maps,
        or, for other windows, one map of the winning tap's index."""
        return self._winners


class AvgPool2D(_Pool2D):
    """Average pooling: the mean of each window. ``(N, C, H, W)`` → ``(N, C, H', W')``."""

    def forward(self, x: Any) -> Any:
        self._start(x)
        return F.avg_pool2d(x, self.kernel_size, self.stride)

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, C, H', W')`` → dL/dx ``(N, C, H, W)``: each input gets 1/(kH·kW) of it."""
        return F.avg_pool2d_backward(grad_out, self._input_shape, self.kernel_size, self.stride)


class _Elementwise(Layer):
    """An activation applied to every entry; input and output have any shape ``(N, ...)``.

    Subclasses name the two functions; backward needs only the forward's output.
    """

    function: Any = None
    derivative: Any = None
    kernels: Any = (None, None)  # compiled (function, derivative), where they are faster

    def forward(self, x: Any) -> Any:
        self._check_input(x, "(N, ...)", None, {})
        fast = self.kernels[0] and compiled.use(x, self.training)
        self._out = (self.kernels[0] if fast else type(self).function)(x)
        return self._out

    def backward(self, grad_out: Any) -> Any:
        fast = self.kernels[1] and compiled.use(grad_out, self.training)
        return (self.kernels[1] if fast else type(self).derivative)(grad_out, self._out)


class ReLU(_Elementwise):
    """max(0, x). Its gradient is 1 where the input was positive, else 0: no vanishing."""

    function, derivative = F.relu, F.relu_backward
    kernels = (compiled.relu, compiled.relu_backward)  # 2-3× faster

    def active(self) -> Any:
        """Where the last forward pass was on (output > 0): which side of its kink each unit is."""
        return self._out > 0


class Sigmoid(_Elementwise):
    """1 / (1 + e^−x). Its gradient s(1 − s) is at most 1/4 and vanishes for large |x|."""

    function, derivative = F.sigmoid, F.sigmoid_backward


class Tanh(_Elementwise):
    """tanh(x). Its gradient 1 − tanh² vanishes for large |x|."""

    function, derivative = F.tanh, F.tanh_backward


class Softmax(Layer):
    """Turn scores into probabilities over the last axis. ``(N, K)`` → ``(N, K)``, rows sum to 1."""

    def forward(self, x: Any) -> Any:
        self._check_input(x, "(N, K)", 2, {})
        self._out = F.softmax(x)
        return self._out

    def backward(self, grad_out: Any) -> Any:
        return F.softmax_backward(grad_out, self._out)


class Flatten(Layer):
    """Flatten all axes but the batch axis: ``(N, C, H, W)`` → ``(N, C·H·W)``."""

    def forward(self, x: Any) -> Any:
        if not hasattr(x, "ndim") or x.ndim < 2:
            raise CnnlabError(
                f"{self!r}: expected input of shape (N, ...), got {getattr(x, 'shape', type(x))}"
            )
        self._check_input(x, "(N, ...)", None, {})
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
        self.in_features = validate.integer("Dense", "in_features", in_features, 1)
        self.out_features = validate.integer("Dense", "out_features", out_features, 1)
        self.init = _init_choice("Dense", init)
        shape = (self.out_features, self.in_features)
        weights = F.init_weights(
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
        return F.dense(x, self.params["W"], self.params["b"])

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, out_features)`` → dL/dx ``(N, in_features)``; fills dW and db."""
        dx, self.grads["W"][...], self.grads["b"][...] = F.dense_backward(
            grad_out, self._x, self.params["W"], self._input_grad
        )
        return dx


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
        self.p = validate.number("Dropout", "p", p, 0.0, 1.0, high_open=True)
        # A private generator, so dropout masks do not depend on how many layers were built.
        self.rng = np.random.default_rng(resolve_rng(rng).integers(2**63))

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, x: Any) -> Any:
        self._check_input(x, "(N, ...)", None, {})
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        shard = self.shard
        if shard is None:
            mask = F.dropout_mask(self.rng, x.shape, self.p, self.dtype)
        else:  # the whole batch's mask, drawn once per step; this shard's rows of it
            whole = shard.once(
                self.rng,
                lambda: F.dropout_mask(self.rng, (shard.rows, *x.shape[1:]), self.p, self.dtype),
            )
            mask = whole[shard.start : shard.start + len(x)]
        self._mask = xp_of(x).asarray(mask)
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
        self.num_features = validate.integer(name, "num_features", num_features, 1)
        self.eps = validate.number(name, "eps", eps, 0.0, low_open=True)
        self.momentum = validate.number(name, "momentum", momentum, 0.0, 1.0)
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
        n, c = x.shape[:2]
        out, self._x_hat, self._inv_std = F.batch_norm(
            x.reshape(n, c, -1),  # (N, C, P): P positions per sample (1 for BatchNorm1D)
            self.params["W"],
            self.params["b"],
            self.buffers["running_mean"],
            self.buffers["running_var"],
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
            shard=self.shard,
        )
        return out.reshape(x.shape)

    def backward(self, grad_out: Any) -> Any:
        dx, self.grads["W"][...], self.grads["b"][...] = F.batch_norm_backward(
            grad_out.reshape(self._x_hat.shape),
            self._x_hat,
            self._inv_std,
            self.params["W"],
            training=self.training,
            shard=self.shard,
        )
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


# -- global pooling and residual blocks ---------------------------------------------------------


class GlobalAvgPool2D(Layer):
    """The mean of each channel over its whole map: ``(N, C, H, W)`` → ``(N, C)``.

    A ResNet's last convolution block ends here: one number per channel, whatever the picture's
    size, for the dense head (PyTorch's ``AdaptiveAvgPool2d(1)`` followed by ``flatten``).
    """

    def forward(self, x: Any) -> Any:
        self._check_input(x, "(N, C, H, W)", 4, {})
        self._input_shape = x.shape
        return F.global_avg_pool2d(x)

    def backward(self, grad_out: Any) -> Any:
        """dL/dy ``(N, C)`` → dL/dx ``(N, C, H, W)``."""
        return F.global_avg_pool2d_backward(grad_out, self._input_shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise CnnlabError(f"{self!r}: expects input (C, H, W), got {tuple(input_shape)}")
        return (input_shape[0],)


class _Joined(dict):
    """A block's ``params``, ``grads`` or ``buffers``: its sub-layers' arrays under dotted keys
    (``body.0.W``). Assigning a key (moving to a device, changing the dtype) assigns it in the
    sub-layer too, so the block and its sub-layers always hold the very same arrays."""

    def __init__(self, owners: dict[str, tuple[dict[str, Any], str]]) -> None:
        super().__init__({key: store[name] for key, (store, name) in owners.items()})
        self._owners = owners

    def __setitem__(self, key: str, value: Any) -> None:
        store, name = self._owners[key]
        store[name] = value
        super().__setitem__(key, value)


class Residual(Layer):
    """A residual block: ``y = relu(body(x) + shortcut(x))``, the skip connection of ResNet.

    ``body`` is a list of layers applied in order (ResNet's basic block: conv 3×3 → batch norm
    → ReLU → conv 3×3 → batch norm); ``shortcut`` is None for the identity, or a list of layers
    that bring ``x`` to the body's output shape (a 1×1 strided conv and a batch norm when the
    block changes the width or the size). ``relu=False`` leaves the sum as it is.

    Input ``(N, ...)`` as the body's first layer takes it; output the body's output shape.
    Backward sends dL/d(sum) down both paths and adds what they return: the shortcut hands the
    gradient to earlier layers undiminished, which is why deep residual networks train.
    The block's ``params``, ``grads`` and ``buffers`` are its sub-layers' own arrays, keyed
    ``body.<i>.<name>`` and ``shortcut.<i>.<name>``.
    """

    # The constructor arguments that hold layers (the model file nests their descriptions).
    nested = ("body", "shortcut")

    def __init__(
        self,
        body: list[Layer],
        shortcut: list[Layer] | None = None,
        relu: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        self.body = self._layer_list("body", body)
        self.shortcut = [] if shortcut is None else self._layer_list("shortcut", shortcut)
        if not isinstance(relu, bool):
            raise CnnlabError(f"Residual: relu must be True or False, got {relu!r}")
        self.relu = relu
        for layer in self.sublayers():
            layer.set_input_check(False)  # the block checks its input once
        self._join()
        self.training = True
        self._out: Any = None

    def _layer_list(self, name: str, layers: Any) -> list[Layer]:
        if not isinstance(layers, list | tuple) or (name == "body" and not layers):
            raise CnnlabError(f"Residual: {name} must be a list of layers, got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise CnnlabError(f"Residual: {name} item {i} is not a cnnlab layer: {layer!r}")
            if layer.dtype != self.dtype:
                raise CnnlabError(
                    f"Residual: {name} item {i} ({layer!r}) is {layer.dtype}, the block "
                    f"{self.dtype}; build them with the same dtype="
                )
        return list(layers)

    def sublayers(self) -> list[Layer]:
        """The body's layers, then the shortcut's."""
        return [*self.body, *self.shortcut]

    def branches(self) -> list[list[Layer]]:
        """The paths the input takes: the body, and the shortcut when it is not the identity."""
        return [self.body, self.shortcut] if self.shortcut else [self.body]

    def _join(self) -> None:
        """Point ``params``, ``grads`` and ``buffers`` at the sub-layers' arrays."""
        for attr in ("params", "grads", "buffers"):
            owners = {
                f"{path}.{i}.{key}": (getattr(layer, attr), key)
                for path, layers in (("body", self.body), ("shortcut", self.shortcut))
                for i, layer in enumerate(layers)
                for key in getattr(layer, attr)
            }
            setattr(self, attr, _Joined(owners))

    # The mode and the shard reach the sub-layers (``parallel`` sets both on replicas).
    @property
    def training(self) -> bool:
        return self._training

    @training.setter
    def training(self, mode: bool) -> None:
        self._training = bool(mode)
        for layer in getattr(self, "body", []) + getattr(self, "shortcut", []):
            layer.training = self._training

    @property
    def shard(self) -> Any:
        return self._shard

    @shard.setter
    def shard(self, shard: Any) -> None:
        self._shard = shard
        for layer in getattr(self, "body", []) + getattr(self, "shortcut", []):
            layer.shard = shard

    def set_input_grad(self, enabled: bool) -> None:
        super().set_input_grad(enabled)
        for path in self.branches():
            path[0].set_input_grad(enabled)

    def replica(self) -> Layer:
        twin = copy.copy(self)
        twin.body = [layer.replica() for layer in self.body]
        twin.shortcut = [layer.replica() for layer in self.shortcut]
        twin._join()
        return twin

    def astype(self, dtype: Any) -> Layer:
        self.dtype = validate.float_dtype("Residual", dtype)
        for layer in self.sublayers():
            layer.astype(dtype)
        self._join()
        return self

    def config(self) -> dict[str, Any]:
        def describe(layers: list[Layer]) -> list[dict[str, Any]]:
            return [{"type": type(layer).__name__, **layer.config()} for layer in layers]

        shortcut = describe(self.shortcut) if self.shortcut else None
        return {"body": describe(self.body), "shortcut": shortcut, "relu": self.relu}

    def __repr__(self) -> str:
        convs = [layer for layer in self.body if isinstance(layer, Conv2D)]
        if convs:
            first, last = convs[0], convs[-1]
            what = f"{first.in_channels}→{last.out_channels}"
            what += f", stride {first.stride}" if first.stride != 1 else ""
        else:
            what = f"{len(self.body)} layers"
        return f"Residual({what}, {'projection' if self.shortcut else 'identity'} shortcut)"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shapes = []
        for name, path in (("body", self.body), ("shortcut", self.shortcut)):
            shape = tuple(input_shape)
            for i, layer in enumerate(path):
                try:
                    shape = tuple(layer.output_shape(shape))
                except ValueError as err:  # CnnlabError included
                    raise CnnlabError(f"{self!r}: {name} item {i}: {err}") from None
            shapes.append(shape)
        if shapes[0] != shapes[1]:
            raise CnnlabError(
                f"{self!r}: the body makes {shapes[0]} and the shortcut {shapes[1]} of input "
                f"{tuple(input_shape)}; give the shortcut a strided 1×1 conv to the body's shape"
            )
        return shapes[0]

    def forward(self, x: Any) -> Any:
        """``(N, ...)`` → the body's output shape: relu(body(x) + shortcut(x))."""
        self._check_input(x, "(N, ...)", None, {})
        outputs = []
        for name, path in (("body", self.body), ("shortcut", self.shortcut)):
            y = x
            for i, layer in enumerate(path):
                try:
                    y = layer.forward(y)
                except CnnlabError as err:
                    raise CnnlabError(f"{self!r}: {name} item {i}: {err}") from None
            outputs.append(y)
        body, shortcut = outputs
        if body.shape != shortcut.shape:
            raise CnnlabError(
                f"{self!r}: the body makes {body.shape} and the shortcut {shortcut.shape}; "
                "give the shortcut a strided 1×1 conv to the body's shape"
            )
        self._out = F.residual_join(body, shortcut, self.relu)
        return self._out

    def backward(self, grad_out: Any) -> Any:
        """dL/dy → dL/dx: the body's and the shortcut's input gradients, added."""
        grad = F.residual_join_backward(grad_out, self._out, self.relu)
        inputs = []
        for path in (self.body, self.shortcut):
            g = grad
            for layer in reversed(path):
                g = layer.backward(g)
            inputs.append(g)
        return inputs[0] + inputs[1] if self._input_grad else None

    def active(self) -> Any:
        """Where the last forward pass's output was on (> 0), as ``ReLU.active``."""
        return self._out > 0


LAYER_TYPES.update({cls.__name__: cls for cls in (GlobalAvgPool2D, Residual)})
