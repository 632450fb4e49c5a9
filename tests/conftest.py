"""Shared fixtures for the engine's tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository; tests that need it skip when it is missing."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is missing (canonical test data)")
    return SHARED_DIR


def read_idx_gz(path: Path) -> np.ndarray:
    """A gzip-compressed IDX file as an array (uint8 images or labels), read directly."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    assert raw[:2] == b"\x00\x00" and raw[2] == 0x08, f"{path}: not a uint8 IDX file"
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="session")
def mnist_small(shared_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First 2,000 train and first 1,000 test digits of MNIST: uint8 images and labels."""
    folder = shared_dir / "data" / "mnist"
    files = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    if not all((folder / f).is_file() for f in files):
        pytest.skip(f"MNIST files are missing from {folder}")
    x_train, y_train, x_test, y_test = (read_idx_gz(folder / f) for f in files)
    return x_train[:2000], y_train[:2000], x_test[:1000], y_test[:1000]
