"""Losses: hand-computed values and gradients, float64 gradient checks, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import CnnlabError
from cnnlab.engine.gradcheck import mismatch, numerical_grad
from cnnlab.engine.losses import one_hot

# The article's prediction for an image of an 8 (index 8 is the target).
ARTICLE_PREDICTION = np.array([0, 0.25, 0.05, 0, 0, 0, 0, 0.7, 0, 0])


def test_mse_article_example() -> None:
    loss_fn = cl.MSELoss()
    loss = loss_fn.forward(ARTICLE_PREDICTION[None], np.array([8]))
    # ½ (0.25² + 0.05² + 0.7² + (0 − 1)²) = ½ (0.0625 + 0.0025 + 0.49 + 1) = 0.7775
    assert loss == pytest.approx(0.7775, rel=1e-14)
    target = np.zeros(10)
    target[8] = 1
    np.testing.assert_allclose(loss_fn.backward()[0], ARTICLE_PREDICTION - target, rtol=1e-15)


def test_mse_is_mean_over_batch_of_half_squared_error() -> None:
    outputs = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.6]])
    labels = np.array([0, 0, 1])
    loss_fn = cl.MSELoss()
    # sample 0: ½(0.25 + 0.25) = 0.25; sample 1: 0; sample 2: ½(0.04 + 0.16) = 0.1 → mean 0.35/3
    assert loss_fn.forward(outputs, labels) == pytest.approx(0.35 / 3, rel=1e-14)
    expected = (outputs - np.array([[1, 0], [1, 0], [0, 1]])) / 3
    np.testing.assert_allclose(loss_fn.backward(), expected, rtol=1e-15)


def test_cross_entropy_known_logits() -> None:
    logits = np.array([[0.0, math.log(2), math.log(3)]] * 2)
    loss_fn = cl.CrossEntropyLoss()
    # softmax = [1/6, 2/6, 3/6]: −log(3/6) = ln 2 for label 2, −log(1/6) = ln 6 for label 0
    loss = loss_fn.forward(logits, np.array([2, 0]))
    assert loss == pytest.approx((math.log(2) + math.log(6)) / 2, rel=1e-14)
    p = np.array([1, 2, 3]) / 6
    np.testing.assert_allclose(
        loss_fn.backward(), [(p - [0, 0, 1]) / 2, (p - [1, 0, 0]) / 2], rtol=1e-14
    )


def test_cross_entropy_label_smoothing_by_hand() -> None:
    """ε = 0.3 over K = 3 classes: the target for label 2 is [0.1, 0.1, 0.8]."""
    logits = np.array([[0.0, math.log(2), math.log(3)]])
    loss_fn = cl.CrossEntropyLoss(label_smoothing=0.3)
    target = np.array([0.1, 0.1, 0.8])
    p = np.array([1, 2, 3]) / 6
    loss = loss_fn.forward(logits, np.array([2]))
    assert loss == pytest.approx(-(target * np.log(p)).sum(), rel=1e-14)
    np.testing.assert_allclose(loss_fn.backward(), [p - target], rtol=1e-14)
    assert repr(loss_fn) == "CrossEntropyLoss(label_smoothing=0.3)"


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.1", None])
def test_cross_entropy_refuses_bad_label_smoothing(bad) -> None:
    with pytest.raises(CnnlabError, match=r"CrossEntropyLoss: label_smoothing must be in \[0, 1\)"):
        cl.CrossEntropyLoss(label_smoothing=bad)


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    loss_fn = cl.CrossEntropyLoss()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = loss_fn.forward(np.array([[1000.0, 0.0, -1000.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0)
    np.testing.assert_allclose(loss_fn.backward(), [[1, -1, 0]], atol=1e-300)


def test_cross_entropy_of_a_certain_hit_is_plus_zero() -> None:
    # Seen as "loss 23.7 → -0" in cnnlab step: log(1) = 0, negated, is -0.0.
    loss = cl.CrossEntropyLoss().forward(np.array([[0.0, -1000.0]]), np.array([0]))
    assert loss == 0.0 and math.copysign(1.0, loss) == 1.0
    assert f"{loss:.6g}" == "0"


def test_loss_keeps_dtype() -> None:
    for fn in (cl.CrossEntropyLoss(), cl.MSELoss()):
        out = np.random.default_rng(0).random((4, 3)).astype(np.float32)
        assert isinstance(fn.forward(out, np.array([0, 1, 2, 0])), float)
        grad = fn.backward()
        assert grad.dtype == np.float32 and grad.shape == (4, 3)


def test_one_hot() -> None:
    np.testing.assert_array_equal(one_hot(np.array([8]), 10)[0], np.eye(10)[8])


@pytest.mark.parametrize(
    "make", [cl.CrossEntropyLoss, lambda: cl.CrossEntropyLoss(label_smoothing=0.2), cl.MSELoss]
)
def test_gradcheck_loss(make, rng) -> None:
    outputs = rng.standard_normal((5, 4)) * 2
    labels = rng.integers(0, 4, 5)
    loss_fn = make()
    loss_fn.forward(outputs, labels)
    grad = np.array(loss_fn.backward())
    numeric = numerical_grad(lambda: loss_fn.forward(outputs, labels), outputs)
    assert not mismatch(repr(loss_fn), grad, numeric, 1e-7)


def test_gradcheck_softmax_then_mse(rng) -> None:
    # The article's pairing: probabilities from a Softmax layer, then the squared error.
    softmax, loss_fn = cl.Softmax(dtype=np.float64), cl.MSELoss()
    x, labels = rng.standard_normal((4, 6)), rng.integers(0, 6, 4)
    loss_fn.forward(softmax.forward(x), labels)
    dx = softmax.backward(loss_fn.backward())
    numeric = numerical_grad(lambda: loss_fn.forward(softmax.forward(x), labels), x)
    assert not mismatch("softmax+mse", dx, numeric)


@pytest.mark.parametrize("loss_cls", [cl.CrossEntropyLoss, cl.MSELoss])
def test_loss_bad_input(loss_cls) -> None:
    fn = loss_cls()
    name = loss_cls.__name__
    out = np.zeros((3, 4), np.float32)
    with pytest.raises(CnnlabError, match=rf"{name}.*\(N, K\).*\(3, 4, 1\)"):
        fn.forward(out[..., None], np.array([0, 1, 2]))
    with pytest.raises(CnnlabError, match=rf"{name}.*\(3,\).*\(2,\)"):
        fn.forward(out, np.array([0, 1]))
    with pytest.raises(CnnlabError, match=rf"{name}.*integers.*float"):
        fn.forward(out, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(CnnlabError, match=rf"{name}.*\[0, 3\].*from 0 to 4"):
        fn.forward(out, np.array([0, 4, 1]))
    with pytest.raises(CnnlabError, match=rf"{name}.*from -1"):
        fn.forward(out, np.array([0, -1, 1]))
    bad = out.copy()
    bad[1, 2] = np.nan
    with pytest.raises(CnnlabError, match=rf"{name}.*NaN or inf"):
        fn.forward(bad, np.array([0, 1, 2]))


def test_outlier_exposure_by_hand() -> None:
    """Label 2 on softmax [1/6, 2/6, 3/6], and a picture of none on the same logits, weight
    0.5: ln 2 + 0.5 · (−mean log p) = ln 2 + 0.5 · (ln 6 + ln 3 + ln 2) / 3."""
    logits = np.array([[0.0, math.log(2), math.log(3)]] * 2)
    loss_fn = cl.OutlierExposureLoss(cl.CrossEntropyLoss(), weight=0.5)
    loss = loss_fn.forward(logits, np.array([2, -1]))
    assert loss == pytest.approx(math.log(2) + 0.5 * math.log(36) / 3, rel=1e-14)
    p = np.array([1, 2, 3]) / 6
    np.testing.assert_allclose(loss_fn.backward(), [p - [0, 0, 1], 0.5 * (p - 1 / 3)], rtol=1e-14)
    # Only pictures of a class: plain cross-entropy; only pictures of none: the uniform pull.
    assert loss_fn.forward(logits, np.array([2, 0])) == cl.CrossEntropyLoss().forward(
        logits, np.array([2, 0])
    )
    assert loss_fn.forward(np.zeros((3, 4)), np.array([-1, -1, -1])) == pytest.approx(
        0.5 * math.log(4)
    )
    np.testing.assert_allclose(loss_fn.backward(), 0, atol=1e-15)  # uniform already
    assert repr(loss_fn) == "OutlierExposureLoss(CrossEntropyLoss(), weight=0.5)"


def test_outlier_exposure_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (6, 4))
    labels = np.array([0, -1, 3, -1, -1, 1])
    loss_fn = cl.OutlierExposureLoss(cl.CrossEntropyLoss(label_smoothing=0.1), weight=0.7)
    loss_fn.forward(logits, labels)
    analytic = loss_fn.backward()
    numeric = numerical_grad(lambda: loss_fn.forward(logits, labels), logits)
    assert not mismatch("dlogits", analytic, numeric)


def test_outlier_exposure_refuses_other_labels_and_bases() -> None:
    loss_fn = cl.OutlierExposureLoss(cl.CrossEntropyLoss())
    with pytest.raises(CnnlabError, match=r"labels must be in \[0, 2\]"):
        loss_fn.forward(np.zeros((2, 3)), np.array([0, -2]))
    with pytest.raises(CnnlabError, match="base must be a CrossEntropyLoss, got MSELoss"):
        cl.OutlierExposureLoss(cl.MSELoss())
    with pytest.raises(CnnlabError, match="weight"):
        cl.OutlierExposureLoss(cl.CrossEntropyLoss(), weight=-1)
