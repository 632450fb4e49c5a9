"""``cnnlab predict``: read a person's digit images and print the network's prediction vector."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.cli._common import Formatter, load_model, positive_int
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict the digit in image files",
        description=(
            "Predict the digit in each image (PNG, JPEG, ...; any size, colour or grey, either\n"
            "polarity). Each image is turned into an MNIST-like 28x28 input first: polarity\n"
            "detected, background suppressed, cropped to the ink, fitted into 20x20 and centred\n"
            "by centre of mass. A folder stands for the images inside it."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("model", metavar="MODEL", help="a model file or a run folder")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders")
    p.add_argument("--top-k", type=positive_int, default=3, help="how many best classes to list")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.add_argument("--save-preprocessed", metavar="DIR", help="write each 28x28 input as a PNG")
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
    """A float image in [0, 1] as an 8-bit grey PNG, written atomically."""
    from PIL import Image

    with atomic_write(path) as handle:
        Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(handle, "PNG")


def run(args: argparse.Namespace) -> int:
    from cnnlab.data.preprocess import NoInkError, preprocess_file

    model = load_model(args.model)
    if model.input_shape not in (None, (1, 28, 28)):
        raise CnnlabError(f"the model takes input {model.input_shape}, not 28x28 digit images")
    names = model.meta.get("class_names") or [str(i) for i in range(model.output_shape()[-1])]
    files = expand(args.images)
    inputs, blank = [], []
    for file in files:
        try:
            inputs.append(preprocess_file(file).image)
        except NoInkError:
            blank.append(file)
            inputs.append(None)
    ready = [image for image in inputs if image is not None]
    probabilities = iter(
        model.predict_proba(np.stack(ready)[:, None].astype(model.dtype)) if ready else []
    )  # (N, 1, 28, 28) in, (N, K) out
    if args.save_preprocessed:
        out = Path(args.save_preprocessed)
        for file, image in zip(files, inputs, strict=True):
            if image is not None:
                save_png(out / f"{file.stem}.28x28.png", image)
    results: list[dict[str, Any]] = []
    for file, image in zip(files, inputs, strict=True):
        if image is None:
            results.append({"file": str(file), "label": None, "probabilities": None,
                            "error": "no ink found"})  # fmt: skip
            continue
        p = next(probabilities)
        results.append(
            {"file": str(file), "label": int(p.argmax()), "probabilities": [float(v) for v in p]}
        )
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
