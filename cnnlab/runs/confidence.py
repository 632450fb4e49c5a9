"""How sure is a prediction? The top class, its runner-up, and whether to say "unsure".

A network's softmax always names some class, however strange the picture. ``read`` turns a
probability vector into an answer that says when it is unsure — the top probability is low, or
the runner-up is close behind — so the command line and the web lab can show the runner-up
instead of a confident wrong digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Calibrated on the tuning sources of benchmarks/wild_digits.py (printed, photographed,
# outlined, tiny and slanted digits; benchmarks/README.md has the table): with these two
# thresholds the answers flagged unsure hold most of the wrong ones and few of the right ones.
UNSURE_BELOW = 0.7  # top probability under this: unsure
CLOSE_WITHIN = 0.3  # runner-up within this of the top: unsure


@dataclass(frozen=True)
class Reading:
    """The answer for one probability vector: top class and runner-up (indices) with their
    probabilities, and ``unsure`` when the top is below ``UNSURE_BELOW`` or the runner-up
    within ``CLOSE_WITHIN`` of it."""

    label: int
    probability: float
    runner_up: int
    runner_up_probability: float
    unsure: bool


def read(probabilities: np.ndarray) -> Reading:
    """The ``Reading`` of a (K,) probability vector, K ≥ 2."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    first, second = np.argsort(-p, kind="stable")[:2]  # ties: the lower index first, as argmax
    top, runner = float(p[first]), float(p[second])
    return Reading(
        label=int(first),
        probability=top,
        runner_up=int(second),
        runner_up_probability=runner,
        unsure=top < UNSURE_BELOW or top - runner < CLOSE_WITHIN,
    )
