"""Helpers shared by the commands: argument types and loading the model a command names."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from cnnlab import data
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.folder import DEFAULT_RUNS_DIR, model_path, newest_model, newest_run
from cnnlab.runs.predict import Reading


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default and keeps the description's line breaks.

    An option whose default is "not given" (None) or "off" (False), or whose help already says
    its default, gets no "(default: ...)" of its own.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return action.help
        return super()._get_help_string(action)


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


def load_model(path: str | Path) -> Sequential:
    """Load the model a ``MODEL`` argument names (a model file or a run folder)."""
    return Sequential.load(model_path(path))


COMPLETIONS = "completions"  # an argparse action's values that shell completion suggests


def add_dataset_argument(parser: argparse.ArgumentParser, default: str | None, tail: str) -> None:
    """``--dataset NAME|PATH``: a named picture set or a folder of one's own pictures
    (completion offers the names, then folders); ``tail`` ends the help."""
    action = parser.add_argument(
        "--dataset",
        default=default,
        metavar="NAME|PATH",
        help=f"a data set ({', '.join(data.PICTURE_DATASETS)}) or a folder of pictures, one "
        f"sub-folder per class{tail}",
    )
    setattr(action, COMPLETIONS, data.PICTURE_DATASETS)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """An optional ``MODEL`` positional, and ``--runs-dir`` where the newest run stands in."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="a model file or a run folder (default: the newest run in --runs-dir of the kind "
        "the command can use, e.g. one that reads digits for a picture file)",
    )
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where to find the newest run")


def chosen_model(
    model: str | None,
    runs_dir: str | Path,
    fits: Callable[[Sequential], bool] | None = None,
    kind: str = "",
) -> Path:
    """The model file ``MODEL`` names or, without one, the newest run's whose model ``fits``
    (any run's when None), ``kind`` saying which in words ("that reads digits"); the choice is
    said on stderr."""
    if model is not None:
        return model_path(model)
    if fits is None:
        path = newest_run(runs_dir)
    else:
        found = newest_model(runs_dir, fits)
        path = found[0] if found else None
    if path is None and newest_run(runs_dir) is None:
        raise CnnlabError(
            f"no MODEL given and no run in {runs_dir}/; train one with cnnlab train, or name a "
            "model file or run folder"
        )
    if path is None:
        raise CnnlabError(
            f"no MODEL given and no run in {runs_dir}/ {kind}; name a model file or run folder"
        )
    print(f"using the newest run{f' {kind}' if kind else ''}: {path.parent}", file=sys.stderr)
    return path


def answer(reading: Reading, unknown: str) -> str:
    """A reading in words, as every command says it: the class; the class and "unsure" with
    the runner-up; or ``unknown`` ("not a digit") with the closest class and its probability."""
    if not reading.known:
        return f"{unknown} (closest: {reading.class_name}, {reading.probability:.0%})"
    if reading.unsure:
        return f"{reading.class_name}?  unsure: maybe {reading.runner_up_name}"
    return reading.class_name
