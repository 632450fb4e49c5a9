"""``cnnlab step MODEL IMAGE --label 8``: one training iteration, in slow motion."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli._common import (
    Formatter,
    add_model_argument,
    chosen_model,
    load_model,
    positive_float,
)
from cnnlab.engine.errors import CnnlabError

DESCRIPTION = """\
Run one training iteration of MODEL on one image and print it as the article's four steps:
the prediction vector before, the loss, the gradient norm of every layer, a few single weights
with w_old, dL/dW and w_new = w_old − η·dL/dW (the largest-gradient weight of each layer, read
back from the model after cnnlab.SGD's update), and the prediction vector after.

IMAGE is an image file or DATASET:SPLIT:INDEX (e.g. mnist-sample:test:17); for a data set's
picture --label defaults to its true class. --label takes a class's name (exact and
case-sensitive, e.g. --label sea for a model of a picture folder) or its index. The model runs
in evaluation mode (no dropout). MODEL is not changed on disk unless --save names a file for
the updated model.

example:
  cnnlab step runs/20250101-120000 mnist-sample:test:61 --label 8 --lr 0.1
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "step",
        help="one training iteration on one image, printed as the four steps",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    add_model_argument(p)
    p.add_argument("image", metavar="IMAGE", help="an image file, or DATASET:SPLIT:INDEX")
    p.add_argument(
        "--label",
        metavar="CLASS",
        help="the target class, by name or index (default: the data set picture's true class)",
    )
    p.add_argument("--lr", type=positive_float, default=0.1, help="the learning rate η")
    p.add_argument("--loss", choices=("cross-entropy", "mse"), default="cross-entropy")
    p.add_argument("--save", help="write the updated model to this file")
    p.add_argument("--out", default="runs/step", help="folder for step.png")
    p.add_argument("--data-dir", help="folder holding downloaded data sets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain import figures
    from cnnlab.explain.step import training_step
    from cnnlab.explain.text import table, vector
    from cnnlab.runs.inputs import class_index, class_names
    from cnnlab.runs.pictures import needed, read_picture

    model = load_model(chosen_model(args.model, args.runs_dir, *needed(args.image)))
    item = read_picture(model, args.image, data_dir=args.data_dir)
    names = class_names(model)
    label = class_index(names, args.label) if args.label is not None else item.label
    if label is None:
        raise CnnlabError(f"{args.image}: an image file has no known class; pass --label CLASS")
    result = training_step(model, item.x[None], label, args.lr, args.loss)

    target = ["0"] * len(result.before)
    target[label] = "1"
    print(f"image {item.source}, target class {names[label]}, η = {args.lr:g}\n")
    print("1. forward pass: the prediction vector")
    print(f"   prediction = {vector(result.before)}")
    print(f"   target     = [{' '.join(f'{t:>5}' for t in target)}]")
    print(f"\n2. loss ({args.loss}): L = {result.loss:.6f}")
    print("\n3. backward pass: dL/dθ of every layer")
    print(table(["parameter", "‖dL/dθ‖"], [[n, f"{v:.6g}"] for n, v in result.grad_norms]))
    print("\n4. weight update: w_new = w_old − η·dL/dW (the largest-gradient weight of each layer)")
    rows = [
        [w.name, f"{w.w_old:.9g}", f"{w.grad:.9g}", f"{args.lr * w.grad:.9g}", f"{w.w_new:.9g}"]
        for w in result.weights
    ]
    print(table(["weight", "w_old", "dL/dW", "η·dL/dW", "w_new"], rows))
    print("\nafter the step:")
    print(f"   prediction = {vector(result.after)}")
    print(
        f"   P({names[label]}) {result.before[label]:.4f} → {result.after[label]:.4f}, "
        f"loss {result.loss:.6g} → {result.loss_after:.6g}"
    )
    if args.save:
        model.save(args.save)
        print(f"\nsaved the updated model to {args.save}")
    path = figures.plot_step(result, names, Path(args.out) / "step.png")
    print(f"wrote {path}")
    return 0
