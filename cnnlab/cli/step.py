"""``cnnlab step MODEL IMAGE --label 8``: one training iteration, in slow motion."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from cnnlab import data
from cnnlab.cli._common import (
    Formatter,
    add_model_argument,
    chosen_model,
    load_model,
    non_negative_int,
    positive_float,
)
from cnnlab.engine.errors import CnnlabError
from cnnlab.explain.step import DEFAULT_STEP_LR, PROBE_SIZE

DESCRIPTION = """\
Run one training iteration of MODEL on one image and print it as the article's four steps:
the prediction vector before, the loss, the gradient norm of every layer, a few single weights
with w_old, dL/dW and w_new = w_old − η·dL/dW (the largest-gradient weight of each layer, read
back from the model after cnnlab.SGD's update), and the prediction vector after.

A step is judged on pictures it did not see: the model's accuracy on a fixed probe of other
test pictures of its data set (--probe of them, the same ones every time) is printed before and
after, and the step is called an overshoot when that accuracy falls or the loss on IMAGE rises.
η defaults to the learning rate the model's run trained with (its config.json), the size of
step training takes; a larger --lr overshoots on purpose, which is the lesson of a learning
rate too high.

IMAGE is an image file or DATASET:SPLIT:INDEX (e.g. mnist-sample:test:17); for a data set's
picture --label defaults to its true class. --label takes a class's name (exact and
case-sensitive, e.g. --label sea for a model of a picture folder) or its index. The model runs
in evaluation mode (no dropout). MODEL is not changed on disk unless --save names a file for
the updated model.

examples:
  cnnlab step runs/20250101-120000 mnist-sample:test:61 --label 8
  cnnlab step runs/20250101-120000 mnist-sample:test:61 --label 3 --lr 5   # a large η
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
    p.add_argument(
        "--lr",
        type=positive_float,
        help="the learning rate η (default: the one the model's run trained with, else "
        f"{DEFAULT_STEP_LR:g})",
    )
    p.add_argument(
        "--loss", choices=("cross-entropy", "mse"), default="cross-entropy", help="the loss L"
    )
    p.add_argument("--save", help="write the updated model to this file")
    p.add_argument("--out", default="runs/step", help="folder for step.png")
    p.add_argument(
        "--probe",
        type=non_negative_int,
        default=PROBE_SIZE,
        help="how many other test pictures of the model's data set judge the step (0: none)",
    )
    p.add_argument("--data-dir", help="folder holding downloaded data sets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.tables import table, vector
    from cnnlab.explain import figures
    from cnnlab.explain.step import training_step
    from cnnlab.runs.folder import recorded_optimizer
    from cnnlab.runs.model_input import class_index, class_names
    from cnnlab.runs.pictures import needed, read_picture

    path = chosen_model(args.model, args.runs_dir, *needed(args.image))
    model = load_model(path)
    item = read_picture(model, args.image, data_dir=args.data_dir)
    names = class_names(model)
    label = class_index(names, args.label) if args.label is not None else item.label
    if label is None:
        raise CnnlabError(f"{args.image}: an image file has no known class; pass --label CLASS")
    recorded = recorded_optimizer(path)
    if args.lr is not None:
        lr = args.lr
        origin = (
            "--lr" if recorded is None else f"--lr; the model's run trained with {recorded[1]:g}"
        )
    elif recorded is not None:
        lr = recorded[1]
        origin = f"the learning rate of the model's run, trained with {recorded[0]}"
    else:
        lr, origin = DEFAULT_STEP_LR, "the default: the model's run records no learning rate"
    probe, probe_note = _probe(model, args)
    result = training_step(model, item.x[None].astype(model.dtype), label, lr, args.loss, probe)

    target = ["0"] * len(result.before)
    target[label] = "1"
    print(f"image {item.source}, target class {names[label]}, η = {lr:g} ({origin})")
    if probe_note:
        print(probe_note)
    print()
    print("1. forward pass: the prediction vector")
    print(f"   prediction = {vector(result.before)}")
    print(f"   target     = [{' '.join(f'{t:>5}' for t in target)}]")
    print(f"\n2. loss ({args.loss}): L = {result.loss:.6f}")
    print("\n3. backward pass: dL/dθ of every layer")
    print(table(["parameter", "‖dL/dθ‖"], [[n, f"{v:.6g}"] for n, v in result.grad_norms]))
    print("\n4. weight update: w_new = w_old − η·dL/dW (the largest-gradient weight of each layer)")
    rows = [
        [w.name, f"{w.w_old:.9g}", f"{w.grad:.9g}", f"{lr * w.grad:.9g}", f"{w.w_new:.9g}"]
        for w in result.weights
    ]
    print(table(["weight", "w_old", "dL/dW", "η·dL/dW", "w_new"], rows))
    print("\nafter the step:")
    print(f"   prediction = {vector(result.after)}")
    print(
        f"   P({names[label]}) {result.before[label]:.4f} → {result.after[label]:.4f}, "
        f"loss {result.loss:.6g} → {result.loss_after:.6g}"
    )
    if result.probe_before is not None:
        print(
            f"   accuracy on {result.probe_size} other test pictures "
            f"{100 * result.probe_before:.1f} % → {100 * result.probe_after:.1f} %"
        )
    print("\n" + "\n".join(textwrap.wrap(result.lesson(), 96)))
    if args.save:
        model.save(args.save)
        print(f"\nsaved the updated model to {args.save}")
    path = figures.plot_step(result, names, Path(args.out) / "step.png")
    print(f"wrote {path}")
    return 0


def _probe(model, args: argparse.Namespace) -> tuple[tuple | None, str | None]:
    """The probe pictures ``(x, y)`` of the model's data set, or None and why there are none."""
    from cnnlab.cli.evaluate import load_for
    from cnnlab.explain.step import probe_set
    from cnnlab.runs.model_input import prepare_set

    if args.probe == 0:
        return None, None
    name = model.meta.get("dataset") or "mnist-sample"
    if name not in data.PICTURE_DATASETS:  # a folder: the model's meta never names one to read
        return None, (
            "no probe of other pictures: the model was trained on a folder of pictures, which "
            "step does not read; cnnlab evaluate MODEL --dataset FOLDER measures it"
        )
    if name in data.DATASETS and not data.available(name, args.data_dir):
        why = f"{name} is not on this machine (step never downloads it; cnnlab train does)"
        return None, f"no probe of other pictures: {why}"
    try:
        pictures = load_for(model, None, args.data_dir)
        x = prepare_set(model, pictures, "test")
    except CnnlabError as err:
        return None, f"no probe of other pictures: {err}"
    return probe_set(x, pictures.y_test, args.probe), None
