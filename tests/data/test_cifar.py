"""CIFAR-10's binary distribution, on small files the tests write in its format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cifar_files import archive, write_batches

import cnnlab.data
from cnnlab.data import cifar
from cnnlab.data.cifar import CifarError
from cnnlab.data.pictures import load_image_set


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setattr(cifar, "SYSTEM_DIRS", (tmp_path / "system",))
    return tmp_path


def test_records_are_label_then_red_green_blue_planes(tmp_path: Path) -> None:
    written = write_batches(tmp_path / cifar.FOLDER)
    images, labels = cifar.read_batch(tmp_path / cifar.FOLDER / "test_batch.bin")
    record = written["test_batch.bin"][3]
    assert images.shape == (7, 3, 32, 32) and images.dtype == np.uint8
    assert labels[3] == record[0]
    assert images[3, 0, 0, 1] == record[1 + 1]  # red plane, row 0, column 1
    assert images[3, 1, 2, 0] == record[1 + 1024 + 64]  # green plane, row 2, column 0
    assert images[3, 2, 31, 31] == record[-1]  # blue plane, last pixel


def test_loaded_from_data_dir_environment_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_batches(tmp_path / "mine" / cifar.FOLDER)
    data = load_image_set("cifar10", data_dir=tmp_path / "mine", progress=False)
    assert data.x_train.shape == (35, 3, 32, 32) and data.x_test.shape == (7, 3, 32, 32)
    assert data.class_names[3] == "cat" and data.kind == "images"

    write_batches(tmp_path / "env" / "cifar10")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    images, labels = cnnlab.data.load("cifar10", "test")
    assert images.shape == (7, 3, 32, 32) and labels.dtype == np.int64

    monkeypatch.delenv("CNNLAB_DATA")
    write_batches(tmp_path / "cache" / "cnnlab" / "cifar10", per_file=2)
    assert cnnlab.data.load("cifar10", "test")[0].shape == (2, 3, 32, 32)


def trust(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make ``path`` pass for the published archive (its SHA-256 the expected one)."""
    import hashlib

    monkeypatch.setattr(cifar, "ARCHIVE_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())


def test_an_unextracted_archive_is_extracted_without_strays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = write_batches(tmp_path / "scratch")
    folder = tmp_path / "given"
    folder.mkdir()
    evil = {"../escaped.bin": b"x", f"{cifar.FOLDER}/readme.html": b"<p>"}
    (folder / cifar.ARCHIVE).write_bytes(archive(records, evil))
    with pytest.raises(CifarError, match=r"is not the published cifar-10-binary\.tar\.gz"):
        cifar.load(folder)  # a local archive is opened only when it is the published one
    trust(monkeypatch, folder / cifar.ARCHIVE)
    data = cifar.load(folder)
    assert np.array_equal(data.y_test, records["test_batch.bin"][:, 0])
    assert sorted(p.name for p in (folder / cifar.FOLDER).iterdir()) == sorted(records)
    assert not (tmp_path / "escaped.bin").exists()


def test_the_pickle_distribution_is_refused_with_a_pointer(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04")
    with pytest.raises(CifarError, match=r"pickled.*cifar-10-binary\.tar\.gz") as caught:
        cifar.load(tmp_path)
    assert "\n" not in str(caught.value)


def test_an_empty_pickle_folder_does_not_stand_in_the_way(tmp_path: Path) -> None:
    # Left by an earlier try, it blocked the binary version's download with "pickled".
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(CifarError, match=r"--data-dir .* holds neither"):
        cifar.load(tmp_path, mirrors=["http://127.0.0.1:9/"])


def test_a_failed_extraction_leaves_no_batch_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = write_batches(tmp_path / "scratch")
    del records["test_batch.bin"]  # an archive without the test batch
    folder = tmp_path / "given"
    folder.mkdir()
    (folder / cifar.ARCHIVE).write_bytes(archive(records, {}))
    trust(monkeypatch, folder / cifar.ARCHIVE)
    with pytest.raises(CifarError, match="lacks the CIFAR-10 batch files"):
        cifar.load(folder)
    assert not list((folder / cifar.FOLDER).glob("*.bin"))


def test_an_archive_of_many_entries_is_refused_after_a_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = write_batches(tmp_path / "scratch")
    folder = tmp_path / "given"
    folder.mkdir()
    empties = {f"{cifar.FOLDER}/empty{i}": b"" for i in range(cifar.MAX_MEMBERS)}
    (folder / cifar.ARCHIVE).write_bytes(archive(records, empties))
    trust(monkeypatch, folder / cifar.ARCHIVE)  # even a trusted archive: entries are counted
    with pytest.raises(CifarError, match="more than 64 entries") as caught:
        cifar.load(folder)
    assert "\n" not in str(caught.value)


def test_damaged_and_foreign_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / cifar.FOLDER
    write_batches(folder)
    (folder / "data_batch_2.bin").write_bytes(b"\x00" * (cifar.RECORD + 5))
    with pytest.raises(CifarError, match="not a whole number of CIFAR-10 records"):
        cifar.load(tmp_path)
    write_batches(folder)
    records = np.zeros((1, cifar.RECORD), np.uint8)
    records[0, 0] = 57  # a CIFAR-100 fine label
    (folder / "test_batch.bin").write_bytes(records.tobytes())
    with pytest.raises(CifarError, match="is this CIFAR-100"):
        cifar.load(tmp_path)


def test_an_explicit_data_dir_without_the_files_does_not_download(tmp_path: Path) -> None:
    with pytest.raises(CifarError, match=r"--data-dir .* holds neither"):
        cifar.load(tmp_path, mirrors=["http://127.0.0.1:9/"])
