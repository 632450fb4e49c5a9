"""A model's answer for pictures, the same for every front end: one ``Reading`` a picture.

``read(model, pictures)`` asks the model through ``assess``, the one place that turns the
model's outputs into what a reading needs, and words each answer: the top class and its
runner-up, ``unsure`` when the top probability is below ``UNSURE_BELOW`` (so the command line
and the web lab show the runner-up instead of a confident wrong answer), and ``known``: False
when the picture belongs to none of the model's classes (``none_of_these`` says it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.engine.sequential import Sequential
from cnnlab.runs import unknowns
from cnnlab.runs.model_input import class_names, reads_digits
from cnnlab.runs.pictures import Picture

# Calibrated on the tuning sources of benchmarks/wild_digits.py (1,000 printed, photographed,
# outlined, tiny and slanted digits; bundled-sample default model): below 0.7 flags 32 % of the
# errors and 2 % of the right answers, below 0.8 66 % and 3 %, below 0.9 72 % and 5 %. 0.8
# also suits label-smoothed models (the fast recipe's ε = 0.1 caps the top near 0.91). A top
# below 0.8 also means the runner-up is within 0.6 of it.
UNSURE_BELOW = 0.8


@dataclass(frozen=True)
class Reading:
    """The answer for one picture.

    ``label`` and ``runner_up`` are class indices into ``class_names``; ``probabilities`` is the
    (K,) vector they come from. ``unsure`` when the top probability is below ``UNSURE_BELOW``;
    ``known`` is False when the picture is none of the classes (the top class is then only the
    closest one).
    """

    label: int
    class_names: tuple[str, ...]
    probabilities: np.ndarray  # (K,) float64, sums to 1
    known: bool
    unsure: bool
    runner_up: int

    @property
    def class_name(self) -> str:
        return self.class_names[self.label]

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.label])

    @property
    def runner_up_name(self) -> str:
        return self.class_names[self.runner_up]

    @property
    def runner_up_probability(self) -> float:
        return float(self.probabilities[self.runner_up])


def assess(model: Sequential, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities for the inputs ``x`` (N, C, H, W), shape (N, K), and whether
    each picture belongs to any of its classes, shape (N,) bool.

    Every reading's numbers come from here and nowhere else: ``unknowns.assess``, the
    probabilities calibrated and the pictures of none of the classes found as training fitted
    them (the model's ``meta``); a model trained without held-out pictures gives its softmax
    and takes every picture as one of its classes.
    """
    probabilities, known = unknowns.assess(model, x)
    return np.asarray(probabilities, np.float64), known


def reading(probabilities: np.ndarray, names: Sequence[str], known: bool = True) -> Reading:
    """The ``Reading`` of one (K,) probability vector, K ≥ 2, with the class ``names``."""
    p = np.asarray(probabilities, np.float64).ravel()
    first, second = np.argsort(-p, kind="stable")[:2]  # ties: the lower index first, as argmax
    return Reading(
        label=int(first),
        class_names=tuple(names),
        probabilities=p,
        known=bool(known),
        unsure=bool(p[first] < UNSURE_BELOW),
        runner_up=int(second),
    )


def read(model: Sequential, pictures: Sequence[Picture] | np.ndarray) -> list[Reading]:
    """One ``Reading`` for each picture (or each input of a batch ``x`` (N, C, H, W))."""
    if isinstance(pictures, np.ndarray):
        x = pictures
    else:
        x = np.stack([picture.x for picture in pictures]) if len(pictures) else None
    if x is None or not len(x):
        return []
    probabilities, known = assess(model, x)
    names = class_names(model)
    return [reading(p, names, k) for p, k in zip(probabilities, known, strict=True)]


def none_of_these(model: Sequential) -> str:
    """How an answer that is none of ``model``'s classes is said: "not a digit" for a model of
    the digits, else "none of these"."""
    return "not a digit" if reads_digits(model) else "none of these"
