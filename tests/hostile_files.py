"""Builders of model archives and images, sound and hostile, shared by the fuzz tests and the
fuzz script.

Every archive is built byte for byte (fixed zip timestamps), so the same members give the same
file on every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import cnnlab


def seed_model() -> cnnlab.Sequential:
    """A small model with every kind of stored array: conv, dense and batch-norm buffers."""
    layers = [
        cnnlab.Conv2D(1, 2, 3, rng=0),
        cnnlab.MaxPool2D(2),
        cnnlab.ReLU(),
        cnnlab.Flatten(),
        cnnlab.Dense(2 * 13 * 13, 8, rng=1),
        cnnlab.BatchNorm1D(8),
        cnnlab.Dense(8, 10, rng=2),
    ]
    return cnnlab.Sequential(layers, input_shape=(1, 28, 28), meta={"preset": "fuzz"})


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def archive(members: dict[str, bytes]) -> bytes:
    """A zip with fixed timestamps, so the same members give the same bytes every run."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, payload in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload)
    return buffer.getvalue()


def model_members(config: object = None, raw: str | None = None, **arrays: np.ndarray) -> dict:
    """The members of a model file: the seed model's weights (overridden by ``arrays``, with
    dots written as ``__``) and its architecture (or ``config``, or a ``raw`` string)."""
    model = seed_model()
    weights = model.state_arrays() | {k.replace("__", "."): v for k, v in arrays.items()}
    members = {f"{name}.npy": npy(value) for name, value in weights.items()}
    entry = raw if raw is not None else json.dumps(config if config is not None else model.config())
    members["cnnlab.npy"] = npy(np.array(entry))
    return members


def model_file(config: object = None, raw: str | None = None, **arrays: np.ndarray) -> bytes:
    return archive(model_members(config, raw, **arrays))


@contextlib.contextmanager
def fifo_writer(fifo: Path) -> Iterator[None]:
    """A writer that sends a few bytes into ``fifo`` and closes it, so code that (wrongly)
    reads a FIFO gets an answer instead of hanging the tests; released on exit either way."""

    def write() -> None:
        with contextlib.suppress(OSError), open(fifo, "wb") as handle:
            handle.write(b"not a picture")

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:  # a writer still waiting for a reader (or yet to wait) is let through
        while thread.is_alive():
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            thread.join(0.05)
