"""The model file: a NumPy ``.npz`` archive read with ``allow_pickle=False``, never trusted.

One entry ``cnnlab`` holds the architecture as JSON (``model_config``), the others hold the
weights as plain arrays named ``layers.<i>.<param>`` (and ``layers.<i>.buffers.<name>`` for
running statistics). Reading checks the archive before allocating anything: sizes, entry types,
array headers, the architecture within the bounds of ``limits``, and then only the members it
declares. Version 1 is the only format there has been, so every model file cnnlab ever wrote
loads.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

from cnnlab.engine import limits
from cnnlab.engine.backend import to_numpy
from cnnlab.engine.errors import CnnlabError, PickleRefusedError
from cnnlab.engine.fileio import atomic_write, open_regular_file
from cnnlab.engine.layers import LAYER_TYPES, Layer
from cnnlab.engine.rng import resolve_rng

# The model class (``Sequential``), passed in by the caller: ``Sequential.save`` and ``load``
# call this module, so it does not import them back.
Model = TypeVar("Model")

FORMAT = "cnnlab-model"
FORMAT_VERSION = 1
CONFIG_KEY = "cnnlab"
# A model file larger than this is refused before anything is read into memory.
MAX_FILE_BYTES = 1 << 31


def model_config(model: Any) -> dict[str, Any]:
    """The architecture of ``model`` (a ``Sequential``) as a JSON-serialisable dict (no
    weights)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dtype": str(model.dtype),
        "input_shape": list(model.input_shape) if model.input_shape else None,
        "layers": [{"type": type(layer).__name__, **layer.config()} for layer in model.layers],
        "meta": model.meta,
    }


def state_arrays(model: Any) -> dict[str, np.ndarray]:
    """Every weight and buffer of ``model`` as a NumPy array, keyed as in the model file."""
    arrays = {}
    for i, layer in enumerate(model.layers):
        for key, value in layer.params.items():
            arrays[f"layers.{i}.{key}"] = to_numpy(value)
        for key, value in layer.buffers.items():
            arrays[f"layers.{i}.buffers.{key}"] = to_numpy(value)
    return arrays


def save(model: Any, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None) -> None:
    """Write ``model`` (and the ``extra`` arrays) to ``path`` atomically; no pickle anywhere."""
    arrays = state_arrays(model)
    arrays[CONFIG_KEY] = np.array(json.dumps(model_config(model)))
    for key, value in (extra or {}).items():
        if key in arrays:
            raise CnnlabError(f"save: extra array name {key!r} clashes with the model's")
        if not limits.CHECKPOINT_MEMBER.fullmatch(key):
            raise CnnlabError(
                f"save: extra array name {key!r} is not a checkpoint's "
                "(checkpoint, optimizer.<i>); loading would refuse it"
            )
        arrays[key] = np.asarray(value)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def _read_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, like: np.ndarray | None = None
) -> np.ndarray:
    """One ``.npy`` entry, after checking its header promises no more than the entry holds.

    ``np.load`` would allocate whatever shape a header declares before reading any data; here
    a header is refused unless its array fits in the entry's (already size-checked) bytes, and
    unless it has the shape and dtype of ``like`` when that is given. The data is read in
    bounded chunks.
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
                "refused: it contains pickled Python objects, which cnnlab never loads"
            )
        name = member.filename[: -len(".npy")]
        if like is not None and (shape != like.shape or dtype != like.dtype):
            raise CnnlabError(
                f"{name} has shape {shape} {dtype}, but the architecture needs "
                f"{like.shape} {like.dtype}"
            )
        if dtype.kind not in "fU" or len(shape) > 8:
            raise ValueError(f"unexpected array type {dtype} {shape}")
        if math.prod(shape) * dtype.itemsize > member.file_size:
            raise ValueError(f"header of {member.filename} promises more data than it holds")
        array = np.empty(shape[::-1] if fortran else shape, dtype)
        limits.read_into(stream, array, member.filename)
    return array.T if fortran else array


def _members(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by array name, after checking each is a plain ``.npy`` entry and
    that together they claim no more than ``MAX_FILE_BYTES``."""
    members = archive.infolist()
    if sum(m.file_size for m in members) > MAX_FILE_BYTES:
        raise CnnlabError(f"{path}: refused: its arrays would take more than 2 GiB")
    for member in members:
        if not member.filename.endswith(".npy") or member.flag_bits & 1:
            raise CnnlabError(f"{path}: refused: unexpected entry {member.filename!r}")
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CnnlabError(f"{path}: refused: unsupported compression in the archive")
    return {m.filename[: -len(".npy")]: m for m in members}


def _open_model_file(path: Path) -> BinaryIO:
    """The model file opened for reading, once it is known to be a regular file that starts
    like a zip archive."""
    try:
        handle = open_regular_file(path)
    except FileNotFoundError:
        raise CnnlabError(
            f"{path}: no such file; give the path of a model file or a run folder"
        ) from None
    except OSError as err:
        raise CnnlabError(
            f"{path}: cannot read it ({err.strerror}); check its permissions"
        ) from None
    try:
        start = handle.read(4)
    except OSError as err:  # a "regular" file that cannot be read, such as /proc/self/mem
        handle.close()
        raise CnnlabError(f"{path}: cannot read it ({err.strerror or err})") from None
    if start != b"PK\x03\x04":
        handle.close()
        raise CnnlabError(
            f"{path}: not a cnnlab model file (expected the .npz archive that cnnlab train or "
            "Sequential.save writes)"
        )
    try:
        limits.check_zip_directory(handle, limits.MAX_MEMBERS, path)
    except BaseException:
        handle.close()
        raise
    return handle


def model_from_config(
    model_type: type[Model],
    config: dict[str, Any],
    source: str = "config",
    rng: np.random.Generator | int | None = None,
) -> Model:
    """A new ``model_type`` (``Sequential``) with fresh random weights from an architecture
    dict (as ``config()`` gives).

    Only ``layers`` is required; ``dtype`` defaults to float32 and ``input_shape`` to none.
    """
    if not isinstance(config, dict):
        raise CnnlabError(f"{source}: an architecture must be a JSON object with a 'layers' list")
    config = {"dtype": "float32", **config}
    if config["dtype"] not in ("float32", "float64"):
        raise CnnlabError(f"{source}: unsupported dtype {config['dtype']!r}")
    input_shape = _input_shape(config, source)
    layers = _build_layers(config, source, resolve_rng(rng))
    try:
        return model_type(layers, input_shape=input_shape)  # type: ignore[call-arg]
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
    rng: np.random.Generator | int = 0,
    max_weights: int = limits.MAX_WEIGHTS,
) -> list[Layer]:
    """Construct the layers a config describes, refusing unknown types and arguments.

    Refuses before allocating anything arguments over the bounds of ``limits`` and layers
    that would hold more than ``max_weights`` numbers.
    """
    specs = config.get("layers")
    if not isinstance(specs, list) or not specs:
        raise CnnlabError(f"{path}: the architecture lists no layers")
    every = limits.every_spec(specs, path)  # blocks' layers included
    for i, spec in enumerate(specs):
        kind = spec.get("type") if isinstance(spec, dict) else spec
        if not isinstance(kind, str) or kind not in LAYER_TYPES:
            raise CnnlabError(
                f"{path}: layer {i} has unknown type {kind!r}; known: {', '.join(LAYER_TYPES)}"
            )
        for key, value in spec.items():
            if value is not None and not isinstance(value, int | float | str | bool | list):
                raise CnnlabError(f"{path}: layer {i} argument {key}={value!r} is not allowed")
    limits.check_arguments(every, path)
    limits.check_weights(sum(_declared_weights(spec) for spec in every), max_weights, path)
    layers = []
    for i, spec in enumerate(specs):
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        for key in getattr(LAYER_TYPES[spec["type"]], "nested", ()):
            if isinstance(kwargs.get(key), list):  # a block's layers, built the same way
                inner = {"layers": kwargs[key], "dtype": config["dtype"]}
                kwargs[key] = _build_layers(inner, f"{path}: layer {i} {key}", rng, max_weights)
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


def load_with_extras(
    model_type: type[Model], path: str | os.PathLike, extras: bool = True
) -> tuple[Model, dict[str, np.ndarray]]:
    """Load a model file as a ``model_type`` (``Sequential``); also return arrays that are not
    part of the model (a checkpoint's state), or nothing of them with ``extras=False`` (they
    are then size-checked, not read)."""
    path = Path(path)
    with _open_model_file(path) as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                return _load_archive(model_type, archive, path, extras)
        except PickleRefusedError as err:
            raise PickleRefusedError(f"{path}: {err}") from None
        except CnnlabError:
            raise
        except Exception as err:  # the file is untrusted: any failure to parse it is "damaged"
            raise CnnlabError(f"{path}: damaged or truncated model file ({err})") from None


def _read_config(archive: zipfile.ZipFile, entry: zipfile.ZipInfo | None, path: Path) -> dict:
    """The architecture entry of a model archive, parsed and checked for format and version."""
    if entry is None or entry.file_size > limits.MAX_CONFIG_BYTES:
        raise CnnlabError(f"{path}: not a cnnlab model file (no architecture entry)")
    text = _read_member(archive, entry)
    if text.dtype.kind != "U":
        raise CnnlabError(f"{path}: not a cnnlab model file (no architecture entry)")
    try:
        config = json.loads(str(text))
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
    return config


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` of a model file, from its architecture entry alone: no weight is read
    (a listing of many models costs kilobytes each, not their weights)."""
    path = Path(path)
    with _open_model_file(path) as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                members = _members(archive, path)
                meta = _read_config(archive, members.get(CONFIG_KEY), path).get("meta") or {}
        except CnnlabError:
            raise
        except Exception as err:  # the file is untrusted: any failure to parse it is "damaged"
            raise CnnlabError(f"{path}: damaged or truncated model file ({err})") from None
    if not isinstance(meta, dict):
        raise CnnlabError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
    return meta


def _load_archive(
    model_type: type[Model], archive: zipfile.ZipFile, path: Path, extras: bool
) -> tuple[Model, dict[str, np.ndarray]]:
    """The architecture first; then, once it is known to be within ``limits``, exactly the
    members it declares, each checked against its layer before its data is read."""
    members = _members(archive, path)
    config = _read_config(archive, members.pop(CONFIG_KEY, None), path)
    input_shape = _input_shape(config, path)
    meta = config.get("meta") or {}
    if not isinstance(meta, dict):
        raise CnnlabError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
    # A sound file stores every weight its architecture declares (4 bytes or more each); the
    # slack lets the precise "missing" and "shape" messages below speak for small mismatches.
    stored = sum(m.file_size for m in members.values()) // 4
    layers = _build_layers(
        config, path, max_weights=min(limits.MAX_WEIGHTS, 2 * stored + (1 << 20))
    )
    if input_shape:
        limits.check_activations(layers, input_shape, path)
    else:
        assumed = limits.assumed_input_shape(layers, meta)
        limits.check_activations(layers, assumed, path, declared=False)
    weights = {
        prefix + key: value
        for i, layer in enumerate(layers)
        for store, prefix in (
            (layer.params, f"layers.{i}."),
            (layer.buffers, f"layers.{i}.buffers."),
        )
        for key, value in store.items()
    }
    for name, member in members.items():
        if name.startswith("layers.") and name not in weights:
            raise CnnlabError(f"{path}: weights {name!r} belong to no layer of the architecture")
        if name not in weights:
            sizes = [w.nbytes for w in weights.values()]
            limits.check_extra_member(member.filename, member.file_size, sizes, path)
    for name, value in weights.items():
        if name not in members:
            raise CnnlabError(f"{path}: weights for {name} are missing")
        try:
            value[...] = _read_member(archive, members.pop(name), like=value)
        except PickleRefusedError:
            raise
        except CnnlabError as err:
            raise CnnlabError(f"{path}: {err}") from None
        if not np.isfinite(value).all():
            raise CnnlabError(
                f"{path}: {name} holds NaN or inf: the model diverged while it was trained; "
                "train it again with a lower learning rate"
            )
    try:
        model = model_type(layers, input_shape=input_shape, meta=meta)  # type: ignore[call-arg]
    except CnnlabError as err:
        raise CnnlabError(f"{path}: the layers do not fit together: {err}") from None
    if not extras:
        return model, {}
    return model, {name: _read_member(archive, m) for name, m in members.items()}
