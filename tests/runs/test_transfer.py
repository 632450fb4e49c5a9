"""Starting a run from a trained model (cnnlab.runs.transfer): what is reused, converted, made
new and trained, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from picture_folders import write_picture_folder

import cnnlab as cl
from cnnlab.data.imageset import ImageSet
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Conv2D, Dense, Flatten
from cnnlab.runs import transfer
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import train_run
from cnnlab.runs.zoo import build


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def pictures(shape: tuple[int, int, int], classes: int = 4, n: int = 8) -> ImageSet:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = np.arange(n) % classes
    names = tuple(f"c{i}" for i in range(classes))
    return ImageSet("toy", names, x, y, x, y)


def test_a_grey_model_takes_colour_pictures_with_the_same_response_to_grey_ones() -> None:
    grey = build("default", seed=1, input_shape=(1, 28, 28), n_classes=10)
    colour, notes = transfer.adapt(grey, pictures((3, 28, 28)), seed=0)
    assert colour.input_shape == (3, 28, 28) and colour.layers[0].params["W"].shape[1] == 3
    assert notes[0] == "first convolution converted from 1 to 3 channels"
    x = np.random.default_rng(2).random((2, 1, 28, 28), dtype=np.float32)
    body = slice(0, len(colour.layers) - 1)  # all but the new head
    want = cl.Sequential(grey.layers[body], (1, 28, 28)).outputs(x)
    got = cl.Sequential(colour.layers[body], (3, 28, 28)).outputs(x.repeat(3, axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    back, _ = transfer.adapt(colour, pictures((1, 28, 28)), seed=0)  # colour → grey: summed
    np.testing.assert_allclose(back.layers[0].params["W"], grey.layers[0].params["W"], rtol=1e-6)


def test_the_head_is_new_for_the_new_classes_and_the_rest_is_reused() -> None:
    source = build("vgg", seed=1, input_shape=(3, 16, 16), n_classes=10)
    model, notes = transfer.adapt(source, pictures((3, 16, 16), classes=4), seed=0)
    assert model.output_shape() == (4,) and notes == ["new head: 128 features → 4 classes"]
    for mine, theirs in zip(model.layers[:-1], source.layers[:-1], strict=True):
        for key, value in theirs.params.items():
            np.testing.assert_array_equal(mine.params[key], value)
            assert mine.params[key] is not value  # a copy: the source stays as it was


def test_another_size_reuses_the_convolutions_and_makes_the_first_dense_layer_new() -> None:
    source = build("vgg", seed=1, input_shape=(3, 32, 32), n_classes=10)
    model, notes = transfer.adapt(source, pictures((3, 16, 16)), seed=0)
    assert "dense layer of 1024 inputs made new for 256" in notes
    np.testing.assert_array_equal(model.layers[0].params["W"], source.layers[0].params["W"])
    with pytest.raises(transfer.TransferError) as info:  # 8 → 4 → 0 under two 5×5 convolutions
        transfer.adapt(build("default", input_shape=(1, 28, 28)), pictures((1, 8, 8)), seed=0)
    assert "cannot take 8x8 grey pictures" in str(info.value) and "--image-size" in str(info.value)


def test_a_feature_extractor_without_a_dense_layer_gets_a_flatten_and_a_head() -> None:
    extractor = cl.Sequential([Conv2D(3, 4, 3, rng=0)], (3, 8, 8))
    model, _ = transfer.adapt(extractor, pictures((3, 8, 8), classes=2), seed=0)
    assert isinstance(model.layers[1], Flatten) and model.layers[2].in_features == 4 * 6 * 6


def test_channels_that_cannot_be_converted_are_refused_in_one_line() -> None:
    dense_first = cl.Sequential([Flatten(), Dense(64, 2, rng=0)], (1, 8, 8))
    with pytest.raises(transfer.TransferError, match="does not begin with a convolution"):
        transfer.adapt(dense_first, pictures((3, 8, 8)), seed=0, name="m")
    four = cl.Sequential([Conv2D(4, 2, 3, rng=0), Flatten(), Dense(72, 2, rng=0)], (4, 8, 8))
    with pytest.raises(transfer.TransferError, match="only grey and colour"):
        transfer.adapt(four, pictures((3, 8, 8)), seed=0)


def test_frozen_layers_leave_the_head_or_the_top_block_to_train() -> None:
    model = build("vgg", input_shape=(3, 16, 16), n_classes=3)
    kinds = [type(layer).__name__ for layer in model.layers]
    head, top = transfer.frozen_layers(model, "head"), transfer.frozen_layers(model, "top")
    assert kinds[head:] == ["Dense"] and kinds[top] == "Conv2D"
    assert "Conv2D" not in kinds[top + 1 :] and transfer.frozen_layers(model, "all") == 0


def test_a_dense_layer_made_new_trains_even_when_only_the_head_would() -> None:
    # A digit model on 16×16 colour pictures: its hidden dense layer no longer fits and is
    # made new; frozen, it would keep its random weights for ever.
    source = build("default", seed=1, input_shape=(1, 28, 28), n_classes=10)
    config = RunConfig(train_layers="head")
    model = transfer.start_from(source, pictures((3, 16, 16)), config)
    kinds = [type(layer).__name__ for layer in model.layers]
    new = kinds.index("Dense")  # the hidden dense layer, made new
    assert any("made new" in change for change in model.meta["from"]["changes"])
    assert model.meta["from"]["new_from"] == new
    assert transfer.frozen_layers(model, "head") == new < len(kinds) - 1
    assert transfer.frozen_layers(model, "top") == kinds.index("Conv2D", 1)
    # Where nothing is made new but the head, "head" leaves only the head to train.
    same = transfer.start_from(source, pictures((1, 28, 28)), config)
    assert transfer.frozen_layers(same, "head") == same.meta["from"]["new_from"]
    assert [type(layer).__name__ for layer in same.layers][same.meta["from"]["new_from"] :] == [
        "Dense"
    ]


def test_a_residual_network_trains_its_last_block_and_owns_its_copies() -> None:
    from cnnlab.engine.layers import Residual
    from cnnlab.runs.zoo import resnet18

    source = resnet18(seed=1, input_shape=(3, 32, 32), n_classes=None)
    model, _ = transfer.adapt(source, pictures((3, 32, 32), classes=2), seed=0)
    blocks = [i for i, layer in enumerate(model.layers) if isinstance(layer, Residual)]
    assert transfer.frozen_layers(model, "top") == blocks[-1]  # not the first convolution
    assert transfer.frozen_layers(model, "head") == len(model.layers) - 1
    mine, theirs = model.layers[blocks[-1]], source.layers[blocks[-1]]
    for key, value in mine.params.items():  # the block's arrays are its sub-layers', copied
        np.testing.assert_array_equal(value, theirs.params[key])
        assert value is not theirs.params[key]
    assert mine.params["body.0.W"] is mine.body[0].params["W"]


def test_bad_starting_points_are_one_line(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    data = pictures((3, 8, 8))
    config = RunConfig(dataset="shapes").resolve(8, "images", [2] * 4)
    for source, words in [
        (str(damaged), f"--from {damaged}: damaged or truncated model file"),
        (str(foreign), f"--from {foreign}: not a cnnlab model file"),
        (str(tmp_path / "missing.npz"), "no such model file or run folder"),
        ("no-such-name", "use one of scratch"),
    ]:
        with pytest.raises(CnnlabError) as info:
            transfer.start_from(source, data, config)
        assert words in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def folder_and_source(tmp_path: Path) -> tuple[Path, Path]:
    folder = write_picture_folder(tmp_path / "pictures", per_class=8)
    source = train_run(
        RunConfig(dataset=str(folder), image_size=12, epochs=1, seed=3),
        RunFolder.create(tmp_path / "source"),
        progress=False,
    )
    return folder, source.folder.path


def test_a_run_from_a_model_trains_only_its_head_and_records_where_it_came_from(
    tmp_path: Path, folder_and_source: tuple[Path, Path]
) -> None:
    folder, source = folder_and_source
    before = cl.Sequential.load(source / "model.npz")
    config = RunConfig(
        dataset=str(folder), image_size=12, epochs=2, start_from=str(source), augment=False
    )  # without augmentation the frozen layers' features are computed once
    result = train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    assert result.config.train_layers == "head"  # 6 pictures a class: only the head trains
    model = cl.Sequential.load(result.folder.model_file)
    for mine, theirs in zip(model.layers[:-1], before.layers[:-1], strict=True):
        for key, value in theirs.params.items():
            np.testing.assert_array_equal(mine.params[key], value)
        for key, value in theirs.buffers.items():  # batch norm ran as frozen: statistics kept
            np.testing.assert_array_equal(mine.buffers[key], value)
    assert not np.array_equal(model.layers[-1].params["W"], before.layers[-1].params["W"])
    # the frozen layers never received a gradient
    assert all(
        not grad.any() for layer in result.model.layers[:-1] for grad in layer.grads.values()
    )
    origin = model.meta["from"]
    assert origin["source"] == str((source / "model.npz").resolve())
    assert origin["dataset"] == before.meta["dataset"] and origin["trained"] == "head"
    record = json.loads(result.folder.config_file.read_text())
    assert record["start_from"] == str(source) and record["train_layers"] == "head"


def test_a_registered_starting_point_is_taken_by_name(
    tmp_path: Path, folder_and_source: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, source = folder_and_source
    monkeypatch.setattr(transfer, "_STARTS", {})
    transfer.register_start("toy", lambda: cl.Sequential.load(source / "model.npz"))
    assert transfer.starting_points() == ("scratch", "toy")
    config = RunConfig(
        dataset=str(folder), image_size=12, epochs=1, start_from="toy", train_layers="top",
        augment=True,
    )  # fmt: skip
    result = train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    assert result.model.meta["from"]["source"] == "toy"
    assert result.model.meta["from"]["trained"] == "top"
    top = transfer.frozen_layers(result.model, "top")
    assert not any(g.any() for layer in result.model.layers[:top] for g in layer.grads.values())
    before = cl.Sequential.load(source / "model.npz")
    for i, layer in enumerate(result.model.layers[:-1]):
        for key, value in layer.params.items():  # the top convolution trained, not the rest
            same = np.array_equal(value, before.layers[i].params[key])
            assert same is (i < top), (i, key)
    with pytest.raises(CnnlabError, match="plain name"):
        transfer.register_start("scratch", lambda: cl.Sequential.load(source / "model.npz"))


def test_a_stopped_run_from_a_model_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, folder_and_source: tuple[Path, Path]
) -> None:
    from cnnlab.engine.train import Callback
    from cnnlab.runs.pipeline import resume_run

    folder, source = folder_and_source
    config = RunConfig(
        dataset=str(folder), image_size=12, epochs=3, start_from=str(source),
        train_layers="top", patience=0,
    )  # fmt: skip
    straight = train_run(config, RunFolder.create(tmp_path / "straight"), progress=False)

    class Count(Callback):
        steps = 0

        def on_batch_end(self, state, logs) -> None:
            Count.steps += 1

    cut = train_run(
        config, RunFolder.create(tmp_path / "cut"), [Count()], lambda: Count.steps >= 4,
        progress=False,
    )  # fmt: skip
    assert cut.stopped
    resumed = resume_run(tmp_path / "cut", progress=False)
    expected = straight.model.state_arrays()
    for key, value in resumed.model.state_arrays().items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    assert resumed.model.meta["from"] == straight.model.meta["from"]
