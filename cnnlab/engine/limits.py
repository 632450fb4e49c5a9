"""Bounds on what a model file can make cnnlab allocate.

A model file is a few kilobytes of JSON and compressed arrays, but what it declares decides what
loading and running it costs: a ``Conv2D`` with ``padding: 6000`` holds nine weights and turns a
28×28 input into 12,028×12,028 activations; an all-zero 2 GiB array compresses to 2 MB. So,
before anything is built or read, the loader checks here:

- the declared layers' arguments (kernel, stride, padding, channels, features, layer count);
- the layers against the input shape: no output, and no unfolded conv input, of one sample may
  hold more than ``MAX_ACTIVATION`` numbers (16 MB in float64). A file that declares no input
  shape is checked at the one its meta describes, else at the digits' 1×28×28 (what cnnlab
  feeds such a model), and refused when its layers take neither;
- the weights: at most ``MAX_WEIGHTS`` numbers in all;
- the archive's directory: at most ``MAX_MEMBERS`` entries, counted from its end record
  before ``zipfile`` reads (and builds an object for) every entry;
- the archive's members: each one is declared by the architecture (or is a checkpoint's
  state, no bigger than the weights it belongs to), and is read in bounded chunks, never
  past the size its header states.

The limits are far above any network cnnlab trains (the largest preset: 0.4 M weights,
25 k activations a sample) and far below what would hurt a laptop.
"""

from __future__ import annotations

import math
import re
import struct
from typing import IO, Any

import numpy as np

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import LAYER_TYPES

MAX_LAYERS = 256  # layers in all, those inside blocks included
MAX_DEPTH = 4  # blocks inside blocks
MAX_KERNEL = 64  # kernel side, conv and pooling
MAX_STRIDE = 64
MAX_CHANNELS = 4096  # conv channels, batch-norm features
MAX_FEATURES = 1 << 16  # dense outputs; dense inputs are bounded by the activations
MAX_WEIGHTS = 1 << 24  # weights and buffers in all (64 MB in float32)
MAX_ACTIVATION = 1 << 21  # numbers in one sample's output of any layer
MAX_MEMBERS = 4 * MAX_LAYERS + 16  # a model's arrays, its checkpoint's state and record
MAX_CONFIG_BYTES = 1 << 20  # the architecture entry (JSON)
CHUNK_BYTES = 1 << 20  # members are read this much at a time
# A checkpoint's extra members (``cnnlab.engine.checkpoint``): its record and optimizer state.
CHECKPOINT_MEMBER = re.compile(r"checkpoint|optimizer\.\d+")
ASSUMED_INPUT = (1, 28, 28)  # a model file without input_shape is fed 28×28 grey digits
_DESCRIBED = re.compile(r"(\d{1,6})x(\d{1,6}) (colour|grey)")
OPTIMIZER_ARRAYS_PER_WEIGHT = 2  # Adam keeps two moments per weight array, SGD one velocity

# Integer arguments with an upper bound, by name (any layer type that takes them).
_BOUNDS = {
    "kernel_size": MAX_KERNEL,
    "stride": MAX_STRIDE,
    "padding": MAX_KERNEL,
    "in_channels": MAX_CHANNELS,
    "out_channels": MAX_CHANNELS,
    "num_features": MAX_CHANNELS,
    "out_features": MAX_FEATURES,
    "in_features": MAX_ACTIVATION,
}


def check_arguments(specs: list[dict[str, Any]], source: object) -> None:
    """Refuse a layer list longer than ``MAX_LAYERS`` or an integer argument over its bound,
    and a padding wider than its kernel (it adds only rows of zeros). Arguments of the wrong
    type are left to the layers' own checks, which allocate nothing before refusing."""
    if len(specs) > MAX_LAYERS:
        raise CnnlabError(
            f"{source}: refused: {len(specs)} layers, more than the limit of {MAX_LAYERS}"
        )
    for i, spec in enumerate(specs):
        for key, bound in _BOUNDS.items():
            values = spec.get(key)
            values = values if isinstance(values, list) else [values]
            for value in values:
                if isinstance(value, int) and value > bound:
                    raise CnnlabError(
                        f"{source}: refused: layer {i} ({spec['type']}) has {key} {value}, "
                        f"more than the limit of {bound}"
                    )
        padding, kernel = spec.get("padding"), spec.get("kernel_size")
        if isinstance(padding, int) and padding > 0:
            sides = kernel if isinstance(kernel, list) else [kernel]
            if all(isinstance(k, int) and k > 0 for k in sides) and padding >= min(sides):
                raise CnnlabError(
                    f"{source}: refused: layer {i} ({spec['type']}) pads by {padding}, not less "
                    f"than its kernel {kernel}: the extra border holds only zeros"
                )


def assumed_input_shape(layers: list[Any], meta: dict[str, Any]) -> tuple[int, ...]:
    """The input shape of a model file that declares none: the one its meta's ``input``
    describes (``"32x32 colour ..."``), else a first dense layer's features, else the digits'
    ``ASSUMED_INPUT``."""
    described = meta.get("input")
    match = _DESCRIBED.match(described) if isinstance(described, str) else None
    if match:
        h, w, colour = int(match[1]), int(match[2]), match[3] == "colour"
        return (3 if colour else 1, h, w)
    first = getattr(layers[0], "in_features", None) if layers else None
    return (first,) if isinstance(first, int) else ASSUMED_INPUT


def check_activations(
    layers: list[Any], input_shape: tuple[int, ...], source: object, declared: bool = True
) -> None:
    """Walk the layers from one sample of ``input_shape``; refuse any layer whose output, or
    whose unfolded (im2col) input for a conv, would hold more than ``MAX_ACTIVATION``
    numbers. With ``declared=False`` (a shape assumed, not given by the file) layers that do
    not take that shape are refused too: nothing else would bound them."""
    shape = tuple(input_shape)
    for i, layer in enumerate([None, *layers]):
        if layer is not None:
            for branch in layer.branches() if hasattr(layer, "branches") else ():
                check_activations(branch, shape, source)  # a block's paths, layer by layer
            unfolded = _unfolded_size(layer, shape)
            try:
                shape = tuple(layer.output_shape(shape))
            except (CnnlabError, ValueError):
                if declared:
                    return  # the layers do not fit together: Sequential says where
                raise CnnlabError(
                    f"{source}: refused: it declares no input_shape and layer {i - 1} "
                    f"({layer!r}) does not take the {describe(input_shape)} input its meta "
                    "implies; save the model with its input_shape"
                ) from None
        else:
            unfolded = 0
        size = max(math.prod(shape), unfolded)
        if size > MAX_ACTIVATION:
            where = "its input" if layer is None else f"layer {i - 1} ({layer!r})"
            raise CnnlabError(
                f"{source}: refused: {where} would hold {size:,} numbers for one sample, more "
                f"than the limit of {MAX_ACTIVATION:,}; this is not a network cnnlab can run"
            )


def activation_numbers(layers: list[Any], input_shape: tuple[int, ...]) -> int:
    """Numbers one sample's forward pass holds through ``layers``: every layer's output and
    every conv's unfolded input (what training keeps for the backward pass, about)."""
    shape, total = tuple(input_shape), math.prod(input_shape)
    for layer in layers:
        total += _unfolded_size(layer, shape)
        shape = tuple(layer.output_shape(shape))
        total += math.prod(shape)
    return total


def describe(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)


def _unfolded_size(layer: Any, shape: tuple[int, ...]) -> int:
    """Numbers in a conv layer's unfolded input for one sample: C·kh·kw·H_out·W_out."""
    kernel = getattr(layer, "kernel_size", None)
    if not hasattr(layer, "in_channels") or kernel is None or len(shape) != 3:
        return 0
    try:
        _, h_out, w_out = layer.output_shape(shape)
    except (CnnlabError, ValueError):
        return 0
    return shape[0] * kernel[0] * kernel[1] * h_out * w_out


def check_weights(declared: int, bound: int, source: object) -> None:
    """Refuse an architecture declaring more than ``bound`` weights and buffers (at most
    ``MAX_WEIGHTS``; a model file's own bound also follows from what it stores)."""
    if declared > min(bound, MAX_WEIGHTS):
        raise CnnlabError(
            f"{source}: refused: the architecture declares {declared:,} weights, more than the "
            f"{min(bound, MAX_WEIGHTS):,} it can hold"
        )


def check_extra_member(name: str, nbytes: int, weights: list[int], source: object) -> None:
    """A member the architecture does not declare: allowed only as a checkpoint's record
    (at most ``MAX_CONFIG_BYTES``) or as optimizer state, at most as big as the largest weight
    array (``weights``: each weight array's size in bytes) and at most
    ``OPTIMIZER_ARRAYS_PER_WEIGHT`` per weight array."""
    stem = name[: -len(".npy")] if name.endswith(".npy") else name
    if not CHECKPOINT_MEMBER.fullmatch(stem):
        raise CnnlabError(
            f"{source}: refused: the archive holds {name!r}, which its architecture does not "
            "declare; a model file holds only its architecture and weights"
        )
    if stem != "checkpoint" and int(stem.split(".")[1]) >= OPTIMIZER_ARRAYS_PER_WEIGHT * len(
        weights
    ):
        raise CnnlabError(
            f"{source}: refused: {name!r} is more optimizer state than {len(weights)} weight "
            "arrays can have"
        )
    bound = MAX_CONFIG_BYTES if stem == "checkpoint" else max(weights, default=0)
    if nbytes > bound + 1024:  # room for the .npy header
        raise CnnlabError(
            f"{source}: refused: {name!r} holds {nbytes:,} bytes, more than checkpoint state "
            f"for these weights can ({bound:,})"
        )


def check_zip_directory(handle: IO[bytes], max_members: int, source: object) -> None:
    """Refuse a zip archive whose end record lists more than ``max_members`` entries, or a
    central directory bigger than such entries need, before anything reads that directory
    (``zipfile`` holds an object per entry: a million empty entries took 580 MB). The
    handle's position is left at the start. A file without an end record is left to
    ``zipfile`` to refuse."""
    handle.seek(0, 2)
    size = handle.tell()
    tail_start = max(0, size - (1 << 16) - 22)  # the end record plus the longest comment
    handle.seek(tail_start)
    tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    entries = directory = 0
    if at >= 0 and len(tail) >= at + 22:
        entries, directory = struct.unpack("<HI", tail[at + 10 : at + 16])
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if locator >= 0 and at - locator == 20:  # a zip64 end record says more
            (offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
            if 0 <= offset <= size - 56:
                handle.seek(offset)
                record = handle.read(56)
                if record[:4] == b"PK\x06\x06":
                    entries, directory = struct.unpack("<QQ", record[32:48])
    handle.seek(0)
    if entries > max_members or directory > max_members * (46 + 1024):
        raise CnnlabError(
            f"{source}: refused: the archive lists {entries:,} entries in a {directory:,}-byte "
            f"directory; a cnnlab file has at most {max_members:,}"
        )


def read_into(stream: IO[bytes], array: np.ndarray, name: str) -> None:
    """Fill ``array`` from ``stream`` in chunks of at most ``CHUNK_BYTES``; ``ValueError``
    when the stream ends early (a lying header). Never reads, or allocates, more."""
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        got = stream.readinto(view[done : done + CHUNK_BYTES])
        if not got:
            raise ValueError(f"{name} ends {len(view) - done} bytes before its header's size")
        done += got


def every_spec(specs: list[Any], source: object) -> list[Any]:
    """The layer descriptions of an architecture in order, those inside blocks (the lists
    under a block's ``nested`` arguments, e.g. a ``Residual``'s ``body`` and ``shortcut``)
    included. Refuses blocks nested deeper than ``MAX_DEPTH``, more than ``MAX_LAYERS`` layers
    in all, and a nested item that is not a description; walks without recursion."""
    found: list[Any] = []
    pending = [(spec, 0, None) for spec in reversed(specs)]
    while pending:
        spec, depth, where = pending.pop()
        if where is not None and not isinstance(spec, dict):
            raise CnnlabError(f"{source}: {where} is not a layer description, got {spec!r:.60}")
        found.append(spec)
        if len(found) > MAX_LAYERS:
            raise CnnlabError(
                f"{source}: refused: {max(len(found), len(specs))} layers, more than the limit "
                f"of {MAX_LAYERS} (blocks' layers included)"
            )
        kind = spec.get("type") if isinstance(spec, dict) else None
        for key in getattr(LAYER_TYPES.get(kind) if isinstance(kind, str) else None, "nested", ()):
            inner = spec.get(key)
            if not isinstance(inner, list):
                continue  # None (no such path) or a wrong type the layer itself refuses
            if depth + 1 > MAX_DEPTH:
                raise CnnlabError(f"{source}: refused: blocks nested more than {MAX_DEPTH} deep")
            pending.extend(
                (item, depth + 1, f"{kind} {key} item {j}")
                for j, item in reversed(list(enumerate(inner)))
            )
    return found
