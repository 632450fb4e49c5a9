"""Strict reader and writer for the IDX format of the MNIST files (raw or gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian 32-bit size per dimension, then the values in C order, big-endian. The reader
checks every part of the header and that the data is exactly as long as the header promises
before it allocates the array, so a damaged, truncated or hostile file costs little and gives a
one-line :class:`CnnlabError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, NoReturn

import numpy as np

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write

# Type code -> big-endian NumPy dtype, as in the IDX specification.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DIM = 10**8  # largest size accepted for one dimension
MAX_DATA_BYTES = 2**31  # largest data section accepted (2 GiB)
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_FIX = "the file is damaged or not an IDX file; fetch it again"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes) into a native-endian array.

    Raises :class:`CnnlabError` for a missing, truncated, oversized or malformed file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            if raw.read(2) == _GZIP_MAGIC:
                raw.seek(0)
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_stream(path, stream, file_size=None)
            raw.seek(0)
            return _read_stream(path, raw, file_size=os.fstat(raw.fileno()).st_size)
    except FileNotFoundError:
        raise CnnlabError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise CnnlabError(f"{path}: is a folder, not an IDX file; give the file's path") from None
    except (gzip.BadGzipFile, zlib.error, EOFError) as err:
        # EOFError is how gzip reports a stream cut off before its end marker.
        reason = (
            "truncated gzip data" if isinstance(err, EOFError) else f"corrupt gzip data ({err})"
        )
        raise CnnlabError(f"{path}: {reason}; {_FIX}") from None
    except OSError as err:
        raise CnnlabError(f"{path}: cannot read: {err.strerror or err}") from None


def _read_stream(path: Path, stream: BinaryIO, file_size: int | None) -> np.ndarray:
    """Parse and check the header, then read exactly the promised data from ``stream``.

    ``file_size`` is known for raw files (so a size mismatch is caught before reading) and
    ``None`` for gzip streams (read in chunks, never past the promised size plus one byte).
    """
    magic = stream.read(4)
    if len(magic) < 4:
        raise CnnlabError(f"{path}: too short for an IDX header ({len(magic)} bytes); {_FIX}")
    zero0, zero1, code, ndim = magic
    if zero0 or zero1:
        raise CnnlabError(
            f"{path}: not an IDX file: magic number 0x{magic.hex()} does not start with two "
            f"zero bytes; {_FIX}"
        )
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise CnnlabError(f"{path}: unknown IDX type code 0x{code:02X} (valid: {valid}); {_FIX}")
    if not 1 <= ndim <= 4:
        raise CnnlabError(f"{path}: IDX header gives {ndim} dimensions, expected 1 to 4; {_FIX}")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise CnnlabError(f"{path}: truncated: header ends inside the dimension sizes; {_FIX}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    shape = "x".join(map(str, dims))
    if any(d > MAX_DIM for d in dims):
        raise CnnlabError(
            f"{path}: absurd IDX header: dimensions {shape} exceed {MAX_DIM} per axis; {_FIX}"
        )
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if expected > MAX_DATA_BYTES:
        raise CnnlabError(
            f"{path}: absurd IDX header: dimensions {shape} promise {expected} bytes, more than "
            f"the {MAX_DATA_BYTES} accepted; {_FIX}"
        )
    if file_size is not None:
        found = file_size - 4 - 4 * ndim
        if found != expected:
            _raise_size_mismatch(path, expected, found, exact=True)
    data = _read_at_most(stream, expected + 1)
    if len(data) != expected:
        _raise_size_mismatch(path, expected, len(data), exact=False)
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_at_most(stream: BinaryIO, limit: int) -> bytearray:
    """Read up to ``limit`` bytes in chunks, so memory follows the data actually present."""
    data = bytearray()
    while len(data) < limit:
        chunk = stream.read(min(_CHUNK, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _raise_size_mismatch(path: Path, expected: int, found: int, exact: bool) -> NoReturn:
    if found < expected:
        raise CnnlabError(
            f"{path}: truncated: header promises {expected} bytes of data, found {found}; {_FIX}"
        )
    extra = f"{found - expected} extra bytes" if exact else "extra bytes"
    raise CnnlabError(
        f"{path}: {extra} after the {expected} bytes of data the header promises; {_FIX}"
    )


def _idx_code(array: np.ndarray) -> int:
    """Return the IDX type code for ``array``'s dtype, or raise if IDX cannot hold it."""
    for code, dtype in IDX_DTYPES.items():
        if array.dtype.newbyteorder("=") == dtype.newbyteorder("="):
            return code
    valid = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
    raise CnnlabError(
        f"cannot write dtype {array.dtype} as IDX; convert the array to one of {valid}"
    )


def write_idx(path: str | os.PathLike, array: np.ndarray, compresslevel: int = 9) -> None:
    """Write ``array`` (1 to 4 dims) as an IDX file, gzip-compressed when ``path`` ends in .gz.

    The write is atomic and reproducible (the gzip header carries no timestamp).
    """
    path = Path(path)
    array = np.asarray(array)
    code = _idx_code(array)
    if not 1 <= array.ndim <= 4:
        raise CnnlabError(f"cannot write a {array.ndim}-dimensional array as IDX; it needs 1 to 4")
    if any(d > MAX_DIM for d in array.shape):
        raise CnnlabError(
            f"cannot write shape {array.shape} as IDX: each size must be <= {MAX_DIM}"
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    # The values as big-endian bytes, viewed (not copied when already big-endian).
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).reshape(-1).view(np.uint8)
    with atomic_write(path, "wb") as handle:
        if path.suffix == ".gz":
            inner_name = path.name.removesuffix(".gz")
            with gzip.GzipFile(inner_name, "wb", compresslevel, handle, mtime=0) as zipped:
                zipped.write(header)
                zipped.write(body.data)
        else:
            handle.write(header)
            handle.write(body.data)
