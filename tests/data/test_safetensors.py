"""The safetensors reader: sound files read back exactly; hostile ones refused in one line,
before memory is taken for what they declare."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hostile_files import peak_bytes

from cnnlab.data.safetensors import MAX_HEADER_BYTES, read_safetensors, write_safetensors
from cnnlab.engine.errors import CnnlabError

MB = 1 << 20


def raw_file(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    """A file with ``header`` (JSON-encoded unless bytes) and ``data``, its length field
    ``length`` when given (a lie), else the header's true length."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def test_arrays_and_metadata_read_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "conv.weight": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
        "double": rng.standard_normal(5),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 3), np.float32),
    }
    write_safetensors(tmp_path / "m.safetensors", arrays, {"format": "pt"})
    got, metadata = read_safetensors(tmp_path / "m.safetensors")
    assert metadata == {"format": "pt"} and list(got) == list(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array)


def test_bfloat16_is_widened_to_float32(tmp_path: Path) -> None:
    """bfloat16 is the upper half of a float32: 1.5 is 0x3FC0, −2 is 0xC000."""
    words = np.array([0x3FC0, 0xC000, 0x0000, 0x4049], "<u2")  # 1.5, -2, 0, 3.140625
    header = {"x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
    arrays, _ = read_safetensors(raw_file(tmp_path / "b", header, words.tobytes()))
    assert arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["x"], [[1.5, -2.0], [0.0, 3.140625]])


def test_big_endian_arrays_are_written_little_endian(tmp_path: Path) -> None:
    """As the format says; the data starts 8-byte aligned."""
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    write_safetensors(tmp_path / "t", {"big": big})
    data = (tmp_path / "t").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    assert data[8 + length :] == np.arange(6, dtype="<f4").tobytes() and length % 8 == 0
    np.testing.assert_array_equal(read_safetensors(tmp_path / "t")[0]["big"], big)


HOSTILE = {
    "huge declared shape": (
        {"x": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 16]}},
        b"\0" * 16,
        "declares",
    ),
    "huge shape and offsets": (
        {"x": {"dtype": "F32", "shape": [1 << 30, 64], "data_offsets": [0, 1 << 38]}},
        b"\0" * 16,
        "truncated",
    ),
    "overlapping offsets": (
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
        },
        b"\0" * 24,
        "overlap",
    ),
    "wrong dtype": (
        {"x": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}},
        b"\0" * 4,
        "dtype",
    ),
    "object dtype": (
        {"x": {"dtype": "O", "shape": [1], "data_offsets": [0, 8]}},
        b"\0" * 8,
        "dtype",
    ),
    "negative size": ({"x": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 0]}}, b"", "shape"),
    "float size": (
        {"x": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}},
        b"\0" * 8,
        "shape",
    ),
    "reversed offsets": (
        {"x": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}},
        b"\0" * 8,
        "data_offsets",
    ),
    "too many dimensions": (
        {"x": {"dtype": "F32", "shape": [1] * 40, "data_offsets": [0, 4]}},
        b"\0" * 4,
        "shape",
    ),
    "truncated data": (
        {"x": {"dtype": "F64", "shape": [100], "data_offsets": [0, 800]}},
        b"\0" * 80,
        "truncated",
    ),
    "entry not an object": ({"x": [1, 2, 3]}, b"", "not an object"),
    "header a list": ([1, 2], b"", "not a JSON object"),
    "metadata not strings": ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
    "name with a newline": (
        {"x\ny": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}},
        b"\0" * 4,
        "declares",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_are_refused_in_one_line_with_bounded_memory(
    tmp_path: Path, case: str
) -> None:
    header, data, phrase = HOSTILE[case]
    path = raw_file(tmp_path / "hostile.safetensors", header, data)
    with pytest.raises(CnnlabError, match=phrase):
        read_safetensors(path)
    assert peak_bytes(read_safetensors, path) < 200 * MB


@pytest.mark.parametrize(
    ("what", "make", "phrase"),
    [
        ("not JSON", lambda p: raw_file(p, b"\x80not json{"), "header is not JSON"),
        ("deeply nested", lambda p: raw_file(p, b"[" * 100_000 + b"]" * 100_000), "not JSON"),
        ("header length 2^63", lambda p: raw_file(p, {}, length=1 << 63), "more than the"),
        ("header past the end", lambda p: raw_file(p, {}, length=1000), "truncated"),
        ("shorter than 8 bytes", lambda p: p.write_bytes(b"\x05\0\0") and p, "shorter than"),
        ("empty", lambda p: p.write_bytes(b"") or p, "shorter than"),
    ],
)
def test_broken_files_are_refused_in_one_line(tmp_path: Path, what: str, make, phrase: str) -> None:
    path = make(tmp_path / "broken.safetensors")
    with pytest.raises(CnnlabError, match=phrase) as info:
        read_safetensors(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert peak_bytes(read_safetensors, path) < 200 * MB


def test_a_header_at_the_cap_is_read_and_one_past_refused(tmp_path: Path) -> None:
    padded = b"{}" + b" " * (MAX_HEADER_BYTES - 2)
    assert read_safetensors(raw_file(tmp_path / "ok", padded)) == ({}, {})
    with pytest.raises(CnnlabError, match="more than the"):
        read_safetensors(raw_file(tmp_path / "big", padded + b" "))


def test_a_missing_file_or_a_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="no such file"):
        read_safetensors(tmp_path / "absent.safetensors")
    with pytest.raises(CnnlabError):
        read_safetensors(tmp_path)


def test_only_numbers_are_written(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="write float or int64 arrays"):
        write_safetensors(tmp_path / "x", {"s": np.array(["a"])})
    assert not (tmp_path / "x").exists()
