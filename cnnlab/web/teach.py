"""The Teach tab's project: a person's own classes and examples, kept as an image-folder data set.

A project lives in ``<runs_dir>/teach/<name>/``: ``data/<class>/<n>.png`` holds the examples
(drawn, uploaded or from the webcam), ``classes.json`` the class names in the order they were
typed (beside the data, so ``data/`` stays a plain image-folder data set), and training
writes ordinary run folders beside the other runs, through the one run pipeline. So the CLI
can evaluate, export or continue what the page taught:
``cnnlab train --dataset runs/teach/<name>/data``.

Every example is stored as a 64×64 PNG, centre-cropped as training crops anyway; a picture is
decoded under the same pixel budget as any other (:func:`cnnlab.data.folders.read_pixels`).
Nothing here knows about HTTP.

Answers come before any training: :meth:`Project.quick_model` is a prototype classifier on the
shipped feature extractor's features (:mod:`cnnlab.runs.prototype`), made in a fraction of a
second from the first example of each class and remade whenever an example is added. Training
(:meth:`Project.run_config`) starts from the same extractor and fine-tunes it.
"""

from __future__ import annotations

import io
import json
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
from cnnlab.engine.fileio import (
    atomic_write,
    atomic_write_text,
    open_regular_file,
    read_regular_file,
)
from cnnlab.engine.metrics import describe_accuracy
from cnnlab.engine.sequential import Sequential
from cnnlab.runs import prototype
from cnnlab.runs.config import RunConfig
from cnnlab.runs.pretrain import SHAPE, features, shipped_extractor

MIN_CLASSES, MAX_CLASSES = 2, 10
MAX_EXAMPLES = 200  # per class
EXAMPLE_SIDE = 64  # pixels a side of a stored example
IMAGE_SIZE = 32  # the network's input
CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,23}$")
PROJECT = "project"
EXAMPLE_ID = re.compile(r"^[0-9]{4}$")  # an example's file name without ".png"
# At most this many epochs. From the extractor, 3 drawn classes of 10 examples (the tests'
# drawings): 30 epochs took 2.1 s on 2 shared cores and read 60 new drawings 100 % right;
# the 100 the folder sizing chooses took 10.7 s for the same.
TEACH_EPOCHS = 30


def accuracy_text(accuracy: float, count: int) -> str:
    """What the page says of a trained model: its accuracy on the held-out examples with their
    number and a 95 % interval, since 100 % of 3 examples says little."""
    right = round(accuracy * count)
    return f"Trained: right on {describe_accuracy(right, count)} held out."


class TeachError(CnnlabError):
    """A Teach request that cannot be carried out (names, counts, pictures)."""


class ExampleNotFoundError(TeachError):
    """An example that is not (or no longer) in the project."""

    http_status = 404


class Project:
    """The one Teach project of a lab server (thread-safe: the page may send examples fast)."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.root = Path(runs_dir) / "teach" / PROJECT
        self._lock = threading.Lock()
        self._generation = 0  # counts create(): a new project's examples are other pictures
        self._quick: tuple[Any, Sequential | None] = (None, None)  # (examples it saw, model)
        self._features: dict[Path, np.ndarray] = {}  # each example's, by its file

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def folders(self) -> tuple[Path, ...]:
        """The folders between the runs folder and the examples, outermost first."""
        return self.root.parent, self.root, self.data_dir

    def _refuse_links(self) -> None:
        """A link anywhere between the runs folder and a class folder would let "start over"
        or a new example reach outside the runs folder: refused, never followed."""
        for folder in self.folders():
            if folder.is_symlink():
                raise TeachError(
                    f"{folder.relative_to(self.root.parents[1]).as_posix()} in the lab's runs "
                    "folder is a link, which the lab does not follow; remove it"
                )

    @property
    def order_file(self) -> Path:
        return self.root / "classes.json"

    def classes(self) -> list[str]:
        """The project's class names in the order they were typed (``classes.json``); a class
        folder it does not name comes after them, sorted as folders are."""
        if not self.data_dir.is_dir():
            return []
        folders = {p.name for p in self.data_dir.iterdir() if p.is_dir()}
        try:
            # A regular file of a few names: a planted link to /dev/zero costs nothing.
            typed = json.loads(read_regular_file(self.order_file, 64 * 1024).decode("utf-8"))
        except (OSError, ValueError, CnnlabError):
            typed = []
        ordered = (
            [n for n in typed if isinstance(n, str) and n in folders]
            if isinstance(typed, list)
            else []
        )
        return ordered + sorted(folders.difference(ordered))

    def examples(self, name: str) -> list[dict[str, Any]]:
        """The examples of class ``name`` in the order they were added: each its ``id`` (the
        file name without ``.png``) and ``version`` (its write time in nanoseconds, which
        changes when a number is used again, so a page can cache a thumbnail by both)."""
        found = []
        for path in (self.data_dir / name).glob("*.png"):
            if EXAMPLE_ID.match(path.stem):
                try:
                    found.append({"id": path.stem, "version": path.stat().st_mtime_ns})
                except OSError:  # removed while listing
                    continue
        return sorted(found, key=lambda e: e["id"])

    def state(self) -> dict[str, Any]:
        """Class names in the order typed, with how many examples each has and which."""
        classes = []
        for name in self.classes():
            examples = self.examples(name)
            classes.append({"name": name, "examples": len(examples), "pictures": examples})
        return {
            "classes": classes,
            # Where to find it, without the server's own folders: from the lab's runs folder.
            "folder": f"{self.data_dir.relative_to(self.root.parents[1]).as_posix()} in the "
            "lab's runs folder",
        }

    def example_file(self, name: str, example: str) -> Path:
        """The file of example ``example`` (an ``id`` of :meth:`examples`) of class ``name``."""
        if name not in self.classes():
            raise TeachError(f"no class {name[:30]!r} in this project; create it first")
        path = self.data_dir / name / f"{example}.png"
        # Only the project's own files: never through a linked class folder or example.
        linked = path.parent.is_symlink() or path.is_symlink()
        if not EXAMPLE_ID.match(example) or linked or not path.is_file():
            raise ExampleNotFoundError(
                f"class {name!r} has no example {example[:12]!r}; reload the page"
            )
        return path

    def example_png(self, name: str, example: str) -> bytes:
        """The stored PNG of one example (64×64), for its thumbnail."""
        try:
            with open_regular_file(self.example_file(name, example)) as handle:
                return handle.read(1 << 20)  # a stored example is a few kilobytes
        except OSError:
            raise ExampleNotFoundError(
                f"class {name!r} has no example {example[:12]!r}; reload the page"
            ) from None

    def remove_example(self, name: str, example: str) -> dict[str, Any]:
        """Delete one example of class ``name``; returns the project's state."""
        with self._lock:
            path = self.example_file(name, example)
            path.unlink(missing_ok=True)
            self._features.pop(path, None)  # a later example may take its number
        return self.state()

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
            self._refuse_links()
            self._clear()
            self._generation += 1
            self._features.clear()
            for name in names:
                (self.data_dir / name).mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.order_file, json.dumps(names))
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

        self._refuse_links()
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
            self._refuse_links()
            if name not in self.classes() or folder.is_symlink():
                raise TeachError(f"no class {name[:30]!r} in this project; create it first")
            taken = [int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit()]
            if len(taken) >= MAX_EXAMPLES:
                raise TeachError(f"class {name!r} has {MAX_EXAMPLES} examples, the most it takes")
            number = max(taken, default=-1) + 1  # after the highest: never over an example
            with atomic_write(folder / f"{number:04d}.png") as handle:
                handle.write(buffer.getvalue())
        return self.state()

    def quick_model(self) -> Sequential | None:
        """A model that answers at once: class prototypes of every example on the shipped
        extractor's features (its input and meta as any picture model's), or None until
        every class (two at least) has an example. Remade only when the examples changed;
        each example's features are computed once."""
        with self._lock:
            files = {name: sorted((self.data_dir / name).glob("*.png")) for name in self.classes()}
            seen = (self._generation, tuple((n, tuple(map(str, f))) for n, f in files.items()))
            if self._quick[0] == seen:
                return self._quick[1]
            model = None
            if len(files) >= MIN_CLASSES and all(files.values()):
                extractor = shipped_extractor()
                new = [p for group in files.values() for p in group if p not in self._features]
                if new:
                    pixels = np.stack([read_pixels(path, SHAPE[1])[0] for path in new])
                    found = features(extractor, pixels.transpose(0, 3, 1, 2))
                    self._features.update(zip(new, found, strict=True))
                paths = [(k, p) for k, group in enumerate(files.values()) for p in group]
                model = prototype.model_of_features(
                    extractor, np.stack([self._features[p] for _, p in paths]),
                    np.array([k for k, _ in paths]), list(files),
                )  # fmt: skip
            self._quick = (seen, model)
            return model

    def run_config(self, seed: int = 0) -> RunConfig:
        """The training run of this project's examples; refused while a class is too small."""
        self._refuse_links()
        counts = {c["name"]: c["examples"] for c in self.state()["classes"]}
        if len(counts) < MIN_CLASSES:
            raise TeachError("create a project with at least 2 classes first")
        short = [name for name, n in counts.items() if n < 2]
        if short:
            raise TeachError(f"give every class at least 2 examples; {short[0]!r} has fewer")
        # Batch, held-out examples (none for a project of fewer than 200 a class), early
        # stopping and the start (the shipped extractor) are chosen for the examples as for
        # any folder (cnnlab.runs.sizing); the epochs are few, so that a trained model
        # follows "Train" within seconds.
        return RunConfig(
            recipe="pictures", dataset=str(self.data_dir), image_size=IMAGE_SIZE, seed=seed,
            epochs=TEACH_EPOCHS,
        )  # fmt: skip
