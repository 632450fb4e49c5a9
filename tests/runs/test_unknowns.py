"""Calibration (temperature, ECE, reliability) and the "none of these" scores and answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.engine.errors import CnnlabError, NonFiniteError
from cnnlab.engine.layers import Dense, Flatten, ReLU, Softmax
from cnnlab.engine.sequential import Sequential
from cnnlab.figures import plots
from cnnlab.runs import unknowns


def test_ece_by_hand() -> None:
    # Two pictures at 0.9 (one right): bin (0.867, 0.933], gap 0.4, weight 2/4 → 0.2.
    # One at 0.6 (right): gap 0.4, weight 1/4 → 0.1. One at 0.7 (right): gap 0.3 → 0.075.
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    assert unknowns.ece(p, y) == pytest.approx(0.375)
    r = unknowns.reliability(p, y)
    assert r["count"].sum() == 4 and r["count"][13] == 2
    assert r["accuracy"][13] == 0.5 and r["confidence"][13] == pytest.approx(0.9)
    assert len(r["edges"]) == unknowns.BINS + 1
    # Perfectly calibrated by construction: every picture at 0.5 of two, half of them right.
    assert unknowns.ece(np.full((4, 2), 0.5), np.array([0, 1, 0, 1])) == 0


def test_the_fitted_temperature_undoes_a_known_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (20000, 5))
    p = np.exp(unknowns.log_softmax(true))
    labels = (rng.random((20000, 1)) > p.cumsum(1)).sum(1)  # drawn from softmax(true)
    t = unknowns.fit_temperature(true * 2.5, labels)  # a network 2.5 times too sure
    assert t == pytest.approx(2.5, rel=0.05)
    # ... and it is the minimum of the NLL, and calibration improves.
    for nearby in (t * 1.02, t / 1.02):
        assert unknowns.nll(true * 2.5, labels, nearby) > unknowns.nll(true * 2.5, labels, t)
    before = unknowns.ece(np.exp(unknowns.log_softmax(true * 2.5)), labels)
    after = unknowns.ece(np.exp(unknowns.log_softmax(true * 2.5, t)), labels)
    assert after < 0.02 < before


def test_the_prior_holds_the_temperature_near_1_when_few_pictures_are_wrong() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (150, 10))
    labels = logits.argmax(1)
    logits[labels == 0, 0] += 3  # sure of most, and of one wrong answer less so
    labels[0] = (labels[0] + 1) % 10
    alone = unknowns.fit_temperature(logits, labels, prior=np.inf)
    held = unknowns.fit_temperature(logits, labels)
    assert alone < held < 1

    # The minimum of the penalised cost, checked against its neighbours.
    def cost(t: float) -> float:
        return unknowns.nll(logits, labels, t) + np.log(t) ** 2 / (2 * 0.5**2 * 150)

    assert cost(held) < min(cost(held * 1.02), cost(held / 1.02))


def test_nll_and_energy_by_hand() -> None:
    logits = np.array([[np.log(3.0), 0.0]])  # softmax (0.75, 0.25)
    assert unknowns.nll(logits, np.array([0]), 1.0) == pytest.approx(-np.log(0.75))
    # T = 2: softmax of (log 3 / 2, 0) = (√3, 1) / (√3 + 1)
    assert unknowns.nll(logits, np.array([1]), 2.0) == pytest.approx(np.log(np.sqrt(3) + 1))
    assert unknowns.energy(logits)[0] == pytest.approx(np.log(4.0))
    assert unknowns.energy(logits, 2.0)[0] == pytest.approx(2 * np.log(np.sqrt(3) + 1))


def test_mahalanobis_by_hand() -> None:
    # Each class spreads ±1 along both axes around (1, 0) and (11, 0): covariance 0.5·I.
    spread = np.array([[-1.0, 0], [1, 0], [0, 1], [0, -1]])
    features = np.concatenate([spread + np.array([1, 0]), spread + np.array([11, 0])])
    labels = np.repeat([0, 1], 4)
    means, precision = unknowns.class_means(features, labels, 3)
    assert np.allclose(means[:2], [[1, 0], [11, 0]])
    assert np.allclose(means[2], features.mean(0))  # a class with no picture
    assert np.allclose(precision, 2 * np.eye(2), rtol=1e-5)
    score = unknowns.mahalanobis(np.array([[4.0, 0], [11, 1]]), means[:2], precision)
    assert np.allclose(score, [-18, -2], rtol=1e-5)  # 2·3² to class 0; 2·1² to class 1
    # Spread along x only, 4 pictures of 2 features: covariance diag(1, 0) shrunk by 2/6
    # towards its mean variance 0.5: diag(2/3 + 1/6, 1/6).
    _, precision = unknowns.class_means(np.array([[-1.0, 0], [1, 0]] * 2), np.zeros(4, int), 1)
    assert np.allclose(precision, np.diag([6 / 5, 6]), rtol=1e-5)


def test_cosine_by_hand() -> None:
    means = np.array([[2.0, 0], [0, 3]])  # directions (1, 0) and (0, 1); lengths do not count
    features = np.array([[5.0, 0], [1, 1], [3, 4], [0, 0]])
    # (5, 0) along class 0; (1, 1) 45° from both: 1/√2; (3, 4)/5 · (0, 1) = 0.8; none: 0.
    assert np.allclose(unknowns.cosine(features, means), [1, 1 / np.sqrt(2), 0.8, 0])


def _model(softmax: bool = False) -> Sequential:
    rng = np.random.default_rng(1)
    layers = [Flatten(), Dense(12, 6, rng=rng), ReLU(), Dense(6, 3, rng=rng)]
    return Sequential(layers + [Softmax()] * softmax, input_shape=(1, 3, 4))


def test_logits_and_features_are_the_last_dense_layers_output_and_input() -> None:
    x = np.random.default_rng(2).normal(size=(7, 1, 3, 4)).astype(np.float32)
    plain, with_softmax = _model(), _model(softmax=True)
    logits, features = unknowns.logits_and_features(plain, x, batch_size=3)
    assert logits.shape == (7, 3) and features.shape == (7, 6) and (features >= 0).all()
    assert np.allclose(logits, plain.outputs(x), atol=1e-5)
    again, _ = unknowns.logits_and_features(with_softmax, x)
    assert np.allclose(again, logits)
    with pytest.raises(NonFiniteError):
        unknowns.logits_and_features(plain, np.where(np.arange(7)[:, None, None, None] == 5,
                                                     np.float32(np.nan), x))  # fmt: skip
    with pytest.raises(CnnlabError, match="shape"):
        unknowns.logits_and_features(plain, x[:, :, :2])


def test_assess_without_calibration_is_the_softmax_and_all_known() -> None:
    model = _model()
    x = np.random.default_rng(3).normal(size=(5, 1, 3, 4)).astype(np.float32)
    p, known = unknowns.assess(model, x)
    assert np.array_equal(p, model.predict_proba(x)) and known.dtype == bool and known.all()


@pytest.mark.parametrize("method", unknowns.SCORES)
def test_calibrate_keeps_the_asked_share_of_validation_pictures(method: str) -> None:
    model = _model()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 1, 3, 4)).astype(np.float32)
    y = model.predict(x)
    y[:40] = (y[:40] + 1) % 3  # some wrong, so that the temperature is finite
    meta = unknowns.calibrate(model, x, y, method, keep=0.9)
    assert meta["unknown_score"] == method
    assert unknowns.T_RANGE[0] < meta["temperature"] < unknowns.T_RANGE[1]
    assert ("class_means" in meta) == (method in ("mahalanobis", "cosine"))
    assert ("feature_precision" in meta) == (method == "mahalanobis")
    model.meta.update(meta)
    p, known = unknowns.assess(model, x)
    assert known.mean() == pytest.approx(0.9, abs=0.01)
    assert np.array_equal(p.argmax(1), model.predict(x))  # calibration never changes the class
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    # Far from every training picture: unknown by every score.
    far = np.full((1, 1, 3, 4), 50.0, np.float32)
    if method == "mahalanobis":
        assert not unknowns.assess(model, far)[1][0]


def test_too_few_validation_pictures_set_no_threshold() -> None:
    model = _model()
    x = np.random.default_rng(5).normal(size=(unknowns.MIN_HELD - 1, 1, 3, 4)).astype(np.float32)
    y = model.predict(x)
    y[0] = (y[0] + 1) % 3
    meta = unknowns.calibrate(model, x, y)
    assert set(meta) == {"temperature"}
    model.meta.update(meta)
    far = np.full((1, 1, 3, 4), 50.0, np.float32)
    probabilities, known = unknowns.assess(model, np.concatenate([x, far]))
    assert known.all() and not np.allclose(probabilities[:-1], model.predict_proba(x), atol=1e-4)


def test_a_damaged_calibration_is_refused_in_one_line() -> None:
    model = _model()
    x = np.zeros((2, 1, 3, 4), np.float32)
    model.meta.update(temperature=0.0, unknown_score="msp", unknown_below=0.5)
    with pytest.raises(CnnlabError, match="train it again"):
        unknowns.assess(model, x)
    model.meta.update(temperature=1.0, unknown_score="mahalanobis", class_means=[[1, 2]])
    with pytest.raises(CnnlabError, match=r"\(3, 6\)"):
        unknowns.assess(model, x)
    model.meta.update(unknown_score="cosine", class_means=[[1, 2]])
    with pytest.raises(CnnlabError, match=r"\(3, 6\)"):
        unknowns.assess(model, x)
    with pytest.raises(CnnlabError, match="unknown score"):
        unknowns.calibrate(model, x, np.zeros(2, np.int64), "entropy")
    with pytest.raises(CnnlabError, match="labels"):
        unknowns.ece(np.full((2, 3), 1 / 3), np.array([0, 3]))


def test_the_reliability_diagram_is_drawn(tmp_path: Path) -> None:
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    bins = unknowns.reliability(p, y)
    path = plots.plot_reliability(bins, tmp_path / "r.png", before=bins)
    assert Image.open(path).size[0] > 100


@pytest.mark.slow
def test_a_digit_model_trained_the_default_way_says_not_a_digit_to_drawn_shapes(
    tmp_path: Path,
) -> None:
    from cnnlab.data import load
    from cnnlab.data.nondigits import nondigit_inputs
    from cnnlab.engine.train import to_input
    from cnnlab.runs import predict
    from cnnlab.runs.config import RunConfig
    from cnnlab.runs.folder import RunFolder
    from cnnlab.runs.pipeline import train_run

    config = RunConfig(subset=3000, epochs=4, val_fraction=0.2, seed=1)
    result = train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    model = result.model
    assert result.config.outlier_exposure > 0 and model.meta["unknown_score"] == "energy"
    shapes, _ = nondigit_inputs(60, seed=11, group="tune")
    answers = predict.read(model, shapes[:, None])
    flagged = np.mean([not r.known or r.unsure for r in answers])
    images, labels = load("mnist-sample", "test")
    digits = predict.read(model, to_input(images[:300]))
    kept = np.mean([r.known for r, y in zip(digits, labels, strict=False) if r.label == y])
    assert flagged >= 0.75, flagged
    assert kept >= 0.97, kept
