"""The Teach tab's project: a person's own classes and examples, kept as an image-folder data set.

A project lives in ``<runs_dir>/teach/<name>/``: ``data/<class>/<n>.png`` holds the examples
(drawn, uploaded or from the webcam), and training writes ordinary run folders beside the other
runs, through the one run pipeline. So the CLI can evaluate, export or continue what the page
taught: ``cnnlab train --dataset runs/teach/<name>/data``.

Every example is stored as a 64×64 PNG, centre-cropped as training crops anyway; a picture is
decoded under the same pixel budget as any other (:func:`cnnlab.data.folders.read_pixels`).
Nothing here knows about HTTP.
"""

from __future__ import annotations

import io
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.folders import read_pixels
from cnnlab.data.preprocess import ImageTooLargeError
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write
from cnnlab.engine.metrics import describe_accuracy
from cnnlab.runs.config import RunConfig

MIN_CLASSES, MAX_CLASSES = 2, 10
MAX_EXAMPLES = 200  # per class
EXAMPLE_SIDE = 64  # pixels a side of a stored example
IMAGE_SIZE = 32  # the network's input
CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,23}$")
PROJECT = "project"


def accuracy_text(accuracy: float, count: int) -> str:
    """What the page says of a trained model: its accuracy on the held-out examples with their
    number and a 95 % interval, since 100 % of 3 examples says little."""
    right = round(accuracy * count)
    return f"Trained: right on {describe_accuracy(right, count)} held out."


class TeachError(CnnlabError):
    """A Teach request that cannot be carried out (names, counts, pictures)."""


class Project:
    """The one Teach project of a lab server (thread-safe: the page may send examples fast)."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.root = Path(runs_dir) / "teach" / PROJECT
        self._lock = threading.Lock()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def classes(self) -> list[str]:
        """The project's class names, in the order they were made (sorted, as folders are)."""
        if not self.data_dir.is_dir():
            return []
        return sorted(p.name for p in self.data_dir.iterdir() if p.is_dir())

    def state(self) -> dict[str, Any]:
        """Class names and how many examples each has."""
        return {
            "classes": [
                {"name": name, "examples": len(list((self.data_dir / name).glob("*.png")))}
                for name in self.classes()
            ],
            # Where to find it, without the server's own folders: from the lab's runs folder.
            "folder": f"{self.data_dir.relative_to(self.root.parents[1]).as_posix()} in the "
            "lab's runs folder",
        }

    def create(self, names: list[str]) -> dict[str, Any]:
        """Start over with the classes ``names`` (2 to 10, unique, short plain names)."""
        names = [str(n).strip() for n in names]
        if not MIN_CLASSES <= len(names) <= MAX_CLASSES:
            raise TeachError(f"name {MIN_CLASSES} to {MAX_CLASSES} classes, got {len(names)}")
        for name in names:
            if not CLASS_NAME.match(name):
                raise TeachError(
                    f"class name {name[:30]!r} must be 1 to 24 letters, digits, spaces, - or _"
                )
        if len({n.lower() for n in names}) != len(names):
            raise TeachError("class names must differ from each other")
        with self._lock:
            self._clear()
            for name in names:
                (self.data_dir / name).mkdir(parents=True, exist_ok=True)
        return self.state()

    def _clear(self) -> None:
        """Remove the old data folder: renamed aside in one step, then deleted without
        following links (a linked class folder loses its link, never what it points to)."""
        if not self.data_dir.exists() and not self.data_dir.is_symlink():
            return
        aside = self.root / f".old-data-{uuid.uuid4().hex}"
        try:
            self.data_dir.rename(aside)
            if aside.is_symlink():
                aside.unlink()
            else:
                shutil.rmtree(aside)
        except OSError as err:
            raise TeachError(
                f"cannot clear the old project's examples ({err.strerror or err}); "
                "check the lab's runs folder"
            ) from None

    def add_example(self, name: str, picture: bytes) -> dict[str, Any]:
        """Store one example of class ``name``; returns the project's state."""
        from PIL import Image

        if name not in self.classes():
            raise TeachError(f"no class {name[:30]!r} in this project; create it first")
        try:
            pixels, _ = read_pixels(picture, EXAMPLE_SIDE)
        except ImageTooLargeError as err:
            raise ImageTooLargeError(f"the example is {err}; scale it down") from None
        except CnnlabError as err:
            raise TeachError(f"the example is not usable: {err}; send a PNG or JPEG") from None
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG")
        folder = self.data_dir / name
        with self._lock:  # create() holds it too: the class is still there while we write
            if name not in self.classes() or folder.is_symlink():
                raise TeachError(f"no class {name[:30]!r} in this project; create it first")
            taken = [int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit()]
            if len(taken) >= MAX_EXAMPLES:
                raise TeachError(f"class {name!r} has {MAX_EXAMPLES} examples, the most it takes")
            number = max(taken, default=-1) + 1  # after the highest: never over an example
            with atomic_write(folder / f"{number:04d}.png") as handle:
                handle.write(buffer.getvalue())
        return self.state()

    def run_config(self, seed: int = 0) -> RunConfig:
        """The training run of this project's examples; refused while a class is too small."""
        counts = {c["name"]: c["examples"] for c in self.state()["classes"]}
        if len(counts) < MIN_CLASSES:
            raise TeachError("create a project with at least 2 classes first")
        short = [name for name, n in counts.items() if n < 2]
        if short:
            raise TeachError(f"give every class at least 2 examples; {short[0]!r} has fewer")
        # Batch, epochs, held-out examples and early stopping are sized to the examples, as
        # for any folder (cnnlab.runs.sizing).
        return RunConfig(
            recipe="pictures", dataset=str(self.data_dir), image_size=IMAGE_SIZE, seed=seed
        )
