"""Hostile and broken files: every loader either loads a case or refuses it with CnnlabError.

Property-based (hypothesis, derandomised so every run sees the same cases) over truncated,
bit-flipped, spliced, header-overwritten and random inputs derived from real files, plus
hand-made hostile model archives. Any exception other than ``CnnlabError`` is a failure.
``benchmarks/fuzz_loaders.py`` runs the same idea at 10,000 cases per loader.

A test marked ``xfail(strict=True)`` pins a known loader bug; once the bug is fixed it passes,
strict mode turns that into a failure, and the marker must go.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (
    archive,
    image_seeds,
    model_file,
    model_members,
    peak_bytes,
    png_claiming,
    seed_model,
)
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import cnnlab
from cnnlab.data import read_idx as idx_reader
from cnnlab.engine.errors import CnnlabError

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
# No shrinking: these cases are slow to build, and a failure is reported as found.
NO_SHRINK = settings(FUZZ, phases=[Phase.explicit, Phase.generate])


def clean(load: Callable[[object], object], source: object) -> bool:
    """The property: ``load(source)`` returns (True) or raises CnnlabError (False).

    Any other exception propagates and fails the test.
    """
    try:
        load(source)
    except CnnlabError as err:
        message = str(err)
        assert message and "\n" not in message, f"not a one-line message: {message!r}"
        return False
    return True


def on_disk(folder: Path, data: bytes, name: str = "case.bin") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- the model loader --------------------------------------------------------------------------


SEED = model_file()


def load_model(folder: Path, data: bytes) -> bool:
    return clean(cnnlab.Sequential.load, on_disk(folder, data, "case.npz"))


def test_seed_model_file_loads(folder: Path) -> None:
    model = cnnlab.Sequential.load(on_disk(folder, SEED, "seed.npz"))
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.eval().forward(x), seed_model().eval().forward(x))


@FUZZ
@given(length=st.integers(0, len(SEED) - 1))
def test_truncated_model_is_refused(folder: Path, length: int) -> None:
    assert not load_model(folder, SEED[:length])


@settings(FUZZ, max_examples=40)
@given(position=st.integers(0, len(SEED)), chunk=st.binary(min_size=1, max_size=16))
def test_model_with_inserted_bytes(folder: Path, position: int, chunk: bytes) -> None:
    load_model(folder, SEED[:position] + chunk + SEED[position:])


@settings(FUZZ, max_examples=40)
@given(position=st.integers(0, len(SEED) - 1), size=st.integers(1, 16))
def test_model_with_deleted_bytes(folder: Path, position: int, size: int) -> None:
    load_model(folder, SEED[:position] + SEED[position + size :])


@FUZZ
@given(data=st.binary(max_size=2048), zip_magic=st.booleans())
def test_random_bytes_are_refused(folder: Path, data: bytes, zip_magic: bool) -> None:
    assert not load_model(folder, (b"PK\x03\x04" if zip_magic else b"") + data)


@settings(FUZZ, max_examples=60)
@given(bits=st.lists(st.integers(0, len(SEED) * 8 - 1), min_size=1, max_size=8))
def test_bit_flipped_model(folder: Path, bits: list[int]) -> None:
    load_model(folder, flip(SEED, bits))


@settings(FUZZ, max_examples=40)
@given(bits=st.lists(st.integers(0, 8 * 1024 - 1), min_size=1, max_size=8, unique=True))
def test_bit_flips_in_array_data(folder: Path, bits: list[int]) -> None:
    """Flips confined to the stored weights: the zip's CRC-32 catches them."""
    start = SEED.index(b"layers.4.W")  # within the largest array's data, past its headers
    start = SEED.index(b"\n", SEED.index(b"descr", start)) + 1
    data = SEED[:start] + flip(SEED[start : start + 1024], bits) + SEED[start + 1024 :]
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() == "layers.4.W.npy"  # CRC catches it
    assert not load_model(folder, data)


JSON_SMALL = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 64) | st.floats(-1e3, 1e3) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(FUZZ, max_examples=80)
@given(layer=st.integers(0, 6), key=st.sampled_from(["kernel_size", "stride", "padding",
       "in_features", "out_features", "num_features", "eps", "momentum", "init", "type"]),
       value=JSON_SMALL)  # fmt: skip
@pytest.mark.slow
def test_strange_layer_arguments(folder: Path, layer: int, key: str, value: object) -> None:
    """Any JSON value (small numbers only: see the allocation tests) for a layer argument."""
    config = seed_model().config()
    config["layers"][layer][key] = value
    # An unhashable layer type is pinned by test_unhashable_layer_type_is_refused.
    assume(not (key == "type" and isinstance(value, list | dict)))
    load_model(folder, model_file(config))


@settings(NO_SHRINK, max_examples=60)
@given(key=st.sampled_from(["format", "version", "dtype", "input_shape", "layers", "meta"]),
       value=JSON_SMALL)  # fmt: skip
def test_strange_top_level_fields(folder: Path, key: str, value: object) -> None:
    config = seed_model().config()
    config[key] = value
    load_model(folder, model_file(config))


HOSTILE = {
    "pickle object array": (
        model_members(layers__0__W=np.array([{"x": 1}, None], dtype=object)),
        "pickled Python objects",
    ),
    "wrong dtype": (model_members(layers__4__W=np.zeros((8, 338), np.int64)), "int64"),
    "shape mismatch": (
        model_members(layers__0__W=np.zeros((2, 1, 5, 5), np.float32)),
        "has shape (2, 1, 5, 5) float32, but the architecture needs (2, 1, 3, 3)",
    ),
    "unknown layer type": (
        model_members(
            {**seed_model().config(), "layers": [{"type": "Lambda", "code": "rm -rf /"}]}
        ),
        "unknown type 'Lambda'",
    ),
    "missing weights": (
        {k: v for k, v in model_members().items() if k != "layers.5.buffers.running_var.npy"},
        "weights for layers.5.buffers.running_var are missing",
    ),
    "stray weights": (
        model_members(layers__9__W=np.zeros(3, np.float32)),
        "'layers.9.W' belong to no layer",
    ),
    "broken json": (model_members(raw='{"format": "cnnlab-model",'), "not valid JSON"),
    "not cnnlab json": (model_members(raw='{"format": "keras"}'), "format is not"),
    "future version": (
        model_members({**seed_model().config(), "version": 2}),
        "version 2 is not supported",
    ),
    "non-npy entry": (model_members() | {"payload.pkl": b"\x80\x04K\x01."}, "'payload.pkl'"),
    "no architecture": (
        {k: v for k, v in model_members().items() if k != "cnnlab.npy"},
        "no architecture entry",
    ),
    "layer argument object": (
        model_members({**seed_model().config(), "layers": [{"type": "ReLU", "dtype": {"a": 1}}]}),
        "not allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_model_is_refused_with_a_message(folder: Path, case: str) -> None:
    members, phrase = HOSTILE[case]
    with pytest.raises(CnnlabError, match=r"case\.npz") as info:
        cnnlab.Sequential.load(on_disk(folder, archive(members), "case.npz"))
    assert phrase in str(info.value)


def test_huge_declared_zip_size_is_refused_before_reading(folder: Path) -> None:
    data = bytearray(SEED)
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (0xFFFFFFFE).to_bytes(4, "little")  # uncompressed size
    path = on_disk(folder, bytes(data), "case.npz")
    assert peak_bytes(cnnlab.Sequential.load, path) < 1 << 20


# -- pinned model-loader bugs (see the module docstring) ----------------------------------------


def zip_field(data: bytes, offset: int, value: int) -> bytes:
    """Set a 2-byte little-endian field of every central-directory and local header."""
    out = bytearray(data)
    for signature, delta in ((b"PK\x01\x02", offset + 2), (b"PK\x03\x04", offset)):
        start = out.find(signature)
        while start >= 0:
            out[start + delta : start + delta + 2] = value.to_bytes(2, "little")
            start = out.find(signature, start + 4)
    return bytes(out)


def test_unsupported_compression_method_is_refused(folder: Path) -> None:
    assert not load_model(folder, zip_field(SEED, 8, 1))  # method 1 = "shrunk"


def test_encrypted_member_is_refused(folder: Path) -> None:
    assert not load_model(folder, zip_field(SEED, 6, 1))  # flag bit 0 = encrypted


def test_unsupported_zip_version_is_refused(folder: Path) -> None:
    assert not load_model(folder, zip_field(SEED, 4, 0xFF))  # "needs zip version 25.5"


def test_npy_header_with_unbalanced_parenthesis_is_refused(folder: Path) -> None:
    members = model_members()
    members["layers.0.W.npy"] = members["layers.0.W.npy"].replace(b"(2, 1, 3, 3)", b"(2, 1, 3, 3 ")
    assert not load_model(folder, archive(members))


@pytest.mark.parametrize("shape", [b"(1099511627776,)", b"(100000000,)"])
def test_npy_header_promising_a_huge_array_is_refused_cheaply(folder: Path, shape: bytes) -> None:
    members = model_members()
    members["layers.0.W.npy"] = members["layers.0.W.npy"].replace(b"(2, 1, 3, 3)", shape)
    path = on_disk(folder, archive(members), "case.npz")
    assert peak_bytes(cnnlab.Sequential.load, path) < 1 << 20


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "Dense", "in_features": 338, "out_features": 10**12},
        {"type": "Conv2D", "in_channels": 1, "out_channels": 10**6, "kernel_size": 10**3},
        {"type": "Dense", "in_features": 338, "out_features": 20_000},
        {"type": "Dense", "in_features": 338, "out_features": 10**30},
    ],
)
def test_architecture_promising_huge_layers_is_refused_cheaply(folder: Path, spec: dict) -> None:
    config = seed_model().config()
    config["layers"] = [spec]
    config["input_shape"] = None
    path = on_disk(folder, model_file(config), "case.npz")
    assert peak_bytes(cnnlab.Sequential.load, path) < 1 << 24


def test_deeply_nested_json_is_refused(folder: Path) -> None:
    assert not load_model(folder, model_file(raw="[" * 100_000))


def test_unhashable_layer_type_is_refused(folder: Path) -> None:
    config = seed_model().config()
    config["layers"][0]["type"] = ["Conv2D"]
    assert not load_model(folder, model_file(config))


@pytest.mark.parametrize(
    ("key", "value"), [("input_shape", "abc"), ("input_shape", [1, 1e400, 28]), ("meta", "ab")]
)
def test_bad_input_shape_or_meta_is_refused(folder: Path, key: str, value: object) -> None:
    config = seed_model().config()
    config[key] = value
    assert not load_model(folder, model_file(config))


# -- the IDX reader ----------------------------------------------------------------------------


def idx_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.arange(7, dtype=np.float32)]
    header = [
        bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 4, 28, 28),
        bytes([0, 0, 0x0D, 1, 0, 0, 0, 7]),
    ]
    raw = [
        h + a.astype(a.dtype.newbyteorder(">")).tobytes()
        for h, a in zip(header, arrays, strict=True)
    ]
    return raw + [zlib_gzip(r) for r in raw]


def zlib_gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


IDX_SEEDS = idx_seeds()


def read_idx(folder: Path, data: bytes) -> bool:
    return clean(idx_reader, on_disk(folder, data, "case.idx"))


def test_idx_seeds_load(folder: Path) -> None:
    assert all(read_idx(folder, data) for data in IDX_SEEDS)
    np.testing.assert_array_equal(
        idx_reader(on_disk(folder, IDX_SEEDS[3], "a.idx")), np.arange(7, dtype=np.float32)
    )


@FUZZ
@given(seed=st.integers(0, 3), fraction=st.floats(0, 1, exclude_max=True))
def test_truncated_idx_is_refused(folder: Path, seed: int, fraction: float) -> None:
    data = IDX_SEEDS[seed]
    assert not read_idx(folder, data[: int(len(data) * fraction)])


@FUZZ
@given(seed=st.integers(0, 3), bits=st.lists(st.integers(0, 8 * 40), min_size=1, max_size=6))
def test_bit_flipped_idx_header(folder: Path, seed: int, bits: list[int]) -> None:
    read_idx(folder, flip(IDX_SEEDS[seed], bits))


@FUZZ
@given(
    seed=st.integers(0, 3),
    field=st.integers(0, 4),
    value=st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 10**8 + 1]),
)
def test_idx_header_field_overwritten(folder: Path, seed: int, field: int, value: int) -> None:
    data = bytearray(IDX_SEEDS[seed % 2])
    data[4 * field : 4 * field + 4] = value.to_bytes(4, "big")
    payload = bytes(data) if seed < 2 else zlib_gzip(bytes(data))
    read_idx(folder, payload)


@FUZZ
@given(data=st.binary(max_size=1024), gzip_magic=st.booleans())
def test_random_bytes_idx(folder: Path, data: bytes, gzip_magic: bool) -> None:
    read_idx(folder, (b"\x1f\x8b" if gzip_magic else b"") + data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_header_promising_a_huge_array_costs_nothing(folder: Path, compress: bool) -> None:
    data = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 10**8, 10**8, 10**8) + b"\0" * 64
    data = zlib_gzip(data) if compress else data
    assert peak_bytes(idx_reader, on_disk(folder, data, "huge.idx")) < 1 << 20
    small = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 2_000_000_000) + b"\0" * 64
    assert peak_bytes(idx_reader, on_disk(folder, zlib_gzip(small), "big.idx.gz")) < 1 << 22


# -- the image loader --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def load_image() -> Callable[[object], object]:
    preprocess = pytest.importorskip("cnnlab.data.preprocess")
    return preprocess.load_image


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    pytest.importorskip("PIL.Image")
    return image_seeds()


def test_image_seeds_load(load_image: Callable, images: list[bytes]) -> None:
    for data in images:
        grey = load_image(data)
        assert grey.shape == (36, 30) and grey.dtype == np.float32


@FUZZ
@given(seed=st.integers(0, 4), fraction=st.floats(0, 1, exclude_max=True))
def test_truncated_image(
    load_image: Callable, images: list[bytes], seed: int, fraction: float
) -> None:
    data = images[seed]
    clean(load_image, data[: int(len(data) * fraction)])


@settings(NO_SHRINK)
@given(seed=st.integers(0, 4), bits=st.lists(st.integers(0, 8 * 200), min_size=1, max_size=8))
def test_bit_flipped_image(
    load_image: Callable, images: list[bytes], seed: int, bits: list[int]
) -> None:
    clean(load_image, flip(images[seed], bits))


@FUZZ
@given(
    data=st.binary(max_size=1024),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF89a"]),
)
def test_random_bytes_image(load_image: Callable, data: bytes, prefix: bytes) -> None:
    clean(load_image, prefix + data)


@FUZZ
@given(
    size=st.tuples(
        st.sampled_from([0, 1, 2**16, 2**31 - 1, 2**32 - 1]),
        st.sampled_from([0, 1, 2**16, 2**31 - 1]),
    )
)
def test_png_header_claiming_extreme_sizes(load_image: Callable, size: tuple[int, int]) -> None:
    clean(load_image, png_claiming(*size))


def test_png_with_truncated_header_chunk_is_refused(load_image: Callable) -> None:
    data = bytearray(png_claiming(30, 36))
    data[11] = 12  # the IHDR chunk now says it is 12 bytes long instead of 13
    assert not clean(load_image, bytes(data))


def test_png_header_claiming_huge_size_costs_nothing(load_image: Callable, folder: Path) -> None:
    path = on_disk(folder, png_claiming(100_000, 100_000), "huge.png")
    assert peak_bytes(load_image, path) < 1 << 20
    assert peak_bytes(load_image, path.read_bytes()) < 1 << 20
