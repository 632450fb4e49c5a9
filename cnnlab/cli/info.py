"""``cnnlab info``: a model's layers, shapes, parameter counts and what it was trained on."""

from __future__ import annotations

import argparse

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
        if key == "test_accuracy":
            value = f"{100 * value:.2f}%"
        print(f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return 0
