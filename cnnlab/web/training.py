"""The web lab's background training: one job at a time, in a thread, reporting as it goes.

A job is ``train_run`` (the same pipeline as ``cnnlab train``) into a new run folder; a
callback appends events (start, progress, first-layer filters, epoch results) to a list that
any number of Server-Sent-Events readers follow by event id. A finished job's model file goes
to ``on_finished``, which makes it the one used for predictions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import data
from cnnlab.engine.errors import CnnlabError, TrainingDivergedError
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import TrainState
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import RunCallback, RunStart, train_run
from cnnlab.runs.run_figures import first_layer_filters
from cnnlab.web.security import without_paths

PROGRESS_POINTS = 40  # progress events per epoch, at most
FILTER_INTERVAL_S = 0.5  # the first-layer filters are sent at most this often
MAX_EVENTS = 5000  # a job never keeps more events than this (they are small)
MAX_RUNS = 200  # run folders the lab creates in its runs folder at most (it deletes none)
SMOOTHING_STEPS = 20  # the curves' moving average weighs about the last this many steps


class MovingAverage:
    """An exponential moving average of one number per training step, across epochs.

    ``m ← β·m + (1 − β)·x`` with ``β = 1 − 1/steps``, read bias-corrected (``m / (1 − βᵗ)``
    after t values, as Adam corrects its moments), so the first steps are not pulled towards
    zero and the first value is the first step's own. Unlike an epoch's running mean it does not
    start again at each epoch, so an epoch boundary draws no cliff.
    """

    def __init__(self, steps: int = SMOOTHING_STEPS) -> None:
        if not isinstance(steps, int) or steps < 1:
            raise CnnlabError(f"moving average: steps must be an integer >= 1, got {steps!r}")
        self.beta = 1.0 - 1.0 / steps
        self.mean = 0.0
        self.count = 0

    def add(self, value: float) -> float:
        """Take one step's ``value``; the smoothed value so far."""
        self.count += 1
        self.mean = self.beta * self.mean + (1.0 - self.beta) * float(value)
        return self.value

    @property
    def value(self) -> float:
        return self.mean / (1.0 - self.beta**self.count) if self.count else float("nan")


class TrainingBusyError(CnnlabError):
    """A training job is already running."""

    http_status = 409


def available_datasets(data_dir: str | None) -> dict[str, str]:
    """The data sets that can be trained on without a download, each with its kind
    (``"digits"`` or ``"images"``): the bundled sample, MNIST / Fashion-MNIST when their files
    are found locally, and the generated colour ``shapes``."""
    digits = [name for name in data.IMAGE_DATASETS if data.available(name, data_dir)]
    return {**dict.fromkeys(digits, "digits"), "shapes": "images"}


def filters_for_page(model: Sequential) -> list[list[list[float]]]:
    """``first_layer_filters`` as nested lists rounded to 4 decimals, to keep the event small."""
    return np.round(first_layer_filters(model).astype(np.float64), 4).tolist()


class _Reporter(RunCallback):
    """Turns the run's hooks into events."""

    def __init__(self, job: TrainingManager) -> None:
        self.job = job
        self.last_filters = 0.0

    def on_run_begin(self, run: RunStart) -> None:
        self.model, self.batches = run.model, run.steps_per_epoch
        self.every = max(1, self.batches // PROGRESS_POINTS)
        self.loss, self.accuracy = MovingAverage(), MovingAverage()
        self.correct = self.scored = 0  # the epoch's right answers and pictures with a class
        self.job.emit(
            "start",
            config=run.config.to_json(),
            train_size=run.n_train,
            test_size=run.n_test,
            batches=self.batches,
            plan=run.plan,  # one line: what was chosen for this data and why
            filters=filters_for_page(self.model),
        )

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        if state.batch == 1:  # the epoch's sums started again
            self.correct = self.scored = 0
        scored = state.scored or state.seen  # a state saved before ``scored`` counts them all
        self.loss.add(logs["loss"])
        self.accuracy.add((state.correct - self.correct) / max(scored - self.scored, 1))
        self.correct, self.scored = state.correct, scored
        if state.batch % self.every and state.batch != self.batches:
            return
        self.job.emit(
            "progress",
            epoch=state.epoch + 1,
            batch=state.batch,
            batches=self.batches,
            step=state.step,
            loss=state.loss_sum / max(state.seen, 1),  # the epoch's running means
            accuracy=state.accuracy,
            smoothed_loss=self.loss.value,  # per step, a moving average across epochs
            smoothed_accuracy=self.accuracy.value,
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
        on_finished: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.on_finished = on_finished
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._next_id = 1
        self._thread: threading.Thread | None = None
        self.state = "idle"  # idle, running, finished, stopped, failed
        self.config: RunConfig | None = None
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

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "state": self.state,
                "config": self.config.to_json() if self.config else None,
                "last_event": self._events[-1]["id"] if self._events else 0,
            }

    # -- the job -------------------------------------------------------------------------------

    def start(self, config: RunConfig) -> None:
        """Start training ``config`` in the background; ``TrainingBusyError`` while one runs."""
        with self._cond:
            if self.state == "running":
                raise TrainingBusyError(
                    "a training job is already running; stop it or wait for it to end"
                )
            folder = self._new_folder()  # a read-only runs folder fails here, not after training
            self.state = "running"
            self.config = config
            self.stop_requested = False
            self._events = []
        self._thread = threading.Thread(
            target=self._run, args=(config, folder), name="cnnlab-training", daemon=True
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

    def _new_folder(self) -> RunFolder:
        """A fresh run folder, unless the runs folder already holds ``MAX_RUNS`` of them."""
        held = (
            sum(1 for p in self.runs_dir.iterdir() if p.is_dir()) if self.runs_dir.is_dir() else 0
        )
        if held >= MAX_RUNS:
            raise CnnlabError(
                f"the runs folder holds {held} run folders, the lab's limit of {MAX_RUNS}; "
                "delete old ones before training more"
            )
        return RunFolder.new(self.runs_dir)

    def _run(self, config: RunConfig, folder: RunFolder) -> None:
        try:
            result = self._train(config, folder)
        except CnnlabError as err:
            # "diverged" lets a front end that sets no learning rate (Teach) give its own advice.
            diverged = isinstance(err, TrainingDivergedError)
            self._finish("failed", "error", message=without_paths(str(err)), diverged=diverged)
            return
        except Exception as err:  # the thread must always end with an event
            self._finish(
                "failed",
                "error",
                message=without_paths(f"training failed: {type(err).__name__}: {err}"),
            )
            return
        self._finish("stopped" if result["stopped"] else "finished", "done", **result)

    def _train(self, config: RunConfig, folder: RunFolder) -> dict[str, Any]:
        """``train_run`` into ``folder``, reporting events. Only a finished run that reads
        better than chance becomes the active model."""
        # Overflow and NaN are caught by the run itself (a one-line event): NumPy's warnings
        # would only print on the server's terminal (this thread starts with its defaults).
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = train_run(
                config, folder, [_Reporter(self)], lambda: self.stop_requested, progress=False
            )
        chance = 1 / len(result.model.meta["class_names"])
        activate = not result.stopped and result.test_accuracy > chance
        if activate and self.on_finished is not None:
            self.on_finished(folder.name, folder.model_file)
        return {
            "run": folder.name,
            "test_accuracy": result.test_accuracy,
            "test_count": len(result.data.test_labels),
            "stopped": result.stopped,
            "activated": activate,
        }
