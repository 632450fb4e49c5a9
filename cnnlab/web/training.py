"""The web lab's background training: one job at a time, in a thread, reporting as it goes.

A job trains its own model instance with ``cnnlab.fit``; a callback appends events (progress,
first-layer filters, epoch results) to a list that any number of Server-Sent-Events readers
follow by event id. When the job ends it writes a run folder (model.npz, config.json,
metrics.json) and hands the model file to ``on_finished``, which makes it the one used for
predictions.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import data
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write_text
from cnnlab.engine.layers import Softmax
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback, TrainState, evaluate, fit, to_input
from cnnlab.figures.plots import first_layer_filters
from cnnlab.runs.zoo import build

PROGRESS_POINTS = 40  # progress events per epoch, at most
FILTER_INTERVAL_S = 0.5  # the first-layer filters are sent at most this often
MAX_EVENTS = 5000  # a job never keeps more events than this (they are small)


class TrainingBusyError(CnnlabError):
    """A training job is already running."""


@dataclass(frozen=True)
class JobConfig:
    """What to train: every choice the Train panel offers."""

    dataset: str = "mnist-sample"
    preset: str = "default"
    activation: str = "relu"
    epochs: int = 1
    learning_rate: float = 0.001
    optimizer: str = "adam"
    loss: str = "cross-entropy"
    batch_size: int = 64
    subset: int | None = None  # train on this many digits (a random sample) instead of all
    seed: int = 0


def available_datasets(data_dir: str | None) -> list[str]:
    """The image data sets that can be trained on without a download: the bundled sample and
    MNIST / Fashion-MNIST when their files are found locally."""
    return [name for name in data.IMAGE_DATASETS if data.available(name, data_dir)]


def filters_for_page(model: Sequential) -> list[list[list[float]]]:
    """``first_layer_filters`` as nested lists rounded to 4 decimals, to keep the event small."""
    return np.round(first_layer_filters(model).astype(np.float64), 4).tolist()


class _Reporter(Callback):
    """Turns ``fit``'s hooks into events and stops the run when asked."""

    def __init__(self, job: TrainingManager, batches: int, model: Sequential) -> None:
        self.job = job
        self.batches = batches
        self.model = model
        self.every = max(1, batches // PROGRESS_POINTS)
        self.last_filters = 0.0

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if self.job.stop_requested:
            state.stop = True
        if state.batch % self.every and state.batch != self.batches:
            return
        self.job.emit(
            "progress",
            epoch=state.epoch + 1,
            batch=state.batch,
            batches=self.batches,
            step=state.step,
            loss=state.loss_sum / max(state.seen, 1),
            accuracy=state.correct / max(state.seen, 1),
            lr=float(logs["lr"]),
        )
        now = time.monotonic()
        if now - self.last_filters >= FILTER_INTERVAL_S:
            self.last_filters = now
            self.job.emit("filters", step=state.step, filters=filters_for_page(self.model))

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        self.job.emit("epoch", **{k: float(v) for k, v in logs.items()})
        self.job.emit("filters", step=state.step, filters=filters_for_page(self.model))


class TrainingManager:
    """Runs at most one training job in a background thread and keeps its events.

    ``on_finished(run_name, model_file)`` is called from the training thread when a job
    completes (not when it is stopped or fails), before the final event is emitted.
    """

    def __init__(
        self,
        runs_dir: str | Path,
        data_dir: str | None = None,
        on_finished: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.data_dir = data_dir
        self.on_finished = on_finished
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._next_id = 1
        self._thread: threading.Thread | None = None
        self.state = "idle"  # idle, running, finished, stopped, failed
        self.config: JobConfig | None = None
        self.stop_requested = False

    # -- events --------------------------------------------------------------------------------

    def emit(self, kind: str, **data: Any) -> None:
        """Append an event ``{"id", "type", ...data}`` and wake the readers."""
        with self._cond:
            if len(self._events) < MAX_EVENTS or kind != "progress":
                self._events.append({"id": self._next_id, "type": kind, **data})
                self._next_id += 1
            self._cond.notify_all()

    def events_after(self, after: int) -> tuple[list[dict[str, Any]], bool]:
        """The current job's events with id > ``after``, and whether the job has ended."""
        with self._cond:
            fresh = [e for e in self._events if e["id"] > after]
            return fresh, self.state != "running"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "state": self.state,
                "config": asdict(self.config) if self.config else None,
                "last_event": self._events[-1]["id"] if self._events else 0,
            }

    # -- the job -------------------------------------------------------------------------------

    def start(self, config: JobConfig) -> None:
        """Start training ``config`` in the background; ``TrainingBusyError`` while one runs."""
        with self._cond:
            if self.state == "running":
                raise TrainingBusyError(
                    "a training job is already running; stop it or wait for it to end"
                )
            self.state = "running"
            self.config = config
            self.stop_requested = False
            self._events = []
        self._thread = threading.Thread(
            target=self._run, args=(config,), name="cnnlab-training", daemon=True
        )
        self._thread.start()

    def stop(self) -> bool:
        """Ask the running job to stop after its current step; False when none runs."""
        with self._cond:
            if self.state != "running":
                return False
            self.stop_requested = True
            return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for the job's thread (tests and shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _finish(self, state: str, kind: str, **data: Any) -> None:
        with self._cond:
            self.state = state
        self.emit(kind, **data)

    def _run(self, config: JobConfig) -> None:
        try:
            result = self._train(config)
        except CnnlabError as err:
            self._finish("failed", "error", message=str(err))
            return
        except Exception as err:  # the thread must always end with an event
            self._finish("failed", "error", message=f"training failed: {type(err).__name__}: {err}")
            return
        self._finish("stopped" if result["stopped"] else "finished", "done", **result)

    def _load(self, config: JobConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:

        images, labels = data.load(config.dataset, "train", self.data_dir, progress=False)
        test_images, test_labels = data.load(config.dataset, "test", self.data_dir, progress=False)
        if config.subset is not None and config.subset < len(images):
            pick = np.random.default_rng(config.seed).permutation(len(images))[: config.subset]
            images, labels = images[pick], labels[pick]
        return to_input(images), labels.astype(np.int64), to_input(test_images), test_labels

    def _train(self, config: JobConfig) -> dict[str, Any]:
        from cnnlab.data import class_names

        x, y, x_test, y_test = self._load(config)
        model = build(config.preset, activation=config.activation, seed=config.seed)
        if config.loss == "mse":  # the article's loss works on probabilities
            model = Sequential(
                [*model.layers, Softmax()], input_shape=model.input_shape, meta=model.meta
            )
        model.meta.update(
            {
                "dataset": config.dataset,
                "class_names": list(class_names(config.dataset)),
                "trained_by": "cnnlab serve",
            }
        )
        optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.learning_rate)
        batches = -(-len(x) // config.batch_size)
        self.emit(
            "start",
            config=asdict(config),
            train_size=len(x),
            test_size=len(x_test),
            batches=batches,
            filters=filters_for_page(model),
        )
        state = fit(
            model,
            LOSSES[config.loss](),
            optimizer,
            x,
            y,
            epochs=config.epochs,
            batch_size=config.batch_size,
            validation=(x_test, y_test),
            seed=config.seed,
            callbacks=[_Reporter(self, batches, model)],
        )
        stopped = state.epoch < config.epochs
        # A stopped run has changed since its last epoch's evaluation: measure it again.
        test_accuracy = (
            evaluate(model, x_test, y_test) if stopped else state.history[-1]["test_accuracy"]
        )
        run_name, folder = self._new_run_folder()
        model.meta.update({"test_accuracy": float(test_accuracy), "stopped": stopped})
        model.save(folder / "model.npz")
        # The same files as ``cnnlab train``: metrics.json is the per-epoch history.
        atomic_write_text(folder / "config.json", json.dumps(asdict(config), indent=2) + "\n")
        atomic_write_text(folder / "metrics.json", json.dumps(state.history, indent=2) + "\n")
        if not stopped and self.on_finished is not None:
            self.on_finished(run_name, folder / "model.npz")
        return {
            "run": run_name,
            "test_accuracy": float(test_accuracy),
            "stopped": stopped,
            "activated": not stopped,
        }

    def _new_run_folder(self) -> tuple[str, Path]:
        """A fresh ``runs/<YYYYmmdd-HHMMSS>[-n]`` folder."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            name = stamp if n == 1 else f"{stamp}-{n}"
            folder = self.runs_dir / name
            try:
                folder.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            except OSError as err:
                raise CnnlabError(
                    f"cannot create a run folder in {self.runs_dir}: {err.strerror or err}; "
                    "start the lab with a writable --runs-dir"
                ) from None
            return name, folder
        raise CnnlabError(f"cannot find a free run folder name in {self.runs_dir}")
