"""``cnnlab predict``: read a person's pictures and print the network's prediction vector."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.cli._common import (
    Formatter,
    add_model_argument,
    answer,
    chosen_model,
    load_model,
    positive_int,
)
from cnnlab.data.folders import IMAGE_SUFFIXES
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pictures import needed_by, read_picture
from cnnlab.runs.predict import UNSURE_BELOW, Reading, none_of_these, read

if TYPE_CHECKING:
    from cnnlab.engine.sequential import Sequential
    from cnnlab.runs.pictures import Picture


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict the class of image files",
        description=(
            "Predict the class of each image (PNG, JPEG, ...; any size, colour or grey) and\n"
            "answer with the model's class names. For a digit model each image is turned into\n"
            "an MNIST-like 28x28 input first: polarity detected, background suppressed, cropped\n"
            "to the ink, hollow strokes filled, sheared upright, fitted into 20x20 and centred\n"
            "by centre of mass. Any other model sees the picture as its training pictures\n"
            "were made: centre-cropped to a square, resized, normalised. A folder stands for\n"
            "the images inside it; DATASET:SPLIT:INDEX (e.g. mnist-sample:test:17 or\n"
            "shapes:test:3) is a picture of a data set and\n"
            "photo:cat a bundled photo. An image that cannot be read is reported on its own\n"
            "line and the others are still predicted; the exit status is then 2. Without MODEL\n"
            "(a .npz file or a run folder) the newest run that can read the images is used:\n"
            "one of the digits 0-9 for image files, of the data set's classes for\n"
            "DATASET:SPLIT:INDEX, of pictures for photo:NAME; stderr names it.\n"
            f"When the top probability is below {UNSURE_BELOW:.0%}, the answer says\n"
            "it is unsure and names the runner-up."
        ),
        formatter_class=Formatter,
    )
    add_model_argument(p)
    p.add_argument(
        "images", metavar="IMAGE", nargs="+", help="image files, folders or DATASET:SPLIT:INDEX"
    )
    p.add_argument("--top-k", type=positive_int, default=3, help="how many best classes to list")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.add_argument("--save-preprocessed", metavar="DIR", help="write each network input as a PNG")
    p.add_argument("--data-dir", help="folder holding the data set of a DATASET:SPLIT:INDEX")
    p.set_defaults(func=run)


def expand(paths: list[str]) -> list[tuple[str, str | None]]:
    """Each image to read, as (source, problem): a folder's images in name order; a folder
    without any is one entry with its problem."""
    items: list[tuple[str, str | None]] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            items.extend((str(p), None) for p in found)
            if not found:
                items.append((text, f"{path}: no image files in this folder"))
        else:
            items.append((text, None))
    return items


def read_inputs(
    paths: list[str], data_dir: str | None, model: Sequential
) -> list[tuple[str, Picture | str]]:
    """(source, the picture prepared for ``model``) for each image, or (source, why it could not
    be read)."""
    found: list[tuple[str, Picture | str]] = []
    for source, problem in expand(paths):
        try:
            found.append((source, problem or read_picture(model, source, data_dir=data_dir)))
        except CnnlabError as err:
            found.append((source, str(err)))  # each message names its image
    return found


def save_png(path: Path, image: np.ndarray) -> None:
    """A float image in [0, 1], grey (H, W) or RGB (H, W, 3), as an 8-bit PNG, atomically."""
    from PIL import Image

    with atomic_write(path) as handle:
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(handle, "PNG")


def split_model(first: str | None, images: list[str]) -> tuple[str | None, list[str]]:
    """(MODEL, IMAGEs) from the positionals. The first one is the model when it is a ``.npz``
    file or a run folder (one holding a model, a configuration or a checkpoint), or when it is
    followed by images and is no picture: a path that does not exist, without an image suffix,
    is a mistyped model, never an image. Refused in one line when no image is left."""
    words = [first, *images] if first is not None else images
    head = Path(words[0])
    run = RunFolder(head)
    named = (
        head.suffix == ".npz"
        or any(f.is_file() for f in (run.model_file, run.config_file, run.checkpoint_file))
        or (
            len(words) > 1
            and not head.exists()
            and head.suffix.lower() not in IMAGE_SUFFIXES
            and ":" not in words[0]  # photo:NAME, DATASET:SPLIT:INDEX
        )
    )
    model, rest = (words[0], words[1:]) if named else (None, words)
    if not rest:
        raise CnnlabError(
            f"no image given after the model {model}; name the pictures to read: "
            "cnnlab predict [MODEL] IMAGE [IMAGE ...]"
        )
    return model, rest


def present(reading: Reading, top_k: int) -> dict[str, Any]:
    """One reading as the JSON entry ``--json`` prints (and the text lines are made of)."""
    p = reading.probabilities
    top = np.argsort(-p, kind="stable")[:top_k]
    return {
        "label": reading.label,
        "class": reading.class_name,
        "known": reading.known,
        "unsure": reading.unsure,
        "runner_up": reading.runner_up_name,
        "probabilities": [float(v) for v in p],
        "top": [{"class": reading.class_names[i], "probability": float(p[i])} for i in top],
    }


def run(args: argparse.Namespace) -> int:
    model_arg, args.images = split_model(args.model, args.images)
    model = load_model(chosen_model(model_arg, args.runs_dir, *needed_by(args.images)))
    pictures = read_inputs(args.images, args.data_dir, model)
    ready = [item for _, item in pictures if not isinstance(item, str)]
    readings = iter(read(model, ready))
    unknown = none_of_these(model)
    results: list[dict[str, Any]] = []
    said: list[str | None] = []  # each answer in words, None for an image not read
    for source, item in pictures:
        if isinstance(item, str):
            results.append({"file": source, "label": None, "probabilities": None, "error": item})
            said.append(None)
        else:
            reading = next(readings)
            results.append({"file": source, **present(reading, args.top_k)})
            said.append(answer(reading, unknown))
    if args.json:
        print(json.dumps(results, indent=2))
    for result, words in zip(results, said, strict=True):
        if words is None:
            print(f"cnnlab predict: error: {result['error']}", file=sys.stderr)
        elif not args.json:
            best = ", ".join(f"{t['class']}: {100 * t['probability']:.1f}%" for t in result["top"])
            vector = ", ".join(f"{v:.2f}" for v in result["probabilities"])
            print(f"{result['file']}: {words}  ({best})")
            print(f"  prediction = [{vector}]")
    if args.save_preprocessed:
        out = Path(args.save_preprocessed)
        for source, item in pictures:
            if not isinstance(item, str):
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).stem)
                h, w = item.display.shape[:2]
                save_png(out / f"{stem}.{h}x{w}.png", item.display)
        print(
            f"wrote {len(ready)} network input{'s' if len(ready) != 1 else ''} to {out}/",
            file=sys.stderr if args.json else sys.stdout,
        )
    return 2 if len(ready) < len(pictures) else 0
