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
    chosen_model,
    load_model,
    positive_int,
)
from cnnlab.data.folders import IMAGE_SUFFIXES
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write
from cnnlab.runs import confidence
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.inputs import class_names

if TYPE_CHECKING:
    from cnnlab.engine.sequential import Sequential
    from cnnlab.explain.inputs import InputImage


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
            "(a .npz file or a run folder) the newest run is used.\n"
            f"When the top probability is below {confidence.UNSURE_BELOW:.0%}, the answer says\n"
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
) -> list[tuple[str, InputImage | str]]:
    """(source, the input prepared for ``model``) for each image, or (source, why it could not
    be read)."""
    from cnnlab.explain.inputs import load_input

    read: list[tuple[str, InputImage | str]] = []
    for source, problem in expand(paths):
        try:
            read.append((source, problem or load_input(source, data_dir, model)))
        except CnnlabError as err:
            read.append((source, str(err)))  # each message names its image
    return read


def save_png(path: Path, image: np.ndarray) -> None:
    """A float image in [0, 1], grey (H, W) or RGB (H, W, 3), as an 8-bit PNG, atomically."""
    from PIL import Image

    with atomic_write(path) as handle:
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(handle, "PNG")


def split_model(first: str | None, images: list[str]) -> tuple[str | None, list[str]]:
    """(MODEL, IMAGEs) from the positionals: the first one is the model when it is a ``.npz``
    file or a run folder, and otherwise the first image (the newest run is then used)."""
    if first is None or Path(first).suffix == ".npz" or RunFolder(first).model_file.is_file():
        return first, images
    return None, [first, *images]


def run(args: argparse.Namespace) -> int:
    model_arg, args.images = split_model(args.model, args.images)
    model = load_model(chosen_model(model_arg, args.runs_dir))
    names = class_names(model)
    read = read_inputs(args.images, args.data_dir, model)
    ready = [item for _, item in read if not isinstance(item, str)]
    probabilities = iter(
        model.predict_proba(np.concatenate([item.as_input(model.dtype) for item in ready]))
        if ready
        else []
    )  # (N, C, H, W) in, (N, K) out
    results: list[dict[str, Any]] = []
    for source, item in read:
        if isinstance(item, str):
            results.append({"file": source, "label": None, "probabilities": None, "error": item})
            continue
        p = next(probabilities)
        top = np.argsort(-p, kind="stable")[: args.top_k]
        reading = confidence.read(p)
        results.append(
            {
                "file": source,
                "label": reading.label,
                "class": names[reading.label],
                "unsure": reading.unsure,
                "runner_up": names[reading.runner_up],
                "probabilities": [float(v) for v in p],
                "top": [{"class": names[i], "probability": float(p[i])} for i in top],
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
    for result in results:
        if result["label"] is None:
            print(f"cnnlab predict: error: {result['error']}", file=sys.stderr)
        elif not args.json:
            best = ", ".join(f"{t['class']}: {100 * t['probability']:.1f}%" for t in result["top"])
            vector = ", ".join(f"{v:.2f}" for v in result["probabilities"])
            answer = names[result["label"]]
            if result["unsure"]:
                answer += f"?  unsure: maybe {result['runner_up']}"
            print(f"{result['file']}: {answer}  ({best})")
            print(f"  prediction = [{vector}]")
    if args.save_preprocessed:
        out = Path(args.save_preprocessed)
        for source, item in read:
            if not isinstance(item, str):
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).stem)
                h, w = item.image.shape[:2]
                save_png(out / f"{stem}.{h}x{w}.png", item.image)
        print(
            f"wrote {len(ready)} network input{'s' if len(ready) != 1 else ''} to {out}/",
            file=sys.stderr if args.json else sys.stdout,
        )
    return 2 if len(ready) < len(read) else 0
