"""The training loop: the article's four steps, repeated over shuffled mini-batches.

Each iteration is exactly
1. forward pass   ``logits = model.forward(x)``
2. loss           ``loss = loss_fn.forward(logits, y)``
3. backward pass  ``model.backward(loss_fn.backward())``
4. weight update  ``optimizer.step()``  (``w_new = w_old − η·dL/dW`` for plain SGD)

Shuffling and augmentation draw from generators seeded by ``(seed, epoch, batch)``, so the
same seed gives the same run, and a run resumed from any step continues exactly as if it had
never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.engine import validate
from cnnlab.engine.backend import to_numpy, xp_of
from cnnlab.engine.errors import CnnlabError, NonFiniteError, NonFiniteLossError
from cnnlab.engine.metrics import accuracy
from cnnlab.engine.optim import Optimizer
from cnnlab.engine.parallel import data_parallel
from cnnlab.engine.sequential import Sequential

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def to_input(images: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """uint8 images ``(N, H, W)`` → the network's input ``(N, 1, H, W)`` in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise CnnlabError(f"to_input: expected images of shape (N, H, W), got {images.shape}")
    if images.dtype == np.uint8:  # one pass: the division itself writes the new dtype
        return np.divide(images, np.dtype(dtype).type(255), dtype=dtype)[:, None]  # (N, 1, H, W)
    return images.astype(dtype)[:, None]  # (N, 1, H, W)


@dataclass
class TrainState:
    """Where a run stands: enough to report progress, stop cleanly and resume exactly."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in the current epoch
    step: int = 0  # optimizer steps taken in all
    elapsed_s: float = 0.0  # wall time spent in earlier sessions of this run
    loss_sum: float = 0.0  # running sums of the current epoch
    correct: int = 0
    seen: int = 0
    scored: int = 0  # of the seen, those with a class (a label of -1 marks a picture of none)
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False  # set by a callback to stop after the current step

    @property
    def accuracy(self) -> float:
        """The current epoch's training accuracy so far, over the pictures that have a class
        (a state saved before ``scored`` existed counts them all)."""
        return self.correct / max(self.scored or self.seen, 1)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "stop"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        """The state ``to_json`` wrote, each field checked (a checkpoint may have been edited):
        ``CnnlabError`` naming the first bad one."""
        if not isinstance(data, dict):
            raise CnnlabError(f"training state must be a JSON object, got {type(data).__name__}")
        state = cls(
            **{k: v for k, v in data.items() if k in set(cls.__dataclass_fields__) - {"stop"}}
        )
        for name in ("epoch", "batch", "step", "correct", "seen", "scored"):
            validate.integer("training state", name, getattr(state, name), 0)
        for name in ("elapsed_s", "loss_sum"):
            validate.number("training state", name, getattr(state, name), 0.0)
        if not isinstance(state.history, list) or not all(
            isinstance(entry, dict) for entry in state.history
        ):
            raise CnnlabError("training state: history must be a list of epoch records")
        return state


class Callback:
    """Hooks called by ``fit``; set ``state.stop = True`` to stop after the current step."""

    def on_epoch_begin(self, state: TrainState) -> None:
        """Before an epoch's first step (or, after a resume, its next one)."""

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        """After each step: ``logs`` has ``loss``, ``batch_size``, ``lr``."""

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        """After each epoch: ``logs`` is the epoch's history entry."""


def evaluate(model: Sequential, x: Any, y: np.ndarray, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` on inputs ``x`` ``(N, C, H, W)`` and labels ``y`` ``(N,)``."""
    return accuracy(np.asarray(y), to_numpy(model.predict(x, batch_size=batch_size)))


def fit(
    model: Sequential,
    loss_fn: Any,
    optimizer: Optimizer,
    x: Any,
    y: Any,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    validation: tuple[Any, Any] | None = None,
    seed: int = 0,
    schedule: Callable[[int], float] | None = None,
    augment: Augment | None = None,
    callbacks: Sequence[Callback] = (),
    state: TrainState | None = None,
) -> TrainState:
    """Train ``model`` on ``x`` ``(N, C, H, W)`` float and ``y`` ``(N,)`` integer labels.

    ``validation`` is ``(x_val, y_val)``: after every epoch its loss and accuracy are recorded
    (``test_loss``, ``test_accuracy``). ``schedule(step)`` sets the learning rate before each
    step. ``augment(batch, rng)`` transforms each input batch. Pass the ``state`` of an
    interrupted run to resume it. Returns the final state, whose
    ``history`` has one entry per epoch.
    """
    n = len(x)
    if len(y) != n:
        raise CnnlabError(f"fit: {n} inputs but {len(y)} labels")
    validate.integer("fit", "batch_size", batch_size, 1)
    validate.integer("fit", "epochs", epochs, 1)
    state = state or TrainState()
    state.stop = False  # a state that stopped a run resumes it
    xp = xp_of(x)
    n_batches = math.ceil(n / batch_size)
    started = time.perf_counter() - state.elapsed_s
    # net: the model itself, or its batches split over every core (engine/parallel.py)
    with data_parallel(model, x) as net:
        while state.epoch < epochs:
            order = np.random.default_rng([seed, state.epoch]).permutation(n)
            model.train()
            for callback in callbacks:
                callback.on_epoch_begin(state)
            while state.batch < n_batches:
                index = order[state.batch * batch_size : (state.batch + 1) * batch_size]
                xb, yb = x[xp.asarray(index)], y[xp.asarray(index)]
                if augment is not None:
                    xb = augment(xb, np.random.default_rng([seed, state.epoch, state.batch]))
                if schedule is not None:
                    optimizer.lr = schedule(state.step)

                logits = net.forward(xb)  # 1. forward pass
                try:
                    loss = loss_fn.forward(logits, yb)  # 2. loss
                except NonFiniteError:  # the network's output is already NaN or inf
                    loss = math.nan
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"training diverged at step {state.step + 1} (epoch {state.epoch + 1}, "
                        f"batch {state.batch + 1}): the loss is {loss}; lower the learning rate "
                        f"(now {optimizer.lr:g})"
                    )
                net.backward(loss_fn.backward(), input_grad=False)  # 3. backward pass
                optimizer.step()  # 4. weight update
                optimizer.zero_grad()

                state.step += 1
                state.batch += 1
                state.loss_sum += loss * len(index)
                state.correct += int((logits.argmax(axis=1) == yb).sum())
                state.seen += len(index)
                state.scored += int((yb >= 0).sum())
                for callback in callbacks:
                    callback.on_batch_end(
                        state, {"loss": loss, "batch_size": len(index), "lr": optimizer.lr}
                    )
                if state.stop:
                    state.elapsed_s = time.perf_counter() - started
                    return state
            entry: dict[str, Any] = {
                "epoch": state.epoch + 1,
                "train_loss": state.loss_sum / max(state.seen, 1),
                "train_accuracy": state.accuracy,
                "lr": optimizer.lr,
            }
            if validation is not None:
                outputs = model.outputs(validation[0], batch_size=1000)  # evaluate's batches
                entry["test_loss"] = loss_fn.forward(outputs, validation[1])
                entry["test_accuracy"] = accuracy(
                    to_numpy(validation[1]), to_numpy(outputs.argmax(1))
                )
            entry["elapsed_s"] = time.perf_counter() - started
            state.history.append(entry)
            state.epoch += 1
            state.batch, state.loss_sum, state.correct, state.seen = 0, 0.0, 0, 0
            state.scored = 0
            for callback in callbacks:
                callback.on_epoch_end(state, entry)
            if state.stop:
                break
    state.elapsed_s = time.perf_counter() - started
    return state
