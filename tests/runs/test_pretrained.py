"""Pretrained ResNet-18: a torchvision state dict saved as safetensors becomes a cnnlab feature
extractor computing what torchvision computes; the download is pinned, verified and cached
(through a local server, as the data downloads are tested); features come in batches."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from local_server import Routes, dead_url, serving
from resnet_checkpoint import NAME, write_checkpoint

from cnnlab.data.imageset import normalise
from cnnlab.data.safetensors import read_safetensors, write_safetensors
from cnnlab.engine.errors import CnnlabError
from cnnlab.runs import pretrained
from cnnlab.runs.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    features,
    is_cached,
    load_pretrained,
    resnet18_from_state,
    torchvision_arrays,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, np.ndarray]]:
    """A complete ResNet-18 checkpoint under torchvision's names, random weights and
    statistics, as the bytes of a safetensors file (and its arrays)."""
    path = tmp_path_factory.mktemp("checkpoint") / "model.safetensors"
    arrays = write_checkpoint(path)
    return path.read_bytes(), arrays


@pytest.fixture
def server() -> Iterator[Routes]:
    with serving() as httpd:
        yield httpd


@pytest.fixture
def published(checkpoint, server: Routes, monkeypatch: pytest.MonkeyPatch) -> Routes:
    """The test checkpoint served as ``model.safetensors`` and pinned as the published file."""
    data, _ = checkpoint
    server.routes["/model.safetensors"] = data
    pin = dataclasses.replace(
        pretrained.PRETRAINED[NAME], sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )
    monkeypatch.setitem(pretrained.PRETRAINED, NAME, pin)
    return server


def test_the_published_file_is_pinned_to_a_revision_and_a_hash() -> None:
    weights = pretrained.PRETRAINED[NAME]
    assert weights.url == (
        "https://huggingface.co/timm/resnet18.tv_in1k/resolve/"
        "bbd144b3e5565108aad885f145491d11bc6ce807/model.safetensors"
    )
    assert len(weights.sha256) == 64 and int(weights.sha256, 16) >= 0
    assert weights.licence.startswith("BSD-3-Clause")


def test_conversion_puts_every_array_in_place(checkpoint, tmp_path: Path) -> None:
    data, arrays = checkpoint
    (tmp_path / "m.safetensors").write_bytes(data)
    read, _ = read_safetensors(tmp_path / "m.safetensors")
    model = resnet18_from_state(read, "m.safetensors")
    assert model.output_shape() == (512,) and model.input_shape == (3, 112, 112)
    assert not model.training
    got = torchvision_arrays(model)
    assert set(got) == {name for name in arrays if not name.startswith("fc.")} - {
        name for name in arrays if name.endswith("num_batches_tracked")
    }
    for name, value in got.items():
        np.testing.assert_array_equal(value, arrays[name], err_msg=name)
    assert model.meta["mean"] == list(IMAGENET_MEAN) and model.meta["std"] == list(IMAGENET_STD)
    assert "class_names" not in model.meta  # a feature extractor, not a classifier
    with_head = resnet18_from_state(read, "m.safetensors", head=True)
    assert with_head.output_shape() == (1000,)
    np.testing.assert_array_equal(with_head.layers[-1].params["W"], arrays["fc.weight"])


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda a: a.pop("layer3.1.bn2.running_var"), "layer3.1.bn2.running_var is missing"),
        (
            lambda a: a.update({"layer5.0.conv1.weight": np.zeros(3, np.float32)}),
            "not a torchvision",
        ),
        (
            lambda a: a.update({"conv1.weight": np.zeros((64, 3, 3, 3), np.float32)}),
            r"needs float \(64, 3, 7, 7\)",
        ),
        (lambda a: a.update({"bn1.bias": np.full(64, np.nan, np.float32)}), "NaN"),
        (lambda a: a.update({"bn1.bias": np.zeros(64, np.int64)}), "needs float"),
    ],
)
def test_a_foreign_or_damaged_checkpoint_is_one_line(checkpoint, change, phrase: str) -> None:
    _, arrays = checkpoint
    arrays = dict(arrays)
    change(arrays)
    with pytest.raises(CnnlabError, match=phrase) as info:
        resnet18_from_state(arrays, "x.safetensors")
    assert "\n" not in str(info.value)


@pytest.mark.slow  # two 11-million-weight networks and torchvision's import
def test_torchvisions_resnet18_as_safetensors_computes_the_same(tmp_path: Path) -> None:
    """A random torchvision ResNet-18's state dict, written as safetensors (no pickle), read
    back and converted: the same 512 features as torchvision's network without its head."""
    torch = pytest.importorskip("torch")
    from torchvision_models import resnet18 as torchvision_resnet18

    reference = torchvision_resnet18(seed=6)
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    write_safetensors(tmp_path / "tv.safetensors", state)
    arrays, _ = read_safetensors(tmp_path / "tv.safetensors")
    model = resnet18_from_state(arrays, "tv.safetensors")
    reference.fc = torch.nn.Identity()
    pictures = np.random.default_rng(2).integers(0, 256, (3, 3, 112, 112), dtype=np.uint8)
    x = normalise(pictures, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = features(model, pictures)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4


# -- the download ------------------------------------------------------------------------------


def test_downloaded_once_then_read_from_the_cache(published: Routes, tmp_path: Path) -> None:
    assert not is_cached(NAME, tmp_path)
    model = load_pretrained(NAME, tmp_path, mirrors=[published.url], progress=False)
    assert published.requests == ["/model.safetensors"]
    assert is_cached(NAME, tmp_path)
    assert model.output_shape() == (512,) and model.meta["weights"] == NAME
    assert "resnet18.tv_in1k" in model.meta["source"]
    again = load_pretrained(NAME, tmp_path, input_size=64, mirrors=[published.url], progress=False)
    assert published.requests == ["/model.safetensors"]  # not fetched a second time
    assert again.input_shape == (3, 64, 64)
    assert sorted(p.name for p in (tmp_path / NAME).iterdir()) == ["model.safetensors"]


def test_without_a_network_one_line_offers_the_offline_features(
    published: Routes, tmp_path: Path
) -> None:
    with pytest.raises(CnnlabError) as info:
        load_pretrained(NAME, tmp_path, mirrors=[dead_url()], progress=False)
    message = str(info.value)
    assert "\n" not in message and "without a network connection" in message
    assert "offline features" in message and str(tmp_path / NAME / "model.safetensors") in message
    assert not is_cached(NAME, tmp_path)


def test_a_corrupted_download_is_refused_and_leaves_nothing(
    published: Routes, tmp_path: Path
) -> None:
    data = bytearray(published.routes["/model.safetensors"])
    data[len(data) // 2] ^= 0xFF
    published.routes["/model.safetensors"] = bytes(data)
    with pytest.raises(CnnlabError, match="checksum mismatch"):
        load_pretrained(NAME, tmp_path, mirrors=[published.url], progress=False)
    assert not (tmp_path / NAME).exists() or not list((tmp_path / NAME).iterdir())


def test_a_file_copied_by_hand_is_verified_too(published: Routes, tmp_path: Path) -> None:
    target = tmp_path / NAME / "model.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"something else")
    with pytest.raises(CnnlabError, match=r"not the published .*delete it and load again"):
        load_pretrained(NAME, tmp_path, mirrors=[published.url], progress=False)
    assert published.requests == []
    with pytest.raises(CnnlabError, match="input_size must be at most 512"):
        load_pretrained(NAME, tmp_path, input_size=1000)
    with pytest.raises(CnnlabError, match="unknown pretrained network 'resnet50'"):
        load_pretrained("resnet50", tmp_path)


# -- features ----------------------------------------------------------------------------------


def test_features_come_in_batches_normalised_as_the_meta_says(checkpoint, tmp_path: Path) -> None:
    _, arrays = checkpoint
    model = resnet18_from_state(dict(arrays), "m", input_shape=(3, 32, 32))
    pictures = np.random.default_rng(5).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    whole = features(model, pictures)
    assert whole.shape == (3, 512) and whole.dtype == np.float32
    expected = model.outputs(normalise(pictures, IMAGENET_MEAN, IMAGENET_STD))
    np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features(model, pictures, batch_size=2), whole, rtol=1e-5, atol=1e-6)
    grey = np.repeat(pictures[:, :1], 3, axis=1)  # R = G = B
    np.testing.assert_allclose(features(model, grey[:, :1]), features(model, grey), rtol=1e-6)
    with pytest.raises(CnnlabError, match=r"load them at 32×32 pixels"):
        features(model, pictures[:, :, :16, :16])
    with pytest.raises(CnnlabError, match="expected uint8 pictures"):
        features(model, pictures.astype(np.float32))
