"""What a model's meta says about its input is a user's file: checked before it is used."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.data.imageset import ImageSet
from cnnlab.engine.errors import CnnlabError
from cnnlab.runs.model_input import check_fits, class_index, class_names, prepare, reads_digits


def picture_model(**meta: object) -> cl.Sequential:
    """A 3-class colour model of 8×8 inputs with the given meta over sound defaults."""
    sound = {"kind": "images", "class_names": ["cat", "dog", "owl"], "mean": [0.5] * 3,
             "std": [0.25] * 3}  # fmt: skip
    return cl.Sequential(
        [cl.Flatten(), cl.Dense(3 * 8 * 8, 3)], input_shape=(3, 8, 8), meta={**sound, **meta}
    )


def test_sound_meta_prepares_pictures_and_names_classes() -> None:
    model = picture_model()
    assert class_names(model) == ["cat", "dog", "owl"]
    x = prepare(model, np.full((2, 3, 8, 8), 255, np.uint8))
    np.testing.assert_allclose(x, (1 - 0.5) / 0.25)
    assert class_names(picture_model(class_names=None)) == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({"class_names": ["cat", "dog"]}, "must be 3 printable names"),
        ({"class_names": "cat,dog,owl"}, "must be 3 printable names"),
        ({"class_names": 5}, "must be 3 printable names"),
        ({"class_names": ["cat", "dog", "x" * 500]}, "at most 100 characters"),
        ({"class_names": ["cat", {"a": 1}, "owl"]}, "must be 3 printable names"),
        ({"class_names": ["cat", "d\nFAKE: 100% owl", "owl"]}, "must be 3 printable names"),
        ({"class_names": ["\x1b]0;pwned\x07", "dog", "owl"]}, "must be 3 printable names"),
    ],
)
def test_bad_class_names_are_one_line(meta: dict, words: str) -> None:
    with pytest.raises(CnnlabError, match=words) as err:
        class_names(picture_model(**meta))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({"mean": [0.5, 0.5]}, "'mean' must be 3 finite"),
        ({"mean": ["a", "b", "c"]}, "'mean' must be 3 finite"),
        ({"mean": None}, "'mean' must be 3 finite"),
        ({"std": [0.2, 0.0, 0.2]}, "'std' must be 3 finite number\\(s\\), each at least 1e-6"),
        ({"std": [1e-300] * 3}, "'std' must be 3 finite number\\(s\\), each at least 1e-6"),
        ({"std": [0.2, float("nan"), 0.2]}, "'std' must be 3 finite"),
    ],
)
def test_bad_channel_statistics_are_one_line_never_nan(meta: dict, words: str) -> None:
    with pytest.raises(CnnlabError, match=words) as err:
        prepare(picture_model(**meta), np.zeros((1, 3, 8, 8), np.uint8))
    assert "\n" not in str(err.value)


def test_class_index_takes_a_name_or_an_index_and_lists_the_names_otherwise() -> None:
    names = ["cat", "dog", "7"]
    assert [class_index(names, text) for text in ("cat", "dog", "7", "0", "2")] == [0, 1, 2, 0, 2]
    for wrong in ("Cat", "cat ", "3", "-1", "bird"):
        with pytest.raises(CnnlabError) as err:
            class_index(names, wrong)
        assert str(err.value) == (
            f"{wrong!r} is not one of the model's classes; give a class name (cat, dog, 7) or an "
            "index from 0 to 2"
        )


def test_reads_digits_means_the_ten_digits_from_28x28_grey_pictures() -> None:
    named = cl.build("lenet5")
    named.meta["class_names"] = list("0123456789")
    clothes = cl.build("lenet5")
    clothes.meta.update(kind="digits", class_names=[f"c{i}" for i in range(10)])
    grey = cl.build("lenet5", input_shape=(1, 32, 32))
    colour = cl.build("lenet5", input_shape=(3, 28, 28))
    four = cl.build("lenet5", n_classes=4)
    assert reads_digits(cl.build("lenet5")) and reads_digits(named)
    assert not any(reads_digits(m) for m in (clothes, grey, colour, four))


def test_pictures_of_the_models_size_but_other_channels_are_named_by_colour_alone() -> None:
    grey = np.zeros((3, 1, 8, 8), np.uint8)
    folder = ImageSet("my-folder", ("cat", "dog", "owl"), grey, np.arange(3), grey, np.arange(3))
    with pytest.raises(CnnlabError) as err:
        check_fits(picture_model(), folder)
    assert str(err.value).startswith("the model takes colour pictures, but my-folder has grey ")
    small = ImageSet("small", ("cat", "dog", "owl"), grey[..., :4, :4], np.arange(3),
                     grey[..., :4, :4], np.arange(3))  # fmt: skip
    with pytest.raises(CnnlabError, match="takes 8x8 colour pictures, but small has 4x4 grey"):
        check_fits(picture_model(), small)
