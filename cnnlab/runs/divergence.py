"""Catching a run that has stopped learning, before it saves a broken model.

A NaN loss stops ``fit`` by itself; this watches for the divergence that stays finite. With a
far too high learning rate the loss climbs far above where it started (``--lr 100``: 2.3 to
thousands; ``--lr 1e6``: 5.7e21), or the weights saturate and the network settles at chance,
its loss no lower than at the start (sigmoid, MSE). ``DivergenceWatch`` raises
``TrainingDivergedError`` naming the step and a lower learning rate (``advice``):

- at any step once ``WARMUP_STEPS`` have passed, when the smoothed loss is over
  ``EXPLODE_FACTOR`` times its start (and at least 1 higher). The start is the first step's
  loss, before any update: with ``--lr 100`` the second is already in the thousands;
- at the end of an epoch once at least ``JUDGE_STEPS`` steps and ``JUDGE_SHARE`` of the planned
  steps have passed, when the accuracy (test, else train) is within ``CHANCE_MARGIN`` × chance
  and the epoch's loss is no lower than at the start, nor, when it is known, than the loss of an
  equal guess over the classes (ln K for the cross-entropy): one batch's first loss is a noisy
  start (a new head on 8 photographed symbols of 3 classes: 0.85, against ln 3 = 1.10), and a
  run whose loss is below a guess's is learning, however its test pictures read so far.

A short run (a few steps on a tiny subset) is never judged at chance: it had no time to learn;
nor is a long run of a small data set in its first epochs, which are few steps each and, with a
one-cycle schedule, still warming up (a folder of 450 pictures given 30 epochs was stopped after
its second when only ``JUDGE_STEPS`` counted).
"""

from __future__ import annotations

from typing import Any

from cnnlab.engine.errors import TrainingDivergedError
from cnnlab.engine.train import Callback, TrainState

WARMUP_STEPS = 10
EXPLODE_FACTOR = 3.0  # a sound run's smoothed loss never climbs to 3× its start
SMOOTHING = 0.9  # exponential smoothing of the step losses
JUDGE_STEPS = 20
JUDGE_SHARE = 0.25  # of the run's planned steps
CHANCE_MARGIN = 1.5  # 15 % for 10 classes


class DivergenceWatch(Callback):
    """A ``fit`` callback that raises ``TrainingDivergedError`` for a run that stopped
    learning; ``classes`` sets the chance level, ``lr`` is the learning rate to advise, ``used``
    the one the run had (the advice says "higher" when ``lr`` is above it), ``total_steps``
    the steps the run plans (0: unknown, only ``JUDGE_STEPS`` counts) and ``guess_loss`` the loss
    of equal probabilities for every class (None: unknown)."""

    def __init__(
        self,
        classes: int,
        lr: float,
        used: float | None = None,
        total_steps: int = 0,
        guess_loss: float | None = None,
    ) -> None:
        self.guess_loss = guess_loss
        self.chance = 1.0 / classes
        self.lr = lr
        self.direction = "higher" if used is not None and lr > used else "lower"
        self.judge_from = max(JUDGE_STEPS, JUDGE_SHARE * total_steps)
        self.start = self.smoothed = 0.0  # the first step's loss, the smoothed loss
        self.steps = 0

    def _diverged(self, state: TrainState, epoch: int, why: str) -> TrainingDivergedError:
        return TrainingDivergedError(
            f"training stopped learning at step {state.step} (epoch {epoch}): {why}; "
            f"train again with a {self.direction} learning rate, e.g. {self.lr:g}"
        )

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        loss = float(logs["loss"])
        self.steps += 1
        if self.steps == 1:
            self.start = self.smoothed = loss
            return
        self.smoothed = SMOOTHING * self.smoothed + (1 - SMOOTHING) * loss
        limit = max(EXPLODE_FACTOR * self.start, self.start + 1.0)
        if self.steps >= WARMUP_STEPS and self.smoothed > limit:
            raise self._diverged(
                state,
                state.epoch + 1,
                f"the loss rose from {self.start:.3g} to {self.smoothed:.3g}",
            )

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        accuracy = float(logs.get("test_accuracy", logs["train_accuracy"]))
        if self.steps < self.judge_from or accuracy > CHANCE_MARGIN * self.chance:
            return
        start = self.start if self.guess_loss is None else max(self.start, self.guess_loss)
        if logs["train_loss"] >= start:
            raise self._diverged(
                state,
                state.epoch,  # the epoch that just ended
                f"accuracy {100 * accuracy:.1f}% is chance level and the loss did not fall "
                f"({start:.3g} at the start, {logs['train_loss']:.3g} over the epoch)",
            )
