"""``train_run``: the one way cnnlab trains, called by ``cnnlab train`` and the web lab.

It loads the data, builds what the ``RunConfig`` names, fits with a checkpoint after the first
and the last epoch, at most every ``CHECKPOINT_INTERVAL_S`` between, and when stopped, writes
``config.json``, ``metrics.json`` and ``model.npz`` into the ``RunFolder``, then the figures of
a finished run (``run_figures.py``), and returns a ``RunResult``. ``resume_run`` continues a
stopped or killed run from its checkpoint and gets exactly the weights an uninterrupted run
would have.
Front ends present: they pass callbacks (progress bars, web events) and ``should_stop``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.imageset import ImageSet, stratified_split
from cnnlab.data.pictures import load_image_set
from cnnlab.engine.backend import array_module, to_device, to_numpy
from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.engine.errors import CnnlabError, TrainingDivergedError
from cnnlab.engine.optim import Optimizer
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback, TrainState, fit
from cnnlab.runs import prototype, sizing, unknowns
from cnnlab.runs.build import (
    check_image_size,
    make_augment,
    make_loss,
    make_optimizer,
    make_schedule,
)
from cnnlab.runs.config import DEFAULT_LR, RunConfig
from cnnlab.runs.divergence import DivergenceWatch
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.model_input import check_fits, data_meta, prepare
from cnnlab.runs.run_figures import RunFigures
from cnnlab.runs.sizing import BestEpoch, balanced_indices
from cnnlab.runs.transfer import fetch_start, frozen_layers, kept_normalisation, start_from


@dataclass
class RunData:
    """A run's pictures: training and test images (uint8 ``(N, C, H, W)``), int64 labels
    ``(N,)``, and the set they come from (names, kind, skipped files). ``val_images`` and
    ``val_labels`` are the training pictures held out to choose the best epoch (none until
    ``hold_out``)."""

    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    pictures: ImageSet
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None

    def counts(self) -> np.ndarray:
        """Training pictures per class ``(K,)``."""
        return np.bincount(self.labels, minlength=len(self.pictures.class_names))


@dataclass
class RunStart:
    """What a ``RunCallback`` learns before the first step."""

    config: RunConfig  # resolved: no None left
    folder: RunFolder
    model: Sequential
    n_train: int
    n_test: int
    steps_per_epoch: int
    state: TrainState  # where training starts (not at 0 after a resume)
    pictures: ImageSet  # the data set: class names, skipped files, whether it came from cache
    plan: str = ""  # one line: what was chosen for this data and why (sizing.summary)
    # Pictures an epoch goes through: more than ``n_train`` when smaller classes are repeated
    # (balanced) or generated non-digits are mixed in (outlier exposure).
    per_epoch: int = 0


@dataclass
class RunResult:
    """How a run ended. ``stopped`` runs keep a checkpoint to resume from."""

    config: RunConfig
    folder: RunFolder
    model: Sequential
    history: list[dict[str, Any]]
    test_accuracy: float
    stopped: bool
    data: RunData
    predictions: np.ndarray  # (N_test,) the model's test-set labels


CHECKPOINT_INTERVAL_S = 5.0  # a killed run loses at most about this much training


class RunCallback(Callback):
    """A ``fit`` callback that is also told about the run before it starts."""

    def on_run_begin(self, run: RunStart) -> None:
        """Before the first step (or the first after a resume)."""


def load_data(config: RunConfig, progress: bool = True) -> RunData:
    """The config's data set; ``subset`` keeps the first N training images. A folder is split
    into training and test pictures by ``config.seed``."""
    pictures = load_image_set(
        config.dataset, config.image_size, config.data_dir, seed=config.seed, progress=progress
    )
    images, labels = pictures.x_train, pictures.y_train
    if config.subset:
        images, labels = images[: config.subset], labels[: config.subset]
    return RunData(images, labels, pictures.x_test, pictures.y_test, pictures)


def hold_out(run_data: RunData, config: RunConfig) -> RunData:
    """``run_data`` with ``config.val_fraction`` of each class's training pictures moved to
    ``val_images``/``val_labels`` (stratified, seeded by ``config.seed``)."""
    kept, held = stratified_split(
        run_data.labels, config.val_fraction, [config.seed, 1], len(run_data.pictures.class_names)
    )
    return dataclasses.replace(
        run_data,
        images=run_data.images[kept], labels=run_data.labels[kept],
        val_images=run_data.images[held], val_labels=run_data.labels[held],
    )  # fmt: skip


def train_run(
    config: RunConfig,
    folder: RunFolder,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``config`` from scratch into ``folder``; ``progress`` shows download bars.

    A run that fails leaves ``folder`` as it found it: removed again while still empty.
    """
    with folder.lock():  # one writer per run folder
        try:
            config.validate()
            folder.refuse_if_used()
            given = config
            size = sizing.start_image_size(config.dataset, config.start_from)
            if config.image_size is None and size is not None:  # the start's own size
                config = dataclasses.replace(config, image_size=size)
            check_image_size(config)  # before any picture is decoded
            fetch_start(config.start_from, progress)  # and any download
            run_data = load_data(config, progress)
            if sizing.is_folder(config.dataset):  # a subset of a named set may miss a class
                check_classes(run_data)
            counts = run_data.counts()
            config = config.resolve(len(run_data.images), run_data.pictures.kind, counts)
            plan = sizing.summary(given, config, counts, run_data.pictures.class_names)
            run_data = hold_out(run_data, config)
            model = start_from(config.start_from, run_data.pictures, config)
            return _fit(
                config, folder, model, TrainState(), None, run_data, callbacks, should_stop, plan
            )
        except BaseException:
            folder.remove_if_empty()  # a failed run leaves nothing behind
            raise


def resume_run(
    path: str | os.PathLike,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] | None = None,
    progress: bool = True,
) -> RunResult:
    """Continue the run whose folder (or checkpoint file) is ``path``; a run that finished its
    epochs is refused (resuming it would only rewrite it as the newest run)."""
    if not Path(path).exists():
        raise CnnlabError(f"{path}: no such run folder or checkpoint; give the run's folder")
    folder = RunFolder.of_checkpoint(path)
    with folder.lock():  # one writer per run folder
        checkpoint = load_checkpoint(Path(path) if Path(path).is_file() else folder.checkpoint_file)
        try:
            config = RunConfig.from_json(checkpoint.config)
        except (TypeError, ValueError) as err:  # CnnlabError is a ValueError
            raise CnnlabError(
                f"{path}: the checkpoint's run configuration is damaged ({err})"
            ) from None
        if checkpoint.state.epoch >= config.epochs:
            raise CnnlabError(
                f"{path}: this run finished its {config.epochs} epochs; there is nothing to "
                "resume (train a new run to train longer)"
            )
        run_data = load_data(config, progress)
        # A no-op but for very old checkpoints.
        config = config.resolve(len(run_data.images), run_data.pictures.kind, run_data.counts())
        run_data = hold_out(run_data, config)
        return _fit(
            config, folder, checkpoint.model, checkpoint.state, checkpoint, run_data, callbacks,
            should_stop,
        )  # fmt: skip


def check_classes(run_data: RunData) -> None:
    """Refuse, in one line, a folder with a class that has no picture to train on or none to
    test on."""
    names = run_data.pictures.class_names
    train = run_data.counts()
    test = np.bincount(run_data.test_labels, minlength=len(names))
    for name, n_train, n_test in zip(names, train, test, strict=True):
        if n_train == 0 or n_test == 0:
            where = "train" if n_train == 0 else "test"
            raise CnnlabError(
                f"{run_data.pictures.name}: class {name!r} has {n_train + n_test} picture"
                f"{'' if n_train + n_test == 1 else 's'} and none to {where} on; give every "
                "class at least 2 pictures (5 or more for a useful model)"
            )


def _through(prefix: Sequential, augment: Any) -> Any:
    """``augment``, then the frozen ``prefix``: a batch of pictures → the fitted net's input."""

    def augmented(batch: Any, rng: np.random.Generator) -> Any:
        return prefix.outputs(augment(batch, rng).astype(prefix.dtype, copy=False))

    return augmented


class _Checkpointer(Callback):
    """Saves a checkpoint and the metrics after the first and the last epoch, and after any
    other that ends ``CHECKPOINT_INTERVAL_S`` after the last save; stops when asked.

    A small folder trains 100 epochs of a few steps each; saving after every one of them (two
    synced files) took 8.4 s of a 23 s run of 30 pictures."""

    def __init__(self, run: RunStart, optimizer: Optimizer, should_stop: Callable[[], bool]):
        self.run, self.optimizer, self.should_stop = run, optimizer, should_stop
        self.saved_at = -math.inf

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if self.should_stop():
            state.stop = True

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        last = state.epoch >= self.run.config.epochs
        if last or time.monotonic() - self.saved_at >= CHECKPOINT_INTERVAL_S:
            self.save(state)

    def save(self, state: TrainState) -> None:
        self.saved_at = time.monotonic()
        run = self.run
        save_checkpoint(
            run.folder.checkpoint_file, run.model, self.optimizer, state, run.config.to_json()
        )
        run.folder.write_metrics(state.history)


def _fit(
    config: RunConfig,
    folder: RunFolder,
    model: Sequential,
    state: TrainState,
    checkpoint: Any,
    run_data: RunData,
    callbacks: Sequence[Callback],
    should_stop: Callable[[], bool] | None,
    plan: str = "",
) -> RunResult:
    xp = array_module(config.device)
    model.to(config.device)
    check_fits(model, run_data.pictures)  # a resumed model and the data it finds now
    model.meta.update(data_meta(run_data.pictures, config.seed))
    model.meta.update(kept_normalisation(model))  # a started model reads as its source did
    # A frozen prefix (a started model's layers that stay) is run, never trained: the
    # optimizer and the backward pass see only the layers after it (``net``).
    frozen = frozen_layers(model, config.train_layers)
    prefix = Sequential(model.layers[:frozen], model.input_shape) if frozen else None
    net = model if prefix is None else Sequential(model.layers[frozen:], prefix.output_shape())
    figures = RunFigures(config, model)  # written at the end; no matplotlib: an error now
    callbacks = [*figures.callbacks, *callbacks]
    optimizer = make_optimizer(net, config)
    if checkpoint is not None:
        optimizer.load_state_arrays(
            [xp.asarray(a) for a in checkpoint.optimizer_arrays], checkpoint.optimizer_steps
        )
    x = x_pictures = to_device(prepare(model, run_data.images), config.device)
    y = to_device(run_data.labels, config.device)
    x_test = to_device(prepare(model, run_data.test_images), config.device)
    n_train = len(x)
    if config.balance:
        index = balanced_indices(run_data.labels, len(run_data.pictures.class_names), config.seed)
        x, y = x[xp.asarray(index)], y[xp.asarray(index)]
    if config.outlier_exposure:  # generated non-digits join the training pictures
        x, y = unknowns.with_nondigits(x, y, config.seed, sizing.NONDIGIT_SHARE)
    augment = make_augment(
        config, run_data.pictures.kind, run_data.pictures.input_shape[0],
        colour_tells=bool(config.augment) and sizing.colour_tells(run_data.images, run_data.labels),
    )  # fmt: skip
    x_val = to_device(prepare(model, run_data.val_images), config.device)
    if prefix is not None:  # the fitted net's inputs are the frozen prefix's outputs
        x_test, x_val = prefix.outputs(x_test), prefix.outputs(x_val)
        if augment is None:  # the same pictures every epoch: their features once
            x = prefix.outputs(x)
        else:
            augment = _through(prefix, augment)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    folder.write_json(
        folder.config_file,
        {**config.to_json(), "architecture": model.config(), "n_train": n_train,
         "n_test": len(x_test)},
    )  # fmt: skip
    run = RunStart(
        config, folder, model, n_train, len(x_test), steps_per_epoch, state, run_data.pictures,
        plan, per_epoch=len(x),
    )  # fmt: skip
    for callback in callbacks:
        if isinstance(callback, RunCallback):
            callback.on_run_begin(run)
    saver = _Checkpointer(run, optimizer, should_stop or (lambda: False))
    # Before the saver: a diverged epoch never replaces the last good checkpoint.
    usual = DEFAULT_LR[config.optimizer]  # the usual lr, or lower; far below it, the usual
    advice = usual if config.lr < usual / 1000 else min(config.lr / 10, usual)
    classes = len(model.meta["class_names"])
    watch = DivergenceWatch(
        classes, advice, used=config.lr, total_steps=config.epochs * steps_per_epoch,
        guess_loss=math.log(classes) if config.loss == "cross-entropy" else None,
    )  # fmt: skip
    best = BestEpoch(
        net, make_loss(config), x_val, run_data.val_labels, config.patience,
        math.ceil(sizing.STOP_FROM * config.epochs),
    )  # fmt: skip
    measured = [best] if len(x_val) else []
    try:
        state = fit(
            net, make_loss(config), optimizer, x, y,
            epochs=config.epochs, batch_size=config.batch_size,
            validation=(x_test, run_data.test_labels), seed=config.seed,
            schedule=make_schedule(config, steps_per_epoch), augment=augment,
            callbacks=[*measured, *callbacks, watch, saver], state=state,
        )  # fmt: skip
    except TrainingDivergedError as err:  # no model.npz is written
        kept = folder.checkpoint_file
        where = f"; the last good checkpoint is {kept}" if kept.exists() else ""
        raise type(err)(f"{err}{where}") from None
    if prefix is not None:  # fit turned its input gradient off; inside ``model`` it is needed
        net.layers[0].set_input_grad(True)
    stopped = state.epoch < config.epochs and not best.stopped_early
    if state.epoch < config.epochs:  # the last checkpoint is older than where training stopped
        saver.save(state)
    kept = {}
    if best.patience and not stopped:  # early stopping keeps the best epoch's weights
        kept = {"best_epoch": best.restore(), "epochs_run": state.epoch}
    model.eval()
    predictions = to_numpy(net.predict(x_test))
    accuracy = float((predictions == run_data.test_labels).mean())
    model.meta.update(
        {"test_accuracy": accuracy, "epochs": config.epochs, "stopped": stopped, **kept}
    )
    for key in unknowns.META_KEYS:  # a resumed run's model may carry an older calibration
        model.meta.pop(key, None)
    if len(run_data.val_labels if run_data.val_labels is not None else ()):
        x_held = to_device(prepare(model, run_data.val_images), config.device)
        model.meta.update(unknowns.calibrate(model, x_held, run_data.val_labels))
    elif run_data.pictures.kind != "digits":  # "none of these" from the training pictures
        model.meta.update(prototype.own_threshold(model, x_pictures, run_data.labels))
    model.save(folder.model_file)
    folder.write_metrics(state.history)
    if not stopped:
        figures.write(
            folder, model, state.history, run_data.test_images, run_data.test_labels, predictions
        )
    return RunResult(config, folder, model, state.history, accuracy, stopped, run_data, predictions)
