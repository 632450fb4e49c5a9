"""A person's own pictures, end to end through the command line: train on a folder, evaluate per
class by name, predict with class names, explain a colour photo, info and export — and the
named colour sets (``shapes``, ``cifar10``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from picture_folders import CLASSES, save, scene, write_picture_folder

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.engine.metrics import wilson_interval


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of 3 × 40 colour pictures (mixed sizes and formats) and a run trained on it."""
    base = tmp_path_factory.mktemp("pictures")
    pictures = write_picture_folder(base / "scenes", per_class=40)
    run = base / "run"
    args = ["train", "--dataset", str(pictures), "--image-size", "24", "--epochs", "8",
            "--batch-size", "16", "--out", str(run), "--quiet"]  # fmt: skip
    assert main(args) == 0
    return pictures, run


def test_a_folder_of_colour_pictures_trains_to_95_percent(trained: tuple[Path, Path]) -> None:
    _, run = trained
    model = cl.Sequential.load(run / "model.npz")
    assert model.input_shape == (3, 24, 24)
    assert model.meta["class_names"] == list(CLASSES) and model.meta["kind"] == "images"
    assert len(model.meta["mean"]) == len(model.meta["std"]) == 3
    assert model.meta["test_accuracy"] >= 0.95
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 24 and config["n_test"] == 24
    assert (run / "misclassified.png").exists() and (run / "filters.png").exists()


def test_evaluate_reports_each_class_by_name(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    pictures, run = trained
    assert main(["evaluate", str(run), "--json"]) == 2  # a meta never names a folder to read
    err = capsys.readouterr().err
    assert "not a data set cnnlab knows; give the folder" in err and "\n" not in err.strip()
    assert main(["evaluate", str(run), "--dataset", str(pictures), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["class"] for row in report["per_class"]] == list(CLASSES)
    assert report["images"] == 24 and report["accuracy"] >= 0.95
    right = round(report["accuracy"] * 24)
    assert report["accuracy_interval_95"] == list(wilson_interval(right, 24))
    assert main(["evaluate", str(run), "--dataset", str(pictures), "--png", os.devnull]) == 0
    lines = capsys.readouterr().out.splitlines()
    low, high = wilson_interval(right, 24)  # a small test set says how sure it is
    assert f"on 24 images (95% interval {100 * low:.1f}–{100 * high:.1f}%)" in lines[0]
    header = lines[lines.index("confusion matrix (rows: true class, columns: predicted)") + 1]
    assert header.split() == list(CLASSES)
    assert main(["evaluate", str(run), "--dataset", "mnist-sample"]) == 2
    assert "takes 24x24 colour pictures, but mnist-sample has 28x28 grey" in capsys.readouterr().err


def test_predict_answers_with_class_names(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, run = trained
    rng = np.random.default_rng(99)
    for kind, fmt, suffix in (("sea", "PNG", ".png"), ("sunset", "JPEG", ".jpg")):
        save(scene(kind, 300, 200, rng), tmp_path / f"new-{kind}{suffix}", fmt)
    assert main(["predict", str(run), str(tmp_path), "--json", "--save-preprocessed",
                 str(tmp_path / "seen")]) == 0  # fmt: skip
    results = json.loads(capsys.readouterr().out)
    assert [(Path(r["file"]).name, r["class"]) for r in results] == [
        ("new-sea.png", "sea"), ("new-sunset.jpg", "sunset"),
    ]  # fmt: skip
    assert (tmp_path / "seen" / "new-sea.24x24.png").exists()


@pytest.mark.slow
def test_explain_draws_colour_filters_maps_and_occlusion_on_a_photo(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, run = trained
    out = tmp_path / "cat"
    assert main(["explain", str(run), "photo:cat", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "network input 24×24" in printed and "occlusion" in printed
    for name in ("filters_conv1.png", "occlusion.png", "activation_maps_conv1.png",
                 "report.html"):  # fmt: skip
        assert (out / name).stat().st_size > 1000
    assert not (out / "top_patches.png").exists()  # drawn from digits only
    # A digit given to this colour model is refused in one line.
    assert main(["explain", str(run), "mnist-sample:test:3", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "mnist-sample pictures are 28x28 grey, but the model takes 24x24 colour" in err
        and "\n" not in err
    )


def test_info_shows_what_the_model_was_trained_on(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    _, run = trained
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "class_names: forest, sea, sunset" in out and "kind: images" in out
    assert "24x24 colour (RGB)" in out


@pytest.mark.slow
def test_shapes_trains_from_its_name(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--dataset", "shapes", "--image-size", "16", "--subset", "600",
            "--epochs", "1", "--augment", "--out", str(run), "--quiet"]  # fmt: skip
    assert main(args) == 0
    model = cl.Sequential.load(run / "model.npz")
    assert model.meta["preset"] == "vgg" and model.input_shape == (3, 16, 16)
    assert model.meta["class_names"][0] == "circle"
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] == "pictures" and config["augment"] is True


@pytest.mark.slow
def test_cifar10_trains_from_binary_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cifar_files import write_batches

    from cnnlab.data import cifar

    write_batches(tmp_path / "data" / cifar.FOLDER, per_file=20)
    run = tmp_path / "run"
    args = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--epochs",
            "1", "--out", str(run), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert cl.Sequential.load(run / "model.npz").meta["class_names"][3] == "cat"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 20


@pytest.mark.slow
def test_presets_follow_the_data_and_a_fixed_architecture_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def train(model: str, out: str) -> int:
        return main(["train", "--dataset", "shapes", "--model", model, "--epochs", "1",
                     "--subset", "60", "--out", str(tmp_path / out), "--quiet"])  # fmt: skip

    assert train("default", "r") == 0  # a preset follows the data: a 3-channel network
    assert cl.Sequential.load(tmp_path / "r" / "model.npz").input_shape == (3, 32, 32)
    digit_only = tmp_path / "digit.json"
    digit_only.write_text(json.dumps(cl.build("lenet5").config()))
    capsys.readouterr()
    assert train(str(digit_only), "r2") == 2
    err = capsys.readouterr().err.strip()
    assert "takes 28x28 grey pictures, but shapes has 32x32 colour" in err and "\n" not in err


def test_bad_folders_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_picture_folder(tmp_path / "one", per_class=2, classes=("sea",))
    out = ["--out", str(tmp_path / "run"), "--quiet"]
    assert main(["train", "--dataset", str(tmp_path / "one"), *out]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs at least 2 class folders" in err and "\n" not in err
    assert main(["train", "--dataset", str(tmp_path / "nowhere"), *out]) == 2
    assert "/nowhere' does not exist" in capsys.readouterr().err


def test_a_failed_run_leaves_no_empty_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_picture_folder(tmp_path / "one", per_class=2, classes=("sea",))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "one", "--quiet"]) == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(("bias", "answer"), [(0.0, "cat?  unsure: maybe dog"), (9.0, "owl  (")])
def test_predict_says_when_a_picture_model_is_unsure_by_class_name(
    tmp_path: Path, capsys: pytest.CaptureFixture, bias: float, answer: str
) -> None:
    # A colour model that ignores its input: equal logits (every class a third) or a clear owl.
    meta = {"kind": "images", "class_names": ["cat", "dog", "owl"], "mean": [0.5] * 3,
            "std": [0.25] * 3}  # fmt: skip
    model = cl.Sequential([cl.Flatten(), cl.Dense(3 * 8 * 8, 3)], input_shape=(3, 8, 8), meta=meta)
    model.layers[1].params["W"][...] = 0
    model.layers[1].params["b"][...] = [0, 0, bias]
    model.save(tmp_path / "model.npz")
    assert main(["predict", str(tmp_path / "model.npz"), "photo:cat", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["class"] == ("owl" if bias else "cat") and result["unsure"] is (not bias)
    assert result["runner_up"] == ("cat" if bias else "dog")
    assert main(["predict", str(tmp_path / "model.npz"), "photo:cat"]) == 0
    assert capsys.readouterr().out.startswith(f"photo:cat: {answer}")


def test_a_picture_model_with_bad_class_names_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    meta = {"kind": "images", "class_names": ["cat"], "mean": [0.5] * 3, "std": [0.25] * 3}
    model = cl.Sequential([cl.Flatten(), cl.Dense(3 * 8 * 8, 3)], input_shape=(3, 8, 8), meta=meta)
    model.save(tmp_path / "model.npz")
    assert main(["predict", str(tmp_path / "model.npz"), "photo:cat"]) == 2
    err = capsys.readouterr().err
    assert "'class_names' must be 3 printable names" in err and err.count("\n") == 1


def test_a_picture_size_too_big_for_a_model_file_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # vgg's first conv unfolds 27 numbers a pixel: 300×300 is past the engine's loading bound,
    # so the model could be trained but never read back.
    pictures = write_picture_folder(tmp_path / "scenes", per_class=2)
    args = ["train", "--dataset", str(pictures), "--image-size", "300", "--quiet", "--out",
            str(tmp_path / "r")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--image-size 300 is too large for the vgg model" in err
    assert "choose --image-size" in err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_training_from_a_run_says_what_it_chose_and_refuses_a_damaged_model_in_one_line(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pictures, run = trained
    out = tmp_path / "from-run"
    args = ["train", "--dataset", str(pictures), "--image-size", "24", "--from", str(run),
            "--epochs", "2", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    plan = [line for line in printed.splitlines() if line.startswith("96 pictures, 3 classes")]
    assert len(plan) == 1 and f"from {run}, training top" in plan[0]
    assert cl.Sequential.load(out / "model.npz").meta["from"]["trained"] == "top"
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"\x00" * 64)
    args = ["train", "--dataset", str(pictures), "--from", str(damaged), "--out",
            str(tmp_path / "never"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert "not a cnnlab model file" in error and "\n" not in error
    assert error.count("not a cnnlab model file") == 1
    assert not (tmp_path / "never").exists()


def test_step_on_a_folder_model_says_how_to_measure_it_instead_of_probing(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    pictures, run = trained
    picture = next((pictures / CLASSES[0]).iterdir())
    assert main(["step", str(run), str(picture), "--label", CLASSES[1]]) == 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert "step does not read; cnnlab evaluate MODEL --dataset FOLDER measures it" in said
    assert "with --dataset" not in said


def test_too_few_or_unequal_pictures_are_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    two_of_one = write_picture_folder(tmp_path / "two", per_class=1, classes=("a", "b"))
    args = ["train", "--dataset", str(two_of_one), "--out", str(tmp_path / "r1"), "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert "at least 2 pictures" in error and "\n" not in error
    assert not (tmp_path / "r1").exists()
    unequal = write_picture_folder(tmp_path / "unequal", per_class=40, classes=("sea",))
    write_picture_folder(unequal, per_class=3, classes=("forest",))
    args = ["train", "--dataset", str(unequal), "--image-size", "12", "--epochs", "1",
            "--out", str(tmp_path / "r2"), "--quiet"]  # fmt: skip
    assert main(args) == 0
    plan = [line for line in capsys.readouterr().out.splitlines() if "pictures, 2 classes" in line]
    assert len(plan) == 1 and "classes balanced" in plan[0]
    assert plan[0].endswith(
        "class 'forest' has only 2 training pictures: add more for a useful model"
    )
