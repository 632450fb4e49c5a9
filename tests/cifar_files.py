"""CIFAR-10 files in the binary distribution's format, written by the tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from cnnlab.data import cifar


def write_batches(folder: Path, per_file: int = 7, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the six batch files in the binary format; return each file's records."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for files in cifar.SPLIT_FILES.values():
        for name in files:
            records = rng.integers(0, 256, (per_file, cifar.RECORD), dtype=np.uint8)
            records[:, 0] = rng.integers(0, 10, per_file)
            (folder / name).write_bytes(records.tobytes())
            written[name] = records
    return written


def archive(records: dict[str, np.ndarray], extra: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        members = {f"{cifar.FOLDER}/{k}": v.tobytes() for k, v in records.items()}
        for name, body in {**members, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()
