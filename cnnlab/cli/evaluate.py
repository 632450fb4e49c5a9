"""``cnnlab evaluate``: accuracy, per-class precision and recall, the confusion matrix, and how
well the probabilities are calibrated (expected calibration error, reliability diagram)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cnnlab import data
from cnnlab.cli._common import (
    Formatter,
    add_dataset_argument,
    add_model_argument,
    chosen_model,
    load_model,
)
from cnnlab.data.pictures import load_image_set
from cnnlab.engine.backend import to_numpy
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.metrics import confusion_matrix, precision_recall, wilson_interval
from cnnlab.engine.rng import manual_seed
from cnnlab.engine.sequential import Sequential


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a model on a data set split",
        description="Accuracy, per-class precision and recall, and the confusion matrix "
        "(printed, and drawn to a PNG); the expected calibration error of the probabilities "
        "(printed, with a reliability diagram drawn beside the confusion matrix).",
        formatter_class=Formatter,
    )
    add_model_argument(p)
    add_dataset_argument(p, None, " [the one the model was trained on]")
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--png", help="where to draw the confusion matrix [beside the model]")
    p.add_argument(
        "--reliability-png", help="where to draw the reliability diagram [beside the model]"
    )
    p.add_argument("--seed", type=int, default=0, help="seed (evaluation itself is deterministic)")
    p.set_defaults(func=run)


def load_for(model: Sequential, dataset: str | None, data_dir: str | None) -> data.ImageSet:
    """The data set to evaluate ``model`` on: the named one, or the one it was trained on when
    that is a set cnnlab knows. A model file's meta never names a folder for cnnlab to read:
    a model trained on a folder is evaluated on the folder given with ``--dataset``."""
    if dataset is None:
        named = model.meta.get("dataset") or "mnist-sample"
        if named not in data.PICTURE_DATASETS:
            raise CnnlabError(
                f"the model was trained on {str(named)[:80]!r}, not a data set cnnlab knows; "
                "give the folder to evaluate it on with --dataset"
            )
        dataset = named
    seed = model.meta.get("split_seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise CnnlabError(
            f"the model's meta 'split_seed' must be a whole number from 0 to 2**32-1, got "
            f"{ascii(seed)[:40]}; train the model again"
        )
    size = (model.input_shape or (1, 28, 28))[-1]
    pictures = dataset not in data.IMAGE_DATASETS and dataset != "cifar10"
    return load_image_set(dataset, size if pictures else None, data_dir, seed=seed)


ROW_NAME = 24  # characters of a class name heading a row of the confusion matrix, at most
COLUMN_NAME = 8  # ... and heading a column


def _cut(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def confusion_lines(matrix: np.ndarray, names: list[str]) -> list[str]:
    """The ``(K, K)`` confusion matrix as text: a header of predicted classes, then one row per
    true class, each headed by its class name (cut to ``ROW_NAME`` or ``COLUMN_NAME``
    characters, ending in "…", when longer)."""
    label = min(max(5, *(len(n) for n in names)), ROW_NAME)
    cell = max(len(str(matrix.max())), min(max(len(n) for n in names), COLUMN_NAME), 3)
    heads = [_cut(n, label).ljust(label) for n in names]
    lines = [" " * (label + 1) + " ".join(_cut(n, cell).rjust(cell) for n in names)]
    lines += [
        f"{head} {' '.join(str(v).rjust(cell) for v in row)}"
        for head, row in zip(heads, matrix, strict=True)
    ]
    return lines


def class_table(
    names: list[str], precision: np.ndarray, recall: np.ndarray, support: np.ndarray
) -> str:
    """Per-class precision and recall (``(K,)`` fractions) and support as a text table whose
    columns line up whatever the numbers, 100.00 % included."""
    from cnnlab.cli.tables import table

    rows = [
        [name, f"{100 * p:.2f}%", f"{100 * r:.2f}%", int(n)]
        for name, p, r, n in zip(names, precision, recall, support, strict=True)
    ]
    return table(["class", "precision", "recall", "support"], rows)


def run(args: argparse.Namespace) -> int:
    from cnnlab.runs.model_input import prepare_set

    manual_seed(args.seed)
    from cnnlab.runs.pictures import reads_dataset

    named = args.dataset if args.dataset in data.DATASETS else None  # else any model's own set
    if named:
        fits, kind = (lambda model: reads_dataset(model, named)), f"of {named}'s classes"
        path = chosen_model(args.model, args.runs_dir, fits, kind)
    else:
        path = chosen_model(args.model, args.runs_dir)
    model = load_model(path)
    pictures = load_for(model, args.dataset, args.data_dir)
    x = prepare_set(model, pictures, args.split)
    labels = pictures.y_train if args.split == "train" else pictures.y_test
    names = list(pictures.class_names)
    from cnnlab.runs import predict, unknowns

    plain = to_numpy(model.predict_proba(x))
    probabilities, _ = predict.assess(model, x)  # calibrated when training calibrated it
    calibrated = "temperature" in model.meta
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, len(names))
    ece = unknowns.ece(probabilities, labels)
    ece_before = unknowns.ece(plain, labels)
    precision, recall = precision_recall(matrix)
    correct, total = int(np.trace(matrix)), int(matrix.sum())
    accuracy = correct / total
    low, high = wilson_interval(correct, total)
    slug = Path(pictures.name).name
    png = Path(args.png) if args.png else path.parent / f"confusion-{slug}-{args.split}.png"
    from cnnlab.figures import plots

    diagram = (
        Path(args.reliability_png)
        if args.reliability_png
        else path.parent / f"reliability-{slug}-{args.split}.png"
    )
    try:
        plots.plot_confusion(matrix, names, png)
        plots.plot_reliability(
            unknowns.reliability(probabilities, labels),
            diagram,
            before=unknowns.reliability(plain, labels) if calibrated else None,
            title=f"Reliability on {slug} {args.split}",
        )
    except CnnlabError as err:
        print(f"warning: no figure written: {err}", file=sys.stderr)
        png = diagram = None
    if args.json:
        report = {
            "dataset": pictures.name,
            "split": args.split,
            "images": int(matrix.sum()),
            "accuracy": accuracy,
            "accuracy_interval_95": [low, high],  # Wilson score interval
            "per_class": [
                {"class": name, "precision": float(p), "recall": float(r), "support": int(s)}
                for name, p, r, s in zip(names, precision, recall, matrix.sum(axis=1), strict=True)
            ],
            "confusion_matrix": matrix.tolist(),
            "png": str(png) if png else None,
            "ece": ece,
            "ece_uncalibrated": ece_before,
            "temperature": model.meta.get("temperature") if calibrated else None,
            "reliability_png": str(diagram) if diagram else None,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{pictures.name} {args.split}: accuracy {100 * accuracy:.2f}% on {total:,} images "
        f"(95% interval {100 * low:.1f}–{100 * high:.1f}%)"
    )
    print("\n" + class_table(names, precision, recall, matrix.sum(axis=1)))
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print("\n".join(confusion_lines(matrix, names)))
    if calibrated:
        print(
            f"\nexpected calibration error {100 * ece:.2f}% (temperature "
            f"{model.meta['temperature']:.2f}; {100 * ece_before:.2f}% before calibration)"
        )
    else:
        print(f"\nexpected calibration error {100 * ece:.2f}% (the model is not calibrated)")
    if png:
        print(f"\nconfusion matrix drawn to {png}\nreliability diagram drawn to {diagram}")
    return 0
