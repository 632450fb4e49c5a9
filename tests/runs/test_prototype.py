"""The prototype (nearest-class-mean) classifier on the extractor's features."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Dense
from cnnlab.engine.sequential import Sequential
from cnnlab.runs import predict, prototype
from cnnlab.runs.pretrain import PretrainRecipe, pretrain


def test_prototypes_are_the_normalised_means_of_normalised_features() -> None:
    features = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 1, 0, 1, 1])
    # class 0: (1, 0) and (1, 0) → (1, 0); class 1: (0, 1), (0, 1), (0.7071, 0.7071)
    # → mean (0.235702, 0.902369), length 0.932645 → (0.252724, 0.967538).
    protos = prototype.prototypes(features, labels, 2)
    assert np.allclose(protos, [[1.0, 0.0], [0.252724, 0.967538]], atol=1e-5)


def test_the_head_is_a_dense_layer_whose_answer_is_the_nearest_prototype() -> None:
    features = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    head = prototype.prototype_head(features, np.array([0, 1, 0]), 2)
    # Mean feature length (1 + 2 + 3) / 3 = 2: weights = prototypes · SCALE / 2.
    assert np.allclose(head.params["W"], [[5.0, 0.0], [0.0, 5.0]])
    assert np.allclose(head.params["b"], 0)
    assert np.allclose(head.forward(np.array([[0.0, 1.0]], np.float32)), [[0.0, 5.0]])


def test_the_threshold_of_none_of_these_leaves_each_example_out_by_hand() -> None:
    features = np.array([[1.0, 0], [2, 0], [0, 1], [1, 1]])
    labels = np.array([0, 0, 1, 1])
    # Class 0 without either example is the other, (1, 0): cosine 1. Class 1 without (0, 1)
    # is (1, 1)/√2, without (1, 1) is (0, 1): cosine 1/√2 both, as (1, 1) to class 0's (1, 0).
    # The farthest is 1 − 1/√2 from 1; the threshold a margin times that.
    far = 1 - 1 / np.sqrt(2)
    assert prototype.cosine_below(features, labels, 2, 1.0) == pytest.approx(1 - far)
    assert prototype.cosine_below(features, labels, 2, 2.0) == pytest.approx(1 - 2 * far)
    # A class of one example cannot leave it out: only the others count, and none when no class
    # has two.
    three = np.array([[1.0, 0], [2, 0], [0, 1]])
    assert prototype.cosine_below(three, np.array([0, 0, 1]), 2, 1.0) == pytest.approx(1.0)
    assert prototype.cosine_below(three[1:], np.array([0, 1]), 2) is None


def test_a_quantile_of_the_left_out_cosines_sets_the_threshold_by_hand() -> None:
    features = np.array([[1.0, 0], [2, 0], [0, 1], [1, 1]])
    labels = np.array([0, 0, 1, 1])
    # Each example's largest cosine, left out of its own class: 1, 1, 1/√2, 1/√2 (as above).
    # Their median is (1 + 1/√2) / 2; the lowest (quantile 0) is 1/√2.
    median = (1 + 1 / np.sqrt(2)) / 2
    assert prototype.cosine_below(features, labels, 2, 1.0, 0.5) == pytest.approx(median)
    assert prototype.cosine_below(features, labels, 2, 2.0, 0.5) == pytest.approx(
        1 - 2 * (1 - median)
    )
    assert prototype.cosine_below(features, labels, 2, 1.0, 0.0) == pytest.approx(1 / np.sqrt(2))


def test_a_network_without_held_out_pictures_says_none_of_these_from_its_own() -> None:
    # One Dense layer: its penultimate features are its inputs, so the threshold is the one
    # worked out by hand above, at the quantile and margin of a network's own pictures.
    features = np.array([[1.0, 0], [2, 0], [0, 1], [1, 1]], np.float32)
    labels = np.array([0, 0, 1, 1])
    model = Sequential([Dense(2, 2)], input_shape=(2,))
    meta = prototype.own_threshold(model, features, labels)
    low = 1 / np.sqrt(2)  # the lowest left-out cosine; quantile 0.02 of four lies on it
    assert meta["unknown_score"] == "cosine" and meta["temperature"] == 1.0
    expected = 1 - prototype.OWN_MARGIN * (1 - low)
    assert meta["unknown_below"] == pytest.approx(expected)
    assert np.allclose(meta["class_means"], prototype.prototypes(features, labels, 2))
    model.meta.update(meta, class_names=["a", "b"])
    # (1, 0.1) lies near class a; (−1, 0) points away from both prototypes.
    _, known = predict.assess(model, np.array([[1.0, 0.1], [-1.0, 0.0]], np.float32))
    assert known.tolist() == [True, False]
    # No class with two pictures: nothing to leave out, no threshold.
    assert prototype.own_threshold(model, features[1:3], np.array([0, 1])) == {}


def test_a_class_without_examples_is_a_one_line_error() -> None:
    with pytest.raises(CnnlabError, match="class 1 has none"):
        prototype.prototypes(np.ones((2, 3)), np.array([0, 2]), 3)


@pytest.fixture(scope="module")
def tiny_extractor():
    recipe = PretrainRecipe(
        fractal_classes=2, stroke_classes=2, per_class=4, outline_pictures=0, shapes_pictures=0,
        epochs=1, batch_size=8,
    )  # fmt: skip
    return pretrain(recipe)


def test_a_prototype_model_reads_grey_and_colour_and_keeps_the_extractors_input(
    tiny_extractor,
) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 1, 32, 32), dtype=np.uint8)
    images[3:] //= 4  # class 1 darker
    labels = np.array([0, 0, 0, 1, 1, 1])
    model = prototype.prototype_model(tiny_extractor, images, labels, ["light", "dark"])
    assert model.meta["class_names"] == ["light", "dark"]
    assert model.meta["head"] == "prototype" and model.meta["mean"] == tiny_extractor.meta["mean"]
    assert model.input_shape == (3, 32, 32)
    # "none of these" as a calibrated model says it: the cosine to the prototypes, a threshold
    # from the examples left out in turn.
    assert model.meta["unknown_score"] == "cosine" and model.meta["temperature"] == 1.0
    assert np.array(model.meta["class_means"]).shape == (2, 128)
    from cnnlab.runs.pretrain import extractor_input

    probs = np.asarray(model.predict_proba(extractor_input(tiny_extractor, images)))
    assert probs.shape == (6, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
