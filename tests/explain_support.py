"""Shared, cached set-ups for the explain tests: a small CNN trained for a few seconds."""

from __future__ import annotations

import functools

import cnnlab
from cnnlab.explain.experiments import digits, small_cnn


@functools.cache
def trained_small_cnn() -> cnnlab.Sequential:
    """``small_cnn`` after one epoch of SGD with momentum on 1,000 bundled digits (~90 %)."""
    x, y = digits(1000, "train")
    model = small_cnn(seed=0)
    cnnlab.fit(
        model,
        cnnlab.CrossEntropyLoss(),
        cnnlab.SGD(model.parameters(), 0.05, momentum=0.9),
        x,
        y,
        epochs=1,
        batch_size=32,
        seed=0,
    )
    return model
