"""``Sequential``: layers in a row, with forward, backward, parameters and a safe file format.

A model file is a NumPy ``.npz`` archive read with ``allow_pickle=False``: one entry
``cnnlab`` holds the architecture as JSON, the others hold the weights as plain arrays named
``layers.<i>.<param>`` (and ``layers.<i>.buffers.<name>`` for running statistics).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.engine.backend import array_module, to_device, to_numpy, xp_of
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write
from cnnlab.engine.layers import LAYER_TYPES, Layer, Softmax, _check_dtype
from cnnlab.engine.rng import resolve_rng

FORMAT = "cnnlab-model"
FORMAT_VERSION = 1
CONFIG_KEY = "cnnlab"
# A model file larger than this is refused before anything is read into memory.
MAX_FILE_BYTES = 1 << 31
# An architecture built from a JSON config may hold at most this many weights (1 GiB float32).
MAX_WEIGHTS = 1 << 28


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
            layer.check_finite = False  # forward() checks the model's input once instead
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
        self.layers[0].has_input_grad = input_grad
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
            raise CnnlabError("Sequential: input contains NaN or inf")

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

    def train(self) -> Sequential:
        """Training mode: dropout drops, batch norm uses batch statistics."""
        for layer in self.layers:
            layer.training = True
        return self

    def eval(self) -> Sequential:
        """Evaluation mode: dropout passes through, batch norm uses running statistics."""
        for layer in self.layers:
            layer.training = False
        return self

    @property
    def training(self) -> bool:
        return self.layers[0].training

    def astype(self, dtype: Any) -> Sequential:
        """Convert every layer to ``dtype`` (float32 or float64) in place; returns self."""
        _check_dtype("Sequential", dtype)
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

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """A table of layer, output shape and parameter count."""
        shapes = self.shapes(input_shape)
        rows = [("#", "layer", "output shape", "params")]
        for i, (layer, shape) in enumerate(zip(self.layers, shapes, strict=True)):
            rows.append((str(i), repr(layer), str(tuple(shape)), f"{layer.num_params():,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [
            "  ".join(
                cell.ljust(w) if c < 3 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        rule = "-" * len(lines[0])
        shape = self.input_shape or input_shape
        total = f"total parameters: {self.num_params():,}  (input {shape}, {self.dtype})"
        return "\n".join([lines[0], rule, *lines[1:], rule, total])

    def predict_proba(self, x: Any, batch_size: int = 512) -> Any:
        """Class probabilities ``(N, K)`` for inputs ``(N, *input_shape)``, in evaluation mode."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise CnnlabError(
                f"predict_proba: batch_size must be an integer >= 1, got {batch_size!r}"
            )
        was_training = self.training
        self.eval()
        try:
            if 0 < len(x) <= batch_size:
                out = self.forward(x)
            else:
                parts = [self.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
                out = xp_of(x).concatenate(parts) if parts else None
        finally:
            if was_training:
                self.train()
        xp = xp_of(x)
        if out is None:
            return xp.zeros(
                (0, self.output_shape()[-1] if self.input_shape else 0), dtype=self.dtype
            )
        if isinstance(self.layers[-1], Softmax):
            return out
        e = xp.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: Any, batch_size: int = 512) -> Any:
        """Predicted class indices ``(N,)``."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    # -- files -------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The architecture as a JSON-serialisable dict (no weights)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dtype": str(self.dtype),
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "layers": [{"type": type(layer).__name__, **layer.config()} for layer in self.layers],
            "meta": self.meta,
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every weight and buffer as a NumPy array, keyed as in the model file."""
        arrays = {}
        for i, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                arrays[f"layers.{i}.{key}"] = to_numpy(value)
            for key, value in layer.buffers.items():
                arrays[f"layers.{i}.buffers.{key}"] = to_numpy(value)
        return arrays

    def save(self, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write the model to ``path`` atomically (``.npz``; no pickle anywhere).

        ``extra`` adds named arrays (a checkpoint's optimizer state); they must not clash with
        the model's own names.
        """
        arrays = self.state_arrays()
        arrays[CONFIG_KEY] = np.array(json.dumps(self.config()))
        for key, value in (extra or {}).items():
            if key in arrays:
                raise CnnlabError(f"save: extra array name {key!r} clashes with the model's")
            arrays[key] = np.asarray(value)
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Sequential:
        """Read a model written by ``save``; refuses anything else with a one-line error."""
        model, _ = load_with_extras(path)
        return model


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` entry, after checking its header promises no more than the entry holds.

    ``np.load`` would allocate whatever shape a header declares before reading any data; here
    a header is refused unless its array fits in the entry's (already size-checked) bytes.
    """
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.hasobject:
            raise CnnlabError("pickle")
        if dtype.kind not in "fU" or len(shape) > 8:
            raise ValueError(f"unexpected array type {dtype} {shape}")
        if math.prod(shape) * dtype.itemsize > member.file_size:
            raise ValueError(f"header of {member.filename} promises more data than it holds")
        raw = stream.read(math.prod(shape) * dtype.itemsize)
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape))
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, after checking it is a sane, pickle-free archive."""
    if not path.exists():
        raise CnnlabError(f"{path}: no such file; give the path of a model file or a run folder")
    if path.is_dir():
        raise CnnlabError(f"{path}: is a folder, not a model file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        raise CnnlabError(
            f"{path}: cannot read it ({err.strerror}); check its permissions"
        ) from None
    if magic != b"PK\x03\x04":
        raise CnnlabError(
            f"{path}: not a cnnlab model file (expected an .npz archive written by cnnlab save)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if sum(m.file_size for m in members) > MAX_FILE_BYTES:
                raise CnnlabError(f"{path}: refused: its arrays would take more than 2 GiB")
            for member in members:
                if not member.filename.endswith(".npy") or member.flag_bits & 1:
                    raise CnnlabError(f"{path}: refused: unexpected entry {member.filename!r}")
                if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise CnnlabError(f"{path}: refused: unsupported compression in the archive")
            return {m.filename[: -len(".npy")]: _read_member(archive, m) for m in members}
    except CnnlabError as err:
        if str(err) == "pickle":
            raise CnnlabError(
                f"{path}: refused: it contains pickled Python objects, which cnnlab never loads"
            ) from None
        raise
    except Exception as err:  # the file is untrusted: any failure to parse it is "damaged"
        raise CnnlabError(f"{path}: damaged or truncated model file ({err})") from None


def model_from_config(
    config: dict[str, Any], source: str = "config", rng: np.random.Generator | int | None = None
) -> Sequential:
    """A new model with fresh random weights from an architecture dict (as ``config()`` gives).

    Only ``layers`` is required; ``dtype`` defaults to float32 and ``input_shape`` to none.
    """
    if not isinstance(config, dict):
        raise CnnlabError(f"{source}: an architecture must be a JSON object with a 'layers' list")
    config = {"dtype": "float32", **config}
    if config["dtype"] not in ("float32", "float64"):
        raise CnnlabError(f"{source}: unsupported dtype {config['dtype']!r}")
    input_shape = _input_shape(config, source)
    layers = _build_layers(config, source, MAX_WEIGHTS, resolve_rng(rng))
    try:
        return Sequential(layers, input_shape=input_shape)
    except CnnlabError as err:
        raise CnnlabError(f"{source}: the layers do not fit together: {err}") from None


def _input_shape(config: dict[str, Any], source: Path | str) -> tuple[int, ...] | None:
    """The config's ``input_shape``: absent, or 1 to 4 positive sizes of at most 100,000."""
    shape = config.get("input_shape")
    if shape is None:
        return None
    valid = isinstance(shape, list) and 1 <= len(shape) <= 4
    if not valid or not all(isinstance(d, int) and 1 <= d <= 100_000 for d in shape):
        raise CnnlabError(f"{source}: input_shape must be a list of positive sizes, got {shape!r}")
    return tuple(shape)


def _declared_weights(spec: dict[str, Any]) -> int:
    """How many numbers the layer a spec describes would allocate, judged from its arguments.

    Checked before the layer is built, so a hostile architecture cannot make cnnlab allocate
    more than the file (or a sane cap) holds. Invalid arguments count as 1: the layer's own
    validation refuses them before allocating anything.
    """

    def size(key: str, square: bool = False) -> int:
        value = spec.get(key)
        values = value if isinstance(value, list) else [value] * (2 if square else 1)
        ok = values and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        return max(math.prod(values), 1) if ok else 1

    kind = spec["type"]
    if kind == "Conv2D":
        out = size("out_channels")
        return out * size("in_channels") * size("kernel_size", square=True) + out
    if kind == "Dense":
        return size("out_features") * (size("in_features") + 1)
    if kind.startswith("BatchNorm"):
        return 4 * size("num_features")
    return 0


def _build_layers(
    config: dict[str, Any],
    path: Path | str,
    max_weights: int,
    rng: np.random.Generator | int = 0,
) -> list[Layer]:
    """Construct the layers a config describes, refusing unknown types and arguments.

    Refuses before allocating anything when the layers would hold more than ``max_weights``
    numbers.
    """
    specs = config.get("layers")
    if not isinstance(specs, list) or not specs:
        raise CnnlabError(f"{path}: the architecture lists no layers")
    for i, spec in enumerate(specs):
        kind = spec.get("type") if isinstance(spec, dict) else spec
        if not isinstance(kind, str) or kind not in LAYER_TYPES:
            raise CnnlabError(
                f"{path}: layer {i} has unknown type {kind!r}; known: {', '.join(LAYER_TYPES)}"
            )
        for key, value in spec.items():
            if value is not None and not isinstance(value, int | float | str | bool | list):
                raise CnnlabError(f"{path}: layer {i} argument {key}={value!r} is not allowed")
    declared = sum(_declared_weights(spec) for spec in specs)
    if declared > max_weights:
        raise CnnlabError(
            f"{path}: refused: the architecture declares {declared:,} weights, more than the "
            f"{max_weights:,} it can hold"
        )
    layers = []
    for i, spec in enumerate(specs):
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        try:
            extra = {"rng": rng} if spec["type"] in ("Conv2D", "Dense", "Dropout") else {}
            layers.append(LAYER_TYPES[spec["type"]](**kwargs, **extra, dtype=config["dtype"]))
        except CnnlabError as err:
            raise CnnlabError(f"{path}: layer {i}: {err}") from None
        except (TypeError, ValueError, OverflowError, MemoryError) as err:
            raise CnnlabError(
                f"{path}: layer {i} ({spec['type']}) has a bad argument: {err}"
            ) from None
    return layers


def load_with_extras(path: str | os.PathLike) -> tuple[Sequential, dict[str, np.ndarray]]:
    """Load a model file; also return arrays that are not part of the model (checkpoint state)."""
    path = Path(path)
    arrays = _read_archive(path)
    if CONFIG_KEY not in arrays or arrays[CONFIG_KEY].dtype.kind != "U":
        raise CnnlabError(f"{path}: not a cnnlab model file (no architecture entry)")
    try:
        config = json.loads(str(arrays.pop(CONFIG_KEY)))
    except (ValueError, RecursionError) as err:
        raise CnnlabError(f"{path}: the architecture entry is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CnnlabError(f"{path}: not a cnnlab model file (format is not {FORMAT!r})")
    if config.get("version") != FORMAT_VERSION:
        raise CnnlabError(
            f"{path}: model format version {config.get('version')!r} is not supported "
            f"(this cnnlab reads version {FORMAT_VERSION}); upgrade cnnlab"
        )
    if config.get("dtype") not in ("float32", "float64"):
        raise CnnlabError(f"{path}: unsupported dtype {config.get('dtype')!r}")
    input_shape = _input_shape(config, path)
    meta = config.get("meta") or {}
    if not isinstance(meta, dict):
        raise CnnlabError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
    # A sound file stores every weight its architecture declares; the slack lets the precise
    # "missing" and "shape" messages below speak for small mismatches.
    layers = _build_layers(config, path, 2 * sum(a.size for a in arrays.values()) + (1 << 20))
    for i, layer in enumerate(layers):
        for store, prefix in (
            (layer.params, f"layers.{i}."),
            (layer.buffers, f"layers.{i}.buffers."),
        ):
            for key, value in store.items():
                name = prefix + key
                if name not in arrays:
                    raise CnnlabError(f"{path}: weights for {name} are missing")
                stored = arrays.pop(name)
                if stored.shape != value.shape or stored.dtype != value.dtype:
                    raise CnnlabError(
                        f"{path}: {name} has shape {stored.shape} {stored.dtype}, but the "
                        f"architecture needs {value.shape} {value.dtype}"
                    )
                value[...] = stored
    stray = [name for name in arrays if name.startswith("layers.")]
    if stray:
        raise CnnlabError(f"{path}: weights {stray[0]!r} belong to no layer of the architecture")
    try:
        model = Sequential(layers, input_shape=input_shape, meta=meta)
    except CnnlabError as err:
        raise CnnlabError(f"{path}: the layers do not fit together: {err}") from None
    return model, arrays
