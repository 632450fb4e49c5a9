"""Decoding and resizing an image folder: pictures per second, cold and from the cache.

    python benchmarks/decode_folders.py                 # 10,000 JPEGs of 500x375, 3 repeats
    python benchmarks/decode_folders.py --pictures 1000 --repeats 1

It writes a folder of photo-like JPEGs (500×375, quality 90, 10 classes; made once from the
bundled photos by seeded crops, flips and colour shifts, into ``benchmarks/out/``), then times
``cnnlab.data.folders.load_folder`` in fresh processes: **cold** (no cache: every file decoded
and resized) and **warm** (the second run, which reads the cache). Each figure is the median of
``--repeats`` runs; the spread (min–max) is printed beside it, because on a shared machine the
load from other processes moves these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"


def make_pictures(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs of 500×375 in 10 class folders (kept between runs)."""
    import numpy as np
    from PIL import Image

    from cnnlab.data.datasets import BUNDLED_DIR

    done = folder / f".complete-{n}"
    if done.exists():
        return folder
    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.open(p).convert("RGB").resize((640, 480)))
              for p in sorted(BUNDLED_DIR.glob("photo-*.jpg"))]  # fmt: skip
    for i in range(n):
        photo = photos[i % len(photos)]
        top, left = rng.integers(0, 480 - 375), rng.integers(0, 640 - 500)
        crop = photo[top : top + 375, left : left + 500].astype(np.float32)
        crop = crop * rng.uniform(0.7, 1.3, 3) + rng.normal(0, 6, crop.shape)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        target = folder / f"class{i % 10}" / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(target, quality=90)
    done.touch()
    return folder


def _worker(folder: str, size: int, cache_home: str) -> None:
    """One timed load in this process; prints a JSON line."""
    os.environ["XDG_CACHE_HOME"] = cache_home
    from cnnlab.data.folders import load_folder

    start = time.perf_counter()
    data = load_folder(folder, size, progress=False)
    seconds = time.perf_counter() - start
    n = len(data.y_train) + len(data.y_test)
    print(json.dumps({"seconds": seconds, "pictures": n, "from_cache": data.from_cache}))


def _run(folder: Path, size: int, cache_home: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(folder), str(size), cache_home],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32, help="--image-size to resize to")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], int(args.worker[1]), args.worker[2])
        return
    folder = make_pictures(OUT / f"jpegs-{args.pictures}", args.pictures)
    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache_home:
            first = _run(folder, args.size, cache_home)
            second = _run(folder, args.size, cache_home)
        assert not first["from_cache"] and second["from_cache"]
        cold.append(first["pictures"] / first["seconds"])
        warm.append(second["pictures"] / second["seconds"])
    print(f"{args.pictures:,} JPEGs of 500x375 -> {args.size}x{args.size}, "
          f"{os.cpu_count()} CPUs, {args.repeats} runs (median, min-max):")  # fmt: skip
    for name, rates in (("cold (decode + resize)", cold), ("warm (from the cache)", warm)):
        print(f"  {name:24s} {statistics.median(rates):9,.0f} pictures/s  "
              f"({min(rates):,.0f}-{max(rates):,.0f})")  # fmt: skip
    print("load average:", " ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
