"""``cnnlab train``: train a network on digits, colour sets or a folder of one's own pictures,
and write a run folder.

The run folder holds the model (``model.npz``), the resolved configuration (``config.json``),
one metrics entry per epoch (``metrics.json``), a resumable ``checkpoint.npz`` and PNG plots.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from cnnlab.cli._common import Formatter, add_dataset_argument, positive_float, positive_int
from cnnlab.engine.backend import DEVICES
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS
from cnnlab.engine.progress import ProgressBar
from cnnlab.engine.train import TrainState
from cnnlab.runs import zoo
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import RunCallback, RunStart, resume_run, train_run
from cnnlab.runs.recipes import RECIPES


def register(sub: argparse._SubParsersAction) -> None:
    recipe_lines = "\n".join(
        f"  {name}: {r.model} preset, {r.optimizer} lr {r.lr:g} ({r.schedule}), batch "
        f"{r.batch_size}, {r.epochs_small} epochs up to 20,000 images / {r.epochs_large} beyond"
        + (", augmented" if r.augment else "")
        + (f", betas {r.betas[0]:g}/{r.betas[1]:g}" if r.betas != (0.9, 0.999) else "")
        + (f", label smoothing {r.label_smoothing:g}" if r.label_smoothing else "")
        + (f", outlier exposure {r.outlier_exposure:g}" if r.outlier_exposure else "")
        for name, r in RECIPES.items()
    )
    p = sub.add_parser(
        "train",
        help="train a network and write a run folder",
        description=(
            "Train a convolutional network on handwritten digits (or clothes), on a colour set\n"
            "(shapes, cifar10), or on a folder of your own pictures with one sub-folder per\n"
            "class (optionally train/ and test/). Options left out take the recipe's value;\n"
            "without --recipe, digits get 'default' and other pictures 'pictures'. Recipes:\n"
            + recipe_lines
        ),
        formatter_class=Formatter,
    )
    add_dataset_argument(p, "mnist-sample", "")
    p.add_argument(
        "--image-size", type=positive_int, metavar="N", help="resize a folder's pictures to "
        "N×N, centre-cropped [32; 112 from resnet18-imagenet]"
    )  # fmt: skip
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="[by the data]")
    p.add_argument(
        "--model", help=f"a preset ({', '.join(zoo.PRESETS)}) or an architecture .json file "
        "[recipe's]"
    )  # fmt: skip
    p.add_argument("--epochs", type=positive_int, help="epochs, at most [by the data]")
    p.add_argument("--batch-size", type=positive_int, help="images per step [by the data]")
    p.add_argument(
        "--val-fraction", type=float, metavar="F", help="share of each class's training "
        "pictures held out to pick the best epoch and stop early, in [0, 0.5] [by the data]"
    )  # fmt: skip
    p.add_argument(
        "--patience", type=int, metavar="N", help="stop after N epochs without a better "
        "held-out score and keep the best epoch; 0 never stops [by the data]"
    )  # fmt: skip
    p.add_argument(
        "--balance", action=argparse.BooleanOptionalAction, help="repeat the pictures of "
        "smaller classes so every class is seen as often as the largest [by the data]"
    )  # fmt: skip
    p.add_argument(
        "--from", dest="start_from", metavar="MODEL|RUN|NAME", help="start from a trained "
        "model (file or run folder) or a named starting point: its layers that fit are "
        "reused and a new head is made for these classes; 'scratch' starts from random "
        "weights, 'extractor' from the feature extractor shipped in cnnlab (offline), "
        "'resnet18-imagenet' from ResNet-18 trained on ImageNet (torchvision's weights, "
        "BSD-3-Clause; downloaded once into the cache; pictures at 112×112 unless "
        "--image-size) [extractor for a folder of under 100 pictures a class, else scratch]"
    )  # fmt: skip
    p.add_argument(
        "--train-layers", choices=("head", "top", "all"), help="with --from: train only the "
        "new head, the last convolution (or residual) block and the dense layers, or everything "
        "[by the data]"
    )  # fmt: skip
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="[recipe's]")
    p.add_argument("--lr", type=positive_float, help="peak learning rate [recipe's]")
    p.add_argument("--loss", default="cross-entropy", choices=sorted(LOSSES), help="the loss")
    p.add_argument(
        "--label-smoothing", type=float, metavar="EPS", help="cross-entropy against "
        "(1 − EPS)·one-hot + EPS/K for K classes, in [0, 1) [recipe's]"
    )  # fmt: skip
    p.add_argument(
        "--outlier-exposure", type=float, metavar="W", help="digits: mix one generated "
        "non-digit (strokes, shapes, letters) per four digits into training, pulled towards "
        "equal probabilities with weight W, so that the model can say 'not a digit'; 0 is off "
        "[recipe's]"
    )  # fmt: skip
    p.add_argument(
        "--activation", default="relu", choices=sorted(zoo.ACTIVATIONS), help="of the hidden layers"
    )
    p.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, help="digits: distort half of each "
        "training batch as other writers might (shift, rotation, scale, slant, elastic strokes, "
        "stroke thickness, blur); other pictures: random crops, brightness, contrast and "
        "saturation changes, and mirror images of colour pictures; a folder's colour pictures "
        "also in other channel orders and grey, unless colour alone tells its classes apart "
        "[recipe's, or by the data]"
    )  # fmt: skip
    p.add_argument("--subset", type=positive_int, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0, help="of the weights, shuffling and augmenting")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="where the arrays live")
    p.add_argument("--monitor", action="store_true", help="record per-layer gradient flow")
    p.add_argument("--out", help="run folder [runs/<timestamp>]")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# -- configuration -----------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run the options describe; options left out stay None: the recipe's."""
    return RunConfig(
        recipe=args.recipe,
        dataset=args.dataset,
        image_size=args.image_size,
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
        subset=args.subset,
        model=args.model,
        activation=args.activation,
        optimizer=args.optimizer,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        loss=args.loss,
        label_smoothing=args.label_smoothing,
        outlier_exposure=args.outlier_exposure,
        augment=args.augment,
        val_fraction=args.val_fraction,
        patience=args.patience,
        balance=args.balance,
        start_from=args.start_from,
        train_layers=args.train_layers,
        seed=args.seed,
        device=args.device,
        monitor=args.monitor,
    )


# -- progress and interruption -------------------------------------------------------------------


class ConsoleProgress(RunCallback):
    """What the run is, a progress bar per epoch and a summary line when each ends."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.epochs = self.per_epoch = 0
        self.bar: ProgressBar | None = None

    def on_run_begin(self, run: RunStart) -> None:
        c, self.epochs = run.config, run.config.epochs
        self.per_epoch = run.per_epoch or run.n_train
        if run.state.step:
            print(f"resuming {run.folder.path} after epoch {run.state.epoch}, batch "
                  f"{run.state.batch}", flush=True)  # fmt: skip
        print(f"run folder: {run.folder.path}", flush=True)
        pictures = run.pictures
        if pictures.from_cache:
            print("pictures read from the cache of decoded pictures", flush=True)
        if pictures.skipped:
            shown = "; ".join(  # a file name may hold control characters: shown escaped
                f"{path if str(path).isprintable() else ascii(str(path))}: {why}"
                for path, why in pictures.skipped[:5]
            )
            more = f" (and {len(pictures.skipped) - 5} more)" if len(pictures.skipped) > 5 else ""
            print(f"skipped {len(pictures.skipped)} files: {shown}{more}", flush=True)
        from_model = c.start_from not in (None, "scratch")  # the source's network, not the preset
        what = f"a network started from {c.start_from}" if from_model else c.model
        print(
            f"training {what} on {c.dataset} ({run.n_train:,} images, test {run.n_test:,}) "
            f"for {c.epochs} epochs: {c.optimizer} lr {c.lr:g}, batch {c.batch_size}, loss "
            f"{c.loss}, seed {c.seed}",
            flush=True,
        )
        if run.plan:
            print(run.plan, flush=True)
        if run.per_epoch > run.n_train:
            added = {
                "repeats of the smaller classes": c.balance,
                "generated non-digits": c.outlier_exposure,
            }
            print(
                f"each epoch goes through {run.per_epoch:,} pictures: the {run.n_train:,} and "
                f"{run.per_epoch - run.n_train:,} {' and '.join(k for k, v in added.items() if v)}",
                flush=True,
            )

    def on_epoch_begin(self, state: TrainState) -> None:
        # Started before the first step, so the first rate shown includes that step's time.
        self.bar = ProgressBar(
            self.per_epoch, f"epoch {state.epoch + 1}/{self.epochs}", unit="img",
            enabled=not self.quiet,
        )  # fmt: skip

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        assert self.bar is not None  # on_epoch_begin made it
        # The state's running sums cover the whole epoch, also after a resume mid-epoch.
        self.bar.update(logs["batch_size"], loss=state.loss_sum / state.seen)

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        self.close()
        test = (
            f"  test loss {logs['test_loss']:.4f}  test acc {100 * logs['test_accuracy']:.2f}%"
            if "test_accuracy" in logs
            else ""
        )
        print(
            f"epoch {logs['epoch']}/{self.epochs}  train loss {logs['train_loss']:.4f}  "
            f"train acc {100 * logs['train_accuracy']:.2f}%{test}  {logs['elapsed_s']:.1f} s",
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CtrlC:
    """Turns the first Ctrl-C (or SIGTERM, as ``kill`` and service managers send) into a clean
    stop that saves a checkpoint mid-epoch; a second one of the same signal is immediate."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pressed = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.pressed = True
        signal.signal(
            signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        )


# -- the command ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    progress, ctrl_c = ConsoleProgress(args.quiet), CtrlC()
    callbacks, stop = [progress], lambda: ctrl_c.pressed
    previous = {signum: signal.signal(signum, ctrl_c) for signum in CtrlC.SIGNALS}
    try:
        if args.resume:
            result = resume_run(args.resume, callbacks, stop, progress=not args.quiet)
        else:
            config = config_from_args(args)
            config.validate()
            folder = RunFolder.create(args.out)
            result = train_run(config, folder, callbacks, stop, progress=not args.quiet)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        progress.close()
    folder = result.folder
    if result.stopped:
        print(
            f"interrupted: checkpoint saved to {folder.checkpoint_file}; continue with "
            f"cnnlab train --resume {folder.path}",
            file=sys.stderr,
        )
        return 130
    meta = result.model.meta
    ran = meta.get("epochs_run", result.config.epochs)
    best = f", best epoch {meta['best_epoch']} kept" if "best_epoch" in meta else ""
    print(
        f"test accuracy {100 * result.test_accuracy:.2f}% after {ran} epochs{best} "
        f"({time.perf_counter() - started:.1f} s); model saved to {folder.model_file}"
    )
    return 0
