"""The safetensors format, read and written with NumPy alone: a JSON header, then raw arrays.

A file is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON, then the data. The
header maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
into the data, which follows the header) and may hold a ``"__metadata__"`` object of strings.
No code is ever run and nothing is unpickled: the arrays are bytes.

A file is a user's (or a download's) and is checked before anything is allocated for it: the
header's length against ``MAX_HEADER_BYTES`` and the file, every entry's dtype, shape and
offsets, each tensor's declared size (shape × item size) against its byte span, the spans
against the data's length and against each other (no overlap). An array is then allocated at
its byte span, which the file holds, and read in bounded chunks: a file can make cnnlab hold at
most its own size. Every refusal is one ``CnnlabError`` line naming the file and the problem.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cnnlab.engine import limits
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write, open_regular_file

MAX_HEADER_BYTES = 1 << 24  # 16 MiB of JSON: far above ResNet-18's 15 kB
MAX_FILE_BYTES = 1 << 31  # a file larger than this is refused unread
MAX_TENSORS = 1 << 16
MAX_DIMS = 8
# Stored dtypes this reader takes, as NumPy little-endian types. BF16 (bfloat16, the upper half
# of a float32) has no NumPy type: it is read as 16-bit words and widened to float32.
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
}
_WRITTEN = {np.dtype(v): k for k, v in DTYPES.items() if k != "BF16"}


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of the safetensors file ``path`` as a NumPy array, and its metadata.

    Arrays keep their stored type (native byte order), except BF16, which becomes float32.
    Raises ``CnnlabError`` with one line for a file that is not sound safetensors.
    """
    path = Path(path)
    with _open(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        entries, metadata, data_start = _header(handle, size, path)
        arrays = {}
        for name, (dtype_name, shape, begin, end) in entries.items():
            raw = np.empty((end - begin) // DTYPES[dtype_name].itemsize, DTYPES[dtype_name])
            handle.seek(data_start + begin)
            try:
                limits.read_into(handle, raw, name)
            except ValueError:
                raise CnnlabError(
                    f"{path}: truncated: {name!r:.80} ends past the end of the file"
                ) from None
            arrays[name] = _decoded(raw, dtype_name).reshape(shape)
    return arrays, metadata


def _open(path: Path) -> BinaryIO:
    try:
        return open_regular_file(path)
    except FileNotFoundError:
        raise CnnlabError(f"{path}: no such file") from None
    except OSError as err:
        raise CnnlabError(
            f"{path}: cannot read it ({err.strerror}); check its permissions"
        ) from None


def _decoded(raw: np.ndarray, dtype_name: str) -> np.ndarray:
    if dtype_name == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(raw.dtype.newbyteorder("="), copy=False)


def _header(
    handle: BinaryIO, size: int, path: Path
) -> tuple[dict[str, tuple[str, tuple[int, ...], int, int]], dict[str, str], int]:
    """The checked header: ``{name: (dtype, shape, begin, end)}`` in file order, the metadata,
    and where the data starts."""
    if size > MAX_FILE_BYTES:
        raise CnnlabError(
            f"{path}: refused: {size:,} bytes, more than the {MAX_FILE_BYTES:,} allowed"
        )
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise CnnlabError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise CnnlabError(
            f"{path}: refused: its header claims {length:,} bytes, more than the "
            f"{MAX_HEADER_BYTES:,} allowed"
        )
    if 8 + length > size:
        raise CnnlabError(
            f"{path}: truncated: the header claims {length:,} bytes, the file holds {size - 8:,}"
        )
    try:
        header = json.loads(handle.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CnnlabError(
            f"{path}: not a safetensors file: the header is not JSON ({err})"
        ) from None
    if not isinstance(header, dict):
        raise CnnlabError(f"{path}: not a safetensors file: the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CnnlabError(f"{path}: __metadata__ must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise CnnlabError(f"{path}: refused: {len(header):,} tensors, more than {MAX_TENSORS:,}")
    data_size = size - 8 - length
    entries = {name: _entry(name, spec, data_size, path) for name, spec in header.items()}
    order = sorted(entries.items(), key=lambda item: (item[1][2], item[1][3]))
    for (first, (*_, end)), (second, (_, _, begin, _)) in itertools.pairwise(order):
        if begin < end:
            raise CnnlabError(
                f"{path}: refused: the data of {first!r:.80} and {second!r:.80} overlap"
            )
    return dict(order), metadata, 8 + length


def _entry(
    name: str, spec: Any, data_size: int, path: Path
) -> tuple[str, tuple[int, ...], int, int]:
    """One header entry, checked: a known dtype, a shape whose size is its byte span, and a
    span inside the data."""
    if not isinstance(spec, dict):
        raise CnnlabError(
            f"{path}: tensor {name!r:.80} is described by {type(spec).__name__}, not an object"
        )
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in DTYPES:
        raise CnnlabError(
            f"{path}: tensor {name!r:.80} has dtype {dtype!r:.20}; this reader takes "
            f"{', '.join(DTYPES)}"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise CnnlabError(
            f"{path}: tensor {name!r:.80} has shape {shape!r:.60}, not a list of sizes"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CnnlabError(
            f"{path}: tensor {name!r:.80} has data_offsets {offsets!r:.60}, not [begin, end]"
        )
    begin, end = offsets
    declared = math.prod(shape) * DTYPES[dtype].itemsize  # Python integers: no overflow
    if declared != end - begin:
        raise CnnlabError(
            f"{path}: refused: tensor {name!r:.80} declares {declared:,} bytes "
            f"({dtype} {tuple(shape)}) but spans {end - begin:,}"
        )
    if end > data_size:
        raise CnnlabError(
            f"{path}: truncated: tensor {name!r:.80} needs data up to byte {end:,}, "
            f"the file holds {data_size:,}"
        )
    return dtype, tuple(shape), begin, end


def write_safetensors(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write ``arrays`` (float64, float32, float16 or int64) to ``path`` atomically, packed in
    the order given, with ``metadata`` (strings) in the header."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, array in arrays.items():
        dtype = np.asarray(array).dtype.newbyteorder("<")
        if dtype not in _WRITTEN:
            raise CnnlabError(f"write_safetensors: {name} is {dtype}; write float or int64 arrays")
        nbytes = np.asarray(array).nbytes
        header[name] = {
            "dtype": _WRITTEN[dtype],
            "shape": list(np.shape(array)),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with atomic_write(path) as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for array in arrays.values():
            out.write(
                np.ascontiguousarray(
                    array, dtype=np.asarray(array).dtype.newbyteorder("<")
                ).tobytes()
            )
