"""A cnnlab model reads real-world pictures of digits once they go through the MNIST pipeline.

The pictures come from ``tests/digits_wild.py``: printed digits in many fonts and sizes and
MNIST handwriting re-photographed (large, either polarity, colour, noise, gradients, JPEG).
"""

from __future__ import annotations

import numpy as np
import pytest
from digits_wild import make_wild_digits

import cnnlab as cl
from cnnlab.data import load
from cnnlab.data.augment import random_affine
from cnnlab.data.preprocess import load_image, naive_resize, preprocess_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> cl.Sequential:
    """LeNet-5 trained on the bundled sample with small shifts and rotations, as `--augment`."""
    images, labels = load("mnist-sample", "train")
    model = cl.build("lenet5", seed=0)
    x, y = cl.to_input(images), labels.astype(np.int64)
    epochs, batch = 4, 64
    steps = epochs * -(-len(x) // batch)
    cl.fit(
        model,
        cl.CrossEntropyLoss(),
        cl.Adam(model.parameters(), lr=3e-3),
        x,
        y,
        epochs=epochs,
        batch_size=batch,
        seed=0,
        schedule=cl.OneCycleLR(3e-3, steps),
        augment=lambda batch_x, rng: random_affine(batch_x, rng),
    )
    return model.eval()


@pytest.fixture(scope="module")
def wild() -> list[tuple[bytes, int, str]]:
    return make_wild_digits(20, seed=7)  # 200 pictures


def test_pipeline_reads_real_world_pictures(model: cl.Sequential, wild: list) -> None:
    inputs = np.stack([preprocess_file(data).image for data, _, _ in wild])[:, None]
    labels = np.array([label for _, label, _ in wild])
    pipeline = float((model.predict(inputs) == labels).mean())

    naive = np.stack([naive_resize(load_image(data)) for data, _, _ in wild])[:, None]
    baseline = float((model.predict(naive.astype(np.float32)) == labels).mean())

    assert pipeline >= 0.95, f"pipeline read {pipeline:.1%} of the wild pictures"
    assert baseline <= 0.5, f"a naive resize read {baseline:.1%}: the wild set is too easy"


def test_both_polarities_and_both_kinds_are_read(model: cl.Sequential, wild: list) -> None:
    results: dict[tuple[bool, str], list[bool]] = {}
    for data, label, description in wild:
        prepared = preprocess_file(data)
        kind = description.split()[0]  # "printed" or "handwritten"
        correct = bool(model.predict(prepared.image[None, None])[0] == label)
        results.setdefault((prepared.inverted, kind), []).append(correct)
    assert {kind for _, kind in results} == {"printed", "handwritten"}
    assert {inverted for inverted, _ in results} == {True, False}
    for key, hits in results.items():
        assert np.mean(hits) >= 0.9, f"{key}: {np.mean(hits):.1%} of {len(hits)}"
