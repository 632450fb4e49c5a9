"""The article's ideas as small, seeded experiments that run in seconds on a laptop.

Each function returns plain numbers (dataclasses of floats and arrays); ``cnnlab.explain.figures``
draws them and ``cnnlab experiment NAME`` prints them. All use the bundled ``mnist-sample``
digits unless told otherwise, the same initial weights for every variant, and the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.engine import validate
from cnnlab.engine.errors import CnnlabError, NonFiniteLossError
from cnnlab.engine.layers import Conv2D, Dense, Flatten, Layer, MaxPool2D, Softmax
from cnnlab.engine.losses import CrossEntropyLoss, MSELoss
from cnnlab.engine.optim import SGD
from cnnlab.engine.rng import resolve_rng
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback, TrainState, evaluate, fit, to_input
from cnnlab.explain.maps import LayerMaps, activation_maps
from cnnlab.runs.monitor import GradientMonitor
from cnnlab.runs.run_figures import first_layer_filters
from cnnlab.runs.zoo import ACTIVATIONS, init_for

DEFAULT_LEARNING_RATES = (1e-4, 1e-3, 1e-2, 0.1, 0.2, 0.5, 3.0)


def digits(
    samples: int,
    split: str = "train",
    dataset: str = "mnist-sample",
    data_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` digits of a split: inputs ``(N, 1, 28, 28)`` float32, labels int64."""
    from cnnlab.data import load

    images, labels = load(dataset, split, data_dir=data_dir)
    validate.integer("experiment", "samples", samples, 1)
    return to_input(images[:samples]), labels[:samples].astype(np.int64)


def small_cnn(activation: str = "relu", seed: int = 0, softmax: bool = False) -> Sequential:
    """A quick CNN for experiments: conv 6@5×5 → pool → act → conv 12@5×5 → pool → act → dense 10.

    The output layer starts with small weights (Glorot scaled by 0.1), so the untrained network
    guesses close to uniformly (loss ≈ ln 10). ``softmax=True`` ends it with a ``Softmax`` layer
    (outputs are probabilities, for MSE).
    """
    act = ACTIVATIONS[validate.choice("small_cnn", "activation", activation, tuple(ACTIVATIONS))]
    rng = resolve_rng(seed)
    init = init_for(activation)
    layers: list[Layer] = [
        Conv2D(1, 6, 5, init=init, rng=rng), MaxPool2D(2), act(),
        Conv2D(6, 12, 5, init=init, rng=rng), MaxPool2D(2), act(),
        Flatten(), Dense(12 * 4 * 4, 10, init="glorot", rng=rng),
    ]  # fmt: skip
    layers[-1].params["W"] *= np.float32(0.1)
    if softmax:
        layers.append(Softmax())
    return Sequential(layers, input_shape=(1, 28, 28), meta={"preset": "experiment-cnn"})


class _LossRecorder(Callback):
    """Records every batch loss and, every ``probe_every`` steps, the loss on held-out digits.

    Stops the run once a batch loss exceeds ``factor`` times the first one (divergence).
    """

    def __init__(
        self, model: Sequential, probe: tuple[np.ndarray, np.ndarray], every: int, factor: float
    ) -> None:
        self.model, self.probe, self.every, self.factor = model, probe, every, factor
        self.losses: list[float] = []
        self.probe_steps: list[int] = [0]
        self.probe_losses: list[float] = [self._probe_loss()]
        self.diverged_at: int | None = None
        self.diverged_loss = math.nan

    def _probe_loss(self) -> float:
        self.model.eval()
        try:
            return CrossEntropyLoss().forward(self.model.forward(self.probe[0]), self.probe[1])
        except CnnlabError:  # the outputs overflowed to inf: as bad as it gets
            return math.inf
        finally:
            self.model.train()

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        loss = float(logs["loss"])
        if self.losses and not loss <= self.factor * self.losses[0]:
            self.diverged_at, self.diverged_loss = state.step, loss
            state.stop = True
            return
        self.losses.append(loss)
        if state.step % self.every == 0:
            self.probe_steps.append(state.step)
            self.probe_losses.append(self._probe_loss())


@dataclass
class LearningRateRun:
    """One learning rate of the sweep."""

    lr: float
    losses: list[float]  # batch losses, up to (not including) divergence
    probe_steps: list[int]  # steps at which the held-out loss was measured (0 = before training)
    probe_losses: list[float]  # the held-out loss at those steps
    verdict: str  # "diverged", "slow", "overshoots" or "good"
    diverged_at: int | None  # the step whose loss blew up (the largest jump), if it diverged
    diverged_loss: float  # the loss at that step (inf or nan when it overflowed; nan if none)
    start: float  # held-out loss before training
    end: float  # held-out loss at the end (nan when diverged)
    best: bool = False  # lowest final loss of the sweep


def judge(losses: Sequence[float], probe_losses: Sequence[float], diverged: bool) -> str:
    """Verdict from the batch losses and the held-out loss curve.

    ``diverged`` when the loss became NaN/inf or rose past the sweep's divergence limit, or
    when a batch loss jumped above twice the first one and the held-out loss never came back
    below where it started (the network blew up and did not recover); ``overshoots`` when such
    a jump happened but it recovered, or the held-out loss ends more than 20 % above its lowest
    point; ``slow`` when the held-out loss fell by less than 15 %; else ``good``.
    """
    if diverged:
        return "diverged"
    start, end, lowest = probe_losses[0], probe_losses[-1], min(probe_losses)
    jumped = max(losses) > 2 * losses[0]
    if jumped and end >= 0.98 * start:
        return "diverged"
    if jumped or end > 1.2 * lowest:
        return "overshoots"
    if end > 0.85 * start:
        return "slow"
    return "good"


def learning_rate_sweep(
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    samples: int = 1000,
    epochs: int = 1,
    batch_size: int = 32,
    probe_samples: int = 200,
    probe_every: int = 3,
    seed: int = 0,
    diverge_factor: float = 10.0,
    dataset: str = "mnist-sample",
    data_dir: str | Path | None = None,
) -> list[LearningRateRun]:
    """Plain SGD (no momentum) at each η on the same CNN, weights and batches.

    The loss on ``probe_samples`` held-out test digits is measured every ``probe_every`` steps.
    A run counts as diverged when a batch loss turns NaN/inf or exceeds ``diverge_factor`` times
    the first batch's loss; it is stopped there and its curves end at the last sane loss.
    """
    x, y = digits(samples, "train", dataset, data_dir)
    probe = digits(probe_samples, "test", dataset, data_dir)
    runs = []
    for lr in learning_rates:
        model = small_cnn(seed=seed)
        recorder = _LossRecorder(model, probe, probe_every, diverge_factor)
        try:
            fit(
                model,
                CrossEntropyLoss(),
                SGD(model.parameters(), lr),
                x,
                y,
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                callbacks=[recorder],
            )
            diverged_at = recorder.diverged_at
        except NonFiniteLossError:
            diverged_at = len(recorder.losses) + 1
        verdict = judge(recorder.losses, recorder.probe_losses, diverged_at is not None)
        diverged_loss = recorder.diverged_loss
        if verdict == "diverged" and diverged_at is None:  # blew up, ran on, never recovered
            diverged_at = int(np.argmax(recorder.losses)) + 1
            diverged_loss = max(recorder.losses)
        end = recorder.probe_losses[-1] if verdict != "diverged" else math.nan
        runs.append(
            LearningRateRun(
                lr=float(lr),
                losses=recorder.losses,
                probe_steps=recorder.probe_steps,
                probe_losses=recorder.probe_losses,
                verdict=verdict,
                diverged_at=diverged_at,
                diverged_loss=diverged_loss if diverged_at else math.nan,
                start=recorder.probe_losses[0],
                end=end,
            )
        )
    finite = [r for r in runs if r.verdict != "diverged"]
    if finite:
        min(finite, key=lambda r: r.end).best = True
    return runs


def deep_mlp(activation: str, depth: int = 8, width: int = 64, seed: int = 0) -> Sequential:
    """A plain deep network: ``depth`` hidden dense layers of ``width`` units, then 10 outputs.

    Each activation gets its customary initialisation (``init_for``).
    """
    act = ACTIVATIONS[validate.choice("deep_mlp", "activation", activation, tuple(ACTIVATIONS))]
    validate.integer("deep_mlp", "depth", depth, 1)
    validate.integer("deep_mlp", "width", width, 1)
    rng = resolve_rng(seed)
    init = init_for(activation)
    layers: list[Layer] = [Flatten()]
    inputs = 28 * 28
    for _ in range(depth):
        layers += [Dense(inputs, width, init=init, rng=rng), act()]
        inputs = width
    layers.append(Dense(width, 10, init="glorot", rng=rng))
    return Sequential(layers, input_shape=(1, 28, 28), meta={"preset": f"deep-{activation}"})


@dataclass
class ActivationRun:
    """Gradient norms of one deep network over its first epoch, and what it learned in all."""

    activation: str
    layer_names: list[str]  # the dense layers, input side first
    grad_norms: list[float]  # mean ‖dL/dW‖ per dense layer over the first epoch
    first_layer_per_batch: list[float]  # ‖dL/dW‖ of the first layer at every batch
    last_layer_per_batch: list[float]
    saturated_fraction: float | None  # mean over the activation layers (sigmoid/tanh)
    dead_fraction: float | None  # mean over the ReLU layers
    test_accuracy: float  # on held-out test digits, after every epoch of training

    @property
    def reach(self) -> float:
        """How much of the gradient reaches the first layer: its norm over the last layer's."""
        return self.grad_norms[0] / self.grad_norms[-1]


def activation_gradients(
    activations: Sequence[str] = ("sigmoid", "tanh", "relu"),
    depth: int = 8,
    width: int = 64,
    samples: int = 2000,
    epochs: int = 3,
    test_samples: int = 1000,
    batch_size: int = 32,
    lr: float = 0.05,
    seed: int = 0,
    dataset: str = "mnist-sample",
    data_dir: str | Path | None = None,
) -> list[ActivationRun]:
    """Train a deep plain network per activation (He initialisation for ReLU, Glorot for the
    others) with plain SGD: the gradient reaching each layer over the first epoch, and the test
    accuracy after ``epochs``."""
    x, y = digits(samples, "train", dataset, data_dir)
    xt, yt = digits(test_samples, "test", dataset, data_dir)
    runs = []
    for activation in activations:
        model = deep_mlp(activation, depth, width, seed)
        optimizer = SGD(model.parameters(), lr)
        monitor = GradientMonitor(model)
        options: dict[str, Any] = {"batch_size": batch_size, "seed": seed}
        state = fit(model, CrossEntropyLoss(), optimizer, x, y, callbacks=[monitor], **options)
        monitor.close()  # the first epoch is watched; the rest trains at full speed
        fit(model, CrossEntropyLoss(), optimizer, x, y, epochs=epochs, state=state, **options)
        entries = monitor.records[0]["layers"]
        dense = [e for e in entries if e["type"] == "Dense"]
        names = [e["name"] for e in dense]
        saturated = [e["saturated_fraction"] for e in entries if "saturated_fraction" in e]
        dead = [e["dead_fraction"] for e in entries if "dead_fraction" in e]
        runs.append(
            ActivationRun(
                activation=activation,
                layer_names=names,
                grad_norms=[e["grad_norm"] for e in dense],
                first_layer_per_batch=[b[names[0]] for b in monitor.batch_grad_norms],
                last_layer_per_batch=[b[names[-1]] for b in monitor.batch_grad_norms],
                saturated_fraction=float(np.mean(saturated)) if saturated else None,
                dead_fraction=float(np.mean(dead)) if dead else None,
                test_accuracy=evaluate(model, xt, yt),
            )
        )
    return runs


VANISHED = 1e-2  # a first layer getting under 1% of the output layer's gradient barely learns
CLEAR = 2.0  # a factor of 2 in that share is a clear difference; less is "about the same"


def activation_verdict(runs: Sequence[ActivationRun]) -> list[str]:
    """The article's claim (ReLU passes the gradient down better than sigmoid and tanh), judged
    on the measured numbers: one line per activation, one per comparison, one on accuracy."""
    lines = ["the article's claim: ReLU passes the gradient down better than sigmoid and tanh"]
    for r in runs:
        fate = "vanishes on the way down" if r.reach < VANISHED else "reaches the first layer"
        lines.append(
            f"{r.activation}: the first layer gets {r.reach:.2g}× the output layer's gradient; "
            f"it {fate}"
        )
    by = {r.activation: r for r in runs}
    if "relu" in by:
        relu = by["relu"]
        for other in (r for r in runs if r.activation != "relu"):
            factor = relu.reach / other.reach
            if factor >= CLEAR:
                found = f"the claim holds, ReLU passes {factor:.3g}× more of it down"
            elif factor <= 1 / CLEAR:
                found = f"the claim does not hold, {other.activation} passes {1 / factor:.3g}× more"
            else:
                found = f"no clear difference, a factor {factor:.2g} (within {CLEAR:g}×)"
            lines.append(f"against {other.activation}: {found}")
    best = max(runs, key=lambda r: r.test_accuracy)
    scores = ", ".join(f"{r.activation} {r.test_accuracy:.1%}" for r in runs)
    lines.append(f"test accuracy: {scores}; {best.activation} learned best here")
    return lines


@dataclass
class LossRun:
    """Accuracy per epoch of the CNN trained with one loss."""

    loss: str  # "mse" or "cross-entropy"
    test_accuracy: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)


def compare_losses(
    epochs: int = 3,
    samples: int = 1000,
    test_samples: int = 1000,
    batch_size: int = 32,
    lr: float = 0.1,
    seed: int = 0,
    dataset: str = "mnist-sample",
    data_dir: str | Path | None = None,
) -> list[LossRun]:
    """The article's MSE (on softmax probabilities) against cross-entropy (on logits).

    Same CNN, same initial weights, same batches, same plain SGD; test accuracy after each epoch.
    """
    x, y = digits(samples, "train", dataset, data_dir)
    xt, yt = digits(test_samples, "test", dataset, data_dir)
    runs = []
    for name, loss_fn, softmax in (
        ("mse", MSELoss(), True),
        ("cross-entropy", CrossEntropyLoss(), False),
    ):
        model = small_cnn(seed=seed, softmax=softmax)
        state = fit(
            model,
            loss_fn,
            SGD(model.parameters(), lr),
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            validation=(xt, yt),
            seed=seed,
        )
        runs.append(
            LossRun(
                name,
                [h["test_accuracy"] for h in state.history],
                [h["train_loss"] for h in state.history],
            )
        )
    return runs


@dataclass
class Features:
    """What a trained CNN's conv layers see in one digit."""

    image: np.ndarray  # (28, 28)
    label: int
    filters: np.ndarray  # (C1, kH, kW) first conv layer
    layers: list[LayerMaps]  # every conv layer's maps for the digit
    test_accuracy: float | None  # of the model trained here (None for a given model)


def features(
    model: Sequential | None = None,
    index: int = 0,
    samples: int = 2000,
    epochs: int = 1,
    seed: int = 0,
    dataset: str = "mnist-sample",
    data_dir: str | Path | None = None,
) -> Features:
    """First-layer filters and every conv layer's maps on test digit ``index``.

    Without ``model``, trains ``small_cnn`` briefly (SGD with momentum) on ``samples`` digits.
    """
    accuracy = None
    xt, yt = digits(max(index + 1, 500), "test", dataset, data_dir)
    if model is None:
        x, y = digits(samples, "train", dataset, data_dir)
        model = small_cnn(seed=seed)
        fit(
            model,
            CrossEntropyLoss(),
            SGD(model.parameters(), 0.05, momentum=0.9),
            x,
            y,
            epochs=epochs,
            batch_size=32,
            seed=seed,
        )
        accuracy = evaluate(model, xt, yt)
    x_one = xt[index : index + 1].astype(model.dtype)
    return Features(
        image=xt[index, 0],
        label=int(yt[index]),
        filters=first_layer_filters(model),
        layers=activation_maps(model, x_one),
        test_accuracy=accuracy,
    )
