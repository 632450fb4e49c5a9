"""Turning people's own digit pictures into MNIST-like inputs (cnnlab.data.preprocess)."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.folders import read_pixels
from cnnlab.data.preprocess import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    ImageTooLargeError,
    NoInkError,
    Preprocessed,
    load_image,
    naive_resize,
    preprocess_digit,
    preprocess_file,
)
from cnnlab.engine.errors import CnnlabError, install_hint

Image = pytest.importorskip("PIL.Image")

from children import python_child  # noqa: E402
from digits_wild import make_wild_digits, mnist_test  # noqa: E402
from hostile_files import fifo_writer, jpeg_with_scans, png_claiming, tiff_with_strips  # noqa: E402

MNIST_COM = 14.0  # MNIST's mean centre of mass, row and column, pixel centres at integers


def _digit(index: int = 1056) -> np.ndarray:
    """A test digit of the bundled MNIST sample as float32 (28, 28) in [0, 1], ink bright.

    1056 (a 2) and 1059 (a 4) are upright (slant under 0.02): preprocessing shears a digit
    upright, so a slanted one would not come back as it went in."""
    return mnist_test()[0][index].astype(np.float32) / 255


def _upscale(digit: np.ndarray, factor: int) -> np.ndarray:
    img = Image.fromarray(digit, "F").resize((28 * factor, 28 * factor), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img, np.float32), 0, 1)


def _photo(digit: np.ndarray, dark_ink: bool, seed: int = 0) -> np.ndarray:
    """The digit ×8, off-centre on a wide noisy page with a gradient: float32 (500, 700)."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((500, 700), np.float32)
    ink[40 : 40 + 224, 430 : 430 + 224] = _upscale(digit, 8)
    ramp = np.linspace(-0.05, 0.05, 700, dtype=np.float32)[None, :]
    paper, pen = (0.85, 0.15) if dark_ink else (0.12, 0.9)
    page = paper + (pen - paper) * ink + ramp + rng.normal(0, 0.04, ink.shape)
    return np.clip(page, 0, 1).astype(np.float32)


def _com(image: np.ndarray) -> tuple[float, float]:
    idx = np.arange(image.shape[0])
    total = image.sum()
    return float(image.sum(1) @ idx / total), float(image.sum(0) @ idx / total)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("dark_ink", [True, False])
def test_photo_of_a_digit_becomes_the_mnist_digit(dark_ink: bool) -> None:
    digit = _digit()
    result = preprocess_digit(_photo(digit, dark_ink))
    assert isinstance(result, Preprocessed)
    assert result.image.shape == (28, 28) and result.image.dtype == np.float32
    assert result.image.min() >= 0 and result.image.max() == pytest.approx(1.0)
    assert result.inverted is dark_ink
    assert _corr(result.image, digit) > 0.8
    cy, cx = _com(result.image)
    assert abs(cy - MNIST_COM) < 0.5 and abs(cx - MNIST_COM) < 0.5
    # The digit fills the 20×20 box along its longer side, like MNIST.
    assert max(result.steps["fitted"].shape) == 20
    rows = np.flatnonzero(result.image.max(1) > 0.05)
    cols = np.flatnonzero(result.image.max(0) > 0.05)
    assert rows[-1] - rows[0] + 1 <= 21 and cols[-1] - cols[0] + 1 <= 21
    # The box is in input pixels and surrounds where the digit was drawn.
    left, top, right, bottom = result.bbox
    assert 420 <= left < right <= 665 and 30 <= top < bottom <= 275
    for name in ("raw", "grey", "cropped", "upright", "fitted", "centred"):
        step = result.steps[name]
        assert step.ndim == 2 and step.dtype == np.float32
        assert step.min() >= 0 and step.max() <= 1


def test_mnist_digit_itself_is_left_nearly_unchanged() -> None:
    digit = _digit(1059)
    result = preprocess_digit(digit)
    assert result.inverted is False
    assert _corr(result.image, digit) > 0.9


def test_arrays_of_other_types_are_accepted() -> None:
    page = _photo(_digit(), dark_ink=True)
    as_uint8 = (page * 255).astype(np.uint8)
    colour = np.stack([as_uint8, as_uint8, as_uint8], axis=-1)
    a = preprocess_digit(as_uint8).image
    b = preprocess_digit(colour).image
    assert np.allclose(a, b, atol=0.02)


def test_specks_far_from_the_digit_are_ignored() -> None:
    page = _photo(_digit(), dark_ink=True)
    page[420:426, 20:26] = 0.0  # a dark speck in the far corner
    page[300:303, 100:103] = 0.0
    result = preprocess_digit(page)
    left, _, _, bottom = result.bbox
    assert left >= 420 and bottom <= 275


@pytest.mark.parametrize(
    "page",
    [
        np.ones((300, 200), np.float32),
        np.full((64, 64), 0.5, np.float32),
        np.zeros((50, 80), np.uint8),
        np.clip(0.6 + np.random.default_rng(1).normal(0, 0.05, (200, 200)), 0, 1),
    ],
    ids=["white", "grey", "black", "noise"],
)
def test_blank_pictures_say_no_ink(page: np.ndarray) -> None:
    with pytest.raises(NoInkError, match=r"^no ink found in the image"):
        preprocess_digit(page)


def test_tiny_and_malformed_arrays_are_refused() -> None:
    with pytest.raises(CnnlabError, match="1×1 pixels"):
        preprocess_digit(np.zeros((1, 1), np.float32))
    with pytest.raises(CnnlabError, match="shape"):
        preprocess_digit(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(CnnlabError, match="NaN"):
        preprocess_digit(np.full((28, 28), np.nan, np.float32))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming (width, height), with no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_huge_images_are_refused_from_the_header() -> None:
    # No pixel data exists, so a refusal proves nothing was decoded.
    with pytest.raises(CnnlabError, match=r"8000×6000 = 48000000 pixels.*limit of 16000000"):
        load_image(_png_header_only(8000, 6000))
    with pytest.raises(CnnlabError, match=r"claims 10000000000 pixels.*limit of 16000000"):
        load_image(_png_header_only(100_000, 100_000))
    with pytest.raises(CnnlabError, match="limit of 5000"):
        preprocess_file(_png(np.zeros((100, 100), np.uint8)), max_pixels=5000)
    assert MAX_PIXELS == 16_000_000


def test_broken_files_give_one_line_errors(tmp_path) -> None:
    good = _png(np.full((40, 40), 200, np.uint8))
    cases = [b"certainly not an image", good[: len(good) // 2], str(tmp_path / "missing.png")]
    for source in cases:
        with pytest.raises(CnnlabError) as info:
            load_image(source)
        assert "\n" not in str(info.value)
    with pytest.raises(CnnlabError, match="not an image"):
        load_image(b"certainly not an image")
    with pytest.raises(CnnlabError, match=r"missing\.png"):
        load_image(tmp_path / "missing.png")


def test_formats_and_modes_load_as_grey(tmp_path) -> None:
    levels16 = np.linspace(0, 65535, 60 * 50).reshape(60, 50).astype(np.uint16)
    grey16 = load_image(_png(levels16))
    assert grey16.shape == (60, 50) and grey16.dtype == np.float32
    assert grey16[0, 0] == 0 and grey16[-1, -1] == pytest.approx(1.0)

    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 255  # pure red has luminance 0.299
    path = tmp_path / "red.png"
    path.write_bytes(_png(rgb))
    assert load_image(path) == pytest.approx(np.full((30, 40), 0.299), abs=0.01)

    palette = Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (20, 1))).convert("P")
    out = io.BytesIO()
    palette.save(out, "GIF")
    assert load_image(out.getvalue()).shape == (20, 50)


@pytest.mark.parametrize("ink_level", [0, 255])
def test_transparent_drawing_is_laid_on_the_opposite_of_its_ink(ink_level: int) -> None:
    # A canvas drawing: strokes opaque, the rest fully transparent (and black underneath).
    alpha = (_upscale(_digit(), 6) * 255).astype(np.uint8)
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., :3] = ink_level
    rgba[..., 3] = alpha
    result = preprocess_file(_png(rgba, "RGBA"))
    assert result.inverted is (ink_level == 0)
    assert _corr(result.image, _digit()) > 0.8


def test_exif_rotated_photo_is_upright() -> None:
    upright = (_photo(_digit(), dark_ink=True)[:, :600] * 255).astype(np.uint8)  # 500 × 600
    # Orientation 6: the camera stored the picture turned a quarter anticlockwise.
    stored = Image.fromarray(upright).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif.tobytes())
    loaded = load_image(out.getvalue())
    assert loaded.shape == upright.shape
    assert _corr(loaded, upright / 255) > 0.95


def test_without_pillow_the_module_imports_and_explains() -> None:
    code = (
        "import sys; sys.modules['PIL'] = None\n"
        "import numpy as np, cnnlab.data.preprocess as p\n"
        "for call in (lambda: p.load_image(b'x'), lambda: p.preprocess_digit(np.eye(9))):\n"
        "    try: call()\n"
        "    except p.CnnlabError as err: print(err)\n"
    )
    lines = python_child(code).splitlines()
    assert len(lines) == 2 and all(install_hint("lab") in line for line in lines)


def _run_capped(code: str) -> str:
    """Run ``code`` in a child whose address space is capped 1 GiB above its size after the
    imports: an allocation of 2 GiB fails there."""
    prologue = (
        "import resource, numpy as np, cnnlab.data.preprocess as p\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))\n"
    )
    return python_child(prologue + code)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "read",
    [
        "print(p.load_image(path).shape)",  # a digit photo
        "import cnnlab.data.folders as f; print(f.read_pixels(path, 32)[1])",  # a folder's picture
    ],
)
def test_a_png_chunk_claiming_2_gib_allocates_nothing_of_the_sort(
    tmp_path: Path, read: str
) -> None:
    """Pillow reads a chunk at its declared length; from a file it allocates that first."""
    out = io.BytesIO()
    Image.new("L", (30, 36), 200).save(out, "PNG")
    data = bytearray(out.getvalue())
    idat = data.index(b"IDAT") - 4  # the chunk's length field
    data[idat : idat + 4] = (0x7FFFFFFF).to_bytes(4, "big")
    path = tmp_path / "claims.png"
    path.write_bytes(bytes(data))
    printed = _run_capped(
        f"path = {str(path)!r}\ntry: {read}\nexcept p.CnnlabError as err: print('refused', err)\n"
    )
    assert printed.startswith(("(36, 30)", "grey", "refused"))
    assert "MemoryError" not in printed  # a decoder's catch-all must not have hidden it


def test_a_picture_file_over_the_byte_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:  # sparse: no disk is used
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ImageTooLargeError, match="MB a picture may take"):
        load_image(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: tiff_with_strips(70_000), "70,000 strips or tiles, more than 65,536"),
        (lambda: tiff_with_strips(4, tags=2000), "2,009 tags in a directory, more than 1,024"),
        (lambda: jpeg_with_scans(101), "more than 100 scans"),
    ],
)
def test_decoding_work_beyond_the_pixels_is_refused_before_pillow_opens_the_file(
    monkeypatch: pytest.MonkeyPatch, make, message: str
) -> None:
    data = make()
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("Pillow opened it"))
    for read in (load_image, lambda d: read_pixels(d, 32)):
        with pytest.raises(ImageTooLargeError, match=message) as info:
            read(data)
        assert "\n" not in str(info.value)


def test_the_same_kinds_of_picture_within_the_bounds_still_load() -> None:
    assert load_image(tiff_with_strips(64)).shape == (64, 64)
    assert load_image(jpeg_with_scans(100)).shape == (16, 16)


def test_a_picture_of_one_row_of_16_million_pixels_is_refused_from_its_header() -> None:
    with pytest.raises(ImageTooLargeError, match="16000000×1 pixels: one side more than 100"):
        load_image(png_claiming(16_000_000, 1))
    assert load_image(_png(np.zeros((10, 1000), np.uint8))).shape == (10, 1000)


def test_naive_resize_is_a_plain_28_by_28() -> None:
    page = np.ones((300, 200), np.float32)
    page[100:200, 90:110] = 0
    small = naive_resize(page)
    assert small.shape == (28, 28) and small.dtype == np.float32
    assert small.max() == pytest.approx(1.0) and small.min() < 0.5  # no polarity fix


@pytest.mark.slow
def test_wild_digits_are_found_with_the_right_polarity() -> None:
    samples = make_wild_digits(4, seed=7)
    assert len(samples) == 40 and {label for _, label, _ in samples} == set(range(10))
    assert samples[0] == make_wild_digits(4, seed=7)[0]
    for data, _, description in samples:
        result = preprocess_file(data)
        assert result.inverted is ("dark-on-light" in description), description
        cy, cx = _com(result.image)
        assert abs(cy - MNIST_COM) < 0.5 and abs(cx - MNIST_COM) < 0.5, description


def _ring(side: int) -> np.ndarray:
    """A thick ring (a drawn 0) filling the middle of a ``side``² canvas: uint8 alpha."""
    yy, xx = np.mgrid[:side, :side] / side - 0.5
    radius = np.hypot(yy, xx * 1.4)
    return ((radius > 0.22) & (radius < 0.3)).astype(np.uint8) * 255


@pytest.mark.slow
def test_a_huge_picture_is_decoded_small_within_a_memory_budget() -> None:
    """A 4000×4000 RGBA PNG (80 KB) is shrunk as it is decoded: NumPy never holds more than a
    few MB of it (it held 256 MB of float RGBA before), and it reads like a small copy."""
    import tracemalloc

    rgba = np.zeros((4000, 4000, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = _ring(4000)
    data = _png(rgba, "RGBA")
    del rgba
    tracemalloc.start()
    try:
        grey = load_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert grey.shape == (1024, 1024) and grey.dtype == np.float32
    assert peak < 36 * 2**20, f"NumPy peaked at {peak / 2**20:.0f} MB"  # 1024² float RGBA: 16 MB
    small = np.zeros((400, 400, 4), np.uint8)
    small[..., :3] = 255
    small[..., 3] = _ring(400)
    assert _corr(preprocess_digit(grey).image, preprocess_file(_png(small, "RGBA")).image) > 0.9


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "P"])
def test_every_mode_and_format_comes_out_at_max_side(mode: str) -> None:
    from cnnlab.data.preprocess import MAX_SIDE

    ring = _ring(3000)[:, :2500]
    if mode == "I;16":
        img = Image.fromarray(ring.astype(np.uint16) * 257)
    else:
        img = Image.fromarray(ring).convert(mode)
    for fmt in ("PNG", "JPEG") if mode in ("L", "RGB") else ("PNG",):
        out = io.BytesIO()
        img.save(out, fmt)
        grey = load_image(out.getvalue())
        # MAX_SIDE itself, not below: a 3000 px JPEG drafted to 1500 px and halved was 750.
        assert max(grey.shape) == MAX_SIDE and min(grey.shape) > 500, (mode, fmt, grey.shape)
        assert grey.shape[0] > grey.shape[1]  # 3000 tall, 2500 wide: aspect kept
        assert grey.max() > 0.9 and grey.min() < 0.1, (mode, fmt)


def test_a_fifo_or_folder_is_refused_at_once(tmp_path) -> None:
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)  # reading it waits for a writer, then for it to stop
    with fifo_writer(fifo), pytest.raises(CnnlabError, match="FIFO, not a regular file"):
        load_image(fifo)
    with pytest.raises(CnnlabError, match="folder, not a regular file"):
        load_image(tmp_path)


def test_an_eps_picture_is_refused_without_running_ghostscript(monkeypatch) -> None:
    """Pillow would hand EPS to Ghostscript; only the picture formats are tried."""
    from PIL import EpsImagePlugin

    def no_ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was asked to run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(CnnlabError, match="not an image Pillow can read"):
        load_image(eps)
    with pytest.raises(CnnlabError, match="not an image Pillow can read"):
        read_pixels(eps, 32)


def test_a_damaged_picture_gives_one_line_and_no_pillow_warnings() -> None:
    # A TIFF whose tag sizes are garbled made Pillow print "Tag data larger than file" and
    # "Truncated File Read" around cnnlab's own one-line answer.
    out = io.BytesIO()
    Image.fromarray(np.full((40, 50), 200, np.uint8)).save(out, "TIFF")
    data = bytearray(out.getvalue())
    entry = data.index((284).to_bytes(2, "little") + (3).to_bytes(2, "little"))  # planar config
    data[entry + 4 : entry + 8] = (0xFFFF).to_bytes(4, "little")  # its count: past the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_image(bytes(data))
        except CnnlabError as err:
            assert "\n" not in str(err)
    assert [str(w.message) for w in caught] == []
