"""Tests for the strict IDX reader and writer, on tiny hand-made files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.idx import read_idx, write_idx
from cnnlab.engine.errors import CnnlabError

SHAPES = [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 2)]


def idx_bytes(code: int, dims: tuple[int, ...], data: bytes) -> bytes:
    """An IDX file built by hand: magic, big-endian dims, then ``data``."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


def write(path: Path, content: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path: Path, dtype: str, shape: tuple[int, ...], suffix: str) -> None:
    array = (np.arange(np.prod(shape)) - 3).astype(dtype).reshape(shape) * 7
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_writer_stores_big_endian_as_the_spec_says(tmp_path: Path) -> None:
    path = tmp_path / "a.idx"
    write_idx(path, np.array([1, 256], dtype=np.int32))
    assert path.read_bytes() == idx_bytes(0x0C, (2,), b"\x00\x00\x00\x01\x00\x00\x01\x00")


def test_reader_handles_hand_made_big_endian_file(tmp_path: Path) -> None:
    data = struct.pack(">3f", 1.5, -2.0, 0.25)
    path = write(tmp_path / "f.idx", idx_bytes(0x0D, (3,), data))
    np.testing.assert_array_equal(read_idx(path), np.array([1.5, -2.0, 0.25], np.float32))


def test_gzip_is_detected_by_magic_not_name(tmp_path: Path) -> None:
    path = write(tmp_path / "no-suffix", idx_bytes(0x08, (2, 2), b"\x01\x02\x03\x04"), True)
    np.testing.assert_array_equal(read_idx(path), [[1, 2], [3, 4]])


def test_returned_uint8_array_is_writable(tmp_path: Path) -> None:
    path = write(tmp_path / "u.idx", idx_bytes(0x08, (3,), b"\x01\x02\x03"))
    array = read_idx(path)
    array += 1
    np.testing.assert_array_equal(array, [2, 3, 4])


def test_zero_length_dimension_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "e.idx", idx_bytes(0x08, (0, 28, 28), b""))
    assert read_idx(path).shape == (0, 28, 28)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short for an IDX header"),
        (b"\x00\x00", "too short for an IDX header"),
        (b"PK\x03\x04" + bytes(20), "not an IDX file: magic number 0x504b0304"),
        (b"\x00\x01\x08\x01" + bytes(8), "not an IDX file"),
        (idx_bytes(0x0A, (2,), b"\x00\x00"), "unknown IDX type code 0x0A"),
        (b"\x00\x00\x08\x00", "0 dimensions, expected 1 to 4"),
        (b"\x00\x00\x08\x05" + bytes(20), "5 dimensions, expected 1 to 4"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header ends inside the dimension sizes"),
        (
            idx_bytes(0x08, (60000, 28, 28), bytes(1000)),
            "truncated: header promises 47040000 bytes of data, found 1000",
        ),
        (idx_bytes(0x0C, (2,), bytes(7)), "header promises 8 bytes of data, found 7"),
        (idx_bytes(0x08, (2,), bytes(3)), "extra bytes after the 2 bytes of data"),
        (idx_bytes(0x08, (10**6, 10**6), b""), "promise 1000000000000 bytes, more than"),
        (idx_bytes(0x08, (10**9, 1), b""), "exceed 100000000 per axis"),
        (idx_bytes(0x0E, (10**5, 10**5), b""), "promise 80000000000 bytes"),
        (idx_bytes(0x08, (2**32 - 1,), b""), "exceed 100000000 per axis"),
    ],
)
def test_corrupt_files_give_one_line_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str, compress: bool
) -> None:
    path = write(tmp_path / "t.idx", content, compress)
    with pytest.raises(CnnlabError) as info:
        read_idx(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_raw_file_reports_exact_count_of_extra_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "t.idx", idx_bytes(0x08, (2,), bytes(5)))
    with pytest.raises(CnnlabError, match="3 extra bytes after the 2 bytes"):
        read_idx(path)


def test_gzip_bomb_is_not_decompressed_past_the_promised_size(tmp_path: Path) -> None:
    # 32 MB of zeros compress to ~32 kB; the header promises 4 bytes.
    path = tmp_path / "bomb.idx.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(idx_bytes(0x08, (4,), b""))
        zeros = bytes(1 << 20)
        for _ in range(32):
            out.write(zeros)
    with pytest.raises(CnnlabError, match="extra bytes after the 4 bytes"):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(idx_bytes(0x08, (100, 10), bytes(range(250)) * 4))
    path = write(tmp_path / "t.idx.gz", packed[: len(packed) // 2])
    with pytest.raises(CnnlabError, match=r"t\.idx\.gz: truncated"):
        read_idx(path)


def test_gzip_with_corrupt_body_or_checksum(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(idx_bytes(0x08, (100,), bytes(range(100)))))
    packed[-8] ^= 0xFF  # CRC-32 of the content
    path = write(tmp_path / "crc.gz", bytes(packed))
    with pytest.raises(CnnlabError, match="corrupt gzip data"):
        read_idx(path)


def test_garbage_after_gzip_magic(tmp_path: Path) -> None:
    path = write(tmp_path / "g.gz", b"\x1f\x8b" + bytes(range(256)) * 4)
    with pytest.raises(CnnlabError, match=r"g\.gz: (corrupt|truncated) gzip data"):
        read_idx(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="no such file"):
        read_idx(tmp_path / "missing.idx")
    with pytest.raises(CnnlabError, match="is a folder"):
        read_idx(tmp_path)


def test_writer_refuses_unsupported_arrays(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="cannot write dtype int64"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.int64))
    with pytest.raises(CnnlabError, match="5-dimensional"):
        write_idx(tmp_path / "x.idx", np.zeros((1, 1, 1, 1, 1), dtype=np.uint8))
    with pytest.raises(CnnlabError, match="0-dimensional"):
        write_idx(tmp_path / "x.idx", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.uint8).reshape(10, 10)
    first, second = tmp_path / "1" / "a.idx.gz", tmp_path / "2" / "a.idx.gz"
    write_idx(first, array)
    write_idx(second, array)
    assert first.read_bytes() == second.read_bytes()
