"""Checkpoints: a model file plus the optimizer state and where training stands.

A checkpoint is a model file (so ``cnnlab evaluate checkpoint.npz`` works) with extra arrays:
``optimizer.<i>`` for the optimizer's state and ``checkpoint`` for a JSON record of the
``TrainState``, the optimizer's step count and the run's configuration. Like every file cnnlab
writes, it is replaced atomically, so a crash during a save leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.engine import validate
from cnnlab.engine.backend import to_numpy
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.optim import Optimizer
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.serialize import load_with_extras
from cnnlab.engine.train import TrainState

RECORD_KEY = "checkpoint"


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns."""

    model: Sequential
    optimizer_arrays: list[np.ndarray]
    optimizer_steps: int
    state: TrainState
    config: dict[str, Any]


def save_checkpoint(
    path: str | os.PathLike,
    model: Sequential,
    optimizer: Optimizer,
    state: TrainState,
    config: dict[str, Any],
) -> None:
    """Write model, optimizer state, training position and run configuration to ``path``."""
    record = {
        "state": state.to_json(),
        "optimizer_steps": optimizer.step_count,
        "config": config,
        "rng": [layer.rng.bit_generator.state for layer in model.layers if hasattr(layer, "rng")],
    }
    extra = {f"optimizer.{i}": to_numpy(a) for i, a in enumerate(optimizer.state_arrays())}
    extra[RECORD_KEY] = np.array(json.dumps(record))
    model.save(path, extra=extra)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; restores the dropout generators too."""
    model, extra = load_with_extras(Sequential, path)
    if RECORD_KEY not in extra or extra[RECORD_KEY].dtype.kind != "U":
        raise CnnlabError(f"{path}: a model file, but not a checkpoint (no training state)")
    try:
        record = json.loads(str(extra.pop(RECORD_KEY)))
        state = TrainState.from_json(record["state"])
        generators = [layer.rng for layer in model.layers if hasattr(layer, "rng")]
        if len(generators) != len(record["rng"]):
            raise ValueError("random generator count differs from the model's")
        for generator, rng_state in zip(generators, record["rng"], strict=True):
            generator.bit_generator.state = rng_state
        optimizer_arrays = [extra[f"optimizer.{i}"] for i in range(len(extra))]
        return Checkpoint(
            model,
            optimizer_arrays,
            validate.integer("checkpoint", "optimizer_steps", record["optimizer_steps"], 0),
            state,
            record["config"],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CnnlabError(f"{path}: damaged checkpoint ({err})") from None
