"""train_run / resume_run: what a run folder holds, and that a run stopped mid-epoch resumes
to exactly the weights of an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.engine.errors import MissingPackageError
from cnnlab.engine.train import TrainState
from cnnlab.runs import unknowns
from cnnlab.runs.build import make_loss
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import RunCallback, RunStart, resume_run, train_run

CONFIG = RunConfig(model="simple", subset=96, batch_size=16, epochs=2, seed=5)


class Recorder(RunCallback):
    def __init__(self) -> None:
        self.start: RunStart | None = None
        self.batches = 0

    def on_run_begin(self, run: RunStart) -> None:
        self.start = run

    def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        self.batches += 1


@pytest.mark.slow
def test_a_run_writes_its_folder_and_tells_its_callbacks(tmp_path: Path) -> None:
    recorder = Recorder()
    result = train_run(CONFIG, RunFolder.create(tmp_path / "run"), [recorder], progress=False)
    # 96 digits and, by the default recipe's outlier exposure, 24 generated non-digits.
    assert recorder.start is not None and recorder.start.steps_per_epoch == 8
    assert recorder.start.n_train == 96 and recorder.batches == 16
    assert result.config.outlier_exposure == 0.5
    assert not result.stopped and result.config.lr == 2e-3  # the default recipe's
    config = json.loads(result.folder.config_file.read_text())
    assert RunConfig.from_json(config) == result.config and config["n_train"] == 96
    saved = cl.Sequential.load(result.folder.model_file)
    assert saved.meta["test_accuracy"] == result.test_accuracy and saved.meta["stopped"] is False
    assert [m["epoch"] for m in json.loads(result.folder.metrics_file.read_text())] == [1, 2]
    for name in ("curves.png", "confusion.png", "filters.png", "misclassified.png"):
        assert (result.folder.path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not (result.folder.path / "gradient_flow.json").exists()  # not asked for


@pytest.mark.slow
def test_a_monitored_run_writes_its_gradient_flow(tmp_path: Path) -> None:
    config = RunConfig(model="simple", subset=32, batch_size=16, epochs=1, seed=5, monitor=True)
    result = train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    records = json.loads((result.folder.path / "gradient_flow.json").read_text())
    assert [r["epoch"] for r in records] == [1]
    assert records[0]["layers"][0]["name"] == "0.Conv2D" and records[0]["layers"][0]["grad_norm"]
    assert (result.folder.path / "gradient_flow.png").read_bytes()[:4] == b"\x89PNG"
    assert all("backward" not in vars(layer) for layer in result.model.layers)  # unwatched


def test_without_matplotlib_a_run_fails_before_it_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if absent
    recorder = Recorder()
    folder = RunFolder.new(tmp_path / "runs")
    with pytest.raises(MissingPackageError, match="matplotlib"):
        train_run(CONFIG, folder, [recorder], progress=False)
    assert recorder.start is None and not folder.path.exists()


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    straight = train_run(CONFIG, RunFolder.create(tmp_path / "straight"), progress=False)
    recorder = Recorder()
    cut = train_run(
        CONFIG, RunFolder.create(tmp_path / "cut"), [recorder], lambda: recorder.batches >= 9,
        progress=False,
    )  # fmt: skip
    assert cut.stopped and cl.Sequential.load(cut.folder.model_file).meta["stopped"] is True
    resumed = resume_run(tmp_path / "cut", progress=False)
    assert not resumed.stopped
    expected = straight.model.state_arrays()
    for key, value in resumed.model.state_arrays().items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


@pytest.mark.parametrize(
    "config",
    [
        RunConfig(lr=-1.0),  # refused by validate
        RunConfig(dataset="shapes", model="no-such-preset", subset=16),  # refused building
    ],
)
def test_a_failed_run_leaves_no_folder_behind(tmp_path: Path, config: RunConfig) -> None:
    folder = RunFolder.new(tmp_path / "runs")
    with pytest.raises(cl.CnnlabError):
        train_run(config, folder, progress=False)
    assert not folder.path.exists()  # not even the lock file


def test_a_failed_run_keeps_a_folder_that_holds_something(tmp_path: Path) -> None:
    folder = RunFolder.new(tmp_path / "runs")
    (folder.path / "notes.txt").write_text("mine")
    with pytest.raises(cl.CnnlabError):
        train_run(RunConfig(lr=-1.0), folder, progress=False)
    assert (folder.path / "notes.txt").read_text() == "mine"


def test_outlier_exposure_and_calibration_on_the_held_out_pictures(tmp_path: Path) -> None:
    recorder = Recorder()
    config = dataclasses.replace(CONFIG, outlier_exposure=0.5, val_fraction=0.25)
    result = train_run(config, RunFolder.create(tmp_path / "run"), [recorder], progress=False)
    # 72 digits (24 held out) and 18 non-digits: 6 batches of 16 an epoch; the digits count.
    assert recorder.start is not None and recorder.start.steps_per_epoch == 6
    assert recorder.start.n_train == 72 and recorder.batches == 12
    assert repr(make_loss(result.config)) == ("OutlierExposureLoss(CrossEntropyLoss(), weight=0.5)")
    meta = cl.Sequential.load(result.folder.model_file).meta
    # 24 held out: a temperature, but too few pictures for a threshold (unknowns.MIN_HELD)
    assert meta["temperature"] > 0 and "unknown_score" not in meta
    held = cl.to_input(result.data.val_images[:, 0])
    probabilities, known = unknowns.assess(result.model, held)
    logits, _ = unknowns.logits_and_features(result.model, held)
    calibrated = np.exp(unknowns.log_softmax(logits, meta["temperature"]))
    assert known.all() and np.allclose(probabilities, calibrated, atol=1e-6)
    x, y = unknowns.with_nondigits(np.zeros((8, 1, 28, 28), np.float32), np.arange(8), seed=0)
    assert x.shape == (10, 1, 28, 28) and y.tolist() == [*range(8), -1, -1]
    assert x[8:].max() == 1 and x[:8].max() == 0


def test_a_run_without_held_out_pictures_is_not_calibrated(tmp_path: Path) -> None:
    result = train_run(
        dataclasses.replace(CONFIG, epochs=1), RunFolder.create(tmp_path / "run"), progress=False
    )
    assert result.data.val_labels is not None and len(result.data.val_labels) == 0
    assert not set(unknowns.META_KEYS) & set(result.model.meta)
