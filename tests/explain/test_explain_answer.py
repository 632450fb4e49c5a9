"""``explain`` shows the probabilities and the answer ``predict`` gives: calibrated, and "not a
digit" where the model says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.explain.experiments import small_cnn
from cnnlab.explain.prediction import explain_prediction
from cnnlab.runs.pictures import read_picture
from cnnlab.runs.predict import read


def test_the_explanation_shows_the_readings_probabilities_and_answer(tmp_path: Path) -> None:
    model = small_cnn(seed=0)
    item = read_picture(model, "mnist-sample:test:17")
    plain = np.asarray(model.predict_proba(item.x[None]))[0]
    model.meta.update(temperature=3.0)  # calibrated: flatter than the softmax as trained
    result = explain_prediction(model, item, None)
    (reading,) = read(model, [item])
    np.testing.assert_allclose(result.probabilities, reading.probabilities, rtol=1e-6)
    assert result.probabilities.max() < plain.max() and result.known
    # A threshold no picture reaches: every answer is "not a digit", and the report says so.
    model.meta.update(temperature=1.0, unknown_score="msp", unknown_below=1.5)
    result = explain_prediction(model, item, None, out_dir=tmp_path)
    best = str(int(np.argmax(result.probabilities)))
    assert not result.known and not read(model, [item])[0].known
    title = f"Why is this not a digit? (closest: {best})"
    assert title in result.files["report"].read_text()
