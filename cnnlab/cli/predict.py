"""``cnnlab predict``: read a person's pictures and print the network's prediction vector."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.cli._common import Formatter, load_model, positive_int
from cnnlab.data.folders import IMAGE_SUFFIXES
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict the class of image files",
        description=(
            "Predict the class of each image (PNG, JPEG, ...; any size, colour or grey) and\n"
            "answer with the model's class names. For a digit model each image is turned into\n"
            "an MNIST-like 28x28 input first: polarity detected, background suppressed, cropped\n"
            "to the ink, fitted into 20x20 and centred by centre of mass. Any other model sees\n"
            "the picture as its training pictures were made: centre-cropped to a square,\n"
            "resized, normalised. A folder stands for the images inside it."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("model", metavar="MODEL", help="a model file or a run folder")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders")
    p.add_argument("--top-k", type=positive_int, default=3, help="how many best classes to list")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.add_argument("--save-preprocessed", metavar="DIR", help="write each network input as a PNG")
    p.set_defaults(func=run)


def expand(paths: list[str]) -> list[Path]:
    """Image files from files and folders (a folder's images in name order)."""
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CnnlabError(f"{path}: no image files in this folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise CnnlabError(f"{path}: no such file")
    return files


def save_png(path: Path, image: np.ndarray) -> None:
    """A float image in [0, 1], grey (H, W) or RGB (H, W, 3), as an 8-bit PNG, atomically."""
    from PIL import Image

    with atomic_write(path) as handle:
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(handle, "PNG")


def run(args: argparse.Namespace) -> int:
    from cnnlab.data.preprocess import NoInkError
    from cnnlab.runs.inputs import class_names, read_picture

    model = load_model(args.model)
    names = class_names(model)
    files = expand(args.images)
    inputs = []
    for file in files:
        try:
            inputs.append(read_picture(model, file))
        except NoInkError:
            inputs.append(None)
    ready = [picture.x for picture in inputs if picture is not None]
    probabilities = iter(model.predict_proba(np.stack(ready)) if ready else [])
    # (N, C, H, W) in, (N, K) out
    if args.save_preprocessed:
        out = Path(args.save_preprocessed)
        for file, picture in zip(files, inputs, strict=True):
            if picture is not None:
                h, w = picture.display.shape[:2]
                save_png(out / f"{file.stem}.{h}x{w}.png", picture.display)
    results: list[dict[str, Any]] = []
    for file, image in zip(files, inputs, strict=True):
        if image is None:
            results.append({"file": str(file), "label": None, "class": None,
                            "probabilities": None, "error": "no ink found"})  # fmt: skip
            continue
        p = next(probabilities)
        label = int(p.argmax())
        results.append(
            {"file": str(file), "label": label, "class": names[label],
             "probabilities": [float(v) for v in p]}
        )  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        if result["label"] is None:
            print(f"{result['file']}: no ink found (the image looks blank); nothing to predict")
            continue
        p = np.array(result["probabilities"])
        top = np.argsort(-p, kind="stable")[: args.top_k]
        best = ", ".join(f"{names[i]}: {100 * p[i]:.1f}%" for i in top)
        vector = ", ".join(f"{v:.2f}" for v in p)
        print(f"{result['file']}: {names[result['label']]}  ({best})")
        print(f"  prediction = [{vector}]")
    return 0
