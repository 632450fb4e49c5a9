"""Helpers shared by the commands: argument types and loading the model a command names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnlab import data
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.folder import DEFAULT_RUNS_DIR, model_path, newest_run


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default and keeps the description's line breaks.

    An option whose default is "not given" (None) or "off" (False), or whose help already says
    its default, gets no "(default: ...)" of its own.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        # By identity: a default of 0 equals False, and is still shown.
        if any(action.default is v for v in (None, False, argparse.SUPPRESS)) or "default" in text:
            return action.help
        return super()._get_help_string(action)


def positive_int(text: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    return positive_int(text, 0)


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
        help="a model file or a run folder (default: the newest run in --runs-dir)",
    )
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where to find the newest run")


def chosen_model(model: str | None, runs_dir: str | Path) -> Path:
    """The model file ``MODEL`` names or, without one, the newest run's."""
    if model is not None:
        return model_path(model)
    newest = newest_run(runs_dir)
    if newest is None:
        raise CnnlabError(
            f"no MODEL given and no run in {runs_dir}/; train one with cnnlab train, or name a "
            "model file or run folder"
        )
    print(f"using the newest run: {newest.parent}", file=sys.stderr)
    return newest
