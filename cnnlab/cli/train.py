"""``cnnlab train``: train a network on digits and write a run folder.

The run folder holds the model (``model.npz``), the resolved configuration (``config.json``),
one metrics entry per epoch (``metrics.json``), a resumable ``checkpoint.npz`` and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import data
from cnnlab.cli._common import (
    MODEL_FILE,
    Formatter,
    positive_float,
    positive_int,
)
from cnnlab.engine.backend import DEVICES, array_module, to_device, to_numpy
from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.engine.errors import CnnlabError, NonFiniteLossError
from cnnlab.engine.fileio import atomic_write_text
from cnnlab.engine.layers import Conv2D, Softmax
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.metrics import confusion_matrix
from cnnlab.engine.optim import OPTIMIZERS, CosineLR, OneCycleLR, Optimizer
from cnnlab.engine.progress import ProgressBar
from cnnlab.engine.rng import manual_seed
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.serialize import model_from_config
from cnnlab.engine.train import Callback, TrainState, fit, to_input
from cnnlab.runs import zoo as presets
from cnnlab.runs.recipes import RECIPES, get_recipe

CHECKPOINT_FILE = "checkpoint.npz"
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}


def register(sub: argparse._SubParsersAction) -> None:
    recipe_lines = "\n".join(
        f"  {name}: {r.model} preset, {r.optimizer} lr {r.lr:g} ({r.schedule}), batch "
        f"{r.batch_size}, {r.epochs_small} epochs on mnist-sample / {r.epochs_large} on full sets"
        + (", augmented" if r.augment else "")
        + (f", betas {r.betas[0]:g}/{r.betas[1]:g}" if r.betas != (0.9, 0.999) else "")
        + (f", label smoothing {r.label_smoothing:g}" if r.label_smoothing else "")
        for name, r in RECIPES.items()
    )
    p = sub.add_parser(
        "train",
        help="train a network and write a run folder",
        description=(
            "Train a convolutional network on handwritten digits (or clothes).\n"
            "Options left out take the recipe's value. Recipes:\n" + recipe_lines
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--dataset", default="mnist-sample", choices=data.IMAGE_DATASETS)
    p.add_argument("--data-dir", help="folder holding the data set's IDX files")
    p.add_argument("--recipe", default="default", choices=sorted(RECIPES))
    p.add_argument(
        "--model", help="a preset (default, fast, lenet5, simple) or an architecture .json file "
        "[recipe's]"
    )  # fmt: skip
    p.add_argument("--epochs", type=positive_int, help="epochs [recipe's]")
    p.add_argument("--batch-size", type=positive_int, help="images per step [recipe's]")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="[recipe's]")
    p.add_argument("--lr", type=positive_float, help="peak learning rate [recipe's]")
    p.add_argument("--loss", default="cross-entropy", choices=sorted(LOSSES))
    p.add_argument(
        "--label-smoothing", type=float, metavar="EPS", help="cross-entropy against "
        "(1 − EPS)·one-hot + EPS/10, in [0, 1) [recipe's]"
    )  # fmt: skip
    p.add_argument("--activation", default="relu", choices=sorted(presets.ACTIVATIONS))
    p.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, help="random shifts, rotations and "
        "scaling of training images [recipe's]"
    )  # fmt: skip
    p.add_argument("--subset", type=positive_int, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--monitor", action="store_true", help="record per-layer gradient flow")
    p.add_argument("--out", help="run folder [runs/<timestamp>]")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# -- configuration -----------------------------------------------------------------------------


def resolve_settings(args: argparse.Namespace, n_train: int) -> dict[str, Any]:
    """The full, explicit configuration of a run: the recipe with the command line on top."""
    recipe = get_recipe(args.recipe)
    optimizer = args.optimizer or recipe.optimizer
    # A recipe's learning rate belongs to its optimizer; another optimizer gets its own default.
    lr = args.lr or (recipe.lr if optimizer == recipe.optimizer else DEFAULT_LR[optimizer])
    smoothing = args.label_smoothing
    if smoothing is not None and args.loss != "cross-entropy":
        raise CnnlabError(
            "--label-smoothing applies to the cross-entropy loss; drop it or the --loss"
        )
    if smoothing is not None and not 0.0 <= smoothing < 1.0:
        raise CnnlabError(f"--label-smoothing must be in [0, 1), got {smoothing:g}")
    if smoothing is None:
        smoothing = recipe.label_smoothing if args.loss == "cross-entropy" else 0.0
    return {
        "recipe": args.recipe,
        "dataset": args.dataset,
        "data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
        "model": args.model or recipe.model,
        "epochs": args.epochs or recipe.epochs(n_train),
        "batch_size": args.batch_size or recipe.batch_size,
        "optimizer": optimizer,
        "lr": lr,
        "schedule": recipe.schedule,
        "weight_decay": recipe.weight_decay,
        "loss": args.loss,
        "label_smoothing": smoothing,
        "betas": list(recipe.betas if optimizer == recipe.optimizer else (0.9, 0.999)),
        "activation": args.activation,
        "augment": recipe.augment if args.augment is None else args.augment,
        "subset": args.subset,
        "seed": args.seed,
        "device": args.device,
        "monitor": args.monitor,
    }


def build_model(settings: dict[str, Any]) -> Sequential:
    """The network a run's settings name, with a Softmax appended for the MSE loss."""
    manual_seed(settings["seed"])
    name = settings["model"]
    if name.endswith(".json"):
        try:
            config = json.loads(Path(name).read_text())
        except OSError as err:
            raise CnnlabError(f"{name}: cannot read it ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise CnnlabError(f"{name}: not valid JSON ({err})") from None
        model = model_from_config(config, name, rng=settings["seed"])
    else:
        model = presets.build(name, activation=settings["activation"], seed=settings["seed"])
    if settings["loss"] == "mse" and not isinstance(model.layers[-1], Softmax):
        # The article's loss compares probabilities with a one-hot target.
        model = Sequential([*model.layers, Softmax()], model.input_shape, model.meta)
    if model.input_shape != (1, 28, 28):
        raise CnnlabError(
            f"{name}: the model takes input {model.input_shape}, but {settings['dataset']} "
            "images are (1, 28, 28); set input_shape to [1, 28, 28]"
        )
    if model.output_shape()[-1] != 10:
        raise CnnlabError(f"{name}: the model has {model.output_shape()[-1]} outputs, need 10")
    return model


def make_optimizer(model: Sequential, settings: dict[str, Any]) -> Optimizer:
    cls = OPTIMIZERS[settings["optimizer"]]
    kwargs = {"weight_decay": settings["weight_decay"]}
    if settings["optimizer"] == "sgd":
        kwargs["momentum"] = 0.9
    else:  # runs from before recipes had betas used Adam's usual ones
        kwargs["betas"] = tuple(settings.get("betas", (0.9, 0.999)))
    return cls(model.parameters(), lr=settings["lr"], **kwargs)


def make_loss(settings: dict[str, Any]) -> Any:
    if settings["loss"] == "cross-entropy":
        return LOSSES["cross-entropy"](label_smoothing=settings.get("label_smoothing", 0.0))
    return LOSSES[settings["loss"]]()


def make_schedule(settings: dict[str, Any], steps_per_epoch: int) -> Any:
    total = settings["epochs"] * steps_per_epoch
    if settings["schedule"] == "onecycle" and total >= 2:
        return OneCycleLR(settings["lr"], total)
    if settings["schedule"] == "cosine":
        return CosineLR(settings["lr"], total)
    return None


def make_augment(settings: dict[str, Any]) -> Any:
    if not settings["augment"]:
        return None
    from cnnlab.data.augment import random_affine

    return lambda batch, rng: random_affine(batch, rng)


# -- progress and interruption -------------------------------------------------------------------


class ConsoleProgress(Callback):
    """A progress bar per epoch and a summary line when it ends."""

    def __init__(self, epochs: int, n_train: int, quiet: bool) -> None:
        self.epochs, self.n_train, self.quiet = epochs, n_train, quiet
        self.bar: ProgressBar | None = None

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if self.bar is None:
            self.bar = ProgressBar(
                self.n_train, f"epoch {state.epoch + 1}/{self.epochs}", unit="img",
                enabled=not self.quiet,
            )  # fmt: skip
        # The state's running sums cover the whole epoch, also after a resume mid-epoch.
        self.bar.update(logs["batch_size"], loss=state.loss_sum / state.seen)

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        test = f"  test acc {100 * logs['test_accuracy']:.2f}%" if "test_accuracy" in logs else ""
        print(
            f"epoch {logs['epoch']}/{self.epochs}  train loss {logs['train_loss']:.4f}  "
            f"train acc {100 * logs['train_accuracy']:.2f}%{test}  {logs['elapsed_s']:.1f} s",
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EpochCheckpoint(Callback):
    """Save a resumable checkpoint after every epoch, and stop cleanly on Ctrl-C."""

    def __init__(self, out: Path, model: Sequential, optimizer: Optimizer, settings: dict) -> None:
        self.out, self.model, self.optimizer, self.settings = out, model, optimizer, settings
        self.interrupted = False

    def request_stop(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C is immediate

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if self.interrupted:
            state.stop = True

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        self.save(state)
        write_metrics(self.out, state.history)

    def save(self, state: TrainState) -> None:
        save_checkpoint(
            self.out / CHECKPOINT_FILE, self.model, self.optimizer, state, self.settings
        )


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(history, indent=2) + "\n")


# -- the command ---------------------------------------------------------------------------------


def load_images(dataset: str, data_dir: str | None, subset: int | None) -> tuple[np.ndarray, ...]:
    """Training images and labels (the first ``subset`` only, if given), test images and labels."""
    images, labels = data.load(dataset, "train", data_dir)
    test_images, test_labels = data.load(dataset, "test", data_dir)
    if subset:
        images, labels = images[:subset], labels[:subset]
    return images, labels.astype(np.int64), test_images, test_labels.astype(np.int64)


def new_run_folder(out: str | None) -> Path:
    folder = Path(out) if out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if out is None and folder.exists():
        folder = folder.with_name(folder.name + f"-{time.time_ns() % 1000:03d}")
    if (folder / MODEL_FILE).exists() or (folder / CHECKPOINT_FILE).exists():
        raise CnnlabError(
            f"{folder}: already holds a run; choose another --out, or continue it with --resume"
        )
    return folder


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    checkpoint = None
    if args.resume:
        out = Path(args.resume)
        checkpoint = load_checkpoint(out / CHECKPOINT_FILE if out.is_dir() else out)
        out = out if out.is_dir() else out.parent
        settings, model, state = checkpoint.config, checkpoint.model, checkpoint.state
        print(f"resuming {out} after epoch {state.epoch}, batch {state.batch}", flush=True)
        images, labels, test_images, test_labels = load_images(
            settings["dataset"], settings["data_dir"], settings["subset"]
        )
    else:
        out = new_run_folder(args.out)
        data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
        images, labels, test_images, test_labels = load_images(args.dataset, data_dir, args.subset)
        settings = resolve_settings(args, len(images))
        model = build_model(settings)
        state = TrainState()

    xp = array_module(settings["device"])
    model.to(settings["device"])
    model.meta.update(
        {
            "dataset": settings["dataset"],
            "class_names": list(data.class_names(settings["dataset"])),
            "input": "28x28 grey in [0, 1], ink bright on dark",
        }
    )
    optimizer = make_optimizer(model, settings)
    if checkpoint is not None:
        optimizer.load_state_arrays(
            [xp.asarray(a) for a in checkpoint.optimizer_arrays], checkpoint.optimizer_steps
        )
    x = to_device(to_input(images), settings["device"])
    y = to_device(labels, settings["device"])
    x_test = to_device(to_input(test_images), settings["device"])
    steps_per_epoch = math.ceil(len(x) / settings["batch_size"])

    atomic_write_text(out / "config.json", json.dumps(
        {**settings, "architecture": model.config(), "n_train": len(x), "n_test": len(x_test)},
        indent=2,
    ) + "\n")  # fmt: skip
    print(f"run folder: {out}", flush=True)
    print(
        f"training {settings['model']} on {settings['dataset']} ({len(x):,} images, test "
        f"{len(x_test):,}) for {settings['epochs']} epochs: {settings['optimizer']} lr "
        f"{settings['lr']:g}, batch {settings['batch_size']}, loss {settings['loss']}, seed "
        f"{settings['seed']}",
        flush=True,
    )
    progress = ConsoleProgress(settings["epochs"], len(x), args.quiet)
    saver = EpochCheckpoint(out, model, optimizer, settings)
    callbacks: list[Callback] = [progress, saver]
    monitor = None
    if settings["monitor"]:
        from cnnlab.explain.monitor import GradientMonitor

        monitor = GradientMonitor(model)
        callbacks.insert(0, monitor)
    previous = signal.signal(signal.SIGINT, saver.request_stop)
    try:
        state = fit(
            model,
            make_loss(settings),
            optimizer,
            x,
            y,
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            validation=(x_test, test_labels),
            seed=settings["seed"],
            schedule=make_schedule(settings, steps_per_epoch),
            augment=make_augment(settings),
            callbacks=callbacks,
            state=state,
        )
    except NonFiniteLossError as err:
        kept = out / CHECKPOINT_FILE
        where = f"; the last good checkpoint is {kept}" if kept.exists() else ""
        raise NonFiniteLossError(f"{err}{where}") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    if saver.interrupted:
        saver.save(state)
        write_metrics(out, state.history)
        print(
            f"interrupted: checkpoint saved to {out / CHECKPOINT_FILE}; continue with "
            f"cnnlab train --resume {out}",
            file=sys.stderr,
        )
        return 130

    model.eval()
    predictions = to_numpy(model.predict(x_test))
    accuracy = float((predictions == test_labels).mean())
    model.meta["test_accuracy"] = accuracy
    model.meta["epochs"] = settings["epochs"]
    model.save(out / MODEL_FILE)
    write_metrics(out, state.history)
    if monitor is not None:
        atomic_write_text(out / "gradient_flow.json", json.dumps(monitor.records, indent=2))
    write_plots(out, model, state.history, test_images, test_labels, predictions, monitor)
    print(
        f"test accuracy {100 * accuracy:.2f}% after {settings['epochs']} epochs "
        f"({time.perf_counter() - started:.1f} s); model saved to {out / MODEL_FILE}"
    )
    return 0


def write_plots(
    out: Path,
    model: Sequential,
    history: list[dict[str, Any]],
    test_images: np.ndarray,
    test_labels: np.ndarray,
    predictions: np.ndarray,
    monitor: Any,
) -> None:
    """The run's figures; a missing matplotlib costs the figures, not the run."""
    from cnnlab.figures import plots

    names = model.meta["class_names"]
    try:
        plots.plot_curves(history, out / "curves.png")
        plots.plot_confusion(
            confusion_matrix(test_labels, predictions, 10), names, out / "confusion.png"
        )
        conv = next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)
        if conv is not None:
            plots.plot_filters(plots.first_layer_filters(model), out / "filters.png")
        plots.plot_misclassified(
            test_images, test_labels, predictions, names, out / "misclassified.png"
        )
        if monitor is not None:
            from cnnlab.explain.figures import plot_gradient_flow

            plot_gradient_flow(monitor.records, out / "gradient_flow.png")
    except CnnlabError as err:
        print(f"warning: no figures written: {err}", file=sys.stderr)
