"""A ResNet-18 checkpoint the tests write: torchvision's names, random weights and batch-norm
statistics, as a safetensors file (the published one cannot be downloaded here), and the hub
that serves it where the pinned file would be."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from local_server import Routes

from cnnlab.data.safetensors import write_safetensors
from cnnlab.runs import pretrained
from cnnlab.runs.pretrained import torchvision_arrays
from cnnlab.runs.zoo import resnet18

NAME = "resnet18-imagenet"


def write_checkpoint(path: Path, seed: int = 3) -> dict[str, np.ndarray]:
    """Write a complete ResNet-18 state dict to ``path`` as safetensors; return its arrays."""
    rng = np.random.default_rng(seed)
    model = resnet18(seed=seed)
    arrays = {}
    for name, value in torchvision_arrays(model).items():
        if name.endswith(("running_var", "bn1.weight", "bn2.weight")) or ".1.weight" in name:
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif name.endswith(("running_mean", "bias")):
            value[...] = rng.uniform(-0.1, 0.1, value.shape)
        arrays[name] = value.copy()
        if name.endswith("running_var"):
            arrays[name[: -len("running_var")] + "num_batches_tracked"] = np.array(9, np.int64)
    write_safetensors(path, arrays, {"format": "pt"})
    return arrays


def pin_to(server: Routes | str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> str:
    """Pin the published file to ``data`` (its SHA-256 and size) on the host ``server`` (a
    test server, or the URL of one that refuses connections); return the URL path it is
    fetched from."""
    host = server.url if isinstance(server, Routes) else server
    pin = dataclasses.replace(
        pretrained.PRETRAINED[NAME],
        host=host.rstrip("/"),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    monkeypatch.setitem(pretrained.PRETRAINED, NAME, pin)
    return urlsplit(pin.url).path
