"""The command line as a whole: help texts, mistyped options, completion, the version."""

from __future__ import annotations

import argparse
import re

import pytest

from cnnlab.cli.main import COMMANDS, build_parser


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (group,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(group.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_states_each_default_once(command: str) -> None:
    text = subparsers()[command].format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    for option in re.split(r"\n  (?=-)", text.split("\noptions:\n")[1]):
        assert option.count("(default") <= 1, option
