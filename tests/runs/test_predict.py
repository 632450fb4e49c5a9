"""Readings: top class, runner-up, when to say unsure, and "none of these"."""

from __future__ import annotations

import numpy as np
import pytest
from explain_support import trained_small_cnn

from cnnlab.data import load
from cnnlab.runs import predict, unknowns
from cnnlab.runs.pictures import read_picture
from cnnlab.runs.predict import UNSURE_BELOW, reading

NAMES = list("abcdefghij")


def test_a_clear_answer_is_sure_and_names_the_runner_up() -> None:
    r = reading(np.array([0.01, 0.9, 0.02, 0.07]), NAMES[:4])
    assert (r.label, r.runner_up) == (1, 3) and (r.class_name, r.runner_up_name) == ("b", "d")
    assert r.probability == pytest.approx(0.9) and r.runner_up_probability == pytest.approx(0.07)
    assert not r.unsure and r.known


def test_a_low_top_probability_is_unsure() -> None:
    top = UNSURE_BELOW - 0.01
    r = reading(np.array([top, 0.0, 1 - top]), NAMES[:3])
    assert r.label == 0 and r.unsure


def test_ties_go_to_the_lower_index_as_argmax() -> None:
    r = reading(np.full(10, 0.1), NAMES)
    assert (r.label, r.runner_up) == (0, 1) and r.unsure


def test_read_gives_the_models_probabilities_for_pictures_and_batches() -> None:
    model = trained_small_cnn()
    pictures = [read_picture(model, f"mnist-sample:test:{i}") for i in (17, 61)]
    readings = predict.read(model, pictures)
    x = np.stack([p.x for p in pictures])
    np.testing.assert_allclose(
        [r.probabilities for r in readings], model.predict_proba(x), rtol=1e-6
    )
    labels = model.predict(x)
    assert [r.class_name for r in readings] == [str(y) for y in labels]
    assert [r.label for r in predict.read(model, x)] == list(labels)
    assert all(r.known and r.class_names == tuple("0123456789") for r in readings)
    assert predict.read(model, []) == []


def test_known_comes_from_assess_alone(monkeypatch) -> None:
    model = trained_small_cnn()
    real = predict.assess
    monkeypatch.setattr(predict, "assess", lambda m, x: (real(m, x)[0], np.zeros(len(x), bool)))
    (r,) = predict.read(model, [read_picture(model, "mnist-sample:test:17")])
    assert not r.known and r.class_name == "7"
    assert predict.none_of_these(model) == "not a digit"


def test_a_calibrated_model_reads_through_its_calibration() -> None:
    model = trained_small_cnn()
    x = np.stack([read_picture(model, f"mnist-sample:test:{i}").x for i in range(200)])
    _, y = load("mnist-sample", "test")
    model.meta.update(unknowns.calibrate(model, x[:150], y[:150].astype(np.int64), "msp"))
    readings = predict.read(model, x[150:])
    calibrated, known = unknowns.assess(model, x[150:])
    np.testing.assert_allclose([r.probabilities for r in readings], calibrated, rtol=1e-6)
    assert [r.known for r in readings] == known.tolist()
    assert not np.allclose(calibrated, model.predict_proba(x[150:]), atol=1e-4)
    model.meta["unknown_below"] = 1.5  # no probability reaches it: nothing is a digit
    assert not any(r.known for r in predict.read(model, x[150:160]))
