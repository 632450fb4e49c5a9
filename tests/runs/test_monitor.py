"""GradientMonitor: gradient norms, update ratios, dead and saturated units, per epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnlab
from cnnlab.figures.plots import plot_gradient_flow
from cnnlab.runs.monitor import GradientMonitor


def tiny_data(rng: np.random.Generator, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, size=n)


def test_one_full_batch_epoch_matches_the_update_rule(rng: np.random.Generator) -> None:
    model = cnnlab.Sequential(
        [cnnlab.Dense(6, 5, rng=1), cnnlab.ReLU(), cnnlab.Dense(5, 3, rng=2)], input_shape=(6,)
    )
    w0 = [layer.params["W"].copy() for layer in (model.layers[0], model.layers[2])]
    b0 = [layer.params["b"].copy() for layer in (model.layers[0], model.layers[2])]
    x, y = tiny_data(rng)
    monitor = GradientMonitor(model)
    cnnlab.fit(
        model,
        cnnlab.CrossEntropyLoss(),
        cnnlab.SGD(model.parameters(), 0.1),
        x,
        y,
        epochs=1,
        batch_size=len(x),
        callbacks=[monitor],
    )
    record = monitor.records[0]
    assert record["epoch"] == 1
    assert [e["name"] for e in record["layers"]] == ["0.Dense", "1.ReLU", "2.Dense"]
    for entry, layer, w, b in zip(
        (record["layers"][0], record["layers"][2]),
        (model.layers[0], model.layers[2]),
        w0,
        b0,
        strict=True,
    ):
        step = np.sqrt(((layer.params["W"] - w) ** 2).sum() + ((layer.params["b"] - b) ** 2).sum())
        # One SGD step: Δθ = −η·g, so ‖g‖ = ‖Δθ‖/η and the ratio is ‖Δθ‖/‖θ_old‖.
        assert entry["grad_norm"] == pytest.approx(step / 0.1, rel=1e-5)
        old = np.sqrt((w**2).sum() + (b**2).sum())
        assert entry["update_ratio"] == pytest.approx(step / old, rel=1e-5)
    assert 0.0 <= record["layers"][1]["dead_fraction"] <= 1.0
    json.dumps(monitor.records)


def test_dead_relus_and_saturated_sigmoids_are_counted(rng: np.random.Generator) -> None:
    dead = cnnlab.Dense(6, 4, rng=1)
    dead.params["b"][...] = -100.0  # never positive: every ReLU after it is dead
    loud = cnnlab.Dense(6, 4, rng=1)
    loud.params["W"] *= 100.0  # huge inputs: sigmoid sits in its flat tails
    model = cnnlab.Sequential(
        [
            loud,
            cnnlab.Sigmoid(),
            cnnlab.Dense(4, 6, rng=3),
            dead,
            cnnlab.ReLU(),
            cnnlab.Dense(4, 3, rng=4),
        ],
        input_shape=(6,),
    )
    x, y = tiny_data(rng)
    monitor = GradientMonitor(model)
    cnnlab.fit(
        model,
        cnnlab.CrossEntropyLoss(),
        cnnlab.SGD(model.parameters(), 0.01),
        x,
        y,
        epochs=2,
        batch_size=8,
        callbacks=[monitor],
    )
    assert len(monitor.records) == 2
    layers = {e["name"]: e for e in monitor.records[1]["layers"]}
    assert layers["4.ReLU"]["dead_fraction"] == 1.0
    assert layers["1.Sigmoid"]["saturated_fraction"] > 0.8
    assert layers["3.Dense"]["grad_norm"] == 0.0  # no gradient flows back through dead units
    assert layers["5.Dense"]["grad_norm"] > 0.0
    assert len(monitor.batch_grad_norms) == 8


@pytest.mark.slow
def test_close_restores_the_layers_and_the_plot_is_written(rng, tmp_path) -> None:
    model = cnnlab.Sequential([cnnlab.Dense(6, 3, rng=1), cnnlab.Tanh()], input_shape=(6,))
    monitor = GradientMonitor(model)
    assert "backward" in model.layers[0].__dict__
    x, y = tiny_data(rng)
    cnnlab.fit(
        model,
        cnnlab.CrossEntropyLoss(),
        cnnlab.SGD(model.parameters(), 0.1),
        x,
        y,
        epochs=2,
        batch_size=16,
        callbacks=[monitor],
    )
    monitor.close()
    assert "backward" not in model.layers[0].__dict__
    path = plot_gradient_flow(monitor.records, tmp_path / "flow.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
