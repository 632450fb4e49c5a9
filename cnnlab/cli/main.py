"""The ``cnnlab`` command line.

Each sub-command lives in its own module of this package (named in ``COMMANDS``) and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it.
A ``CnnlabError`` becomes one line on stderr and exit status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from typing import NoReturn

import numpy as np

from cnnlab import __version__
from cnnlab.cli._common import NeutralisedStream, command_parsers, positive_int
from cnnlab.engine.errors import CnnlabError, InvalidArgumentError
from cnnlab.engine.parallel import one_blas_thread, set_threads

COMMANDS = (
    "evaluate",
    "experiment",
    "explain",
    "export",
    "gradcheck",
    "info",
    "perceptron",
    "predict",
    "pretrain",
    "serve",
    "step",
    "train",
)


class OneLineParser(argparse.ArgumentParser):
    """A parser whose mistakes are one line, naming the option and where the options are
    listed (argparse's own error prints the whole usage above it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (options: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command module's sub-parser (``add_subparsers`` makes
    them of the top level's class)."""
    parser = OneLineParser(
        prog="cnnlab",
        description="Train, inspect and serve a convolutional network for handwritten digits.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="cores to train and predict on (default: all this process may use)",
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
    for command in command_parsers(parser).values():
        command.allow_abbrev = False  # "--epoch 1" is a mistake, not --epochs
    return parser


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


def unknown_command(argv: list[str], parser: argparse.ArgumentParser) -> str | None:
    """The error for a first word that is no command, with the commands it resembles (argparse
    lists every choice but suggests none); None when the command is known or absent."""
    takes_value = {
        option
        for action in parser._actions
        if action.nargs != 0 and not isinstance(action, argparse._SubParsersAction)
        for option in action.option_strings
    }
    words = iter(argv)
    for word in words:
        if word.startswith("-"):
            if word in takes_value:  # "--threads 2": skip its value
                next(words, None)
            continue
        if word in COMMANDS:
            return None
        close = difflib.get_close_matches(word, COMMANDS, n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"unknown command {word!r}{hint} (commands: {', '.join(COMMANDS)})"
    return None


def in_options(err: CnnlabError, parser: argparse.ArgumentParser, command: str) -> str:
    """The error as the command line says it: a run setting out of range is named by the
    option that gave it (``argument --image-size: must be an integer >= 8, got 2``, as argparse
    words its own checks); any other error as it is."""
    from cnnlab.runs.config import WHO  # imported here: only a failed command needs it

    if isinstance(err, InvalidArgumentError) and err.who == WHO:
        actions = command_parsers(parser).get(command, parser)._actions
        for action in actions:
            if action.dest == err.name and action.option_strings:
                option = action.option_strings[-1]
                return f"argument {option}: must be {err.requirement}, got {err.received}"
    return str(err)


def print_completion(args: argparse.Namespace) -> int:
    """``--print-completion SHELL``: the completion script on stdout."""
    from cnnlab.cli.completion import bash_completion

    print(bash_completion(build_parser()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status. Everything it prints goes through
    :class:`NeutralisedStream`: names and values from files cannot drive the terminal."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = NeutralisedStream(stdout), NeutralisedStream(stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    problem = unknown_command(sys.argv[1:] if argv is None else argv, parser)
    if problem:
        parser.error(problem)
    args, extra = parser.parse_known_args(argv)
    if extra:  # the sub-command's usage, not the top level's
        command = command_parsers(parser).get(args.command, parser)
        command.error(unrecognized(extra, command))
    if args.print_completion:
        args.func = print_completion
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = set_threads(args.threads)  # positive_int has checked it
    try:
        # The engine splits each batch over its own threads, each with a one-thread BLAS; the
        # BLAS stays on one thread for the rest of the command too. Overflow and NaN are
        # checked explicitly (a diverging run is reported as one line), so NumPy's own
        # warnings would only add noise to that message.
        with one_blas_thread(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return int(args.func(args) or 0)
    except CnnlabError as err:
        print(
            f"cnnlab {args.command}: error: {in_options(err, parser, args.command)}",
            file=sys.stderr,
        )
        return 2
    except MemoryError:  # past every bound cnnlab checks: the machine's memory ran out
        print(
            f"cnnlab {args.command}: error: out of memory; free some memory, or ask for less "
            "(a smaller --batch-size, --image-size or --subset)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        set_threads(previous)


if __name__ == "__main__":
    sys.exit(main())
