"""The figures' labels say what the numbers are, and nothing overlaps."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.ticker import NullFormatter

import cnnlab as cl
from cnnlab.explain import experiment_figures, figures
from cnnlab.explain.experiments import ActivationRun, LearningRateRun
from cnnlab.explain.perceptron import SonarComparison
from cnnlab.explain.step import training_step


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures the plot functions would save, kept instead."""
    kept: list = []
    for module in (figures, experiment_figures):
        monkeypatch.setattr(module, "save", lambda fig, path: kept.append(fig) or Path(path))
    return kept


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures ``cnnlab.explain.figures`` draws, kept as they are written."""
    kept: list = []
    write = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: kept.append(fig) or write(fig, path))
    return kept


def test_the_step_figures_log_axis_labels_whole_decades_only(drawn: list) -> None:
    model = cl.build("lenet5", seed=0)
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    result = training_step(model, x, 3)
    figures.plot_step(result, [str(i) for i in range(10)], Path("step.png"))
    axis = drawn[0].axes[1].xaxis
    assert isinstance(axis.get_minor_formatter(), NullFormatter)  # 2×10⁻⁴ … overlapped
    low, high = np.log10(axis.get_view_interval())
    assert low == int(low) and high == int(high) and high > low
    norms = [v for _, v in result.grad_norms]
    assert 10**low <= min(norms) and max(norms) <= 10**high


def test_the_perceptron_figure_names_frequency_bands(drawn: list) -> None:
    result = SonarComparison(3, {"perceptron": [0.7, 0.7, 0.7]}, np.linspace(-1, 1, 60), 0.1, 0.53)
    experiment_figures.plot_perceptron(result, Path("perceptron.png"))
    label = drawn[0].axes[0].get_xlabel()
    assert "frequency band" in label and "angle" not in label


def test_a_diverged_runs_label_stays_below_the_title(drawn: list) -> None:
    nan = float("nan")
    runs = [
        LearningRateRun(0.1, [2.3, 1.0, 0.5], [0, 3], [2.3, 0.6], "good", None, nan, 2.3, 0.6),
        LearningRateRun(3.0, [2.3], [0], [2.3], "diverged", 2, 79.1, 2.3, nan),
    ]
    experiment_figures.plot_learning_rates(runs, Path("learning_rates.png"))
    left = drawn[0].axes[0]
    (note,) = left.texts
    assert note.get_va() == "top"  # written downwards from its ×
    assert left.get_ylim()[1] >= 10 * 79.1


def test_the_activation_figures_title_follows_the_numbers(drawn: list) -> None:
    runs = [
        ActivationRun("tanh", ["1", "2"], [3.0, 1.0], [], [], None, None, 0.8),
        ActivationRun("relu", ["1", "2"], [0.5, 1.0], [], [], None, None, 0.7),
    ]
    runs[0].first_layer_per_batch = runs[1].first_layer_per_batch = [1.0, 1.0]
    experiment_figures.plot_activation_gradients(runs, Path("activation_gradients.png"))
    title = drawn[0].get_suptitle()
    assert "tanh 3×, relu 0.5× the output layer's" in title
    assert "ReLU passes it on" not in title


def test_a_colour_picture_is_shown_whole_first_and_every_map_count_is_true(
    saved: list, tmp_path: Path
) -> None:
    # The preprocessing figure showed two identical 32×32 panels and never the picture; the
    # third layer's maps said "64 maps" and showed 32.
    from PIL import Image

    from cnnlab.explain.prediction import explain_prediction
    from cnnlab.runs.pictures import read_picture

    model = cl.build("vgg", input_shape=(3, 16, 16), n_classes=3)
    model.meta.update(kind="images", mean=[0.5] * 3, std=[0.25] * 3, class_names=["a", "b", "c"])
    rgb = np.zeros((40, 60, 3), np.uint8)  # 60 wide, 40 high
    rgb[..., 0] = np.linspace(0, 255, 60, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    item = read_picture(model, str(tmp_path / "wide.png"), original=True)
    explain_prediction(model, item, None, ["a", "b", "c"], out_dir=tmp_path)
    steps = saved[0]
    assert [ax.get_title() for ax in steps.axes] == [
        "original\n60×40",
        "network input\ncentre-cropped 16x16\n16×16",
    ]
    assert steps.axes[0].images[0].get_array().shape == (40, 60, 3)
    maps = [fig for fig in saved if fig.get_suptitle().startswith("Activation maps")]
    counts = [int(re.search(r"(\d+) maps, ", fig.get_suptitle())[1]) for fig in maps]
    assert counts == [16, 32, 64]  # vgg's three conv layers
    for fig, count in zip(maps, counts, strict=True):
        shown = sum(bool(ax.images) for ax in fig.axes)
        assert shown == min(count, 32)
        title = fig.get_suptitle()
        assert (f"the first 32 of {count} maps" in title) == (count > 32)
    assert maps[2].get_suptitle().startswith("Activation maps of conv layer 3 (model layer ")


def test_the_top_patches_name_their_layer_as_the_text_does(saved: list, tmp_path: Path) -> None:
    from cnnlab.explain.experiments import digits, small_cnn
    from cnnlab.explain.prediction import explain_prediction
    from cnnlab.runs.pictures import read_picture

    model = small_cnn(seed=0)
    result = explain_prediction(
        model, read_picture(model, "mnist-sample:test:17"), digits(60, "test")[0], out_dir=tmp_path
    )
    (top,) = [fig for fig in saved if "patches" in fig.get_suptitle()]
    name = "conv layer 2 (model layer 3 Conv2D(6, 12, 5))"
    assert top.get_suptitle().startswith(f"C{name[1:]}: the 9 mnist-sample patches")
    assert f"What {name} looks for" in result.files["report"].read_text()
    assert result.top.layer_index == 3
