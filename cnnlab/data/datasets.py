"""The data sets cnnlab knows, where their files are found, and how they are loaded.

``mnist`` and ``fashion-mnist`` are looked for, in order, in ``data_dir`` (the CLI's
``--data-dir``), in ``$CNNLAB_DATA``, in the user cache (``~/.cache/cnnlab/<name>``, honouring
``$XDG_CACHE_HOME``) and in ``/usr/share/datasets/<name>``; each of these may hold the files
directly or in a ``<name>/`` subfolder (tried first), gzip-compressed or not. When none has
them they are downloaded into the cache. ``mnist-sample`` (real MNIST digits) and ``sonar``
ship inside the package and never touch the network.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from cnnlab.data.download import DEFAULT_TIMEOUT, SHA256, cache_dir, fetch, local_file
from cnnlab.data.idx import read_idx
from cnnlab.engine.errors import CnnlabError


@dataclass(frozen=True)
class DatasetInfo:
    """What one data set is: its classes, splits, where it comes from and its licence."""

    name: str
    description: str
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    bundled: bool
    licence: str


_DIGITS = tuple("0123456789")
_FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "mnist": DatasetInfo(
            "mnist",
            "MNIST handwritten digits, 60,000 train + 10,000 test, 28x28 (downloaded)",
            _DIGITS,
            ("train", "test"),
            False,
            "CC BY-SA 3.0",
        ),
        "fashion-mnist": DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST clothing images, 60,000 train + 10,000 test, 28x28 (downloaded)",
            _FASHION,
            ("train", "test"),
            False,
            "MIT",
        ),
        "mnist-sample": DatasetInfo(
            "mnist-sample",
            "first 10,000 train + 2,000 test MNIST digits, bundled with cnnlab",
            _DIGITS,
            ("train", "test"),
            True,
            "CC BY-SA 3.0",
        ),
        "sonar": DatasetInfo(
            "sonar",
            "UCI sonar returns, 208 rows of 60 energies, rock or mine (bundled)",
            ("rock", "mine"),
            ("all", "train"),
            True,
            "CC BY 4.0",
        ),
    }
)

# The data sets of 28×28 grey images with 10 classes, which the CNN commands train on.
IMAGE_DATASETS = ("mnist-sample", "mnist", "fashion-mnist")

# The two IDX files (images, labels) of each split, without the .gz suffix.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
BUNDLED_DIR = Path(__file__).resolve().with_name("bundled")
SONAR_FILE = "sonar.all-data"
SONAR_FEATURES = 60


def names() -> tuple[str, ...]:
    """The names of the data sets :func:`load` accepts."""
    return tuple(DATASETS)


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise CnnlabError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def class_names(name: str) -> tuple[str, ...]:
    """The class names of data set ``name``, indexed by label."""
    return _info(name).classes


def load(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a split of data set ``name`` as ``(inputs, labels)``.

    Image sets give uint8 images ``(N, 28, 28)`` and uint8 labels ``(N,)`` for split
    ``"train"`` or ``"test"``. ``sonar`` gives float32 ``(208, 60)`` and labels 0 = rock,
    1 = mine; it has no test split, and ``"all"`` and ``"train"`` both give every row.

    An explicit ``data_dir`` must hold the files (no fallback); otherwise the search order in
    this module's docstring applies, ending in a download (``mirrors`` and ``timeout``
    override the defaults; ``progress`` shows a bar on stderr while downloading).
    """
    info = _info(name)
    if split not in info.splits:
        hint = "; it is one table: take 'all' and hold out rows yourself" if name == "sonar" else ""
        raise CnnlabError(
            f"{name} has no split {split!r}; use {' or '.join(map(repr, info.splits))}{hint}"
        )
    if name == "sonar":
        return read_sonar_csv(BUNDLED_DIR / SONAR_FILE)
    if info.bundled:
        paths = [BUNDLED_DIR / f"{name}-{f}.gz" for f in SPLIT_FILES[split]]
        for path in paths:
            if not path.is_file():
                raise CnnlabError(f"bundled file {path} is missing; reinstall cnnlab")
    else:
        folder = _find_folder(name, split, data_dir)
        if folder is None:
            checksums = {f: SHA256[name][f] for f in SPLIT_FILES[split]}
            folder = fetch(name, checksums, mirrors=mirrors, timeout=timeout, progress=progress)
        paths = [local_file(folder, f) for f in SPLIT_FILES[split]]
    images, labels = (read_idx(path) for path in paths)
    _check_pair(paths[0], images, paths[1], labels, len(info.classes))
    return images, labels


def _candidate_folders(name: str, base: Path) -> tuple[Path, Path]:
    """A base folder may hold a data set in a ``<name>/`` subfolder or directly."""
    return base / name, base


def _holds(folder: Path, split: str) -> bool:
    return all(local_file(folder, f) is not None for f in SPLIT_FILES[split])


def _find_folder(name: str, split: str, data_dir: str | os.PathLike | None) -> Path | None:
    """The first folder in the search order holding both files of ``split``, or None."""
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        for folder in _candidate_folders(name, base):
            if _holds(folder, split):
                return folder
        wanted = " and ".join(f"{f}[.gz]" for f in SPLIT_FILES[split])
        raise CnnlabError(
            f"{name}: --data-dir {base} lacks {wanted} (looked in {base / name} and {base}); "
            "put the files there or leave out --data-dir to use the cache or a download"
        )
    folders: list[Path] = []
    env = os.environ.get("CNNLAB_DATA", "")
    if env:
        folders += _candidate_folders(name, Path(env).expanduser())
    folders.append(cache_dir(name))
    folders += [system / name for system in SYSTEM_DIRS]
    return next((folder for folder in folders if _holds(folder, split)), None)


def available(name: str, data_dir: str | os.PathLike | None = None) -> bool:
    """Whether every split of ``name`` can be loaded without a download."""
    info = _info(name)
    if info.bundled:
        return True
    try:
        return all(_find_folder(name, split, data_dir) is not None for split in info.splits)
    except CnnlabError:
        return False


def _check_pair(
    image_path: Path, images: np.ndarray, label_path: Path, labels: np.ndarray, n_classes: int
) -> None:
    """Refuse image and label arrays that do not fit together as a digit-style data set."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CnnlabError(
            f"{image_path}: expected uint8 images of shape (N, 28, 28), found {images.dtype} "
            f"{images.shape}; is this the right file?"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise CnnlabError(
            f"{label_path}: expected a 1-D uint8 array of labels, found {labels.dtype} "
            f"{labels.shape}; is this the right file?"
        )
    if len(labels) != len(images):
        raise CnnlabError(
            f"{label_path}: {len(labels)} labels for the {len(images)} images in {image_path}; "
            "the two files must come from the same split"
        )
    if len(labels) and int(labels.max()) >= n_classes:
        raise CnnlabError(
            f"{label_path}: label {int(labels.max())} found, expected 0 to {n_classes - 1}; "
            "is this the right file?"
        )


def read_sonar_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse the UCI sonar file strictly: each row 60 numbers in [0, 1] and ``R`` or ``M``.

    Returns float32 features ``(N, 60)`` and uint8 labels (0 = rock, 1 = mine).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CnnlabError(f"{path}: no such file; reinstall cnnlab") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CnnlabError(f"{path}: cannot read as ASCII text: {err}") from None
    lines = text.splitlines()
    if not lines:
        raise CnnlabError(f"{path}: empty file, expected rows of 60 numbers and R or M")
    features = np.empty((len(lines), SONAR_FEATURES), dtype=np.float32)
    labels = np.empty(len(lines), dtype=np.uint8)
    for row, line in enumerate(lines):
        fields = line.split(",")
        where = f"{path}: line {row + 1}"
        if len(fields) != SONAR_FEATURES + 1:
            raise CnnlabError(
                f"{where}: expected {SONAR_FEATURES + 1} comma-separated fields "
                f"({SONAR_FEATURES} numbers and R or M), found {len(fields)}"
            )
        try:
            values = [float(field) for field in fields[:-1]]
        except ValueError as err:
            raise CnnlabError(f"{where}: {err}; expected numbers in [0, 1]") from None
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            raise CnnlabError(f"{where}: a value lies outside [0, 1]; expected energies in [0, 1]")
        label = fields[-1].strip()
        if label not in ("R", "M"):
            raise CnnlabError(f"{where}: label {label!r}, expected R (rock) or M (mine)")
        features[row] = values
        labels[row] = label == "M"
    return features, labels
