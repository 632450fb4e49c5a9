"""Tests for the data set registry, the file search order and the loaders."""

from __future__ import annotations

import hashlib
import socket
import sys
from pathlib import Path

import grimp
import numpy as np
import pytest

import cnnlab.data
from cnnlab.data import datasets
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.engine.errors import CnnlabError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def dead_url() -> str:
    """A local URL on a port nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the tests out of the real home, cache, system folders and network."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("CNNLAB_MIRRORS", dead_url())
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", (tmp_path / "system",))
    return tmp_path


def make_fake(folder: Path, label: int, split: str = "train", compress: bool = True) -> None:
    """Write a three-image split whose images and labels all equal ``label``."""
    images_name, labels_name = datasets.SPLIT_FILES[split]
    suffix = ".gz" if compress else ""
    write_idx(folder / f"{images_name}{suffix}", np.full((3, 28, 28), label, np.uint8))
    write_idx(folder / f"{labels_name}{suffix}", np.full(3, label, np.uint8))


def loaded_label(**kwargs: object) -> int:
    images, labels = cnnlab.data.load("mnist", progress=False, **kwargs)
    assert images.shape == (3, 28, 28)
    return int(labels[0])


def test_registry_lists_the_six_data_sets() -> None:
    assert cnnlab.data.names() == (
        "mnist", "fashion-mnist", "mnist-sample", "sonar", "cifar10", "shapes",
    )  # fmt: skip
    assert tuple(cnnlab.data.DATASETS) == cnnlab.data.names()
    assert cnnlab.data.class_names("mnist") == tuple("0123456789")
    assert cnnlab.data.class_names("fashion-mnist")[0] == "T-shirt/top"
    assert cnnlab.data.class_names("fashion-mnist")[9] == "Ankle boot"
    assert cnnlab.data.class_names("sonar") == ("rock", "mine")
    assert cnnlab.data.class_names("cifar10")[3] == "cat"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(CnnlabError, match=r"unknown data set 'cifar'.*mnist, fashion-mnist"):
        cnnlab.data.load("cifar")
    with pytest.raises(CnnlabError, match="unknown data set"):
        cnnlab.data.class_names("cifar")


def test_unknown_split() -> None:
    with pytest.raises(CnnlabError, match=r"mnist-sample has no split 'val'; use 'train' or"):
        cnnlab.data.load("mnist-sample", "val")


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "first_train", "first_test"), [("mnist", 5, 7), ("fashion-mnist", 9, 9)]
)
def test_real_files_from_data_dir(name: str, first_train: int, first_test: int) -> None:
    folder = SHARED / "data" / name
    images, labels = cnnlab.data.load(name, "train", data_dir=folder)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert labels[0] == first_train
    images, labels = cnnlab.data.load(name, "test", data_dir=folder)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert labels[0] == first_test
    assert set(np.unique(labels)) == set(range(10))


def test_data_dir_may_hold_a_subfolder_per_data_set(isolated: Path) -> None:
    make_fake(isolated / "data" / "mnist", 7, split="test")
    make_fake(isolated / "data" / "fashion-mnist", 2, split="test")
    _, labels = cnnlab.data.load("mnist", "test", data_dir=isolated / "data")
    assert labels[0] == 7
    _, labels = cnnlab.data.load("fashion-mnist", "test", data_dir=isolated / "data")
    assert labels[0] == 2


def test_mnist_sample_holds_real_digits_of_every_class() -> None:
    for split, count, first in [("train", 10000, [5, 0, 4]), ("test", 2000, [7, 2, 1])]:
        images, labels = cnnlab.data.load("mnist-sample", split)
        assert images.shape == (count, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (count,) and labels.dtype == np.uint8
        assert labels[:3].tolist() == first  # MNIST's first labels, in their original order
        assert np.bincount(labels, minlength=10).min() >= count // 20
        # Digits: bright ink on a dark background, about a fifth of the pixels inked.
        assert images[:, 0, :].max() == 0 and images.max() == 255
        assert 0.1 < (images > 127).mean() < 0.3


@pytest.mark.shared_data
def test_mnist_sample_is_the_first_rows_of_the_real_files() -> None:
    real = SHARED / "data" / "mnist"
    for split, prefix, count in [("train", "train", 10000), ("test", "t10k", 2000)]:
        images, labels = cnnlab.data.load("mnist-sample", split)
        assert images.shape == (count, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (count,) and labels.dtype == np.uint8
        np.testing.assert_array_equal(
            images, read_idx(real / f"{prefix}-images-idx3-ubyte.gz")[:count]
        )
        np.testing.assert_array_equal(
            labels, read_idx(real / f"{prefix}-labels-idx1-ubyte.gz")[:count]
        )


def test_bundled_files_stay_small() -> None:
    total = sum(path.stat().st_size for path in datasets.BUNDLED_DIR.iterdir())
    assert total <= 3_000_000
    assert (datasets.BUNDLED_DIR / "ATTRIBUTION.md").is_file()


def test_sonar() -> None:
    features, labels = cnnlab.data.load("sonar")
    assert features.shape == (208, 60) and features.dtype == np.float32
    assert labels.shape == (208,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [97, 111]
    assert labels[0] == 0 and labels[-1] == 1  # the file lists rocks, then mines
    assert features[0, 0] == np.float32(0.02)
    assert features.min() >= 0.0 and features.max() <= 1.0
    again, _ = cnnlab.data.load("sonar", "all")
    np.testing.assert_array_equal(features, again)
    with pytest.raises(CnnlabError, match=r"sonar has no split 'test'.*hold out rows"):
        cnnlab.data.load("sonar", "test")


def test_bundled_sonar_is_the_uci_file() -> None:
    bundled = (datasets.BUNDLED_DIR / "sonar.all-data").read_bytes()
    # The SHA-256 of the UCI repository's file, as ATTRIBUTION.md records it.
    digest = "e90434cdbf00fcf93ffa911fe447ae25606979658e60f1d32e155c3b5240234d"
    assert hashlib.sha256(bundled).hexdigest() == digest
    assert digest in (datasets.BUNDLED_DIR / "ATTRIBUTION.md").read_text()


def sonar_row(values: list[str] | None = None, label: str = "R") -> str:
    return ",".join((values or ["0.5"] * 60) + [label])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "empty file"),
        ([sonar_row(), sonar_row()[:-6]], "line 2: expected 61 comma-separated fields"),
        ([sonar_row(label="X")], "line 1: label 'X', expected R"),
        ([sonar_row(["0.5"] * 59 + ["abc"])], "line 1: could not convert"),
        ([sonar_row(["0.5"] * 59 + ["1.5"])], "outside [0, 1]"),
        ([sonar_row(["0.5"] * 59 + ["nan"])], "outside [0, 1]"),
        ([sonar_row(), ""], "line 2: expected 61"),
    ],
)
def test_sonar_parser_is_strict(tmp_path: Path, rows: list[str], message: str) -> None:
    path = tmp_path / "sonar.csv"
    path.write_text("\n".join(rows) + ("\n" if rows else ""))
    with pytest.raises(CnnlabError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cnnlab.data.read_sonar_csv(path)


def test_sonar_parser_reads_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "sonar.csv"
    path.write_text(sonar_row(label="M") + "\n" + sonar_row(["0.25"] * 60) + "\n")
    features, labels = cnnlab.data.read_sonar_csv(path)
    assert labels.tolist() == [1, 0]
    assert features[1, 59] == np.float32(0.25)


def test_search_order_data_dir_then_env_then_cache_then_system(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit, env, system = isolated / "explicit", isolated / "env", isolated / "system"
    cache = isolated / "home" / ".cache" / "cnnlab" / "mnist"
    make_fake(explicit, 1)
    make_fake(env / "mnist", 2)  # $CNNLAB_DATA/<name>/ layout
    make_fake(cache, 3)
    make_fake(system / "mnist", 4)
    monkeypatch.setenv("CNNLAB_DATA", str(env))
    assert cnnlab.data.cache_dir("mnist") == cache
    assert loaded_label(data_dir=explicit) == 1
    assert loaded_label() == 2
    monkeypatch.delenv("CNNLAB_DATA")
    assert loaded_label() == 3
    for path in cache.iterdir():
        path.unlink()
    assert loaded_label() == 4


def test_env_folder_may_hold_the_files_directly(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_fake(isolated / "flat", 6, compress=False)
    monkeypatch.setenv("CNNLAB_DATA", str(isolated / "flat"))
    assert loaded_label() == 6


def test_cache_without_xdg_is_under_home(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    make_fake(isolated / "home" / ".cache" / "cnnlab" / "mnist", 8)
    assert loaded_label() == 8
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert loaded_label() == 8


def test_env_folder_without_the_files_falls_through(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_fake(isolated / "home" / ".cache" / "cnnlab" / "mnist", 3)
    monkeypatch.setenv("CNNLAB_DATA", str(isolated / "empty"))
    assert loaded_label() == 3


def test_explicit_data_dir_without_the_files_is_an_error(isolated: Path) -> None:
    make_fake(isolated / "home" / ".cache" / "cnnlab" / "mnist", 3)
    make_fake(isolated / "only-test", 1, split="test")
    with pytest.raises(CnnlabError) as info:
        cnnlab.data.load("mnist", data_dir=isolated / "only-test")
    message = str(info.value)
    assert "--data-dir" in message and "train-images-idx3-ubyte[.gz]" in message
    assert "\n" not in message
    _, labels = cnnlab.data.load("mnist", "test", data_dir=isolated / "only-test")
    assert labels[0] == 1


def test_split_half_present_is_not_used(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = isolated / "env"
    make_fake(env, 2)
    (env / "train-labels-idx1-ubyte.gz").unlink()
    make_fake(isolated / "system" / "mnist", 4)
    monkeypatch.setenv("CNNLAB_DATA", str(env))
    assert loaded_label() == 4


def test_nothing_anywhere_tries_the_mirrors_and_explains(isolated: Path) -> None:
    with pytest.raises(CnnlabError) as info:
        cnnlab.data.load("mnist", "test", progress=False, timeout=2)
    message = str(info.value)
    assert "could not download t10k-images-idx3-ubyte.gz" in message
    assert "--data-dir DIR" in message and "$CNNLAB_DATA" in message
    cache = isolated / "home" / ".cache" / "cnnlab" / "mnist"
    assert str(cache) in message
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8), "2 labels for the 3 images"),
        (np.zeros((3, 28, 28), np.uint8), np.full(3, 10, np.uint8), "label 10 found"),
        (np.zeros((3, 28, 27), np.uint8), np.zeros(3, np.uint8), "shape \\(N, 28, 28\\)"),
        (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), "found float32"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), "1-D uint8 array"),
    ],
)
def test_inconsistent_files_are_refused(
    isolated: Path, images: np.ndarray, labels: np.ndarray, message: str
) -> None:
    folder = isolated / "bad"
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    with pytest.raises(CnnlabError, match=message):
        cnnlab.data.load("mnist", data_dir=folder)


def test_data_loaders_need_only_stdlib_and_numpy() -> None:
    # Every module the loaders import, directly or through other cnnlab modules (grimp follows
    # imports inside functions too), is the standard library or NumPy. Which cnnlab layers they
    # may import is the import-linter contract in pyproject.toml.
    graph = grimp.build_graph("cnnlab", include_external_packages=True)
    for loader in ("cnnlab.data", *(f"cnnlab.data.{m}" for m in ("datasets", "download", "idx"))):
        imported = graph.find_upstream_modules(loader)
        assert "cnnlab.engine.errors" in imported  # the graph follows cnnlab's own imports
        third_party = {m for m in imported if not m.startswith("cnnlab")}
        third_party -= set(sys.stdlib_module_names)
        assert third_party <= {"numpy"}, f"{loader} imports {sorted(third_party)}"
    assert "numpy" in graph.find_upstream_modules("cnnlab.data.idx")  # and sees third parties


def test_available_says_whether_a_download_would_be_needed(isolated: Path) -> None:
    assert cnnlab.data.available("mnist-sample") and cnnlab.data.available("sonar")
    assert not cnnlab.data.available("mnist")
    for split in ("train", "test"):
        make_fake(isolated / "data" / "mnist", 1, split=split)
        make_fake(isolated / "data" / "fashion-mnist", 1, split=split)
    assert cnnlab.data.available("mnist", isolated / "data" / "mnist")
    assert cnnlab.data.available("fashion-mnist", isolated / "data")
    assert not cnnlab.data.available("mnist", isolated)
    (isolated / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert not cnnlab.data.available("mnist", isolated / "data" / "mnist")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{tmp}/no/such/dir", "the folder '{tmp}/no/such/dir' does not exist"),
        ("mnsit", "'mnsit' is no built-in data set (did you mean 'mnist'?) and no folder of"),
        ("{tmp}/file.png", "'{tmp}/file.png' is a file, not a folder"),
        ("sonar", "'sonar' is not a picture data set"),
    ],
)
def test_a_source_that_is_no_picture_set_says_why_and_lists_the_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)  # "mnsit" is no folder here
    (tmp_path / "file.png").write_bytes(b"")
    source, problem = source.format(tmp=tmp_path), problem.format(tmp=tmp_path)
    with pytest.raises(datasets.UnknownDatasetError) as err:
        datasets.check_picture_source(source)
    message = str(err.value)
    assert message.startswith(problem) and "\n" not in message
    assert message.endswith("built-in set: " + ", ".join(datasets.PICTURE_DATASETS))


def test_a_picture_set_or_an_existing_folder_passes(tmp_path: Path) -> None:
    for source in (*datasets.PICTURE_DATASETS, str(tmp_path)):
        datasets.check_picture_source(source)  # raises for any other
