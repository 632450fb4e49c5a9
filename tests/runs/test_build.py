"""The training augmentation a recipe asks for (cnnlab.runs.build.make_augment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnlab.data import load
from cnnlab.data.augment import random_handwriting
from cnnlab.engine.errors import CnnlabError
from cnnlab.runs import build
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import train_run
from cnnlab.runs.recipes import AUGMENT


def _digits(n: int = 64) -> np.ndarray:
    """(n, 1, 28, 28) uint8 digits of the bundled sample, as ``fit`` hands them to augment."""
    return load("mnist-sample", "train", progress=False)[0][:n, None]


def test_the_default_recipe_augments_and_the_fast_one_does_not() -> None:
    assert RunConfig().resolve(10_000).augment is True
    assert RunConfig(dataset="mnist").resolve(60_000).augment is True
    assert RunConfig(recipe="fast").resolve(60_000).augment is False
    assert build.make_augment(RunConfig(augment=False).resolve(100), "digits") is None


def test_the_recipe_distortion_is_seeded_finite_and_keeps_the_pixel_scale() -> None:
    augment = build.make_augment(RunConfig().resolve(10_000), "digits")
    images = _digits()
    a = augment(images, np.random.default_rng([0, 1, 2]))
    assert a.shape == images.shape and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 255 + 1e-3
    assert np.array_equal(a, augment(images, np.random.default_rng([0, 1, 2])))
    assert not np.array_equal(a, augment(images, np.random.default_rng([0, 1, 3])))
    expected = random_handwriting(images, np.random.default_rng([0, 1, 2]), **AUGMENT)
    assert np.array_equal(a, expected)
    # Part of the batch only: some digits come through untouched, most of the others do not.
    untouched = np.all(a == images, axis=(1, 2, 3))
    assert 0 < untouched.sum() < len(images)


@pytest.mark.slow
def test_training_distorts_every_batch_with_the_recipe_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def recording(images: np.ndarray, rng: np.random.Generator, **settings: Any) -> np.ndarray:
        calls.append(settings)
        return random_handwriting(images, rng, **settings)

    monkeypatch.setattr(build, "random_handwriting", recording)
    config = RunConfig(model="simple", subset=64, batch_size=16, epochs=1)
    train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    assert calls == [AUGMENT] * 5  # 64 digits and 16 generated non-digits, 16 a batch


def test_pictures_other_than_digits_are_cropped_and_jittered_and_only_colour_ones_mirrored() -> (
    None
):
    from cnnlab.data.augment import random_picture
    from cnnlab.runs.recipes import PICTURE_AUGMENT

    config = RunConfig(augment=True).resolve(100, "images")
    colour, grey = build.make_augment(config, "images", 3), build.make_augment(config, "images", 1)
    assert colour.func is random_picture and grey.func is random_picture
    assert colour.keywords == {**PICTURE_AUGMENT, "flip": True}
    assert grey.keywords == {**PICTURE_AUGMENT, "flip": False}


def test_a_folders_colour_pictures_also_get_other_channel_orders_and_grey_copies(
    tmp_path: Path,
) -> None:
    from cnnlab.runs.recipes import FOLDER_COLOUR_AUGMENT, PICTURE_AUGMENT

    config = RunConfig(dataset=str(tmp_path), augment=True, start_from="extractor").resolve(
        100, "images"
    )
    colour, grey = build.make_augment(config, "images", 3), build.make_augment(config, "images", 1)
    assert colour.keywords == {**PICTURE_AUGMENT, **FOLDER_COLOUR_AUGMENT, "flip": True}
    assert FOLDER_COLOUR_AUGMENT == {"permute": 0.5, "grey": 0.2}
    assert grey.keywords == {**PICTURE_AUGMENT, "flip": False}  # nothing to reorder
    told = build.make_augment(config, "images", 3, colour_tells=True)
    assert told.keywords == {**PICTURE_AUGMENT, "flip": True}  # colours kept: they tell
    scratch = RunConfig(dataset=str(tmp_path), augment=True, start_from="scratch")
    from_scratch = build.make_augment(scratch.resolve(100, "images"), "images", 3)
    assert from_scratch.keywords == {**PICTURE_AUGMENT, "flip": True}  # only started networks


@pytest.mark.parametrize("kind", ["device", "fifo", "big"])
def test_an_architecture_file_that_is_no_small_regular_file_is_one_line(
    tmp_path: Path, kind: str
) -> None:
    import os

    path = tmp_path / "arch.json"
    if kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("[" + " " * (2 << 20) + "]")
    with pytest.raises(CnnlabError, match=r"not a regular file|more than 1,048,576 bytes") as info:
        build.make_model(RunConfig(model=str(path)), None)
    assert "\n" not in str(info.value)


def test_an_image_size_the_preset_cannot_train_at_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from picture_folders import write_picture_folder

    from cnnlab.data import folders

    write_picture_folder(tmp_path / "pics", per_class=2)
    monkeypatch.setattr(folders, "decode", lambda *a: pytest.fail("decoded anyway"))
    config = RunConfig(dataset=str(tmp_path / "pics"), image_size=512, model="vgg")
    with pytest.raises(CnnlabError, match=r"--image-size 512 is too large for the vgg model"):
        train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()  # removed again: nothing was written
    monkeypatch.setattr(build, "memory_budget", lambda: 400 << 20)  # as under ulimit -v
    with pytest.raises(CnnlabError, match=r"batch size 64 on this machine; choose") as info:
        build.check_image_size(RunConfig(dataset="shapes", image_size=224, model="vgg"))
    largest = int(str(info.value).split("--image-size ")[-1].split()[0])
    assert 32 < largest < 224
    build.check_image_size(RunConfig(dataset="shapes", image_size=largest, model="vgg"))
