"""``Sequential``: layers in a row, with forward, backward, parameters, modes and prediction.

Saving and loading are methods here for convenience; the model file format they use is
``cnnlab.engine.serialize``.
"""

from __future__ import annotations

import html
import os
from typing import Any

import numpy as np

from cnnlab.engine import serialize, validate
from cnnlab.engine.backend import array_module, to_device, xp_of
from cnnlab.engine.errors import CnnlabError, NonFiniteError
from cnnlab.engine.functional import softmax
from cnnlab.engine.layers import Layer, Softmax
from cnnlab.engine.parallel import forward_in_chunks


class Sequential:
    """A stack of layers applied in order.

    ``input_shape`` is the shape of one sample, e.g. ``(1, 28, 28)``; when given, the layers are
    checked to fit together at construction and ``summary()`` needs no argument. ``meta`` is a
    free JSON dict saved with the model (data set, class names, training recipe).
    """

    def __init__(
        self,
        layers: list[Layer],
        input_shape: tuple[int, ...] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise CnnlabError("Sequential: needs at least one layer, got an empty list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise CnnlabError(f"Sequential: item {i} is not a cnnlab layer, got {layer!r}")
        dtypes = {layer.dtype for layer in layers}
        if len(dtypes) > 1:
            raise CnnlabError(
                f"Sequential: all layers must share one dtype, got {sorted(map(str, dtypes))}; "
                "build them with the same dtype= or call model.astype(...)"
            )
        self.layers = layers
        for layer in layers:
            layer.set_input_check(False)  # forward() checks the model's input once instead
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape else None
        self.meta = dict(meta or {})
        if self.input_shape:
            self.output_shape(self.input_shape)

    @property
    def dtype(self) -> np.dtype:
        return self.layers[0].dtype

    # -- the passes ---------------------------------------------------------------------------

    def forward(self, x: Any) -> Any:
        """Run ``x`` through every layer. ``(N, *input_shape)`` → the last layer's output."""
        self._check_input(x)
        for i, layer in enumerate(self.layers):
            try:
                x = layer.forward(x)
            except CnnlabError as err:
                raise CnnlabError(f"layer {i}: {err}") from None
        return x

    def backward(self, grad_out: Any, input_grad: bool = True) -> Any:
        """Back-propagate dL/doutput through every layer, filling each layer's ``grads``.

        Returns dL/dinput, or None with ``input_grad=False``, which skips that last (and for a
        first conv layer, sizeable) product: training never needs it.
        """
        self.layers[0].set_input_grad(input_grad)
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def _check_input(self, x: Any) -> None:
        if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
            raise CnnlabError(f"Sequential: expected an array, got {type(x).__name__}")
        if self.input_shape and tuple(x.shape[1:]) != self.input_shape:
            expected = "(N, " + ", ".join(map(str, self.input_shape)) + ")"
            hint = ""
            if x.ndim == len(self.input_shape) and tuple(x.shape[1:]) == self.input_shape[1:]:
                hint = "; add the channel axis with x[:, None]"
            raise CnnlabError(
                f"Sequential: expected input of shape {expected}, got {x.shape}{hint}"
            )
        if x.dtype != self.dtype:
            raise CnnlabError(
                f"Sequential: expected {self.dtype} input, got {x.dtype}; "
                f"convert it with x.astype(np.{self.dtype})"
                + (" / 255" if x.dtype == np.uint8 else "")
            )
        if not bool(xp_of(x).isfinite(x).all()):
            raise NonFiniteError("Sequential: input contains NaN or inf")

    # -- parameters and modes ------------------------------------------------------------------

    def parameters(self) -> list[tuple[Any, Any]]:
        """Every ``(param, grad)`` array pair, for an optimizer to update in place."""
        return [(layer.params[k], layer.grads[k]) for layer in self.layers for k in layer.params]

    def named_parameters(self) -> list[tuple[str, Any, Any]]:
        """``(name, param, grad)`` triples; names look like ``"0.Conv2D.W"``."""
        return [
            (f"{i}.{type(layer).__name__}.{k}", layer.params[k], layer.grads[k])
            for i, layer in enumerate(self.layers)
            for k in layer.params
        ]

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers)

    def train(self, mode: bool = True) -> Sequential:
        """Training mode: dropout drops, batch norm uses batch statistics; ``mode=False`` is
        evaluation mode (as ``eval()``), as in PyTorch. Returns self."""
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        """Evaluation mode: dropout passes through, batch norm uses running statistics."""
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.layers[0].training

    def astype(self, dtype: Any) -> Sequential:
        """Convert every layer to ``dtype`` (float32 or float64) in place; returns self."""
        validate.float_dtype("Sequential", dtype)
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def to(self, device: str) -> Sequential:
        """Move every array to ``device`` ("cpu" or "cuda") in place; returns self."""
        array_module(device)
        for layer in self.layers:
            for store in (layer.params, layer.grads, layer.buffers):
                for key, value in store.items():
                    store[key] = to_device(value, device)
        return self

    # -- shapes and inference -------------------------------------------------------------------

    def output_shape(self, input_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The shape of one sample's output, checking that every layer fits the one before."""
        return self.shapes(input_shape)[-1]

    def shapes(self, input_shape: tuple[int, ...] | None = None) -> list[tuple[int, ...]]:
        """The per-sample output shape of every layer."""
        shape = tuple(input_shape or self.input_shape or ())
        if not shape:
            raise CnnlabError("Sequential: input_shape is unknown; pass it, e.g. (1, 28, 28)")
        shapes = []
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
            except CnnlabError as err:
                raise CnnlabError(f"layer {i}: {err}") from None
            except ValueError:
                raise CnnlabError(
                    f"layer {i}: {layer!r} does not accept input of shape {shape}"
                ) from None
            shapes.append(tuple(shape))
        return shapes

    def _summary_rows(self, input_shape: tuple[int, ...] | None) -> list[tuple[str, ...]]:
        """The summary's header and one row per layer: index, layer, output shape, params."""
        shapes = self.shapes(input_shape)
        rows = [("#", "layer", "output shape", "params")]
        for i, (layer, shape) in enumerate(zip(self.layers, shapes, strict=True)):
            rows.append((str(i), repr(layer), str(tuple(shape)), f"{layer.num_params():,}"))
        return rows

    def _total_line(self, input_shape: tuple[int, ...] | None) -> str:
        shape = self.input_shape or input_shape
        return f"total parameters: {self.num_params():,}  (input {shape}, {self.dtype})"

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """A table of layer, output shape and parameter count."""
        rows = self._summary_rows(input_shape)
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [
            "  ".join(
                cell.ljust(w) if c < 3 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        rule = "-" * len(lines[0])
        return "\n".join([lines[0], rule, *lines[1:], rule, self._total_line(input_shape)])

    def _repr_html_(self) -> str | None:
        """The summary as an HTML table, which Jupyter shows for a model; ``None`` (the plain
        repr) when the input shape is unknown or the layers do not fit together."""
        try:
            header, *rows = self._summary_rows(None)
        except CnnlabError:
            return None
        right = ' style="text-align: right"'

        def row(cells: tuple[str, ...], tag: str) -> str:
            return (
                "<tr>"
                + "".join(
                    f"<{tag}{right if c in (0, 3) else ''}>{html.escape(cell)}</{tag}>"
                    for c, cell in enumerate(cells)
                )
                + "</tr>"
            )

        body = "".join(row(cells, "td") for cells in rows)
        caption = html.escape(self._total_line(None))
        return (
            f"<table><caption>Sequential: {caption}</caption>"
            f"<thead>{row(header, 'th')}</thead><tbody>{body}</tbody></table>"
        )

    def outputs(self, x: Any, batch_size: int = 512) -> Any:
        """The last layer's outputs ``(N, K)`` for inputs ``(N, *input_shape)``, in evaluation
        mode, ``batch_size`` inputs at a time."""
        validate.integer("outputs", "batch_size", batch_size, 1)
        was_training = self.training
        self.eval()
        try:
            out = forward_in_chunks(self, x, batch_size)  # on every core for a large batch
        finally:
            if was_training:
                self.train()
        if out is not None:
            return out
        return xp_of(x).zeros(
            (0, self.output_shape()[-1] if self.input_shape else 0), dtype=self.dtype
        )

    def predict_proba(self, x: Any, batch_size: int = 512) -> Any:
        """Class probabilities ``(N, K)`` for inputs ``(N, *input_shape)``, in evaluation mode."""
        out = self.outputs(x, batch_size)
        return out if isinstance(self.layers[-1], Softmax) else softmax(out)

    def predict(self, x: Any, batch_size: int = 512) -> Any:
        """Predicted class indices ``(N,)``."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    # -- files (the format itself is in serialize.py) ------------------------------------------

    def config(self) -> dict[str, Any]:
        """The architecture as a JSON-serialisable dict (no weights)."""
        return serialize.model_config(self)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every weight and buffer as a NumPy array, keyed as in the model file."""
        return serialize.state_arrays(self)

    def save(self, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write the model to ``path`` atomically (``.npz``; no pickle anywhere).

        ``extra`` adds a checkpoint's arrays (``checkpoint``, ``optimizer.<i>``): the only
        members besides the model's own that loading accepts.
        """
        serialize.save(self, path, extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Sequential:
        """Read a model written by ``save``; refuses anything else with a one-line error."""
        model, _ = serialize.load_with_extras(cls, path, extras=False)
        return model
