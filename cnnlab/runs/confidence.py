"""How sure is a prediction? The top class, its runner-up, and whether to say "unsure".

A network's softmax always names some class, however strange the picture. ``read`` turns a
probability vector into an answer that says when it is unsure — the top probability is below
``UNSURE_BELOW``, which also means the runner-up is within 0.6 of it — so the command line and
the web lab can show the runner-up instead of a confident wrong digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Calibrated on the tuning sources of benchmarks/wild_digits.py (1,000 printed, photographed,
# outlined, tiny and slanted digits; bundled-sample default model): below 0.7 flags 32 % of the
# errors and 2 % of the right answers, below 0.8 66 % and 3 %, below 0.9 72 % and 5 %. 0.8
# also suits label-smoothed models (the fast recipe's ε = 0.1 caps the top near 0.91).
UNSURE_BELOW = 0.8


@dataclass(frozen=True)
class Reading:
    """The answer for one probability vector: top class and runner-up (indices) with their
    probabilities, and ``unsure`` when the top is below ``UNSURE_BELOW``."""

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
        unsure=top < UNSURE_BELOW,
    )
