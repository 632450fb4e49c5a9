"""Optimizers and learning-rate schedules: exact update rules and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import CnnlabError


def pairs(*arrays: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(a, np.zeros_like(a)) for a in arrays]


def test_plain_sgd_step_is_w_minus_lr_g_exactly() -> None:
    w = np.array([1.0, -2.0, 0.5, 3.25])
    g = np.array([0.5, 0.25, -1.0, 0.1])
    params = pairs(w.copy())
    params[0][1][...] = g
    opt = cl.SGD(params, lr=0.1)
    opt.step()
    np.testing.assert_array_equal(params[0][0], w - 0.1 * g)
    opt.zero_grad()
    np.testing.assert_array_equal(params[0][1], 0)


def test_sgd_updates_in_place_and_float32_stays_float32() -> None:
    w = np.ones((2, 3), np.float32)
    params = pairs(w)
    params[0][1][...] = 2
    cl.SGD(params, lr=0.25, momentum=0.9).step()
    assert params[0][0] is w and w.dtype == np.float32
    np.testing.assert_array_equal(w, 0.5)


def test_sgd_momentum_by_hand() -> None:
    params = pairs(np.array([1.0]))
    w, g = params[0]
    opt = cl.SGD(params, lr=0.1, momentum=0.9)
    g[...] = 1.0
    opt.step()  # v = 1 → w = 1 − 0.1 = 0.9
    assert w[0] == pytest.approx(0.9)
    opt.step()  # v = 0.9·1 + 1 = 1.9 → w = 0.9 − 0.19 = 0.71
    assert w[0] == pytest.approx(0.71)


def test_sgd_nesterov_and_weight_decay_by_hand() -> None:
    params = pairs(np.array([2.0]))
    w, g = params[0]
    opt = cl.SGD(params, lr=0.1, momentum=0.5, weight_decay=0.5, nesterov=True)
    g[...] = 1.0
    opt.step()  # g' = 1 + 0.5·2 = 2; v = 2; step g' + 0.5·v = 3 → w = 2 − 0.3 = 1.7
    assert w[0] == pytest.approx(1.7)


def test_adam_first_step_is_lr_times_sign() -> None:
    # After one step m̂ = g and v̂ = g², so the update is lr·g/(|g| + ε) ≈ lr·sign(g).
    params = pairs(np.array([1.0, 1.0, 1.0]))
    params[0][1][...] = [3.0, -0.5, 1e-3]
    cl.Adam(params, lr=0.01, eps=1e-8).step()
    expected = 1 - 0.01 * np.array([3.0, -0.5, 1e-3]) / (np.abs([3.0, -0.5, 1e-3]) + 1e-8)
    np.testing.assert_allclose(params[0][0], expected, rtol=1e-15)


def test_optimizer_state_arrays_round_trip() -> None:
    rng = np.random.default_rng(0)
    for make in (
        lambda p: cl.SGD(p, lr=0.1, momentum=0.9),
        lambda p: cl.Adam(p, lr=0.01),
    ):
        params = pairs(rng.standard_normal((3, 2)), rng.standard_normal(4))
        opt = make(params)
        for _ in range(3):
            for _, g in params:
                g[...] = rng.standard_normal(g.shape)
            opt.step()
        other_params = [(p.copy(), g.copy()) for p, g in params]
        other = make(other_params)
        other.load_state_arrays([a.copy() for a in opt.state_arrays()], opt.step_count)
        opt.step()
        other.step()
        for (a, _), (b, _) in zip(params, other_params, strict=True):
            np.testing.assert_array_equal(a, b)
        with pytest.raises(CnnlabError, match="does not match"):
            other.load_state_arrays([np.zeros(1)], 1)


@pytest.mark.parametrize(
    "build,echo",
    [
        (lambda p: cl.SGD(p, lr=0), "got 0"),
        (lambda p: cl.SGD(p, lr=-0.1), "got -0.1"),
        (lambda p: cl.SGD(p, lr=float("nan")), "got nan"),
        (lambda p: cl.SGD(p, lr="0.1"), "got '0.1'"),
        (lambda p: cl.SGD(p, lr=0.1, momentum=-0.5), "got -0.5"),
        (lambda p: cl.SGD(p, lr=0.1, weight_decay=-1), "got -1"),
        (lambda p: cl.SGD(p, lr=0.1, nesterov=True), "momentum=0"),
        (lambda p: cl.Adam(p, lr=0), "got 0"),
        (lambda p: cl.Adam(p, betas=(1.0, 0.999)), "(1.0, 0.999)"),
        (lambda p: cl.Adam(p, betas=(0.9, -0.1)), "(0.9, -0.1)"),
        (lambda p: cl.Adam(p, betas=(0.9,)), "(0.9,)"),
        (lambda p: cl.Adam(p, eps=0), "got 0"),
        (lambda p: cl.Adam(p, weight_decay=-1e-4), "got -0.0001"),
        (lambda p: cl.SGD([], lr=0.1), "empty parameter list"),
        (lambda p: cl.SGD([(np.zeros(2), np.zeros(3))], lr=0.1), "pairs"),
    ],
)
def test_invalid_optimizer_arguments(build, echo) -> None:
    with pytest.raises(CnnlabError) as err:
        build(pairs(np.zeros(3)))
    assert echo in str(err.value)


def test_step_lr_values() -> None:
    s = cl.StepLR(0.1, step_size=10, gamma=0.5)
    assert [s(0), s(9), s(10), s(25)] == [0.1, 0.1, 0.05, 0.025]


def test_cosine_lr_values() -> None:
    s = cl.CosineLR(1.0, total_steps=100, min_lr=0.1)
    assert s(0) == pytest.approx(1.0)
    assert s(50) == pytest.approx(0.55)  # halfway: the mean of the two
    assert s(100) == pytest.approx(0.1)
    assert s(1000) == pytest.approx(0.1)  # flat afterwards
    assert s(25) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))


def test_warmup_values() -> None:
    s = cl.Warmup(cl.StepLR(1.0, 1000), steps=4)
    assert [s(0), s(1), s(3), s(10)] == [0.25, 0.5, 1.0, 1.0]


def test_one_cycle_lr_endpoints_and_shape() -> None:
    s = cl.OneCycleLR(1.0, total_steps=100, pct_start=0.3)
    assert s(0) == pytest.approx(1 / 25)
    assert s(99) == pytest.approx(1 / 25 / 1e4)
    values = [s(i) for i in range(100)]
    peak = int(np.argmax(values))
    assert values[peak] == pytest.approx(1.0)
    assert all(np.diff(values[: peak + 1]) > 0) and all(np.diff(values[peak:]) < 0)


@pytest.mark.parametrize(
    "build,echo",
    [
        (lambda: cl.StepLR(0.1, 0), "got 0"),
        (lambda: cl.StepLR(-1, 5), "got -1"),
        (lambda: cl.CosineLR(0.1, 0), "got 0"),
        (lambda: cl.OneCycleLR(0.1, 1), "got 1"),
        (lambda: cl.OneCycleLR(0.1, 100, pct_start=1.5), "got 1.5"),
        (lambda: cl.Warmup(cl.StepLR(0.1, 5), 0), "got 0"),
    ],
)
def test_invalid_schedule_arguments(build, echo) -> None:
    with pytest.raises(CnnlabError) as err:
        build()
    assert echo in str(err.value)
