"""The explain, experiment, step, gradcheck and perceptron commands: numbers and files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from explain_support import trained_small_cnn

import cnnlab
from cnnlab.cli import main
from cnnlab.explain.report import Section, render
from cnnlab.runs.pictures import read_picture


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    trained_small_cnn().save(path)
    return path


def run(capsys, *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_explain_prints_top3_and_writes_a_self_contained_report(model_file, tmp_path, capsys):
    out = run(
        capsys,
        "explain",
        str(model_file),
        "mnist-sample:test:17",
        "--out",
        str(tmp_path),
        "--patches",
        "300",
    )
    ranks = re.findall(r"^\s+(\d)\s+(\d)\s+([0-9.]+)$", out, re.M)
    assert [r[0] for r in ranks] == ["1", "2", "3"]
    assert ranks[0][1] == "7"  # digit 17 of the test sample is a 7
    assert re.search(r"^answer: 7(\?  unsure: maybe \d)?$", out, re.M)  # worded as predict's
    probs = [float(r[2]) for r in ranks]
    assert probs == sorted(probs, reverse=True) and probs[0] > 0.5
    assert "occlusion (6×6 grey patch" in out
    for name in (
        "preprocessing",
        "prediction",
        "activation_maps_conv1",  # conv layers numbered as the web lab numbers them
        "activation_maps_conv2",
        "filters_conv1",
        "occlusion",
        "saliency",
        "top_patches",
    ):
        assert is_png(tmp_path / f"{name}.png"), name
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 8
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from outside the page
    assert "replacing the earlier explanation" not in out
    again = run(capsys, "explain", str(model_file), "mnist-sample:test:3", "--out", str(tmp_path))
    assert "(replacing the earlier explanation there; --out DIR keeps both)" in again


@pytest.mark.slow
def test_experiment_convolution_prints_the_map(tmp_path, capsys):
    out = run(capsys, "experiment", "convolution", "--out", str(tmp_path))
    assert "position (1, 1): 1×1 + 1×1 + 1×1 + 1×1 = 4" in out
    block = out.split("computed by cnnlab.Conv2D:")[1].strip().splitlines()[:3]
    assert [[float(v) for v in line.split()] for line in block] == [[1, 1, 3], [0, 4, 0], [3, 1, 0]]
    assert is_png(tmp_path / "convolution_steps.png")
    assert (tmp_path / "convolution.gif").read_bytes()[:6] == b"GIF89a"


def test_experiment_curve_detector_peaks(tmp_path, capsys):
    out = run(capsys, "experiment", "curve-detector", "--out", str(tmp_path))
    peaks = dict(re.findall(r"^(curve|no curve)\s+(\d+)", out, re.M))
    assert float(peaks["curve"]) == 13 and float(peaks["no curve"]) == 4
    assert is_png(tmp_path / "curve_detector.png")


def test_experiment_learning_rate_verdicts(tmp_path, capsys):
    out = run(
        capsys,
        "experiment",
        "learning-rate",
        "--lrs",
        "0.0001",
        "0.1",
        "3",
        "--samples",
        "200",
        "--out",
        str(tmp_path),
    )
    verdicts = dict(re.findall(r"^\s*([0-9.e-]+)\s+[0-9.]+\s+\S+\s+(\w+)", out, re.M))
    assert verdicts == {"0.0001": "slow", "0.1": verdicts["0.1"], "3": "diverged"}
    assert "nan" not in out.lower()
    assert is_png(tmp_path / "learning_rates.png")


def test_experiment_activations_verdict_follows_its_table(tmp_path, capsys):
    args = ["--samples", "128", "--epochs", "1", "--out", str(tmp_path)]
    out = run(capsys, "experiment", "activations", *args)
    first = re.search(r"^1 \(1\.Dense\)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    last = re.search(r"^9 \(\d+\.Dense\)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    reach = {
        name: float(a) / float(b)
        for name, a, b in zip(
            ("sigmoid", "tanh", "relu"), first.groups(), last.groups(), strict=True
        )
    }
    for name, value in reach.items():
        said = float(re.search(rf"^{name}: the first layer gets ([0-9.e+-]+)×", out, re.M)[1])
        assert said == pytest.approx(value, rel=0.06)  # printed to two significant digits
    found = re.search(r"^against sigmoid: (the claim holds|the claim does not|no clear)", out, re.M)
    factor = reach["relu"] / reach["sigmoid"]
    expected = "the claim holds" if factor >= 2 else "the claim does not" if factor <= 0.5 else "no"
    assert found[1].startswith(expected)
    assert re.search(r"^test accuracy: sigmoid [0-9.]+%, tanh [0-9.]+%, relu [0-9.]+%", out, re.M)
    assert is_png(tmp_path / "activation_gradients.png")


def test_experiment_losses_and_features(tmp_path, capsys):
    out = run(
        capsys, "experiment", "losses", "--samples", "200", "--epochs", "1", "--out", str(tmp_path)
    )
    row = re.search(r"^\s+1\s+([0-9.]+)%\s+([0-9.]+)%", out, re.M)
    assert all(0 <= float(v) <= 100 for v in row.groups())
    assert is_png(tmp_path / "losses.png")
    out = run(capsys, "experiment", "features", "--samples", "200", "--out", str(tmp_path))
    assert "layer 0 Conv2D(1, 6, 5): 24×24 maps" in out
    assert is_png(tmp_path / "features.png")


def test_step_prints_the_numbers_the_engine_used(model_file, tmp_path, capsys):
    saved = tmp_path / "after.npz"
    out = run(
        capsys,
        "step",
        str(model_file),
        "mnist-sample:test:61",
        "--label",
        "8",
        "--lr",
        "0.1",
        "--save",
        str(saved),
        "--out",
        str(tmp_path),
    )
    rows = re.findall(r"^(\d+)\.\w+\.W\[([\d, ]+)\]\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", out, re.M)
    assert len(rows) == 3
    after = cnnlab.Sequential.load(saved)
    before = cnnlab.Sequential.load(model_file)
    lr = np.float32(0.1)
    for layer, index, w_old, grad, _, w_new in rows:
        idx = tuple(int(v) for v in index.split(","))
        w_old, grad, w_new = np.float32(w_old), np.float32(grad), np.float32(w_new)
        assert w_new == w_old - lr * grad  # the update rule, in the engine's float32
        assert w_old == before.layers[int(layer)].params["W"][idx]
        assert w_new == after.layers[int(layer)].params["W"][idx]  # what the model holds
    loss = float(re.search(r"L = ([0-9.]+)", out)[1])
    assert loss == pytest.approx(
        -np.log(before.predict_proba(read_picture(before, "mnist-sample:test:61").x[None])[0, 8]),
        rel=1e-4,
    )
    assert is_png(tmp_path / "step.png")


def test_step_takes_the_runs_own_rate_and_judges_the_step_on_a_probe(model_file, tmp_path, capsys):
    from cnnlab.explain.experiments import digits
    from cnnlab.explain.step import DEFAULT_STEP_LR, probe_set

    run_folder = tmp_path / "run"
    run_folder.mkdir()
    cnnlab.Sequential.load(model_file).save(run_folder / "model.npz")
    (run_folder / "config.json").write_text('{"optimizer": "adam", "lr": 0.002}')
    x, y = probe_set(*digits(10_000, "test"))
    accuracy = float((cnnlab.Sequential.load(model_file).predict(x) == y).mean())
    args = ["step", str(run_folder), "mnist-sample:test:61", "--label", "8", "--out", str(tmp_path)]
    out = run(capsys, *args)
    assert "η = 0.002 (the learning rate of the model's run, trained with adam)" in out
    before_after = re.search(r"accuracy on 200 other test pictures ([\d.]+) % → ([\d.]+) %", out)
    assert float(before_after[1]) == round(100 * accuracy, 1)
    assert float(before_after[2]) >= float(before_after[1])
    assert "A step that helped (η = 0.002)" in out and "Overshoot" not in out
    out = run(capsys, *args, "--lr", "50")
    assert "η = 50 (--lr; the model's run trained with 0.002)" in out
    before_after = re.search(r"accuracy on 200 other test pictures ([\d.]+) % → ([\d.]+) %", out)
    assert float(before_after[2]) < float(before_after[1]) - 30
    assert "Overshoot: η = 50 is too large." in out
    out = run(capsys, "step", str(model_file), "mnist-sample:test:61", "--out", str(tmp_path),
              "--probe", "0")  # fmt: skip
    assert f"η = {DEFAULT_STEP_LR:g} (the default: the model's run records no learning rate)" in out
    assert "other test pictures" not in out


def test_step_needs_a_label_for_an_image_file(model_file, tmp_path, capsys):
    from PIL import Image

    image = np.zeros((40, 40), dtype=np.uint8)
    image[10:30, 18:22] = 255
    path = tmp_path / "one.png"
    Image.fromarray(image).save(path)
    assert main(["step", str(model_file), str(path), "--out", str(tmp_path)]) == 2
    assert "pass --label" in capsys.readouterr().err


def test_step_takes_a_class_name_as_label(model_file, tmp_path, capsys):
    named = cnnlab.Sequential.load(model_file)
    named.meta["class_names"] = ["zero", "one", "two", "three", "four", "five", "six", "seven",
                                 "eight", "nine"]  # fmt: skip
    named.save(tmp_path / "named.npz")
    args = ["step", str(tmp_path / "named.npz"), "mnist-sample:test:61", "--out", str(tmp_path)]
    out = run(capsys, *args, "--label", "eight")
    assert "target class eight," in out and "P(eight)" in out
    assert out == run(capsys, *args, "--label", "8")  # the same step, by index
    assert main([*args, "--label", "Eight"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("'Eight' is not one of the model's classes; give a class name (zero, "
                         "one, two, three, four, five, six, seven, eight, nine) or an index from "
                         "0 to 9")  # fmt: skip


def test_gradcheck_passes_and_prints_every_parameter(tmp_path, capsys):
    out = run(capsys, "gradcheck", "--model", "lenet5", "--entries", "3", "--out", str(tmp_path))
    number = r"([0-9.e+-]+)"
    row = rf"^(\S+)\s+[\d×]+\s+(\d+)\s+(\d+)\s+(\d+)\s+{number}\s+{number}\s+ok$"
    rows = re.findall(row, out, re.M)
    assert [r[0] for r in rows][-1] == "input" and len(rows) == 11
    assert all(float(r[4]) <= 1e-4 for r in rows)
    assert "PASS" in out
    assert is_png(tmp_path / "gradcheck.png")


def test_gradcheck_fast_passes_and_says_why_the_biases_before_batchnorm_pass(tmp_path, capsys):
    # The conv biases before BatchNorm have a ~0 true gradient; with a purely
    # relative tolerance they failed with relative error 1.0.
    out = run(capsys, "gradcheck", "--model", "fast", "--entries", "3", "--out", str(tmp_path))
    floored = re.findall(r"^(\d+\.Conv2D\.b)\s.*\sok ~0$", out, re.M)
    assert floored == ["0.Conv2D.b", "4.Conv2D.b"]
    assert "PASS" in out and "FAIL" not in out
    assert "true gradient is about zero" in out and "batch norm" in out


def test_perceptron_prints_cross_validated_accuracies(tmp_path, capsys):
    out = run(
        capsys,
        "perceptron",
        "--epochs",
        "40",
        "--net-epochs",
        "20",
        "--folds",
        "3",
        "--out",
        str(tmp_path),
    )
    pattern = r"^([A-Za-z][\w -]*?)\s{2,}(?:[0-9.]+%\s+){3}([0-9.]+)%\s+([0-9.]+)%$"
    table = {name: (float(m), float(sd)) for name, m, sd in re.findall(pattern, out, re.M)}
    assert set(table) == {"perceptron", "logistic regression", "MLP 60-32-2"}
    assert all(60 < mean <= 100 and 0 <= std < 20 for mean, std in table.values())
    assert is_png(tmp_path / "perceptron.png")


def test_report_embeds_images(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = render("T <&>", [Section("S", "text & more", [png], [["h"], ["1"]])])
    assert "T &lt;&amp;&gt;" in page and "data:image/png;base64,iVBORw0KGgpmYWtl" in page
    assert "<td>1</td>" in page


def test_experiment_error_surface_walks_to_the_bottom(tmp_path, capsys):
    from cnnlab.explain.surface import error_surface

    out = run(capsys, "experiment", "error-surface", "--out", str(tmp_path))
    expected = error_surface()
    assert f"lowest loss {expected.min_loss:.4f}" in out
    assert f"η > 2/{expected.curvatures[-1]:.3f} = {expected.critical_lr:.3f}" in out
    assert "reached the bottom" in out
    assert is_png(tmp_path / "error_surface.png")
    out = run(capsys, "experiment", "error-surface", "--lr", "3", "--out", str(tmp_path))
    assert "the weights overflowed (diverged)" in out
    assert "did not reach the bottom" in out
