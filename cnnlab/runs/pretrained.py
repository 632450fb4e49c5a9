"""Published pretrained networks: fetched once, verified, and made cnnlab models.

``resnet18-imagenet`` is torchvision's ResNet-18 trained on ImageNet-1k (its ``IMAGENET1K_V1``
weights, BSD-3-Clause, as torchvision publishes them), in the safetensors copy that the timm
project keeps on the Hugging Face Hub (``timm/resnet18.tv_in1k``). The file is pinned to one
revision of that repository and to its SHA-256: ``load_pretrained`` downloads it once into
cnnlab's cache (atomically; a file whose hash differs is never stored) and reads it with NumPy
alone (``cnnlab.data.safetensors``), no pickle and no PyTorch.

The model made from it is a class-free feature extractor: the 1000-class ImageNet head is
dropped, so it gives 512 numbers a picture, for a new head trained on a person's own classes.
Its ``meta`` records the input it expects (RGB, ``(pixel / 255 − mean) / std`` with ImageNet's
mean and std) and where its weights came from. ``features(model, pictures)`` runs it over
pictures in batches. It works at any input size; 112×112 is the default, a quarter of the
computation of the 224×224 it was trained at.

Each published network is also a starting point of a training run (registered in
:mod:`cnnlab.runs.transfer`): ``cnnlab train --dataset FOLDER --from resnet18-imagenet``
downloads the file the first time, loads the folder at 112×112 pixels unless ``--image-size``
says otherwise, and trains a new head on its features (computed once) below 30 pictures a
class, its last residual block and the head above (:mod:`cnnlab.runs.sizing`). The run's
model records in ``meta["from"]`` the starting point, its ``weights`` (the pinned URL and what
they are), their ``licence``, the data set they learnt from and the normalisation its pictures
keep. Without a network, or when the file is not the published one, the run stops before
writing anything with one line that offers cnnlab's offline extractor (``--from extractor``).
Teach offers a network only once its file is in the cache.

Source and licence: the weights are torchvision's, published under torchvision's
BSD-3-Clause licence (copyright Soumith Chintala, 2016), in the copy the timm project keeps on
the Hugging Face Hub under the same licence; cnnlab downloads them from there and ships none
of them. They were learnt from ImageNet-1k, whose pictures come with their own terms of use
(non-commercial research); whether those reach a network trained on them is for its user to
judge.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data import download
from cnnlab.data.imageset import normalise
from cnnlab.data.safetensors import read_safetensors
from cnnlab.engine import validate
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Conv2D, Dense, Layer, Residual
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.zoo import resnet18

# The per-channel statistics of ImageNet's training pictures, as torchvision normalises them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_SIZE = 112  # pixels a side: the default input of the feature extractor
MAX_INPUT_SIZE = 512
OFFLINE_START = "extractor"  # the starting point that needs no download (runs/pretrain.py)


@dataclass(frozen=True)
class PretrainedWeights:
    """One published checkpoint: where it is, pinned to a revision, and what it must hash to."""

    name: str
    repository: str  # on the Hugging Face Hub
    revision: str  # the commit of that repository the file is taken from
    filename: str
    sha256: str  # of the file's bytes
    size: int  # bytes
    licence: str
    description: str
    dataset: str  # what it was trained on
    host: str = "https://huggingface.co"  # the Hub (another host serving the same paths)

    @property
    def url(self) -> str:
        return f"{self.host}/{self.repository}/resolve/{self.revision}/{self.filename}"


PRETRAINED: dict[str, PretrainedWeights] = {
    "resnet18-imagenet": PretrainedWeights(
        name="resnet18-imagenet",
        repository="timm/resnet18.tv_in1k",
        revision="bbd144b3e5565108aad885f145491d11bc6ce807",
        filename="model.safetensors",
        sha256="694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81",
        size=46_807_446,
        licence="BSD-3-Clause (torchvision's weights)",
        description="ResNet-18 trained on ImageNet-1k: torchvision's IMAGENET1K_V1 weights",
        dataset="ImageNet-1k",
    )
}


def _known(name: str) -> PretrainedWeights:
    if name not in PRETRAINED:
        raise CnnlabError(f"unknown pretrained network {name!r}; known: {', '.join(PRETRAINED)}")
    return PRETRAINED[name]


def weights_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the weights of ``name`` are kept: ``<cache>/pretrained/<name>/<file>``."""
    weights = _known(name)
    folder = Path(cache_dir) if cache_dir is not None else download.cache_dir("pretrained")
    return folder / name / weights.filename


def is_cached(name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether the weights of ``name`` are in the cache (a front end may offer them then)."""
    return weights_path(name, cache_dir).is_file()


def fetch_pretrained(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    mirrors: list[str] | None = None,
    timeout: float = download.DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """The weights file of ``name`` in the cache, downloaded (and verified) the first time.

    ``mirrors`` are base URLs that serve the file under its name (default: its pinned place on
    the Hugging Face Hub). Without a network the error says so in one line, with the
    alternatives.
    """
    weights = _known(name)
    target = weights_path(name, cache_dir)
    hint = (
        f"without a network connection, start from cnnlab's own offline features instead "
        f"(--from {OFFLINE_START}), or copy the file ({weights.url}, SHA-256 "
        f"{weights.sha256[:12]}…) to {target}"
    )
    return download.fetch_archive(
        name,
        weights.filename,
        weights.sha256,
        mirrors=mirrors or [weights.url.rsplit("/", 1)[0] + "/"],
        timeout=timeout,
        dest=target.parent,
        progress=progress,
        hint=hint,
    )


def load_pretrained(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    input_size: int = FEATURE_SIZE,
    mirrors: list[str] | None = None,
    progress: bool = True,
) -> Sequential:
    """The pretrained network ``name`` as a cnnlab feature extractor for ``input_size``²
    RGB pictures: ``(N, 3, S, S)`` normalised as its ``meta`` says → ``(N, 512)``.

    Downloads the weights the first time (``fetch_pretrained``); checks the cached file's
    SHA-256 every time, so a file copied by hand is verified too.
    """
    weights = _known(name)
    size = validate.integer("load_pretrained", "input_size", input_size, 32)
    if size > MAX_INPUT_SIZE:
        raise CnnlabError(
            f"load_pretrained: input_size must be at most {MAX_INPUT_SIZE}, got {input_size}"
        )
    path = fetch_pretrained(name, cache_dir, mirrors=mirrors, progress=progress)
    digest = _sha256(path)
    if digest != weights.sha256:
        raise CnnlabError(
            f"{path}: its SHA-256 is {digest[:12]}…, not the published {weights.sha256[:12]}…; "
            "delete it and load again to download it afresh, or start from cnnlab's own "
            f"offline features instead (--from {OFFLINE_START})"
        )
    arrays, _ = read_safetensors(path)
    model = resnet18_from_state(arrays, str(path), input_shape=(3, size, size))
    model.meta.update(
        weights=name,
        dataset=weights.dataset,
        source=f"{weights.url} ({weights.description})",
        licence=weights.licence,
    )
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- torchvision's names -> cnnlab's ResNet-18 --------------------------------------------------

_PARAMETER = {
    "W": "weight",
    "b": "bias",
    "running_mean": "running_mean",
    "running_var": "running_var",
}
_BODY = {0: "conv1", 1: "bn1", 3: "conv2", 4: "bn2"}  # the body's ReLU (2) holds nothing


def _torchvision_layers(model: Sequential) -> list[tuple[str, Layer]]:
    """Each weight-holding layer of a ``zoo.resnet18`` model with torchvision's module name."""
    named: list[tuple[str, Layer]] = [("conv1", model.layers[0]), ("bn1", model.layers[1])]
    blocks = [layer for layer in model.layers if isinstance(layer, Residual)]
    for index, block in enumerate(blocks):
        prefix = f"layer{index // 2 + 1}.{index % 2}"
        named += [(f"{prefix}.{_BODY[j]}", sub) for j, sub in enumerate(block.body) if j in _BODY]
        named += [(f"{prefix}.downsample.{j}", sub) for j, sub in enumerate(block.shortcut)]
    named += [("fc", layer) for layer in model.layers if isinstance(layer, Dense)]
    return named


def torchvision_arrays(model: Sequential) -> dict[str, Any]:
    """The arrays of a ``zoo.resnet18`` model under torchvision's state-dict names (the very
    arrays: writing into them writes the model). The convs' biases, which torchvision's
    ResNet does not have, are left out."""
    return {
        f"{prefix}.{_PARAMETER[key]}": value
        for prefix, layer in _torchvision_layers(model)
        for key, value in (*layer.params.items(), *layer.buffers.items())
        if not (isinstance(layer, Conv2D) and key == "b")
    }


def resnet18_from_state(
    arrays: dict[str, np.ndarray],
    source: str,
    input_shape: tuple[int, int, int] = (3, FEATURE_SIZE, FEATURE_SIZE),
    head: bool = False,
) -> Sequential:
    """A cnnlab ResNet-18 holding the torchvision-named ``arrays`` (a state dict, e.g. from a
    safetensors file), in evaluation mode, with ImageNet's normalisation in its ``meta``.

    Without ``head`` the classifier (``fc``) is dropped: the model ends at the global average
    pooling, 512 features a picture. Every other array must be there with its exact shape and
    finite; ``num_batches_tracked`` counters are ignored; anything else is refused.
    """
    n_classes = None
    if head:
        fc = arrays.get("fc.weight")
        if fc is None or np.ndim(fc) != 2:
            raise CnnlabError(f"{source}: has no classifier weights fc.weight to keep the head")
        n_classes = int(fc.shape[0])
    model = resnet18(seed=0, input_shape=tuple(input_shape), n_classes=n_classes)
    targets = torchvision_arrays(model)
    for name in arrays:
        ignored = name.endswith(".num_batches_tracked") or (not head and name.startswith("fc."))
        if name not in targets and not ignored:
            raise CnnlabError(
                f"{source}: holds {name!r:.80}, which ResNet-18 does not have: it is not a "
                "torchvision-style ResNet-18 checkpoint"
            )
    for name, target in targets.items():
        value = arrays.get(name)
        if value is None:
            raise CnnlabError(f"{source}: {name} is missing: not a complete ResNet-18 checkpoint")
        if value.shape != target.shape or value.dtype.kind != "f":
            raise CnnlabError(
                f"{source}: {name} is {value.dtype} {value.shape}, ResNet-18 needs float "
                f"{target.shape}"
            )
        if not np.isfinite(value).all():
            raise CnnlabError(f"{source}: {name} holds NaN or inf")
        target[...] = value
    model.meta.update(
        kind="images",
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        input=(
            f"{input_shape[1]}x{input_shape[2]} colour (RGB), centre-cropped, "
            "(pixel/255 - mean) / std per channel"
        ),
    )
    return model.eval()


# -- features ---------------------------------------------------------------------------------


def features(model: Sequential, pictures: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The feature extractor's output for uint8 RGB ``pictures`` ``(N, 3, H, W)`` at the model's
    input size (grey ``(N, 1, H, W)`` ones are repeated in the three channels): ``(N, 512)``
    float32, ``batch_size`` pictures at a time, normalised as the model's ``meta`` says."""
    validate.integer("features", "batch_size", batch_size, 1)
    pictures = np.asarray(pictures)
    expected = tuple(model.input_shape or ())
    if pictures.dtype != np.uint8 or pictures.ndim != 4:
        raise CnnlabError(
            f"features: expected uint8 pictures (N, 3, H, W), got {pictures.dtype} {pictures.shape}"
        )
    if pictures.shape[1] == 1:
        pictures = np.repeat(pictures, 3, axis=1)
    if pictures.shape[1:] != expected:
        raise CnnlabError(
            f"features: the model takes pictures of {expected}, got {pictures.shape[1:]}; "
            f"load them at {expected[1]}×{expected[2]} pixels"
        )
    mean, std = model.meta.get("mean", IMAGENET_MEAN), model.meta.get("std", IMAGENET_STD)
    out = np.empty((len(pictures), *model.output_shape()), model.dtype)
    for start in range(0, len(pictures), batch_size):
        batch = normalise(pictures[start : start + batch_size], mean, std, model.dtype)
        out[start : start + len(batch)] = model.outputs(batch, batch_size)
    return out
