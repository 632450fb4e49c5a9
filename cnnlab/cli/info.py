"""``cnnlab info``: a model's layers, shapes, parameter counts and what it was trained on."""

from __future__ import annotations

import argparse
import math

from cnnlab.cli._common import Formatter, add_model_argument, chosen_model, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show a model's summary table",
        description="Show a model's layers, output shapes and parameter counts.",
        formatter_class=Formatter,
    )
    add_model_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = chosen_model(args.model, args.runs_dir)
    model = load_model(path)
    print(f"{path}")
    print(model.summary())
    for key, value in sorted(model.meta.items()):
        print(f"{key}: {_shown(key, value)}")
    return 0


def _shown(key: str, value: object) -> str:
    """A meta value as one line: an accuracy as a percentage when it is a finite number, a list
    joined by commas, anything else as it is (cut to 200 characters)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key == "test_accuracy" and number and math.isfinite(value):
        return f"{100 * value:.2f}%"
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    text = " ".join(text.splitlines())
    return text if len(text) <= 200 else text[:199] + "…"
