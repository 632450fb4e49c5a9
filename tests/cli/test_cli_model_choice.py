"""Which model a command uses, and the mistakes a new user makes on the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.cli.main import build_parser, command_parsers

SHAPES = ["circle", "cross", "line"]


def digit_model() -> cl.Sequential:
    """A model of the ten digits (28×28 grey), as fast to save as can be."""
    return cl.Sequential([cl.Flatten(), cl.Dense(784, 10)], input_shape=(1, 28, 28))


def shapes_model() -> cl.Sequential:
    """A model of three shapes in 32×32 colour pictures, like the one the Teach tab trains."""
    model = cl.Sequential([cl.Flatten(), cl.Dense(3 * 32 * 32, 3)], input_shape=(3, 32, 32))
    model.meta.update(kind="images", class_names=SHAPES, mean=[0.5] * 3, std=[0.25] * 3)
    return model


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``runs/digits`` and, written after it, ``runs/shapes``; the working folder is the
    test's, with a digit picture ``seven.png``."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    for name, model, mtime in [("digits", digit_model(), 1e6), ("shapes", shapes_model(), 2e6)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        model.save(tmp_path / "runs" / name / "model.npz")
        os.utime(tmp_path / "runs" / name / "model.npz", (mtime, mtime))
    images, _ = cl.data.load("mnist-sample", "test")
    Image.fromarray(255 - images[0]).resize((112, 112)).save(tmp_path / "seven.png")
    return tmp_path / "runs"


def test_a_missing_or_unreadable_model_is_an_error_never_a_fallback(runs, capsys) -> None:
    # "runs/nope" was taken for an image and the newest run answered for seven.png.
    assert main(["predict", "runs/nope", "seven.png"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("cnnlab predict: error: runs/nope: no such file")
    Path("broken.npz").write_bytes(b"not a model")
    assert main(["predict", "broken.npz", "seven.png"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("cnnlab predict: error: broken.npz")


def test_predict_without_an_image_is_an_error(runs, capsys) -> None:
    # "cnnlab predict RUN" predicted the run's own PNG figures.
    Path(runs / "digits" / "curves.png").write_bytes(Path("seven.png").read_bytes())
    assert main(["predict", str(runs / "digits")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no image given after the model" in err and len(err.splitlines()) == 1


def test_without_model_a_command_takes_the_newest_run_that_can_read_its_input(runs, capsys) -> None:
    # The newest run reads shapes: "cnnlab predict seven.png" answered "circle".
    assert main(["predict", "seven.png", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"using the newest run that reads digits: {Path('runs', 'digits')}\n"
    (result,) = json.loads(captured.out)
    assert result["class"] in list("0123456789")
    assert main(["predict", "photo:cat", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"using the newest run that reads pictures: {Path('runs', 'shapes')}\n"
    assert json.loads(captured.out)[0]["class"] in SHAPES
    assert main(["step", "mnist-sample:test:17", "--out", "stepped"]) == 0
    assert capsys.readouterr().err.startswith(
        f"using the newest run of mnist-sample's classes: {Path('runs', 'digits')}\n"
    )


def test_without_a_model_of_the_kind_needed_the_command_says_so(runs, capsys) -> None:
    (runs / "digits" / "model.npz").unlink()
    assert main(["predict", "seven.png"]) == 2
    assert capsys.readouterr().err == (
        "cnnlab predict: error: no MODEL given and no run in runs/ that reads digits; name a "
        "model file or run folder\n"
    )


def test_serve_says_which_model_it_started_with_and_why(runs, capsys, monkeypatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: None)
    assert main(["serve", "--port", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cnnlab lab: http://127.0.0.1:")
    assert lines[1] == "model: digits (the newest run that reads digits)"
    assert main(["serve", "--port", "0", "--model", str(runs / "shapes")]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "model: shapes (given with --model)"


def test_no_parser_takes_an_abbreviated_option(capsys) -> None:
    parser = build_parser()
    commands = command_parsers(parser)
    assert not parser.allow_abbrev and not any(p.allow_abbrev for p in commands.values())
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epoch", "1"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --epoch 1; --epoch: did you mean --epochs" in (
        capsys.readouterr().err
    )


def test_resume_names_the_path_it_was_given(tmp_path, monkeypatch, capsys) -> None:
    # It said "checkpoint.npz: no such file", a path nobody typed, and left a lock file here.
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "nothere", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "cnnlab train: error: nothere: no such run folder or checkpoint; give the run's folder\n"
    )
    assert list(tmp_path.iterdir()) == []
