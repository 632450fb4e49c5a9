"""The model listing reads model files through the engine's checked loader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

import cnnlab as cl
from cnnlab.web.registry import ModelRegistry, read_meta


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


def save_run(runs_dir: Path, name: str, model: cl.Sequential, age_s: int) -> None:
    """``model`` as run ``name``, written ``age_s`` seconds ago."""
    (runs_dir / name).mkdir(parents=True)
    model.save(runs_dir / name / "model.npz")
    when = 2_000_000_000 - age_s
    os.utime(runs_dir / name / "model.npz", (when, when))


def test_the_lab_starts_with_the_newest_digit_model_not_a_newer_colour_one(
    tmp_path: Path,
) -> None:
    fashion = cl.build("lenet5", seed=1)
    fashion.meta.update(kind="digits", class_names=[f"clothes-{i}" for i in range(10)])
    save_run(tmp_path, "old-digits", cl.build("lenet5", seed=0), age_s=300)
    save_run(tmp_path, "digits", cl.build("lenet5", seed=0), age_s=200)
    save_run(tmp_path, "fashion", fashion, age_s=100)
    save_run(tmp_path, "colour", cl.build("vgg", seed=0), age_s=0)
    assert ModelRegistry(tmp_path, None).active()[0] == "digits"


def test_without_a_digit_model_the_lab_starts_with_the_newest(tmp_path: Path) -> None:
    save_run(tmp_path, "older-colour", cl.build("vgg", seed=0), age_s=100)
    save_run(tmp_path, "colour", cl.build("vgg", input_shape=(3, 16, 16), n_classes=4), age_s=0)
    assert ModelRegistry(tmp_path, None).active()[0] == "colour"
    assert ModelRegistry(tmp_path / "none", None).active() is None
