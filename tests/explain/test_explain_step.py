"""One training step: the printed numbers are the ones the engine used."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from explain_support import trained_small_cnn

import cnnlab
from cnnlab.explain.step import training_step
from cnnlab.runs.pictures import read_picture


def test_step_weights_follow_the_update_rule_and_stay_in_the_model() -> None:
    model = copy.deepcopy(trained_small_cnn())
    before_weights = {name: p.copy() for name, p, _ in model.named_parameters()}
    x = read_picture(model, "mnist-sample:test:61").x[None]
    result = training_step(model, x, label=8, lr=0.1)
    assert [w.layer for w in result.weights] == [0, 3, 7]
    lr = np.float32(0.1)
    for w in result.weights:
        held = model.layers[w.layer].params["W"][w.index]
        assert w.w_new == held  # read back from the model after the step
        assert (
            w.w_old
            == before_weights[f"{w.layer}.{type(model.layers[w.layer]).__name__}.W"][w.index]
        )
        assert np.float32(w.w_new) == np.float32(w.w_old) - lr * np.float32(w.grad)
        assert w.grad != 0
    # Every weight, not just the printed ones, moved by exactly -η·dL/dW.
    for name, p, g in model.named_parameters():
        np.testing.assert_array_equal(p, before_weights[name] - lr * g)


def test_step_lowers_the_loss_and_reports_probabilities() -> None:
    model = copy.deepcopy(trained_small_cnn())
    x = read_picture(model, "mnist-sample:test:61").x[None]
    probs_before = model.predict_proba(x)[0]
    result = training_step(model, x, label=8, lr=0.05)
    np.testing.assert_allclose(result.before, probs_before, rtol=1e-6)
    np.testing.assert_allclose(result.after, model.predict_proba(x)[0], rtol=1e-6)
    assert result.loss == pytest.approx(-np.log(probs_before[8]), rel=1e-4)
    assert result.loss_after < result.loss
    assert result.after[8] > result.before[8]
    assert len(result.grad_norms) == 6 and all(v > 0 for _, v in result.grad_norms)


def test_step_refuses_bad_labels_and_losses() -> None:
    model = copy.deepcopy(trained_small_cnn())
    x = read_picture(model, "mnist-sample:test:61").x[None]
    with pytest.raises(cnnlab.CnnlabError, match="label"):
        training_step(model, x, label=10)
    with pytest.raises(cnnlab.CnnlabError, match="step: loss must be one of"):
        training_step(model, x, label=1, loss="hinge")
