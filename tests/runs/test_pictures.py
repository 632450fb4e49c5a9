"""The picture door: every source becomes the same kind of ``Picture`` for a model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from explain_support import trained_small_cnn

import cnnlab as cl
from cnnlab.data.preprocess import preprocess_digit
from cnnlab.engine.errors import CnnlabError
from cnnlab.runs.pictures import needed, needed_by, read_picture


def digit_png(index: int = 0) -> bytes:
    """MNIST sample test digit ``index``, dark on light and 4× larger, as PNG bytes."""
    from PIL import Image

    images, _ = cl.data.load("mnist-sample", "test")
    buffer = io.BytesIO()
    Image.fromarray(255 - np.kron(images[index], np.ones((4, 4), np.uint8))).save(buffer, "PNG")
    return buffer.getvalue()


def colour_model() -> cl.Sequential:
    model = cl.Sequential([cl.Flatten(), cl.Dense(3 * 32 * 32, 3)], input_shape=(3, 32, 32))
    model.meta.update(kind="images", class_names=["a", "b", "c"], mean=[0.5] * 3, std=[0.25] * 3)
    return model


def test_a_file_and_its_bytes_give_the_same_picture(tmp_path) -> None:
    model = trained_small_cnn()
    (tmp_path / "seven.png").write_bytes(digit_png())
    from_path = read_picture(model, tmp_path / "seven.png")
    from_bytes = read_picture(model, digit_png())
    np.testing.assert_array_equal(from_path.x, from_bytes.x)
    assert from_path.x.shape == (1, 28, 28) and from_path.x.dtype == model.dtype
    assert from_path.size == (112, 112) and from_path.inverted and from_path.label is None
    assert next(iter(from_path.steps)) == "raw"
    assert from_path.source == str(tmp_path / "seven.png")
    assert from_bytes.source == "the picture"


def test_a_drawing_is_the_input_itself_or_preprocessed() -> None:
    model = trained_small_cnn()
    images, _ = cl.data.load("mnist-sample", "test")
    pixels = images[0] / 255.0
    taken = read_picture(model, pixels, preprocess=False)
    np.testing.assert_array_equal(taken.x[0], pixels.astype(np.float32))
    assert taken.steps.keys() == {"centred"} and taken.size == (28, 28)
    big = np.kron(1 - pixels, np.ones((3, 3)))  # 84×84, dark ink on light
    prepared = read_picture(model, big, preprocess=True)
    np.testing.assert_array_equal(prepared.x[0], preprocess_digit(big.astype(np.float32)).image)
    assert prepared.inverted and prepared.size == (84, 84)


@pytest.mark.parametrize(
    ("pixels", "preprocess", "words"),
    [
        (np.zeros((20, 28)), False, "must be 28×28, got 20×28"),
        (np.zeros((4, 40)), True, "must be 5×5 to 1024×1024"),
        (np.full((28, 28), 2.0), False, "finite numbers in [0, 1]"),
        (np.zeros(28), True, "2-D array"),
    ],
)
def test_a_drawing_that_cannot_be_one_is_refused(pixels, preprocess, words) -> None:
    with pytest.raises(CnnlabError, match=words.replace("[", r"\[").replace("]", r"\]")):
        read_picture(trained_small_cnn(), pixels, preprocess=preprocess)


def test_a_picture_model_reads_a_photo_and_refuses_a_drawing() -> None:
    model = colour_model()
    cat = read_picture(model, "photo:cat")
    assert cat.x.shape == (3, 32, 32) and cat.display.shape == (32, 32, 3)
    with pytest.raises(CnnlabError, match="a drawing is read by a model of 28x28 grey"):
        read_picture(model, np.zeros((28, 28)), preprocess=False)


def test_a_data_set_picture_carries_its_class_and_fits_its_models() -> None:
    digits = trained_small_cnn()
    seven = read_picture(digits, "mnist-sample:test:17")
    assert seven.label == 7 and seven.size == (28, 28)
    fits, words = needed("mnist-sample:test:17")
    assert fits(digits) and not fits(colour_model()) and words == "of mnist-sample's classes"
    fits, words = needed_by(["photo:cat", "seven.png"])
    assert words == "that reads pictures and that reads digits"
    assert not fits(digits) and not fits(colour_model())
    with pytest.raises(CnnlabError, match="pictures are 28x28 grey, but the model takes 32x32"):
        read_picture(colour_model(), "mnist-sample:test:17")
