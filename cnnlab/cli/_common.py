"""Helpers shared by the commands: argument types and model-path resolution."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential

MODEL_FILE = "model.npz"


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default and keeps the description's line breaks."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def model_path(path: str | Path) -> Path:
    """A model file from a path that names the file itself or a run folder holding one."""
    path = Path(path)
    if path.is_dir():
        candidate = path / MODEL_FILE
        if not candidate.exists():
            raise CnnlabError(
                f"{path}: this folder has no {MODEL_FILE}; is it a cnnlab run folder?"
            )
        return candidate
    return path


def load_model(path: str | Path) -> Sequential:
    """Load the model a ``MODEL`` argument names (a model file or a run folder)."""
    return Sequential.load(model_path(path))
