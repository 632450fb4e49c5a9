"""The figures' labels say what the numbers are, and nothing overlaps (issue 12, bug 6)."""

from __future__ import annotations

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
