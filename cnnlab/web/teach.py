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
(:meth:`Project.run_config`) starts from the same extractor and fine-tunes it, or from a
published network already in the cache (ResNet-18 trained on ImageNet: Teach never downloads),
whichever :func:`cnnlab.runs.transfer.ready_starts` offers and the page chooses; its model
answers (:meth:`Project.answer`) while it is the lab's active model and the examples are the
ones it trained, and the quick model again as soon as an example is added or removed. Whether
a picture is none of the classes is always the quick model's verdict, whose threshold comes
from the examples on the extractor's untouched features (chosen on drawings of Teach's kind;
benchmarks/README.md), not from features the training fitted to them.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, replace
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
from cnnlab.runs.pictures import read_picture
from cnnlab.runs.predict import Reading, read
from cnnlab.runs.pretrain import SHAPE, features, shipped_extractor
from cnnlab.runs.sizing import EXTRACTOR
from cnnlab.runs.transfer import ready_starts

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


class NoAnswerYetError(TeachError):
    """Nothing can answer yet: a class has no example."""

    http_status = 503


@dataclass(frozen=True)
class Answer:
    """A Teach answer: the ``reading``, the ``model`` that gave it with its input ``x``
    ``(1, C, H, W)`` (for an occlusion map), and where it comes from: ``source`` "examples"
    (the quick model of ``examples`` examples, before training) or "trained" (the model
    trained on those ``examples``)."""

    reading: Reading
    model: Sequential
    x: np.ndarray
    source: str
    examples: int


# (class, ((file, write time ns, size), …)): what the examples are
Files = tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...]


class Project:
    """The one Teach project of a lab server (thread-safe: the page may send examples fast)."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.root = Path(runs_dir) / "teach" / PROJECT
        self._lock = threading.Lock()
        self._generation = 0  # counts create(): a new project's examples are other pictures
        self._quick: tuple[Any, Sequential | None] = (None, None)  # (examples it saw, model)
        self._features: dict[tuple[str, int, int], np.ndarray] = {}  # each example's (Files)
        # The latest run_configs with the examples each saw (one may be refused as busy).
        self._training: list[tuple[RunConfig, Any]] = []
        self._trained: tuple[str, Any] | None = None  # the run that trained them, examples

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
            # What training may start from now (the first is the default).
            "starts": list(ready_starts()),
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
            for key in [k for k in self._features if k[0] == str(path)]:
                del self._features[key]  # a later example may take its number
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
            self._trained = None
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

    def _files(self) -> Files:
        """Each class's example files with their write times and sizes, in the order typed:
        what the examples are now (an example removed and another added under its number
        differ)."""
        files = []
        for name in self.classes():
            found = []
            for path in sorted((self.data_dir / name).glob("*.png")):
                try:
                    stat = path.stat()
                    found.append((str(path), stat.st_mtime_ns, stat.st_size))
                except OSError:  # removed while listing
                    continue
            files.append((name, tuple(found)))
        return tuple(files)

    def quick_model(self) -> Sequential | None:
        """A model that answers at once: class prototypes of every example on the shipped
        extractor's features (its input and meta as any picture model's, with the threshold
        of "none of these" from the examples), or None until every class (two at least) has
        an example. Remade only when the examples changed; each example's features are
        computed once."""
        with self._lock:
            files = self._files()
            seen = (self._generation, files)
            if self._quick[0] == seen:
                return self._quick[1]
            model = None
            if len(files) >= MIN_CLASSES and all(group for _, group in files):
                extractor = shipped_extractor()
                keys = [(k, key) for k, (_, group) in enumerate(files) for key in group]
                new = [key for _, key in keys if key not in self._features]
                if new:
                    pixels = np.stack([read_pixels(Path(key[0]), SHAPE[1])[0] for key in new])
                    found = features(extractor, pixels.transpose(0, 3, 1, 2))
                    self._features.update(zip(new, found, strict=True))
                model = prototype.model_of_features(
                    extractor, np.stack([self._features[key] for _, key in keys]),
                    np.array([k for k, _ in keys]), [name for name, _ in files],
                )  # fmt: skip
            self._quick = (seen, model)
            return model

    def trained(self, run: str, config: RunConfig | None) -> None:
        """Note that run ``run`` finished training ``config``: when that is one of this
        project's :meth:`run_config`, the run's model answers for the examples as they were
        then (:meth:`answer`), until one is added or removed."""
        with self._lock:
            for made, seen in self._training:
                if made is config:
                    self._trained = (run, seen)

    def answer(self, picture: bytes, active: tuple[str, Sequential] | None) -> Answer:
        """The answer for ``picture`` (a PNG, JPEG, … file's bytes): from the lab's ``active``
        (name, model) when that is the run that trained the examples as they are now, else
        from the quick model; whether the picture is one of the classes at all is the quick
        model's verdict either way. ``NoAnswerYetError`` until every class has an example."""
        quick = self.quick_model()
        if quick is None:
            raise NoAnswerYetError(self._why_no_answer())
        with self._lock:
            now = (self._generation, self._files())
            trained = self._trained is not None and self._trained[1] == now
            name = self._trained[0] if trained else None
        model = quick
        if active is not None and active[0] == name:
            model = active[1]
        x = read_picture(model, picture).x[None]
        (reading,) = read(model, x)
        if model is not quick:
            (verdict,) = read(quick, read_picture(quick, picture).x[None])
            reading = replace(reading, known=verdict.known)
        source = "examples" if model is quick else "trained"
        return Answer(reading, model, x, source, int(quick.meta["n_examples"]))

    def _why_no_answer(self) -> str:
        counts = {c["name"]: c["examples"] for c in self.state()["classes"]}
        if len(counts) < MIN_CLASSES:
            return "create a project with at least 2 classes first"
        empty = next((name for name, n in counts.items() if not n), None)
        if empty is None:  # changed since: the page asks again
            return "the examples changed while answering; try again"
        return f"give every class an example first; {empty!r} has none"

    def run_config(self, seed: int = 0, start_from: str | None = None) -> RunConfig:
        """The training run of this project's examples, from ``start_from`` (one of
        ``ready_starts()``; default the shipped extractor); refused while a class is too small."""
        self._refuse_links()
        offered = ready_starts()
        start = EXTRACTOR if start_from is None else start_from
        if start not in offered:
            raise TeachError(
                f"Teach cannot start from {start[:40]!r} now; it offers {', '.join(offered)} "
                "(a published network once `cnnlab train --from` has downloaded it)"
            )
        counts = {c["name"]: c["examples"] for c in self.state()["classes"]}
        if len(counts) < MIN_CLASSES:
            raise TeachError("create a project with at least 2 classes first")
        short = [name for name, n in counts.items() if n < 2]
        if short:
            raise TeachError(f"give every class at least 2 examples; {short[0]!r} has fewer")
        # Batch, held-out examples (none for a project of fewer than 200 a class), early
        # stopping and which layers train are chosen for the examples as for any folder
        # (cnnlab.runs.sizing); the epochs are few, so that a trained model follows "Train"
        # within seconds. A published network reads the examples at their stored size, a third
        # of the work of its usual 112 pixels.
        config = RunConfig(
            recipe="pictures", dataset=str(self.data_dir), seed=seed, epochs=TEACH_EPOCHS,
            image_size=IMAGE_SIZE if start == EXTRACTOR else EXAMPLE_SIDE, start_from=start,
        )  # fmt: skip
        with self._lock:  # what the run will train, for trained()
            self._training = [*self._training[-3:], (config, (self._generation, self._files()))]
        return config
