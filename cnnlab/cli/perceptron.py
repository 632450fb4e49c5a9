"""``cnnlab perceptron``: the perceptron the article starts from, on sonar data, cross-validated."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnlab.cli._common import Formatter, positive_float, positive_int

DESCRIPTION = """\
The previous lesson: "An Introductory Guide to Deep Neural Networks", the article cnnlab
follows, starts from the perceptron that the post before it in the series built and trained
on the UCI sonar data (sonar returns off rocks and off metal cylinders, "mines"). This command
repeats that lesson before the CNN.

Train a single perceptron (step activation, the perceptron learning rule) on the sonar returns
(208 rows, each the energy of a chirp's echo in 60 frequency bands, rock or mine; bundled)
with k-fold cross-validation, and compare it on the same folds with logistic regression and a
60-32-2 MLP trained by cnnlab. Prints the accuracy per fold, mean and spread; writes
perceptron.png (the learned weight per frequency band and the accuracies).

example:
  cnnlab perceptron --epochs 500 --lr 0.01 --folds 3
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "perceptron",
        help="the previous lesson: the perceptron the article starts from, on sonar data",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    p.add_argument("--epochs", type=positive_int, default=500, help="perceptron epochs")
    p.add_argument("--lr", type=positive_float, default=0.01, help="perceptron learning rate")
    p.add_argument("--folds", type=positive_int, default=3, help="cross-validation folds")
    p.add_argument(
        "--net-epochs",
        type=positive_int,
        default=100,
        help="epochs of the logistic regression and the MLP",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the folds and the networks")
    p.add_argument("--out", default="runs/perceptron", help="folder for perceptron.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.tables import table
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.perceptron import compare_on_sonar

    result = compare_on_sonar(args.epochs, args.lr, args.folds, args.seed, args.net_epochs)
    print(
        f"sonar: 208 returns, {args.folds}-fold cross-validation; perceptron "
        f"{args.epochs} epochs at η = {args.lr:g}"
    )
    header = ["model"] + [f"fold {i + 1}" for i in range(args.folds)] + ["mean", "std"]
    rows = [
        [name] + [f"{s:.1%}" for s in scores] + [f"{np.mean(scores):.1%}", f"{np.std(scores):.1%}"]
        for name, scores in result.scores.items()
    ]
    print(table(header, rows))
    print(f"always answering the majority class: {result.baseline:.1%}")
    w = result.weights
    top = np.argsort(-np.abs(w))[:5]
    print("largest perceptron weights: " + ", ".join(f"band {i + 1}: {w[i]:+.3f}" for i in top))
    path = experiment_figures.plot_perceptron(result, Path(args.out) / "perceptron.png")
    print(f"wrote {path}")
    return 0
