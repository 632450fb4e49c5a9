"""Builders of model archives and images, sound and hostile, shared by the fuzz tests and the
fuzz script.

Every archive is built byte for byte (fixed zip timestamps), so the same members give the same
file on every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import threading
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab.engine.errors import CnnlabError


def seed_model() -> cnnlab.Sequential:
    """A small model with every kind of stored array: conv, dense and batch-norm buffers."""
    layers = [
        cnnlab.Conv2D(1, 2, 3, rng=0),
        cnnlab.MaxPool2D(2),
        cnnlab.ReLU(),
        cnnlab.Flatten(),
        cnnlab.Dense(2 * 13 * 13, 8, rng=1),
        cnnlab.BatchNorm1D(8),
        cnnlab.Dense(8, 10, rng=2),
    ]
    return cnnlab.Sequential(layers, input_shape=(1, 28, 28), meta={"preset": "fuzz"})


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def archive(members: dict[str, bytes]) -> bytes:
    """A zip with fixed timestamps, so the same members give the same bytes every run."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, payload in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload)
    return buffer.getvalue()


def model_members(config: object = None, raw: str | None = None, **arrays: np.ndarray) -> dict:
    """The members of a model file: the seed model's weights (overridden by ``arrays``, with
    dots written as ``__``) and its architecture (or ``config``, or a ``raw`` string)."""
    model = seed_model()
    weights = model.state_arrays() | {k.replace("__", "."): v for k, v in arrays.items()}
    members = {f"{name}.npy": npy(value) for name, value in weights.items()}
    entry = raw if raw is not None else json.dumps(config if config is not None else model.config())
    members["cnnlab.npy"] = npy(np.array(entry))
    return members


def model_file(config: object = None, raw: str | None = None, **arrays: np.ndarray) -> bytes:
    return archive(model_members(config, raw, **arrays))


def image_seeds() -> list[bytes]:
    """One dark stroke on white as grey PNG, RGBA PNG, JPEG, BMP and palette GIF (needs Pillow)."""
    from PIL import Image

    pixels = np.full((36, 30), 255, np.uint8)
    pixels[6:30, 12:18] = 20
    out = []
    for fmt, mode in (("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("BMP", "L"), ("GIF", "P")):
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
        out.append(buffer.getvalue())
    return out


def png_claiming(width: int, height: int, pixels: bytes = b"\0" * 100) -> bytes:
    """A PNG whose header, with a correct checksum, claims ``width`` × ``height`` pixels; its one
    data chunk holds ``pixels`` compressed."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    body = zlib.compress(pixels)
    idat = struct.pack(">I", len(body)) + b"IDAT" + body
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + body))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat + b"\0\0\0\0IEND\xaeB`\x82"


def with_zero_member(path: Path, members: dict[str, bytes], name: str, nbytes: int) -> Path:
    """Write ``members`` plus ``name``: a float32 ``.npy`` of ``nbytes`` zero bytes, deflated
    (a 2 GiB member takes 2 MB) and streamed, so building it costs no memory."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)}
    )
    block = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for member, payload in members.items():
            zf.writestr(member, payload)
        with zf.open(name, "w", force_zip64=True) as out:
            out.write(header.getvalue())
            for start in range(0, nbytes - nbytes % 4, len(block)):
                out.write(block[: min(len(block), nbytes - nbytes % 4 - start)])
    return path


def peak_bytes(load: Callable[[object], object], source: object) -> int:
    """Peak Python and NumPy memory traced while ``load(source)`` is refused."""
    tracemalloc.start()
    try:
        with pytest.raises(CnnlabError) as info:
            load(source)
        assert "\n" not in str(info.value)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@contextlib.contextmanager
def fifo_writer(fifo: Path) -> Iterator[None]:
    """A writer that sends a few bytes into ``fifo`` and closes it, so code that (wrongly)
    reads a FIFO gets an answer instead of hanging the tests; released on exit either way."""

    def write() -> None:
        with contextlib.suppress(OSError), open(fifo, "wb") as handle:
            handle.write(b"not a picture")

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:  # a writer still waiting for a reader (or yet to wait) is let through
        while thread.is_alive():
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            thread.join(0.05)


def tiff_with_strips(strips: int, tags: int = 0, side: int = 64) -> bytes:
    """A little-endian grey TIFF, ``side`` pixels square, whose strip offset and byte count
    tags list ``strips`` entries (each pointing at the same zero bytes), after ``tags``
    filler entries; written by hand, as Pillow would not write such a file."""
    data_at = 8  # the pixels right after the header
    pixels = bytes(side * side)
    arrays_at = data_at + len(pixels)
    offsets = struct.pack(f"<{strips}I", *([data_at] * strips))
    counts = struct.pack(f"<{strips}I", *([len(pixels)] * strips))
    ifd_at = arrays_at + len(offsets) + len(counts)
    entries = [
        (256, 3, 1, side),  # width
        (257, 3, 1, side),  # height
        (258, 3, 1, 8),  # bits per sample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # black is zero
        (273, 4, strips, arrays_at),  # strip offsets
        (277, 3, 1, 1),  # samples per pixel
        (278, 3, 1, max(1, side // strips)),  # rows per strip
        (279, 4, strips, arrays_at + len(offsets)),  # strip byte counts
    ]
    entries += [(40000 + i, 3, 1, 0) for i in range(tags)]  # private tags, one number each
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        if count == 1 and kind == 3:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + pixels + offsets + counts + ifd


def jpeg_with_scans(scans: int) -> bytes:
    """A small progressive JPEG whose last scan is repeated until it has ``scans`` scans."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last = data.rindex(b"\xff\xda")
    body = data[last:-2]  # the last scan: its header and entropy-coded data, before EOI
    return data[:-2] + body * (scans - data.count(b"\xff\xda")) + b"\xff\xd9"
