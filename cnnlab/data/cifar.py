"""CIFAR-10 from its binary distribution: 60,000 colour pictures of 32×32 in 10 classes.

The binary version (``cifar-10-binary.tar.gz``, folder ``cifar-10-batches-bin``) is plain bytes:
each record is one label byte followed by 3,072 pixel bytes, the red, green and blue planes of
32×32 in row order. ``data_batch_1.bin`` … ``data_batch_5.bin`` are the training set,
``test_batch.bin`` the test set. The Python version of the same data is pickled, and cnnlab never
unpickles a file, so it is refused with a pointer to the binary one.

The files are looked for like MNIST's: in ``data_dir`` (no fallback when given), in
``$CNNLAB_DATA``, in the cache (``~/.cache/cnnlab/cifar10``) and in
``/usr/share/datasets/cifar10``; each place may hold the ``.bin`` files directly, in
``cifar-10-batches-bin/``, in ``cifar10/cifar-10-batches-bin/`` or as the unextracted archive.
Otherwise the archive is downloaded into the cache. An archive, found or downloaded, is checked
against the published SHA-256 before it is opened, and only the expected members are extracted
(from at most ``MAX_MEMBERS`` entries).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab.data.download import DEFAULT_TIMEOUT, cache_dir, fetch_archive
from cnnlab.data.imageset import ImageSet
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write, open_regular_file

NAME = "cifar10"
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
FOLDER = "cifar-10-batches-bin"
ARCHIVE = "cifar-10-binary.tar.gz"
# The published archive: 170,052,171 bytes; MD5 c32a1d4ab5d03f1284b67883e8d87530.
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
SPLIT_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
ARCHIVE_BYTES = 170_052_171
MAX_MEMBERS = 64  # entries read from the archive (the published one has 9)
RECORD = 1 + 3 * 32 * 32
MAX_RECORDS = 10_000  # per file, as published
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class CifarError(CnnlabError):
    """CIFAR-10 files are missing, damaged, or the pickled (Python) version."""


def _candidates(base: Path) -> list[Path]:
    return [base / NAME / FOLDER, base / NAME, base / FOLDER, base]


def _holds(folder: Path) -> bool:
    return all((folder / f).is_file() for files in SPLIT_FILES.values() for f in files)


def _refuse_pickle(folders: Sequence[Path]) -> None:
    """Raise if one of ``folders`` holds the Python (pickle) distribution instead."""
    for folder in folders:
        for hint in ("cifar-10-batches-py", "cifar-10-python.tar.gz", "data_batch_1"):
            path = folder / hint
            # An empty folder left by an earlier try is no distribution: it must not block
            # the binary version's download.
            if path.is_file() or (path.is_dir() and any(path.iterdir())):
                raise CifarError(
                    f"{folder / hint} is the Python (pickled) version of CIFAR-10, which cnnlab "
                    f"does not read; download the binary version (cifar-10-binary.tar.gz) from "
                    f"{BINARY_URL}"
                )


def _extract(archive: Path, dest: Path) -> Path:
    """Extract the expected ``.bin`` members of ``archive`` into ``dest/FOLDER``; return it."""
    wanted = {f"{FOLDER}/{f}" for files in SPLIT_FILES.values() for f in files}
    out = dest / FOLDER
    written: list[Path] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise CifarError(
                        f"{archive}: more than {MAX_MEMBERS} entries, CIFAR-10's archive has 9; "
                        f"download cifar-10-binary.tar.gz again from {BINARY_URL}"
                    )
                if member.name not in wanted or not member.isfile():
                    continue  # only the known names: nothing can land outside ``out``
                if member.size > MAX_RECORDS * RECORD:
                    raise CifarError(f"{archive}: {member.name} is larger than CIFAR-10's files")
                source = tar.extractfile(member)
                with atomic_write(out / Path(member.name).name) as handle:
                    handle.write(source.read())
                written.append(out / Path(member.name).name)
        if not _holds(out):
            raise CifarError(
                f"{archive}: lacks the CIFAR-10 batch files; is this the binary version?"
            )
    except (CifarError, tarfile.TarError, OSError, EOFError) as err:
        for path in written:  # no half-extracted set left behind to be mistaken for data
            path.unlink(missing_ok=True)
        if isinstance(err, CifarError):
            raise
        raise CifarError(
            f"{archive}: not a readable CIFAR-10 archive ({err}); delete it and download "
            f"cifar-10-binary.tar.gz again from {BINARY_URL}"
        ) from None
    return out


def _check_archive(archive: Path) -> None:
    """Refuse a local archive that is not the published one (its SHA-256): an archive
    left in a data folder is opened only when it is CIFAR-10's own."""
    sha = hashlib.sha256()
    try:
        with open_regular_file(archive) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= ARCHIVE_BYTES:  # a bigger file is not it: not even hashed
                while chunk := handle.read(1 << 20):
                    sha.update(chunk)
    except (OSError, CnnlabError) as err:
        raise CifarError(f"{archive}: cannot read it ({err}); delete it") from None
    if size > ARCHIVE_BYTES or sha.hexdigest() != ARCHIVE_SHA256:
        raise CifarError(
            f"{archive}: is not the published {ARCHIVE} (its SHA-256 differs); "
            f"delete it and let cnnlab download it, or fetch it again from {BINARY_URL}"
        )


def find(
    data_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """The folder holding the six ``.bin`` files, extracting or downloading them if needed."""
    if data_dir is not None:
        bases = [Path(data_dir).expanduser()]
    else:
        env = os.environ.get("CNNLAB_DATA", "")
        bases = [Path(env).expanduser()] if env else []
        bases += [cache_dir(NAME), *(system / NAME for system in SYSTEM_DIRS)]
    folders = [folder for base in bases for folder in _candidates(base)]
    for folder in folders:
        if _holds(folder):
            return folder
    for folder in folders:
        if (folder / ARCHIVE).is_file():
            _check_archive(folder / ARCHIVE)
            return _extract(folder / ARCHIVE, folder)
    _refuse_pickle(folders)
    if data_dir is not None:
        raise CifarError(
            f"cifar10: --data-dir {bases[0]} holds neither {FOLDER}/ with data_batch_1.bin … "
            f"test_batch.bin nor {ARCHIVE}; put them there or leave out --data-dir"
        )
    archive = fetch_archive(
        NAME,
        ARCHIVE,
        ARCHIVE_SHA256,
        mirrors=mirrors if mirrors is not None else MIRRORS,
        timeout=timeout,
        progress=progress,
    )
    return _extract(archive, archive.parent)


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file: uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0 or size % RECORD or size > MAX_RECORDS * RECORD:
            raise CifarError(
                f"{path}: {size} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes "
                f"each, at most {MAX_RECORDS:,}); is this the binary version, unbroken?"
            )
        raw = np.fromfile(path, np.uint8)
    except OSError as err:
        raise CifarError(f"{path}: cannot read it ({err.strerror or err})") from None
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASSES):
        raise CifarError(
            f"{path}: label {labels.max()} found, CIFAR-10 has 0 to 9; is this CIFAR-100?"
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load(data_dir: str | os.PathLike | None = None, *, progress: bool = True, **kw) -> ImageSet:
    """CIFAR-10 as an :class:`ImageSet` (50,000 training and 10,000 test pictures)."""
    folder = find(data_dir, progress=progress, **kw)
    parts = {split: [read_batch(folder / f) for f in files] for split, files in SPLIT_FILES.items()}
    (x_train, y_train), (x_test, y_test) = (
        (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]))
        for batches in parts.values()
    )
    return ImageSet(NAME, CLASSES, x_train, y_train, x_test, y_test)
