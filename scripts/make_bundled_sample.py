"""Make the data bundled in ``cnnlab/data/bundled/`` from the canonical files.

Writes the first 10,000 training and first 2,000 test MNIST digits (images and labels) as
gzip IDX files (level 9, no timestamp, so the output is reproducible) and copies the UCI sonar
table. Each source is checked against its published SHA-256 first.

Run from the repository root with cnnlab importable (``pip install -e .`` or ``PYTHONPATH=.``):

    python scripts/make_bundled_sample.py [--source ../shared/data] [--out cnnlab/data/bundled]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

from cnnlab.data.download import SHA256
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SIZES = {"train": 10_000, "t10k": 2_000}
SONAR_SHA256 = "e90434cdbf00fcf93ffa911fe447ae25606979658e60f1d32e155c3b5240234d"


def _checked_bytes(path: Path, sha256: str) -> bytes:
    """The (decompressed) content of ``path``, refused unless it hashes to ``sha256``."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise CnnlabError(f"{path}: SHA-256 {digest} differs from the published {sha256}")
    return data


def make_sample(source: Path, out: Path) -> None:
    """Write the MNIST sample and the sonar copy from ``source`` into ``out``."""
    for prefix, count in SAMPLE_SIZES.items():
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            name = f"{prefix}-{kind}"
            path = source / "mnist" / f"{name}.gz"
            _checked_bytes(path, SHA256["mnist"][name])
            target = out / f"mnist-sample-{name}.gz"
            write_idx(target, read_idx(path)[:count], compresslevel=9)
            print(f"wrote {target} ({target.stat().st_size} bytes)")
    sonar = out / "sonar.all-data"
    atomic_write_bytes(sonar, _checked_bytes(source / "sonar" / "sonar.all-data", SONAR_SHA256))
    print(f"wrote {sonar} ({sonar.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "cnnlab" / "data" / "bundled")
    args = parser.parse_args()
    try:
        make_sample(args.source, args.out)
    except CnnlabError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
