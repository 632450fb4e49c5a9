"""``--from resnet18-imagenet``: a folder fine-tuned from the published ResNet-18, downloaded once
through the pinned URL (here a local server holding a checkpoint the tests write), at its own
picture size, its head alone or its top block as the data's size says; and without a network,
or with a file that is not the published one, one line that offers the offline extractor and
leaves no run folder behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from local_server import Routes, dead_url, serving
from picture_folders import write_picture_folder
from resnet_checkpoint import NAME, pin_to, write_checkpoint

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Residual
from cnnlab.runs import sizing, transfer
from cnnlab.runs.build import check_image_size
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import RunCallback, RunStart, train_run
from cnnlab.runs.pretrained import IMAGENET_MEAN, IMAGENET_STD, is_cached, weights_path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("checkpoint") / "model.safetensors"
    arrays = write_checkpoint(path, seed=4)
    return path.read_bytes(), arrays


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes of 6 colour pictures: every class under 30, so only the head trains."""
    return write_picture_folder(tmp_path_factory.mktemp("folder") / "scenes", per_class=6)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)


@pytest.fixture
def hub(checkpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Routes]:
    """A server holding the test checkpoint where the pinned URL points, pinned to its hash."""
    data, _ = checkpoint
    with serving() as server:
        server.routes[pin_to(server, data, monkeypatch)] = data
        yield server


class Plan(RunCallback):
    line = ""

    def on_run_begin(self, run: RunStart) -> None:
        Plan.line = run.plan


def test_a_published_network_is_a_starting_point_sized_for_speed(pictures: Path) -> None:
    assert NAME in transfer.starting_points()
    assert sizing.layers_to_train(10, NAME) == "head"
    assert sizing.layers_to_train(100, NAME) == sizing.layers_to_train(5000, NAME) == "top"
    assert sizing.start_image_size("my/folder", NAME) == 112
    assert sizing.start_image_size("cifar10", NAME) is None  # a named set keeps its size
    assert sizing.start_image_size("my/folder", "extractor") is None
    # its own layers are checked at the size asked, not the recipe's preset (vgg)
    check_image_size(RunConfig(dataset=str(pictures), image_size=300, start_from=NAME))
    with pytest.raises(CnnlabError, match="too large for the vgg model"):
        check_image_size(RunConfig(dataset=str(pictures), image_size=300, start_from="scratch"))


@pytest.mark.slow  # converts and runs an 11-million-weight network
def test_a_folder_trains_its_head_on_features_of_the_downloaded_network(
    hub: Routes, checkpoint, pictures: Path, tmp_path: Path
) -> None:
    _, arrays = checkpoint
    config = RunConfig(dataset=str(pictures), start_from=NAME, epochs=2)
    result = train_run(config, RunFolder.create(tmp_path / "run"), [Plan()], progress=False)
    assert len(hub.requests) == 1 and is_cached(NAME)
    assert "from resnet18-imagenet at 112×112 pixels, training head" in Plan.line
    # 112 pixels, the head alone, on features computed once (nothing augmented)
    resolved = result.config
    assert (resolved.image_size, resolved.train_layers, resolved.augment) == (112, "head", False)
    model = cl.Sequential.load(result.folder.model_file)
    assert model.input_shape == (3, 112, 112) and model.output_shape() == (3,)
    np.testing.assert_array_equal(model.layers[0].params["W"], arrays["conv1.weight"])
    last = [layer for layer in model.layers if isinstance(layer, Residual)][-1]
    # the frozen body kept its statistics as published
    np.testing.assert_array_equal(
        last.body[4].buffers["running_var"], arrays["layer4.1.bn2.running_var"]
    )
    origin = model.meta["from"]
    assert origin["source"] == NAME and origin["trained"] == "head"
    assert origin["dataset"] == "ImageNet-1k" and origin["licence"].startswith("BSD-3-Clause")
    assert origin["weights"].startswith(hub.url) and "resnet18.tv_in1k" in origin["weights"]
    assert "IMAGENET1K_V1" in origin["weights"]
    assert model.meta["mean"] == list(IMAGENET_MEAN) and model.meta["std"] == list(IMAGENET_STD)
    # a second run reads the cache
    again = RunConfig(dataset=str(pictures), start_from=NAME, epochs=1, image_size=32)
    train_run(again, RunFolder.create(tmp_path / "again"), progress=False)
    assert len(hub.requests) == 1


@pytest.mark.slow  # converts and fine-tunes an 11-million-weight network
def test_with_more_pictures_its_last_residual_block_trains_too(
    hub: Routes, checkpoint, pictures: Path, tmp_path: Path
) -> None:
    _, arrays = checkpoint
    config = RunConfig(
        dataset=str(pictures), start_from=NAME, epochs=1, image_size=32, train_layers="top"
    )
    result = train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    model = result.model
    top = transfer.frozen_layers(model, "top")
    blocks = [i for i, layer in enumerate(model.layers) if isinstance(layer, Residual)]
    assert top == blocks[-1]  # layer4.1, the pooling and the head train
    assert result.config.augment  # a folder is augmented when more than the head trains
    np.testing.assert_array_equal(
        model.layers[top - 1].body[0].params["W"], arrays["layer4.0.conv1.weight"]
    )
    assert not np.array_equal(
        model.layers[top].body[0].params["W"], arrays["layer4.1.conv1.weight"]
    )


def test_without_a_network_one_line_offers_the_offline_extractor_and_leaves_no_run(
    pictures: Path, checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    pin_to(dead_url(), checkpoint[0], monkeypatch)
    monkeypatch.chdir(tmp_path)  # runs/<timestamp> is made here, and must go again
    assert main(["train", "--dataset", str(pictures), "--from", NAME, "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert "resnet18-imagenet: could not download model.safetensors" in error
    assert "without a network connection" in error and "(--from extractor)" in error
    assert not is_cached(NAME)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # it stopped before decoding a picture: the cache holds no decoded folder
    assert not (tmp_path / "cache" / "cnnlab" / "folders").exists()


def test_a_download_that_is_not_the_published_file_is_refused_in_one_line(
    hub: Routes, pictures: Path, tmp_path: Path, capsys
) -> None:
    path = next(iter(hub.routes))
    damaged = bytearray(hub.routes[path])
    damaged[len(damaged) // 3] ^= 0x55
    hub.routes[path] = bytes(damaged)
    out = tmp_path / "run"
    args = ["train", "--dataset", str(pictures), "--from", NAME, "--out", str(out), "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "checksum mismatch" in error  # --quiet: no download bar
    assert "(--from extractor)" in error
    assert not out.exists() and not is_cached(NAME)
    assert not weights_path(NAME).parent.exists() or not any(weights_path(NAME).parent.iterdir())
    # a file put in the cache by hand is checked too
    weights_path(NAME).parent.mkdir(parents=True, exist_ok=True)
    weights_path(NAME).write_bytes(b"not the published file")
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not the published" in error
    assert "(--from extractor)" in error and not out.exists()
