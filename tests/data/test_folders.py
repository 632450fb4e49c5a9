"""Image-folder data sets: layout, decoding of every mode, the cache, and each bad input."""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from children import python_child
from picture_folders import CLASSES, scene, write_picture_folder
from PIL import Image

from cnnlab.data import folders
from cnnlab.data.datasets import UnknownDatasetError
from cnnlab.data.folders import FolderError, decode, load_folder
from cnnlab.data.pictures import load_image_set


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "cnnlab" / "folders"


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    return write_picture_folder(tmp_path / "pictures", per_class=10)


def test_a_folder_of_mixed_formats_and_sizes_loads_as_colour(pictures: Path) -> None:
    data = load_folder(pictures, image_size=24, progress=False)
    assert data.class_names == CLASSES
    assert data.input_shape == (3, 24, 24)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    # A stratified fifth of each class is held out: 2 of 10.
    assert np.bincount(data.y_test).tolist() == [2, 2, 2]
    assert np.bincount(data.y_train).tolist() == [8, 8, 8]
    assert data.skipped == () and not data.from_cache
    # Sea pictures are blue, sunsets red-dominated: the channels are in RGB order.
    sea, sunset = (data.x_train[data.y_train == CLASSES.index(c)] for c in ("sea", "sunset"))
    assert sea[:, 2].mean() > sea[:, 0].mean() + 50
    assert sunset[:, 0].mean() > sunset[:, 2].mean()


def test_the_split_is_seeded(pictures: Path) -> None:
    first = load_folder(pictures, 16, seed=1, progress=False)
    again = load_folder(pictures, 16, seed=1, progress=False)
    other = load_folder(pictures, 16, seed=2, progress=False)
    assert np.array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)


def test_the_second_run_reads_the_cache_and_a_change_invalidates_it(
    pictures: Path, isolated_cache: Path
) -> None:
    first = load_folder(pictures, 16, progress=False)
    assert [p.suffix for p in isolated_cache.iterdir()] == [".npz"]
    second = load_folder(pictures, 16, progress=False)
    assert second.from_cache and np.array_equal(first.x_train, second.x_train)
    changed = pictures / "sea" / "000.jpg"
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))
    third = load_folder(pictures, 16, progress=False)
    assert not third.from_cache
    assert load_folder(pictures, 20, progress=False).x_train.shape[-1] == 20  # size is in the key


def test_the_cache_keeps_the_recently_used_files_within_its_limit(
    pictures: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_folder(pictures, 16, progress=False)
    (first,) = isolated_cache.iterdir()
    monkeypatch.setattr(folders, "CACHE_BYTES", first.stat().st_size + 1)
    load_folder(pictures, 20, progress=False)  # over the limit: the older file goes
    (second,) = isolated_cache.iterdir()
    assert second != first
    assert load_folder(pictures, 20, progress=False).from_cache


def test_a_damaged_cache_file_is_ignored(pictures: Path, isolated_cache: Path) -> None:
    load_folder(pictures, 16, progress=False)
    (cache_file,) = isolated_cache.iterdir()
    cache_file.write_bytes(b"PK\x03\x04 not really")
    assert not load_folder(pictures, 16, progress=False).from_cache


def test_grey_pictures_give_one_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, level in (("dark", 40), ("light", 210)):
        (tmp_path / name).mkdir()
        for i in range(3):
            grey = np.full((20 + i, 30), level, np.uint8) + rng.integers(
                0, 9, (20 + i, 30), np.uint8
            )
            Image.fromarray(grey).save(tmp_path / name / f"{i}.png")
    data = load_folder(tmp_path, 12, progress=False)
    assert data.input_shape == (1, 12, 12)
    assert data.x_train[data.y_train == 0].mean() < 60 < data.x_train[data.y_train == 1].mean()


def test_train_and_test_folders_are_used_as_given(tmp_path: Path) -> None:
    write_picture_folder(tmp_path / "train", per_class=4, seed=1)
    write_picture_folder(tmp_path / "test", per_class=2, seed=2, classes=("sea", "sunset"))
    data = load_folder(tmp_path, 16, progress=False)
    assert len(data.y_train) == 12 and np.bincount(data.y_test).tolist() == [0, 2, 2]


def test_a_test_class_unknown_to_training_is_refused(tmp_path: Path) -> None:
    write_picture_folder(tmp_path / "train", per_class=2)
    write_picture_folder(tmp_path / "test", per_class=1, classes=("lake",))
    with pytest.raises(FolderError, match="'lake' is not among the training classes"):
        load_folder(tmp_path, 16, progress=False)


def test_centre_crop_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    # A wide picture: red left third, green middle, blue right third.
    wide = np.zeros((30, 90, 3), np.uint8)
    wide[:, :30, 0] = wide[:, 30:60, 1] = wide[:, 60:, 2] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    pixels, mode = decode(tmp_path / "wide.png", 10)
    assert mode == "colour" and pixels.shape == (10, 10, 3)
    # Only the centre square (the green third) is kept, undistorted.
    assert pixels[:, 1:-1, 1].min() == 255 and pixels[:, 1:-1, [0, 2]].max() == 0


def _png(mode: str, array: np.ndarray, **kw) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, "PNG", **kw)
    return out.getvalue()


def test_every_picture_mode_is_converted(tmp_path: Path) -> None:
    rgb = scene("sea", 40, 40, np.random.default_rng(0))
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((40, 40), 65535, np.uint16)).save(tmp_path / "deep.png")
    clear = np.zeros((40, 40, 4), np.uint8)  # fully transparent black: laid on white
    Image.fromarray(clear, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(np.zeros((40, 40, 2), np.uint8), "LA").save(tmp_path / "la.png")
    results = {p.name: decode(p, 8) for p in sorted(tmp_path.iterdir())}
    assert {name: mode for name, (_, mode) in results.items()} == {
        "alpha.png": "colour", "cmyk.jpg": "colour", "deep.png": "grey", "la.png": "grey",
        "p.png": "colour",
    }  # fmt: skip
    assert results["deep.png"][0].min() == 255  # 16-bit white stays white, not clipped
    assert results["alpha.png"][0].min() == 255 and results["la.png"][0].min() == 255
    assert results["p.png"][0][..., 2].mean() > results["p.png"][0][..., 0].mean() + 50
    assert abs(results["cmyk.jpg"][0].astype(int) - results["p.png"][0]).mean() < 30


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20, 0] = 255  # left half red
    stored[:, 20:, 2] = 255  # right half blue
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    pixels, _ = decode(tmp_path / "turned.jpg", 20)
    # Turned clockwise, the left (red) half is on top.
    assert pixels[:8, :, 0].mean() > 200 and pixels[-8:, :, 2].mean() > 200


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels and holds almost nothing."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_bad_files_are_counted_listed_and_skipped(pictures: Path) -> None:
    sea = pictures / "sea"
    (sea / "notes.txt").write_text("not a picture")
    (sea / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (sea / "bomb.png").write_bytes(_huge_png_header(50_000, 50_000))
    (sea / "big.png").write_bytes(_huge_png_header(8000, 8000))  # over the limit, under Pillow's
    (sea / "nested").mkdir()
    (sea / "nested" / "loop").symlink_to(sea, target_is_directory=True)
    (sea / "self.png").symlink_to(sea / "self.png")
    (sea / ".hidden.jpg").write_bytes(b"ignored")
    (pictures / "stray.png").write_bytes(_png("L", np.zeros((4, 4), np.uint8)))
    data = load_folder(pictures, 16, progress=False)
    reasons = {Path(path).name: reason for path, reason in data.skipped}
    assert reasons.keys() == {"notes.txt", "broken.jpg", "bomb.png", "big.png", "loop", "self.png",
                              "stray.png"}  # fmt: skip
    assert reasons["notes.txt"] == "not an image file (.txt)"
    assert "more than the limit" in reasons["bomb.png"]
    assert "more than the limit" in reasons["big.png"]
    assert "already read" in reasons["loop"]
    assert reasons["stray.png"] == "not inside a class folder"
    assert "the file" in reasons["broken.jpg"] and "save it" in reasons["broken.jpg"]
    assert len(data.y_train) + len(data.y_test) == 30  # every good picture is still there


@pytest.fixture
def symlinks(tmp_path: Path) -> None:
    try:
        (tmp_path / "probe").symlink_to(tmp_path, target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("this platform cannot make symbolic links")
    (tmp_path / "probe").unlink()


def _labels(files: dict) -> dict[Path, tuple[str, int]]:
    return {path: (split, label) for split, found in files.items() for path, label in found}


@pytest.mark.usefixtures("symlinks")
@pytest.mark.parametrize("holder", ["forest", "sunset"])  # walked before and after sea
def test_a_link_to_another_class_s_picture_never_gives_it_a_second_label(
    pictures: Path, holder: str
) -> None:
    picture, link = pictures / "sea" / "001.png", pictures / holder / "stolen.png"
    link.symlink_to(picture)
    names, files, skipped = folders.scan(pictures)
    assert len(files["train"]) == 30 and _labels(files)[picture] == ("train", names.index("sea"))
    assert skipped == [
        (str(link), f"the same file as {picture}, already a training picture of class 'sea'")
    ]


@pytest.mark.usefixtures("symlinks")
def test_a_folder_link_into_another_class_adds_nothing(pictures: Path) -> None:
    (pictures / "forest" / "more").symlink_to(pictures / "sea", target_is_directory=True)
    names, files, skipped = folders.scan(pictures)
    labels = _labels(files)
    assert len(labels) == 30 and all(
        p.parent.name == names[label] for p, (_, label) in labels.items()
    )
    assert len(skipped) == 10
    assert all(Path(p).parent == pictures / "forest" / "more" for p, _ in skipped)
    assert all(why.endswith("already a training picture of class 'sea'") for _, why in skipped)


@pytest.mark.usefixtures("symlinks")
def test_a_class_of_links_to_another_class_only_is_refused(pictures: Path) -> None:
    (pictures / "moon").mkdir()
    (pictures / "moon" / "sea").symlink_to(pictures / "sea", target_is_directory=True)
    with pytest.raises(FolderError, match="'moon' holds only pictures that another class"):
        folders.scan(pictures)


@pytest.mark.usefixtures("symlinks")
def test_links_that_lead_outside_the_data_folder_are_skipped(
    pictures: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "private.png").write_bytes(_png("L", np.zeros((9, 9), np.uint8)))
    (pictures / "sea" / "x.png").symlink_to(elsewhere / "private.png")
    (pictures / "sea" / "away").symlink_to(elsewhere, target_is_directory=True)
    (pictures / "forest" / "up").symlink_to("../..", target_is_directory=True)
    _, files, skipped = folders.scan(pictures)
    assert len(files["train"]) == 30
    assert sorted(skipped) == [
        (str(pictures / "forest" / "up"), f"link leads outside the data folder: {tmp_path}"),
        (str(pictures / "sea" / "away"), f"link leads outside the data folder: {elsewhere}"),
        (
            str(pictures / "sea" / "x.png"),
            f"link leads outside the data folder: {elsewhere / 'private.png'}",
        ),
    ]


@pytest.mark.usefixtures("symlinks")
def test_a_link_to_the_file_system_root_pulls_in_nothing(pictures: Path) -> None:
    (pictures / "sea" / "root").symlink_to(pictures.anchor, target_is_directory=True)
    _, files, skipped = folders.scan(pictures)
    assert len(files["train"]) == 30
    assert all(path.is_relative_to(pictures) for path, _ in files["train"])
    assert skipped == [
        (str(pictures / "sea" / "root"), f"link leads outside the data folder: {pictures.anchor}")
    ]


@pytest.mark.usefixtures("symlinks")
def test_a_class_folder_that_leads_outside_is_refused(pictures: Path, tmp_path: Path) -> None:
    write_picture_folder(tmp_path / "elsewhere", per_class=2, classes=("moon",))
    (pictures / "moon").symlink_to(tmp_path / "elsewhere" / "moon", target_is_directory=True)
    with pytest.raises(FolderError, match="moon: a link that leads outside the data folder"):
        folders.scan(pictures)


@pytest.mark.usefixtures("symlinks")
def test_links_inside_the_data_folder_work_and_count_each_file_once(tmp_path: Path) -> None:
    write_picture_folder(tmp_path / "train", per_class=3)
    write_picture_folder(tmp_path / "extra", per_class=2, classes=("sea",), seed=1)
    sea = tmp_path / "train" / "sea"
    (sea / "more").symlink_to(tmp_path / "extra" / "sea", target_is_directory=True)
    (sea / "again.jpg").symlink_to(sea / "000.jpg")
    names, files, skipped = folders.scan(tmp_path)
    labels = _labels(files)
    assert labels[sea / "more" / "001.png"] == ("train", names.index("sea"))
    assert len(labels) == 9 + 2 and sea / "again.jpg" not in labels
    assert skipped == [
        (
            str(sea / "again.jpg"),
            f"the same file as {sea / '000.jpg'}, already a training picture of class 'sea'",
        )
    ]


@pytest.mark.usefixtures("symlinks")
def test_a_training_picture_is_never_also_a_test_picture(tmp_path: Path) -> None:
    write_picture_folder(tmp_path / "train", per_class=3)
    write_picture_folder(tmp_path / "test", per_class=2)
    train, test = tmp_path / "train", tmp_path / "test"
    (test / "sea" / "copy.jpg").symlink_to(train / "sea" / "000.jpg")
    (test / "forest" / "copy.jpg").hardlink_to(train / "sea" / "000.jpg")
    (test / "sunset" / "linked").symlink_to(train / "sunset", target_is_directory=True)
    _, files, skipped = folders.scan(tmp_path)
    assert len(files["train"]) == 9 and len(files["test"]) == 6
    assert all(path.is_relative_to(train) for path, _ in files["train"])
    reasons = dict(skipped)
    training = f"the same file as {train / 'sea' / '000.jpg'}, already a training picture"
    assert reasons[str(test / "sea" / "copy.jpg")] == f"{training} of class 'sea'"
    assert reasons[str(test / "forest" / "copy.jpg")] == f"{training} of class 'sea'"
    assert len(reasons) == 2 + 3
    data = load_folder(tmp_path, 16, progress=False)
    assert len(data.y_train) == 9 and len(data.y_test) == 6


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda root: (root / "sea").mkdir(), "holds no pictures"),
        (lambda root: None, "needs at least 2 class folders"),
        (lambda root: (root / "test").mkdir(), "has test/ but no train/"),
        (
            lambda root: write_picture_folder(root, per_class=2, classes=("e\x1b]0;pwned\x07",)),
            "has control characters in its name",
        ),
        (
            lambda root: write_picture_folder(root, per_class=2, classes=("s" * 101,)),
            "has a 101-character name, more than the 100 a model keeps",
        ),
    ],
)
def test_folder_layout_errors_are_one_line(tmp_path: Path, arrange, message: str) -> None:
    write_picture_folder(tmp_path, per_class=2, classes=("forest",))
    arrange(tmp_path)
    if (tmp_path / "test").exists():
        (tmp_path / "forest").rename(tmp_path / "test" / "forest")
    with pytest.raises(FolderError, match=message) as caught:
        load_folder(tmp_path, 16, progress=False)
    assert "\n" not in str(caught.value)


def test_a_class_with_only_unreadable_files_is_refused(pictures: Path) -> None:
    for path in (pictures / "sea").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(FolderError, match="none of the pictures of class 'sea' could be read"):
        load_folder(pictures, 16, progress=False)


def test_a_set_larger_than_memory_is_refused_before_decoding(
    pictures: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folders, "decode", lambda *a: pytest.fail("decoded anyway"))
    with pytest.raises(FolderError, match=r"30 pictures at 256×256 need about 0\.03 GB"):
        load_folder(pictures, 256, progress=False, max_bytes=10_000_000)
    assert not isolated_cache.exists()


def test_the_memory_budget_honours_the_address_space_limit() -> None:
    """Under ``ulimit -v`` (VmSize + 400 MB here) the budget is at most half of what is left,
    however much memory the machine has free."""
    code = (
        "import resource\nfrom pathlib import Path\nimport cnnlab.data.folders as f\n"
        "size = next(int(l.split()[1]) * 1024 for l in Path('/proc/self/status').read_text()"
        ".splitlines() if l.startswith('VmSize:'))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + (400 << 20), resource.RLIM_INFINITY))\n"
        "print(f.memory_budget())"
    )
    budget = int(python_child(code))
    assert 0 < budget <= 200 << 20
    assert folders.memory_budget() > 200 << 20  # this process has no such limit


def test_a_path_that_is_not_a_folder_or_a_name(tmp_path: Path) -> None:
    with pytest.raises(FolderError, match="no such folder"):
        load_folder(tmp_path / "missing", 16)
    with pytest.raises(UnknownDatasetError, match="does not exist"):
        load_image_set(str(tmp_path / "missing"))


def test_load_image_set_takes_a_folder_and_the_image_size(pictures: Path) -> None:
    data = load_image_set(str(pictures), image_size=20, progress=False)
    assert data.input_shape == (3, 20, 20) and data.kind == "images"


def test_image_size_bounds(pictures: Path) -> None:
    with pytest.raises(FolderError, match="--image-size must be 8 to 512"):
        load_folder(pictures, 4)


def test_channel_statistics_take_bounded_memory_whatever_the_picture_size() -> None:
    import tracemalloc

    from cnnlab.data.imageset import channel_stats

    images = np.random.default_rng(0).integers(0, 256, (120, 3, 256, 256), dtype=np.uint8)
    reference = images.astype(np.float64) / 255.0
    tracemalloc.start()
    mean, std = channel_stats(images)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 80 * 2**20  # the float64 copy of these 22 MB would be 180 MB
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(std, reference.std(axis=(0, 2, 3)), atol=1e-6)


def _poisoned_cache(path: Path, arrays: dict) -> None:
    import zipfile as zf

    with zf.ZipFile(path, "w", zf.ZIP_DEFLATED) as archive:
        for name, (shape, dtype, body) in arrays.items():
            out = io.BytesIO()
            header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(out, header)
            archive.writestr(f"{name}.npy", out.getvalue() + body)


@pytest.mark.parametrize(
    "arrays",
    [
        {"pixels": ((10**12,), "u1", b""), "reasons": ((30,), "<U6", b"")},
        {"pixels": ((1 << 31,), "u1", bytes(1 << 20)), "reasons": ((30,), "<U6", b"")},
        {"pixels": ((30, 16, 16, 3), "u1", b""), "reasons": ((30,), [("a", "<i4")], b"")},
        {"pixels": ((30, 16, 16, 3), "u1", b""), "reasons": ((30,), "<i8", b"")},
    ],
)
def test_a_poisoned_decode_cache_is_ignored_before_it_is_read(
    pictures: Path, isolated_cache: Path, arrays: dict
) -> None:
    first = load_folder(pictures, 16, progress=False)
    (cached,) = isolated_cache.glob("*.npz")
    _poisoned_cache(cached, arrays)
    again = load_folder(pictures, 16, progress=False)  # decodes again instead
    assert not again.from_cache
    np.testing.assert_array_equal(again.x_train, first.x_train)


def test_a_cache_that_cannot_be_written_is_skipped(
    pictures: Path, isolated_cache: Path, capsys: pytest.CaptureFixture
) -> None:
    isolated_cache.parent.mkdir(parents=True, exist_ok=True)
    isolated_cache.write_text("a file where the cache folder goes")
    data = load_folder(pictures, 16, progress=True)
    assert len(data.y_train) > 0
    assert "decode cache was not written" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
@pytest.mark.parametrize("kind", ["16-bit grey PNG", "float TIFF"])
def test_a_big_deep_picture_is_shrunk_before_it_is_converted(kind: str) -> None:
    """16 MP of 16-bit or float pixels, a few KB on disk: decoded to 32 px within ~100 MB."""
    code = (
        "import io, resource, sys, numpy as np\n"
        "from PIL import Image\n"
        "from cnnlab.data.folders import read_pixels\n"
        "kind = sys.argv[1]\n"
        "dtype, fmt = (np.uint16, 'PNG') if kind.startswith('16') else (np.float32, 'TIFF')\n"
        "out = io.BytesIO()\n"
        "Image.fromarray(np.zeros((4000, 4000), dtype)).save(out, fmt)\n"
        "data = out.getvalue(); del out\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "read_pixels(data, 32)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    assert int(python_child(code, kind).strip()) < 100  # MB more than before decoding (was 300-370)
