"""One training step: the printed numbers are the ones the engine used."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from explain_support import trained_small_cnn

import cnnlab
from cnnlab.explain.experiments import digits
from cnnlab.explain.step import DEFAULT_STEP_LR, PROBE_SIZE, probe_set, training_step
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


def test_the_probe_is_the_same_pictures_every_time_and_judges_the_step() -> None:
    x, y = digits(2000, "test")
    probe = probe_set(x, y)
    again = probe_set(x, y)
    assert len(probe[1]) == PROBE_SIZE and len(set(map(bytes, probe[0]))) == PROBE_SIZE
    np.testing.assert_array_equal(probe[0], again[0])
    assert not np.array_equal(probe[1], y[:PROBE_SIZE])  # picked by the seed, not the first
    np.testing.assert_array_equal(probe_set(x[:5], y[:5])[1], y[:5])  # a smaller set: all
    model = copy.deepcopy(trained_small_cnn())
    picture = read_picture(model, "mnist-sample:test:61").x[None]
    accuracy = float((model.predict(probe[0]) == probe[1]).mean())
    small = training_step(model, picture, label=8, lr=DEFAULT_STEP_LR, probe=probe)
    assert small.probe_size == PROBE_SIZE and small.probe_before == accuracy
    assert small.probe_after == float((model.predict(probe[0]) == probe[1]).mean())
    assert not small.overshot and small.lesson().startswith("A step that helped")
    still = dataclasses.replace(small, loss_after=small.loss)  # a label it already gives
    assert not still.overshot and still.lesson().startswith("No change (η = ")
    model = copy.deepcopy(trained_small_cnn())
    huge = training_step(model, picture, label=8, lr=50.0, probe=probe)
    assert huge.loss_after < huge.loss  # this picture is learnt ...
    assert huge.probe_after < huge.probe_before - 0.3  # ... and the others are lost
    assert huge.overshot and huge.lesson().startswith("Overshoot: η = 50 is too large")
    assert f"right ({100 * accuracy:.1f} % → {100 * huge.probe_after:.1f} %)" in huge.lesson()
    # A label against the model's confident answer: the overshoot is the label's, said so.
    sure_of_another = np.full(10, 0.005)
    sure_of_another[(small.label + 1) % 10] = 0.955
    told = dataclasses.replace(small, before=sure_of_another, probe_after=small.probe_before - 0.01)
    assert told.overshot and told.lesson().startswith(
        "Overshoot: this picture's label is not what the model reads (it was 96% sure of another"
    )
    unsure = dataclasses.replace(told, before=np.full(10, 0.1))
    assert unsure.lesson().startswith("Overshoot: η = ")
