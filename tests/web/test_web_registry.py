"""The model listing reads model files through the engine's checked loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

import cnnlab as cl
from cnnlab.web.registry import read_meta


def test_a_file_that_only_looks_like_a_model_is_unreadable(tmp_path: Path) -> None:
    fake = tmp_path / "model.npz"  # the config key is there, the layers and weights are not
    np.savez(fake, cnnlab=np.array(json.dumps({"meta": {"preset": "lenet5"}})))
    assert read_meta(fake) == {"error": "unreadable model file", "accuracy": None}


def test_meta_of_a_model_and_accuracy_from_its_metrics(tmp_path: Path) -> None:
    model = cl.build("lenet5")
    model.meta["dataset"] = "mnist-sample"
    model.save(tmp_path / "model.npz")
    (tmp_path / "metrics.json").write_text(json.dumps([{"epoch": 1, "test_accuracy": 0.5}]))
    meta = read_meta(tmp_path / "model.npz")
    assert meta == {"preset": "lenet5", "dataset": "mnist-sample", "accuracy": 0.5}
