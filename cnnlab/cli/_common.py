"""Helpers shared by the commands: argument types and loading the model a command names."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab import data
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.folder import DEFAULT_RUNS_DIR, model_path, newest_model, newest_run
from cnnlab.runs.predict import Reading

# What a terminal acts on instead of showing: C0 controls but the line breaks and tab, DEL, C1
# controls (an 8-bit CSI or OSC), and the other characters Python calls unprintable (format
# characters such as right-to-left overrides, separators, unassigned code points).
_KEPT = frozenset("\n\r\t")


def neutralised(text: str) -> str:
    """``text`` with every character a terminal would act on written as its escape (``\\x1b``):
    a class name, file name or meta value cannot set a window title, clear the screen or fill
    the clipboard (OSC 52) when printed."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in _KEPT else ascii(c)[1:-1] for c in text)


class NeutralisedStream:
    """A text stream that writes everything through :func:`neutralised`; the command line
    prints through one for stdout and one for stderr, so no printed string escapes it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(neutralised(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


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


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each sub-command's parser of the command line's ``parser``, by name."""
    (group,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(group.choices)


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
