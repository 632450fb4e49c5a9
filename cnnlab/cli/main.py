"""The ``cnnlab`` command line.

Each sub-command lives in its own module of this package (named in ``COMMANDS``) and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it.
A ``CnnlabError`` becomes one line on stderr and exit status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import sys
from typing import Any

import numpy as np

from cnnlab import __version__
from cnnlab.engine.errors import CnnlabError

COMMANDS = (
    "evaluate",
    "experiment",
    "explain",
    "export",
    "gradcheck",
    "info",
    "perceptron",
    "predict",
    "serve",
    "step",
    "train",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command module's sub-parser."""
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Train, inspect and serve a convolutional network for handwritten digits.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS threads (default 1, or OPENBLAS_NUM_THREADS / OMP_NUM_THREADS when set)",
    )
    parser.add_argument(
        "--print-completion",
        choices=("bash",),
        help="print a bash completion script and exit; use it with: "
        'eval "$(cnnlab --print-completion bash)" (zsh: run bashcompinit first)',
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cnnlab.cli.{name}").register(sub)
    return parser


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each sub-command's parser, by name."""
    (group,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(group.choices)


def unrecognized(extra: list[str], parser: argparse.ArgumentParser) -> str:
    """The error for arguments ``parser`` does not know, with the options they resemble."""
    known = [option for action in parser._actions for option in action.option_strings]
    hints = []
    for word in extra:
        option = word.split("=", 1)[0]
        close = difflib.get_close_matches(option, known, n=2) if option.startswith("-") else []
        if close:
            hints.append(f"{option}: did you mean {' or '.join(close)}?")
    return f"unrecognized arguments: {' '.join(extra)}" + "".join(f"; {h}" for h in hints)


def blas_threads(requested: int | None) -> Any:
    """A context that runs the BLAS on ``requested`` threads (1 unless the environment says).

    cnnlab's matrix products are small (one per sample), so a second BLAS thread gains about
    5% on an idle machine, while two processes with two threads each on two cores run 4×
    slower: the threads wait for each other at every product. Without threadpoolctl (the
    ``lab`` extra) the BLAS keeps its own setting.
    """
    if requested is not None and requested < 1:
        raise CnnlabError(f"--threads must be >= 1, got {requested}")
    if requested is None and (
        "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ
    ):
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(requested or 1, user_api="blas")


def print_completion(args: argparse.Namespace) -> int:
    """``--print-completion SHELL``: the completion script on stdout."""
    from cnnlab.cli.completion import bash_completion

    print(bash_completion(build_parser()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the sub-command's usage, not the top level's
        command = command_parsers(parser).get(args.command, parser)
        command.error(unrecognized(extra, command))
    if args.print_completion:
        args.func = print_completion
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        # Overflow and NaN are checked explicitly (a diverging run is reported as one line), so
        # NumPy's own warnings would only add noise to that message.
        with (
            blas_threads(args.threads),
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            return int(args.func(args) or 0)
    except CnnlabError as err:
        print(f"cnnlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
