"""The train / evaluate / predict / info commands, end to end, and their one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.data import load

TINY = ["--subset", "256", "--epochs", "1", "--batch-size", "32", "--model", "lenet5", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def digit_png(path: Path, index: int = 0, invert: bool = True, scale: int = 6) -> int:
    """Save MNIST sample test digit ``index`` as a large dark-on-light PNG; return its label."""
    from PIL import Image

    images, labels = load("mnist-sample", "test")
    image = images[index]
    if invert:
        image = 255 - image
    Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC).save(path)
    return int(labels[index])


def test_train_writes_a_complete_run_folder(run_dir: Path) -> None:
    for name in ("model.npz", "config.json", "metrics.json", "checkpoint.npz", "curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    for name in ("confusion.png", "filters.png", "misclassified.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1]
    for key in ("elapsed_s", "train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert isinstance(metrics[0][key], float)
    assert 0.1 < metrics[0]["test_accuracy"] <= 1.0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "lenet5" and config["epochs"] == 1 and config["n_train"] == 256
    assert config["architecture"]["layers"][0]["type"] == "Conv2D"
    model = cl.Sequential.load(run_dir / "model.npz")
    assert model.meta["dataset"] == "mnist-sample"
    assert model.meta["test_accuracy"] == pytest.approx(metrics[0]["test_accuracy"])


@pytest.mark.slow
def test_train_is_reproducible_with_a_seed(run_dir: Path, tmp_path: Path) -> None:
    assert main(["train", *TINY, "--out", str(tmp_path / "again")]) == 0
    first = cl.Sequential.load(run_dir / "model.npz").state_arrays()
    second = cl.Sequential.load(tmp_path / "again" / "model.npz").state_arrays()
    assert all(np.array_equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_fast_recipe_settings_reach_the_run(tmp_path: Path) -> None:
    """--recipe fast: the batch-normalised preset, Adam β₂ 0.99, label smoothing 0.1."""
    args = ["train", "--recipe", "fast", "--subset", "128", "--epochs", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "fast")]) == 0
    config = json.loads((tmp_path / "fast" / "config.json").read_text())
    assert config["model"] == "fast" and config["optimizer"] == "adam"
    assert config["betas"] == [0.9, 0.99] and config["label_smoothing"] == 0.1
    assert any(layer["type"] == "BatchNorm2D" for layer in config["architecture"]["layers"])
    # a command-line value wins over the recipe's; another optimizer gets its usual settings
    more = ["--label-smoothing", "0", "--optimizer", "sgd"]
    assert main([*args, *more, "--out", str(tmp_path / "plain")]) == 0
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["label_smoothing"] == 0.0 and config["betas"] == [0.9, 0.999]


@pytest.mark.slow
def test_train_monitor_records_gradient_flow(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--monitor", "--out", str(out)]) == 0
    records = json.loads((out / "gradient_flow.json").read_text())
    assert [r["epoch"] for r in records] == [1]
    layers = {layer["name"]: layer for layer in records[0]["layers"]}
    assert layers["0.Conv2D"]["grad_norm"] > 0 and 0 < layers["0.Conv2D"]["update_ratio"] < 1
    relu = [layer for name, layer in layers.items() if name.endswith("ReLU")]
    assert relu and all(0 <= layer["dead_fraction"] <= 1 for layer in relu)
    assert (out / "gradient_flow.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_json_matches_the_model(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    images, labels = load("mnist-sample", "test")
    model = cl.Sequential.load(run_dir / "model.npz")
    expected = float((model.predict(cl.to_input(images)) == labels).mean())
    assert report["accuracy"] == pytest.approx(expected)
    assert np.array(report["confusion_matrix"]).sum() == len(labels) == report["images"]
    assert len(report["per_class"]) == 10
    assert Path(report["png"]).exists()
    # Not calibrated by training: the calibration error is the plain softmax's.
    assert 0 < report["ece"] == report["ece_uncalibrated"] < 0.5
    assert report["temperature"] is None
    assert Path(report["reliability_png"]).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_prints_tables(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(run_dir / "model.npz"), "--png", os.devnull]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out and "confusion matrix" in out
    assert "expected calibration error" in out and "reliability diagram drawn to" in out


def test_evaluate_a_calibrated_model(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cnnlab.runs import unknowns

    model = cl.Sequential.load(run_dir / "model.npz")
    images, labels = load("mnist-sample", "train")
    held = cl.to_input(images[-500:])
    model.meta.update(unknowns.calibrate(model, held, labels[-500:].astype(np.int64)))
    model.save(tmp_path / "calibrated.npz")
    diagram = tmp_path / "reliability.png"
    args = ["evaluate", str(tmp_path / "calibrated.npz"), "--png", os.devnull]
    assert main([*args, "--json", "--reliability-png", str(diagram)]) == 0
    report = json.loads(capsys.readouterr().out)
    test_images, test_labels = load("mnist-sample", "test")
    probabilities, _ = unknowns.assess(model, cl.to_input(test_images))
    assert report["temperature"] == model.meta["temperature"] != 1
    assert report["ece"] == pytest.approx(unknowns.ece(probabilities, test_labels))
    assert report["ece"] != report["ece_uncalibrated"]
    assert report["reliability_png"] == str(diagram) and diagram.read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"(temperature {model.meta['temperature']:.2f};" in out and "before calibration" in out


def test_predict_json_format(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    digit_png(tmp_path / "digit.png", index=3)
    pre = tmp_path / "pre"
    args = ["predict", str(run_dir), str(tmp_path / "digit.png"), "--json", "--top-k", "2"]
    assert main([*args, "--save-preprocessed", str(pre)]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    keys = ["class", "file", "known", "label", "probabilities", "runner_up", "top", "unsure"]
    assert [sorted(r) for r in results] == [keys]
    probabilities = results[0]["probabilities"]
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert results[0]["label"] == int(np.argmax(probabilities))
    assert results[0]["class"] == str(results[0]["label"]) and results[0]["known"] is True
    # --top-k shapes the JSON too: the k best classes, best first.
    best = sorted(range(10), key=lambda i: -probabilities[i])[:2]
    assert results[0]["top"] == [{"class": str(i), "probability": probabilities[i]} for i in best]
    # --save-preprocessed says where it wrote (on stderr, so stdout stays JSON).
    assert (pre / "digit.28x28.png").exists()
    assert captured.err.strip() == f"wrote 1 network input to {pre}/"


@pytest.mark.parametrize(("bias", "answer"), [(0.0, "0?  unsure: maybe 1"), (9.0, "3  (")])
def test_predict_says_when_it_is_unsure(
    tmp_path: Path, capsys: pytest.CaptureFixture, bias: float, answer: str
) -> None:
    # A model that ignores its input: equal logits (every class 10 %) or a clear 3.
    model = cl.Sequential([cl.Flatten(), cl.Dense(784, 10)], input_shape=(1, 28, 28))
    model.layers[1].params["W"][...] = 0
    model.layers[1].params["b"][...] = 0
    model.layers[1].params["b"][3] = bias
    model.save(tmp_path / "model.npz")
    digit_png(tmp_path / "digit.png")
    assert main(["predict", str(tmp_path / "model.npz"), str(tmp_path / "digit.png")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'digit.png'}: {answer}")


def test_predict_says_when_a_picture_is_none_of_the_classes(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.runs import predict

    real = predict.assess
    monkeypatch.setattr(
        predict, "assess", lambda model, x: (real(model, x)[0], np.zeros(len(x), bool))
    )
    digit_png(tmp_path / "digit.png", index=3)
    args = ["predict", str(run_dir), str(tmp_path / "digit.png")]
    assert main([*args, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["known"] is False and result["label"] == int(np.argmax(result["probabilities"]))
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    closest = f"{result['class']}, {max(result['probabilities']):.0%}"
    assert first.startswith(f"{tmp_path / 'digit.png'}: not a digit (closest: {closest})  (")


def test_predict_reads_a_data_set_digit(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    model = cl.Sequential.load(run_dir / "model.npz")
    images, _ = load("mnist-sample", "test")
    want = model.predict_proba(cl.to_input(images[17:18]))[0]
    assert main(["predict", str(run_dir), "mnist-sample:test:17", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["file"] == "mnist-sample:test:17"
    np.testing.assert_allclose(result["probabilities"], want, rtol=1e-6)


def test_predict_reports_each_bad_image_and_finishes_the_rest(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    digit_png(folder / "b-digit.png", index=3)
    (folder / "a-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    Image.new("L", (64, 64), 255).save(folder / "c-blank.png")
    args = ["predict", str(run_dir), str(folder), "mnist-sample:test:99999", str(tmp_path / "no")]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{folder / 'b-digit.png'}: ")
    assert "prediction = [" in captured.out
    errors = captured.err.splitlines()
    assert len(errors) == 4 and all(line.startswith("cnnlab predict: error: ") for line in errors)
    assert "a-corrupt.png" in errors[0] and "not an image" in errors[0]
    assert "c-blank.png: no ink found" in errors[1]
    assert "index 99999 is out of range" in errors[2]
    assert "no such image file" in errors[3]
    assert main([*args, "--json"]) == 2
    results = json.loads(capsys.readouterr().out)
    assert [r["label"] is None for r in results] == [True, False, True, True, True]
    assert "not an image" in results[0]["error"]


def test_info_shows_the_summary(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "Conv2D(1, 6, 5, padding=2)" in out and "total parameters: 61,706" in out


ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\x9b31m\u202e"


@pytest.mark.parametrize("accuracy", ["0.9", [0.9], None, {"a": 1}, True, 1e400])
def test_info_prints_meta_of_any_type_on_one_line_each_without_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture, accuracy: object
) -> None:
    model = cl.build("simple", seed=0)
    model.meta.update(
        test_accuracy=accuracy, class_names=[f"c{i}{ESCAPES}" for i in range(10)], note=ESCAPES
    )
    model.save(tmp_path / f"m{ESCAPES[:5]}.npz")
    assert main(["info", str(tmp_path / f"m{ESCAPES[:5]}.npz")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\u202e" not in out
    assert "note: \\x1b]0;pwned\\x07" in out and "m\\x1b]0;p.npz" in out
    assert "test_accuracy: " in out


@pytest.mark.parametrize("seed", ["x", 1e400, -1, 2**40, True])
def test_evaluate_refuses_a_split_seed_of_the_wrong_type_in_one_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, seed: object
) -> None:
    model = cl.Sequential.load(run_dir / "model.npz")
    model.meta["split_seed"] = seed
    model.save(tmp_path / "seeded.npz")
    assert main(["evaluate", str(tmp_path / "seeded.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'split_seed' must be a whole number" in err and "\n" not in err


def test_evaluate_never_reads_a_folder_a_model_names(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.cli import evaluate

    model = cl.Sequential.load(run_dir / "model.npz")
    model.meta["dataset"] = "/usr"
    model.save(tmp_path / "pointing.npz")
    monkeypatch.setattr(evaluate, "load_image_set", lambda *a, **k: pytest.fail("read data"))
    assert main(["evaluate", str(tmp_path / "pointing.npz")]) == 2
    assert "trained on '/usr', not a data set cnnlab knows" in capsys.readouterr().err


def huge_png(path: Path) -> None:
    """A PNG whose header claims 100000 × 100000 pixels (the data is never reached)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    header = (100_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def other_model(path: Path) -> None:
    """A valid cnnlab model that takes 32×32 inputs."""
    layers = [cl.Conv2D(1, 2, 5), cl.MaxPool2D(2), cl.Flatten(), cl.Dense(2 * 14 * 14, 10)]
    cl.Sequential(layers, input_shape=(1, 32, 32)).save(path)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-model", "no such file"),
        ("not-a-model", "(expected the .npz archive that cnnlab train or Sequential.save writes)"),
        ("foreign-npz", "not a cnnlab model"),
        ("missing-image", "no such image file"),
        ("corrupt-image", "not an image"),
        ("huge-image", "pixels"),
        ("wrong-input-shape", "takes 32x32 grey pictures, but mnist-sample has 28x28 grey"),
        ("unwritable-out", "cannot write"),
        ("run-exists", "already holds a run"),
        ("bad-lr", "must be a finite number > 0"),
        ("smoothing-with-mse", "label smoothing applies to the cross-entropy loss"),
        ("smoothing-out-of-range", "argument --label-smoothing: must be in [0, 1), got 1.5"),
    ],
)
def test_bad_input_gives_one_line_error(
    case: str, message: str, run_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    digit = tmp_path / "digit.png"
    digit_png(digit)
    args = {
        "missing-model": ["info", str(tmp_path / "nope.npz")],
        "not-a-model": ["info", str(digit)],
        "foreign-npz": ["info", str(tmp_path / "foreign.npz")],
        "missing-image": ["predict", str(run_dir), str(tmp_path / "nope.png")],
        "corrupt-image": ["predict", str(run_dir), str(tmp_path / "corrupt.png")],
        "huge-image": ["predict", str(run_dir), str(tmp_path / "huge.png")],
        "wrong-input-shape": ["evaluate", str(tmp_path / "other.npz")],
        "unwritable-out": ["train", *TINY, "--out", str(digit / "run")],
        "run-exists": ["train", *TINY, "--out", str(run_dir)],
        "bad-lr": ["train", "--lr", "-1"],
        "smoothing-with-mse": [
            "train",
            *TINY,
            "--loss",
            "mse",
            "--label-smoothing",
            "0.1",
            "--out",
            str(tmp_path / "r"),
        ],
        "smoothing-out-of-range": [
            "train",
            *TINY,
            "--label-smoothing",
            "1.5",
            "--out",
            str(tmp_path / "r"),
        ],
    }[case]
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    # The same bytes every run: random ones are, now and then, read as a truncated image.
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    huge_png(tmp_path / "huge.png")
    other_model(tmp_path / "other.npz")
    with pytest.raises(SystemExit) if case == "bad-lr" else _no_raise():
        assert main(args) == 2
    err = capfd.readouterr().err.strip()
    assert message in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 or case == "bad-lr"


class _no_raise:  # noqa: N801 - reads like pytest.raises at the call site
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_no_half_written_model_after_a_failed_save(tmp_path: Path) -> None:
    model = cl.build("lenet5")
    model.save(tmp_path / "model.npz")
    before = (tmp_path / "model.npz").read_bytes()
    model.meta["bad"] = object()  # not JSON-serialisable: the save fails midway
    with pytest.raises(TypeError):
        model.save(tmp_path / "model.npz")
    assert (tmp_path / "model.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path, signum: int
) -> None:
    args = ["--subset", "512", "--epochs", "2", "--batch-size", "16", "--model", "simple"]
    assert main(["train", *args, "--quiet", "--out", str(tmp_path / "straight")]) == 0

    command = [sys.executable, "-m", "cnnlab", "train", *args, "--out", str(tmp_path / "cut")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stderr is not None
        p.stderr.read(1)  # the first progress output: training has started
        p.send_signal(signum)  # SIGTERM (kill, a service manager) saves like Ctrl-C
        _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert "--resume" in err
    assert (tmp_path / "cut" / "checkpoint.npz").exists()
    # The model as training left it, marked stopped, like a stopped run of the web lab.
    assert cl.Sequential.load(tmp_path / "cut" / "model.npz").meta["stopped"] is True

    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    straight = cl.Sequential.load(tmp_path / "straight" / "model.npz").state_arrays()
    resumed = cl.Sequential.load(tmp_path / "cut" / "model.npz").state_arrays()
    for key, value in straight.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_running_out_of_memory_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cnnlab.cli import info

    def exhausted(args) -> int:
        raise MemoryError

    monkeypatch.setattr(info, "run", exhausted)
    assert main(["info", "x.npz"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab info: error: out of memory;") and "\n" not in err


@pytest.mark.parametrize("given", [None, 3])
def test_threads_option_sets_the_engine_threads_for_the_command(
    given, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--threads N`` is the engine's thread count while the command runs (default: every
    core); the BLAS stays on one thread; the setting is put back afterwards."""
    from threadpoolctl import threadpool_info

    from cnnlab.cli import info
    from cnnlab.engine.parallel import available_cores

    seen = {}

    def record(args) -> int:
        seen["threads"] = cl.get_threads()
        seen["blas"] = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        return 0

    monkeypatch.setattr(info, "run", record)
    previous = cl.set_threads(5)
    try:
        argv = ["info", "x.npz"] if given is None else ["--threads", str(given), "info", "x.npz"]
        assert main(argv) == 0
        assert seen == {"threads": given or available_cores(), "blas": {1}}
        assert cl.get_threads() == 5
    finally:
        cl.set_threads(previous)
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "0", "info", "x.npz"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_without_model_the_newest_run_is_used(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["info"]) == 2
    assert capsys.readouterr().err.strip() == (
        "cnnlab info: error: no MODEL given and no run in runs/; train one with cnnlab train, "
        "or name a model file or run folder"
    )
    newest = cl.Sequential.load(run_dir / "model.npz")
    older = cl.build("lenet5", seed=9)
    for name, model, mtime in [("older", older, 1_000_000), ("newest", newest, 2_000_000)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        model.save(tmp_path / "runs" / name / "model.npz")
        os.utime(tmp_path / "runs" / name / "model.npz", (mtime, mtime))
    commands = [
        ["info"],
        ["evaluate", "--json", "--png", os.devnull],
        ["predict", "mnist-sample:test:17", "--json"],
        ["explain", "mnist-sample:test:17", "--patches", "50", "--out", "explained"],
        ["step", "mnist-sample:test:17", "--out", "stepped"],
        ["export", "--format", "onnx", "-o", "model.onnx"],
    ]
    for args in commands:
        assert main(args) == 0, args
        captured = capsys.readouterr()
        first = captured.err.splitlines()[0]
        assert first.startswith("using the newest run") and first.endswith(
            f": {Path('runs', 'newest')}"
        )
    images, _ = load("mnist-sample", "test")
    assert main(["predict", "mnist-sample:test:17", "mnist-sample:test:18", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    want = newest.predict_proba(cl.to_input(images[17:19]))
    np.testing.assert_allclose([r["probabilities"] for r in results], want, rtol=1e-6)
    # A model named first still wins.
    assert main(["predict", str(tmp_path / "runs" / "older"), "mnist-sample:test:17"]) == 0
    assert "using the newest run" not in capsys.readouterr().err


def test_resuming_a_finished_run_is_refused_and_leaves_it_as_it_was(
    run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    # Resuming a finished run rewrote its model, making an old run the newest one.
    def files() -> dict[str, int]:  # the lock file records who last held it
        return {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != ".lock"}

    before = files()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cnnlab train: error: {run_dir}: this run finished its 1 epochs; there is nothing to "
        "resume (train a new run to train longer)"
    )
    assert files() == before


def test_the_first_progress_rate_counts_the_first_steps_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # It showed "7948335.9 img/s": the bar started its clock after the first step.
    from cnnlab.cli.train import ConsoleProgress
    from cnnlab.engine import progress

    now = [100.0]
    monkeypatch.setattr(progress, "monotonic", lambda: now[0])
    console = ConsoleProgress(quiet=False)
    console.epochs, console.per_epoch = 1, 640
    state = cl.TrainState()
    console.on_epoch_begin(state)
    now[0] += 0.5  # the first step takes half a second
    state.loss_sum, state.seen = 2.3 * 64, 64
    console.on_batch_end(state, {"batch_size": 64, "loss": 2.3, "lr": 0.1})
    console.close()  # draws the bar's line as it stands
    assert "64/640 [00:00<00:04, 128.0 img/s, loss=2.3]" in capsys.readouterr().err


def test_a_second_training_into_the_same_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from cnnlab.runs.folder import RunFolder

    with RunFolder.create(tmp_path / "run").lock():  # as a first training holds it
        assert main(["train", *TINY, "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab train: error:") and "another training (process" in err
    assert len(err.splitlines()) == 1


def test_a_diverging_training_exits_nonzero_without_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--subset", "320", "--epochs", "1", "--batch-size", "16", "--model", "simple"]
    args += ["--optimizer", "sgd", "--lr", "100", "--quiet", "--out", str(tmp_path / "run")]
    assert main(["train", *args]) != 0
    err = capsys.readouterr().err.strip()
    assert "stopped learning at step" in err and "e.g. 0.05" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "model.npz").exists()


def test_a_full_disk_is_one_line_and_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    model = cl.build("simple")
    model.save(tmp_path / "model.npz")
    before = (tmp_path / "model.npz").read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(cl.CnnlabError) as info:
        model.save(tmp_path / "model.npz")
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert (tmp_path / "model.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_train_on_a_missing_folder_says_it_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    assert main(["train", "--dataset", str(missing), "--out", str(tmp_path / "run")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"cnnlab train: error: the folder '{missing}' does not exist; ")
    assert line.endswith("mnist-sample, mnist, fashion-mnist, shapes, cifar10")
    assert not (tmp_path / "run").exists()


def test_the_confusion_matrix_is_headed_by_class_names_cut_to_fit() -> None:
    from cnnlab.cli.evaluate import confusion_lines

    names = ["cat", "a-very-long-class-name-for-a-dog-breed", "car"]
    matrix = np.array([[5, 0, 1], [0, 12, 0], [2, 0, 7]])
    header, *rows = confusion_lines(matrix, names)
    assert header.split() == ["cat", "a-very-…", "car"]
    assert [row.split()[0] for row in rows] == ["cat", "a-very-long-class-name-…", "car"]
    assert [[int(v) for v in row.split()[1:]] for row in rows] == matrix.tolist()
    assert len({len(line) for line in (header, *rows)}) == 1  # the columns line up


def test_the_per_class_table_lines_up_at_100_percent() -> None:
    from cnnlab.cli.evaluate import class_table

    lines = class_table(
        ["cat", "dog", "a-long-name"],
        np.array([1.0, 0.5, 0.0]),
        np.array([1.0, 0.0833, 0.0]),
        np.array([1000, 12, 7]),
    ).splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "support"]
    assert lines[2].split() == ["cat", "100.00%", "100.00%", "1000"]
    assert lines[3].split() == ["dog", "50.00%", "8.33%", "12"]
    assert len({len(line) for line in lines}) == 1  # every column ends where its header does


@pytest.mark.slow
def test_the_progress_counts_the_generated_non_digits_an_epoch_goes_through(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [a for a in TINY if a != "--quiet"]
    assert main(["train", *args, "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    # 256 digits and the 64 generated non-digits the digit recipe mixes in (one per four).
    assert (
        "each epoch goes through 320 pictures: the 256 and 64 generated non-digits" in captured.out
    )
    assert "320/320" in captured.err + captured.out and "/256" not in captured.err
