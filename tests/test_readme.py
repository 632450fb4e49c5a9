"""The README's Python examples run as written (the first with its placeholders filled in)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.data import load
from cnnlab.engine.errors import install_hint

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(after_heading: str) -> str:
    section = README.read_text().split(f"## {after_heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_load_and_predict_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from PIL import Image

    run = tmp_path / "runs" / "<timestamp>"
    run.mkdir(parents=True)
    cl.build("lenet5", seed=0).save(run / "model.npz")
    images, _ = load("mnist-sample", "test")
    Image.fromarray(255 - np.kron(images[7], np.ones((8, 8), np.uint8))).save(
        tmp_path / "my-digit.png"
    )
    monkeypatch.chdir(tmp_path)
    exec(python_block("Use a trained model from Python"), {})
    first, second = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\[\d \d \d \d \d\] \[7 2 1 0 4\]", first)
    assert re.fullmatch(r"\[\d\]", second)


def test_the_engine_example_runs_and_its_step_lowers_the_loss() -> None:
    cl.manual_seed(0)
    scope: dict = {}
    exec(python_block("The engine in ten lines"), scope)  # a NameError if it misses a name
    x, y, loss_fn = scope["x"], scope["y"], scope["loss_fn"]
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    after = loss_fn.forward(scope["model"].forward(x), y)
    assert np.isfinite(scope["loss"]) and after < scope["loss"]


@pytest.mark.parametrize("extras", ["lab", "onnx", "torch", "lab,test"])
def test_install_hints_are_the_readmes_commands(extras: str) -> None:
    commands = install_hint(extras).split(", then ")
    for command in commands:
        assert f"`{command.removesuffix(' in the cnnlab folder')}`" in README.read_text()
