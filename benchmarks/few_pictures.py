"""Small picture folders trained as a new user would: ``cnnlab train --dataset FOLDER``.

Writes folders of a few pictures a class (each with its own ``train/`` and ``test/``), trains
each with no other option, in a child process as on a user's machine, and prints the test
accuracy and the wall time. Folders:

- ``shapes``: 3 classes of cnnlab's coloured shapes (circle, square, triangle), 150 training and
  50 test pictures each, saved at mixed sizes (24 to 96 pixels) as PNG or JPEG;
- ``digits``: the bundled MNIST sample's digits, 10 training and 30 test pictures a class, PNG;
- ``scenes``: the tests' three colour scenes (tests/picture_folders.py), 40 + 20 a class.

``--held-out`` writes the same kinds from other seeds and other pictures (shapes from seed 7 at
other sizes, digits from the sample's test split): analogues to look at once, after tuning.

    python benchmarks/few_pictures.py [--held-out] [--only shapes,digits] [--cnnlab PATH]

``--cnnlab PATH`` runs another checkout's cnnlab (the code before a change) on the same folders.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.user_machine import ROOT, child_env


def _save(picture: np.ndarray, path: Path, size: int, jpeg: bool) -> None:
    from PIL import Image

    image = Image.fromarray(picture).resize((size, size), Image.Resampling.BILINEAR)
    image.save(path.with_suffix(".jpg" if jpeg else ".png"), quality=90)


def write_shapes(root: Path, seed: int, sizes: tuple[int, int]) -> None:
    from cnnlab.data import shapes

    rng = np.random.default_rng(seed)
    for split, per_class, offset in (("train", 150, 0), ("test", 50, 1)):
        images, labels = shapes.generate(3000, size=48, seed=seed * 10 + offset)
        for label, name in enumerate(("circle", "square", "triangle")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
                picture = images[index].transpose(1, 2, 0)
                _save(picture, folder / f"{i:03d}", int(rng.integers(*sizes)), i % 3 == 0)


def write_digits(root: Path, split: str, start: int) -> None:
    from PIL import Image

    from cnnlab.data import load

    images, labels = load("mnist-sample", split)
    images = np.asarray(images)
    for part, per_class, skip in (("train", 10, start), ("test", 30, start + 10)):
        for digit in range(10):
            folder = root / part / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            chosen = np.flatnonzero(labels == digit)[skip : skip + per_class]
            for i, index in enumerate(chosen):
                pixels = np.asarray(images[index]).reshape(28, 28)
                if pixels.dtype != np.uint8:
                    pixels = np.clip(pixels * 255, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def write_scenes(root: Path, seed: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from picture_folders import write_picture_folder

    write_picture_folder(root / "train", per_class=40, seed=seed)
    write_picture_folder(root / "test", per_class=20, seed=seed + 100)


def train(folder: Path, out: Path, cnnlab: Path) -> tuple[float, float, float]:
    """Test accuracy, wall seconds and CPU seconds of ``cnnlab train --dataset folder``."""
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(cnnlab), env["PYTHONPATH"]])
    command = [sys.executable, "-m", "cnnlab", "train", "--dataset", str(folder), "--quiet"]
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(
        [*command, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=out.parent,
    )
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode:
        raise SystemExit(f"{folder.name}: {done.stderr.strip()}")
    plan = [line for line in done.stdout.splitlines() if "pictures," in line]
    if plan:
        print(f"  {plan[0]}")
    from cnnlab.engine.sequential import Sequential

    return Sequential.load(out / "model.npz").meta["test_accuracy"], seconds, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held-out", action="store_true")
    parser.add_argument("--only", default="shapes,digits,scenes")
    parser.add_argument("--cnnlab", default=str(ROOT), help="checkout whose cnnlab trains")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for kind in args.only.split(","):
            folder = base / kind
            if kind == "shapes":
                sizes = (40, 128) if args.held_out else (24, 96)
                write_shapes(folder, 7 if args.held_out else 1, sizes)
            elif kind == "digits":
                write_digits(folder, "test" if args.held_out else "train", 0)
            else:
                write_scenes(folder, 50 if args.held_out else 5)
            accuracy, seconds, cpu = train(folder, base / f"run-{kind}", Path(args.cnnlab))
            print(
                f"{kind}: test accuracy {100 * accuracy:.1f}% in {seconds:.1f} s ({cpu:.1f} CPU s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
