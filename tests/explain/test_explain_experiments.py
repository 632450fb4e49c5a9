"""The experiments' numbers on tiny settings: verdicts, vanishing gradients, losses, features."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.engine.errors import CnnlabError
from cnnlab.explain.experiment_figures import plot_learning_rates
from cnnlab.explain.experiments import (
    ActivationRun,
    LearningRateRun,
    activation_gradients,
    activation_verdict,
    compare_losses,
    deep_mlp,
    features,
    judge,
    learning_rate_sweep,
)


def test_learning_rate_sweep_labels_slow_and_diverged() -> None:
    runs = learning_rate_sweep(
        [1e-4, 0.1, 3.0], samples=256, batch_size=32, probe_samples=100, probe_every=4
    )
    assert [r.lr for r in runs] == [1e-4, 0.1, 3.0]
    assert runs[0].verdict == "slow"
    assert runs[-1].verdict == "diverged"
    assert runs[-1].diverged_at is not None
    assert runs[-1].diverged_loss > 10 * runs[-1].losses[0]
    assert math.isnan(runs[-1].end)
    for run in runs:  # nothing NaN is kept for plotting
        assert all(math.isfinite(v) for v in run.losses + run.probe_losses)
    assert runs[1].best and runs[1].end < runs[1].start
    # Every run starts from the same weights: the same held-out loss before training.
    assert len({round(r.probe_losses[0], 6) for r in runs}) == 1


@pytest.mark.parametrize(
    ("losses", "probe", "diverged", "verdict"),
    [
        ([2.3, 2.2], [2.3, 2.25], False, "slow"),
        ([2.3, 1.0], [2.3, 1.0], False, "good"),
        ([2.3, 9.0, 2.3], [2.3, 1.0], False, "overshoots"),  # a spike, then it recovered
        ([2.3, 9.0, 2.3], [2.3, 2.3], False, "diverged"),  # a spike it never recovered from
        ([2.3, 1.0], [2.3, 0.8, 1.2], False, "overshoots"),  # ended 50 % above its best
        ([2.3], [2.3], True, "diverged"),
    ],
)
def test_judge(losses, probe, diverged, verdict) -> None:
    assert judge(losses, probe, diverged) == verdict


def test_sigmoid_gradient_vanishes_and_relu_does_not() -> None:
    runs = activation_gradients(samples=256, epochs=2, test_samples=200, batch_size=32)
    by = {r.activation: r for r in runs}
    sigmoid, relu = by["sigmoid"], by["relu"]
    assert len(sigmoid.grad_norms) == 9  # 8 hidden layers and the output layer
    assert sigmoid.grad_norms[0] * 10 <= relu.grad_norms[0]
    # Sigmoid shrinks the gradient at every layer on its way down.
    assert all(a < b for a, b in zip(sigmoid.grad_norms, sigmoid.grad_norms[1:], strict=False))
    assert relu.grad_norms[0] > 0.1 * relu.grad_norms[-1]
    assert len(sigmoid.first_layer_per_batch) == 8  # the first epoch only
    assert relu.dead_fraction is not None and sigmoid.saturated_fraction is not None
    assert relu.test_accuracy > sigmoid.test_accuracy
    verdict = activation_verdict(runs)
    assert verdict[1].startswith("sigmoid: ") and "vanishes on the way down" in verdict[1]
    assert verdict[4].startswith("against sigmoid: the claim holds, ReLU passes")


def run_with(activation: str, first: float, last: float, accuracy: float) -> ActivationRun:
    return ActivationRun(activation, ["1", "2"], [first, last], [], [], None, None, accuracy)


@pytest.mark.parametrize(
    ("tanh_first", "tanh_accuracy", "found", "best"),
    [
        (0.009, 0.5, "the claim holds, ReLU passes 55.6× more of it down", "relu"),
        (5.0, 0.9, "the claim does not hold, tanh passes 10× more", "tanh"),
        (0.7, 0.7, "no clear difference, a factor 0.71 (within 2×)", "relu"),
    ],
)
def test_the_verdict_follows_the_numbers(
    tanh_first: float, tanh_accuracy: float, found: str, best: str
) -> None:
    runs = [run_with("tanh", tanh_first, 1.0, tanh_accuracy), run_with("relu", 0.5, 1.0, 0.8)]
    lines = activation_verdict(runs)
    assert lines[0].startswith("the article's claim: ReLU passes the gradient down better")
    assert lines[3] == f"against tanh: {found}"
    assert lines[-1].endswith(f"{best} learned best here")
    fate = "vanishes on the way down" if tanh_first < 0.01 else "reaches the first layer"
    assert lines[1] == (
        f"tanh: the first layer gets {tanh_first:.2g}× the output layer's gradient; it {fate}"
    )


def test_deep_mlp_has_at_least_eight_layers() -> None:
    model = deep_mlp("tanh", depth=8)
    assert sum(type(layer).__name__ == "Dense" for layer in model.layers) == 9
    assert sum(type(layer).__name__ == "Tanh" for layer in model.layers) == 8


def test_deep_mlp_refuses_bad_arguments_in_one_line() -> None:
    with pytest.raises(CnnlabError, match="deep_mlp: activation must be one of"):
        deep_mlp("swish")  # was a bare KeyError
    with pytest.raises(CnnlabError, match="deep_mlp: depth must be an integer >= 1, got 0"):
        deep_mlp("relu", depth=0)


def test_compare_losses_records_accuracy_per_epoch() -> None:
    runs = compare_losses(epochs=2, samples=400, test_samples=200)
    assert [r.loss for r in runs] == ["mse", "cross-entropy"]
    for run in runs:
        assert len(run.test_accuracy) == 2
        assert all(0.0 <= a <= 1.0 for a in run.test_accuracy)
    assert runs[1].test_accuracy[-1] > 0.3  # cross-entropy learns within two short epochs


def test_features_trains_and_shows_every_conv_layer() -> None:
    feat = features(index=3, samples=300)
    assert feat.filters.shape == (6, 5, 5)
    assert [lm.maps.shape for lm in feat.layers] == [(6, 24, 24), (12, 8, 8)]
    assert feat.test_accuracy is not None and feat.test_accuracy > 0.2
    assert np.isfinite(feat.image).all() and feat.image.shape == (28, 28)


@pytest.mark.slow
def test_learning_rate_figure_marks_every_kind_of_divergence(tmp_path) -> None:
    runs = [
        LearningRateRun(1e-3, [2.3, 2.29], [0, 2], [2.3, 2.28], "slow", None, math.nan, 2.3, 2.28),
        LearningRateRun(3.0, [2.3], [0], [2.3], "diverged", 2, 80.0, 2.3, math.nan),
        LearningRateRun(
            0.5, [2.3, 9.0, 2.3], [0, 3], [2.3, 2.31], "diverged", 2, 9.0, 2.3, math.nan
        ),
        LearningRateRun(9.0, [2.3], [0], [2.3], "diverged", 2, math.inf, 2.3, math.nan),
    ]
    path = plot_learning_rates(runs, tmp_path / "lr.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
