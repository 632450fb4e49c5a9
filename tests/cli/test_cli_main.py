"""The command line as a whole: help texts, mistyped options, completion, the version."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

import cnnlab
from cnnlab.cli._common import command_parsers
from cnnlab.cli.main import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_states_each_default_once(command: str) -> None:
    text = command_parsers(build_parser())[command].format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    for option in re.split(r"\n  (?=-)", text.split("\noptions:\n")[1]):
        assert option.count("(default") <= 1, option


def test_a_mistyped_option_gets_a_suggestion_in_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epohcs", "3", "--batch_size=8"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "cnnlab train: error: unrecognized arguments: --epohcs 3 --batch_size=8; "
        "--epohcs: did you mean --epochs?; --batch_size: did you mean --batch-size? "
        "(options: cnnlab train --help)"
    ]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["train", "--epochs", "0"], "cnnlab train: error: argument --epochs: must be >= 1, got 0"),
        (["export", "m.npz", "--format", "tflite"], "cnnlab export: error: argument --format: "),
        (["predict", "--top-k"], "cnnlab predict: error: argument --top-k: expected one argument"),
    ],
)
def test_a_bad_option_value_is_one_line_without_the_usage(
    argv: list[str], line: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith(line) and err.endswith(f"(options: cnnlab {argv[0]} --help)")


@pytest.mark.parametrize(
    ("argv", "last"),
    [
        (["trian"], "unknown command 'trian'; did you mean train or pretrain? (commands: "),
        (["--threads", "2", "evalute", "x"], "unknown command 'evalute'; did you mean evaluate?"),
        (["zzz"], "unknown command 'zzz' (commands: evaluate, "),
    ],
)
def test_a_mistyped_command_gets_a_suggestion(
    argv: list[str], last: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"cnnlab: error: {last}")


def complete(script: str, *words: str) -> list[str]:
    """What bash offers after ``cnnlab WORDS...`` (the last word is the one being typed)."""
    words_array = " ".join(shlex.quote(w) for w in ("cnnlab", *words))
    program = f"{script}\nCOMP_WORDS=({words_array}); COMP_CWORD={len(words)}; _cnnlab\n"
    program += 'printf "%s\\n" "${COMPREPLY[@]}"'
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completion_offers_commands_options_and_choices(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["--print-completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert complete(script, "tr") == ["train"]
    assert complete(script, "ex") == ["experiment", "explain", "export"]
    assert complete(script, "train", "--ep") == ["--epochs"]
    assert complete(script, "--threads", "2", "train", "--dataset", "f") == ["fashion-mnist"]
    assert complete(script, "experiment", "le") == ["learning-rate"]
    assert complete(script, "export", "m.npz", "--format", "") == [
        "onnx",
        "torch-export",
        "torchscript",
    ]
    # Every command and each of its options is offered.
    for name, parser in command_parsers(build_parser()).items():
        options = {o for a in parser._actions for o in a.option_strings}
        assert options <= set(complete(script, name, "-")), name


def test_the_version_has_one_source() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cnnlab.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", cnnlab.__version__)


def test_version_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"cnnlab {cnnlab.__version__}\n"


def test_perceptron_help_says_what_the_previous_lesson_is() -> None:
    text = command_parsers(build_parser())["perceptron"].format_help()
    assert '"An Introductory Guide to Deep Neural Networks"' in text
    assert "the post before it in the series" in text and "UCI sonar" in text
    assert "frequency bands" in text and "angle" not in text


def test_every_train_option_with_a_default_shows_it_in_help() -> None:
    import argparse

    from cnnlab.cli.main import build_parser, command_parsers

    train = command_parsers(build_parser())["train"]
    text = " ".join(train.format_help().split())
    shown = [
        action.option_strings[0]
        for action in train._actions
        if action.option_strings
        and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
    ]
    assert {"--loss", "--activation", "--seed", "--device"} <= set(shown)
    for action in train._actions:
        if action.option_strings and action.option_strings[0] in shown:
            assert f"(default: {action.default})" in text, action.option_strings[0]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--image-size", "2"], "argument --image-size: must be an integer >= 8, got 2"),
        (["--val-fraction", "1.5"], "argument --val-fraction: must be in [0, 0.5], got 1.5"),
    ],
)
def test_a_run_setting_out_of_range_is_named_by_its_option(
    argv: list[str], line: str, tmp_path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", *argv, "--out", str(tmp_path / "never")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"cnnlab train: error: {line}"]
    assert not (tmp_path / "never").exists()
