"""The model file: a NumPy ``.npz`` archive read with ``allow_pickle=False``, never trusted.

One entry ``cnnlab`` holds the architecture as JSON (``model_config``), the others hold the
weights as plain arrays named ``layers.<i>.<param>`` (and ``layers.<i>.buffers.<name>`` for
running statistics). Reading checks the archive before allocating anything: sizes, entry types,
array headers, and the weights an architecture declares. Version 1 is the only format there has
been, so every model file cnnlab ever wrote loads.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.engine.backend import to_numpy
from cnnlab.engine.errors import CnnlabError, PickleRefusedError
from cnnlab.engine.fileio import atomic_write
from cnnlab.engine.layers import LAYER_TYPES, Layer
from cnnlab.engine.rng import resolve_rng
from cnnlab.engine.sequential import Sequential

FORMAT = "cnnlab-model"
FORMAT_VERSION = 1
CONFIG_KEY = "cnnlab"
# A model file larger than this is refused before anything is read into memory.
MAX_FILE_BYTES = 1 << 31
# An architecture built from a JSON config may hold at most this many weights (1 GiB float32).
MAX_WEIGHTS = 1 << 28


def model_config(model: Sequential) -> dict[str, Any]:
    """The architecture of ``model`` as a JSON-serialisable dict (no weights)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dtype": str(model.dtype),
        "input_shape": list(model.input_shape) if model.input_shape else None,
        "layers": [{"type": type(layer).__name__, **layer.config()} for layer in model.layers],
        "meta": model.meta,
    }


def state_arrays(model: Sequential) -> dict[str, np.ndarray]:
    """Every weight and buffer of ``model`` as a NumPy array, keyed as in the model file."""
    arrays = {}
    for i, layer in enumerate(model.layers):
        for key, value in layer.params.items():
            arrays[f"layers.{i}.{key}"] = to_numpy(value)
        for key, value in layer.buffers.items():
            arrays[f"layers.{i}.buffers.{key}"] = to_numpy(value)
    return arrays


def save(
    model: Sequential, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None
) -> None:
    """Write ``model`` (and the ``extra`` arrays) to ``path`` atomically; no pickle anywhere."""
    arrays = state_arrays(model)
    arrays[CONFIG_KEY] = np.array(json.dumps(model_config(model)))
    for key, value in (extra or {}).items():
        if key in arrays:
            raise CnnlabError(f"save: extra array name {key!r} clashes with the model's")
        arrays[key] = np.asarray(value)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


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
            raise PickleRefusedError(
                f"{archive.filename}: refused: it contains pickled Python objects, which cnnlab "
                "never loads"
            )
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
            f"{path}: not a cnnlab model file (expected the .npz archive that cnnlab train or "
            "Sequential.save writes)"
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
    except CnnlabError:
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
