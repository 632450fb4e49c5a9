"""Careless runs: two writers on one run folder, a run that stops learning, saves cut short."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.errors import CnnlabError, NonFiniteLossError, TrainingDivergedError
from cnnlab.engine.train import TrainState
from cnnlab.runs.config import RunConfig
from cnnlab.runs.divergence import DivergenceWatch
from cnnlab.runs.folder import LOCK_FILE, RunFolder
from cnnlab.runs.pipeline import RunCallback, RunStart, resume_run, train_run

CONFIG = RunConfig(model="simple", subset=96, batch_size=16, epochs=3, seed=5)


# -------------------------------------------------------------------------- one writer per run


def test_a_second_writer_is_refused_with_one_line(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run")
    with folder.lock():
        with pytest.raises(CnnlabError) as info:
            train_run(CONFIG, RunFolder(tmp_path / "run"), progress=False)
        assert f"another training (process {os.getpid()}) is writing" in str(info.value)
        assert "\n" not in str(info.value)
        with pytest.raises(CnnlabError, match="another training"):
            resume_run(tmp_path / "run", progress=False)
    assert sorted(p.name for p in folder.path.iterdir()) == [LOCK_FILE]  # nothing was written


@pytest.mark.slow
def test_the_lock_goes_with_the_run_and_a_used_folder_is_refused(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run")
    train_run(RunConfig(model="simple", subset=32, batch_size=16, epochs=1), folder, progress=False)
    with folder.lock():  # released when the run ended
        pass
    with pytest.raises(CnnlabError, match="already holds a run"):  # checked under the lock
        train_run(CONFIG, RunFolder(tmp_path / "run"), progress=False)


def test_a_killed_saves_temporary_files_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run")
    stale = folder.path / ".checkpoint.npz.k2j4h1.tmp"  # what atomic_write leaves if killed
    stale.write_bytes(b"half a checkpoint")
    keep = folder.path / "notes.txt"
    keep.write_text("mine")
    with folder.lock():
        assert not stale.exists() and keep.exists()


# -------------------------------------------------------------------------- divergence


def losses(watch: DivergenceWatch, values: list[float]) -> TrainState:
    state = TrainState()
    for loss in values:
        state.step += 1
        watch.on_batch_end(state, {"loss": loss, "batch_size": 16, "lr": 1.0})
    return state


def test_an_exploding_loss_is_caught_naming_the_step_and_a_learning_rate() -> None:
    watch = DivergenceWatch(10, lr=0.05)
    with pytest.raises(TrainingDivergedError) as info:
        losses(watch, [2.3] + [2.3 * 10] * 30)
    message = str(info.value)
    assert "at step 10 (epoch 1)" in message and "rose from 2.3 to" in message
    assert "e.g. 0.05" in message


def test_a_sound_or_noisy_run_is_never_stopped() -> None:
    rng = np.random.default_rng(0)
    watch = DivergenceWatch(10, lr=0.05)
    falling = list(2.3 * np.exp(-np.arange(300) / 50) + rng.uniform(0, 1.5, 300))
    state = losses(watch, falling)
    watch.on_epoch_end(state, {"train_loss": 1.0, "train_accuracy": 0.6, "test_accuracy": 0.6})


def test_chance_accuracy_with_a_loss_that_did_not_fall_is_caught_at_epoch_end() -> None:
    watch = DivergenceWatch(10, lr=0.05)
    state = losses(watch, [0.09] + [0.18] * 29)  # MSE through a saturated softmax
    state.epoch = 1
    logs = {"train_loss": 0.18, "train_accuracy": 0.1, "test_accuracy": 0.098}
    with pytest.raises(TrainingDivergedError, match=r"epoch 1\): accuracy 9\.8% is chance"):
        watch.on_epoch_end(state, logs)


def test_a_run_whose_loss_fell_below_an_equal_guess_is_learning_whatever_its_first_batch() -> None:
    guess = float(np.log(3))  # the cross-entropy of equal probabilities for 3 classes
    learning = DivergenceWatch(3, lr=1e-3, guess_loss=guess)
    state = losses(learning, [0.85] + [1.1] * 29)  # a lucky first batch
    state.epoch = 2
    logs = {"train_loss": 0.95, "train_accuracy": 0.45, "test_accuracy": 0.33}
    learning.on_epoch_end(state, logs)  # below ln 3: not stopped
    stuck = DivergenceWatch(3, lr=1e-3, guess_loss=guess)
    losses(stuck, [0.85] + [1.1] * 29)
    with pytest.raises(TrainingDivergedError, match=r"\(1\.1 at the start, 1\.12 over"):
        stuck.on_epoch_end(state, {**logs, "train_loss": 1.12})
    unknown = DivergenceWatch(3, lr=1e-3)  # without the guess's loss, the first batch's
    losses(unknown, [0.85] + [1.1] * 29)
    with pytest.raises(TrainingDivergedError, match=r"\(0\.85 at the start, 0\.95 over"):
        unknown.on_epoch_end(state, logs)


def test_a_run_far_below_the_usual_rate_is_advised_a_higher_one() -> None:
    watch = DivergenceWatch(10, lr=1e-3, used=1e-300)
    state = losses(watch, [2.3] * 30)
    state.epoch = 1
    logs = {"train_loss": 2.3, "train_accuracy": 0.1, "test_accuracy": 0.1}
    with pytest.raises(TrainingDivergedError, match=r"with a higher learning rate, e\.g\. 0\.001"):
        watch.on_epoch_end(state, logs)


def test_a_short_or_learning_run_at_chance_is_not_judged() -> None:
    short = DivergenceWatch(10, lr=0.05)
    state = losses(short, [2.3] * 5)
    short.on_epoch_end(state, {"train_loss": 2.31, "train_accuracy": 0.1, "test_accuracy": 0.1})
    slow = DivergenceWatch(10, lr=0.05)
    state = losses(slow, [2.3] + [2.29] * 40)
    slow.on_epoch_end(state, {"train_loss": 2.29, "train_accuracy": 0.1, "test_accuracy": 0.1})


def test_a_diverged_run_keeps_the_last_good_checkpoint_and_writes_no_model(
    tmp_path: Path,
) -> None:
    """The weights are blown up in the middle of epoch 2: the run stops there, the epoch-1
    checkpoint stays, and no model.npz is written."""

    class BlowUp(RunCallback):
        def on_run_begin(self, run: RunStart) -> None:
            self.model = run.model

        def on_batch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
            if state.epoch == 1 and state.batch == 1:
                for param, _ in self.model.parameters():
                    param *= 1e3

    folder = RunFolder.create(tmp_path / "run")
    with pytest.raises(TrainingDivergedError) as info:
        train_run(CONFIG, folder, [BlowUp()], progress=False)
    assert "(epoch 2)" in str(info.value) and str(folder.checkpoint_file) in str(info.value)
    assert load_checkpoint(folder.checkpoint_file).state.epoch == 1
    assert not folder.model_file.exists()


def test_a_far_too_high_learning_rate_stops_the_run(tmp_path: Path) -> None:
    config = RunConfig(model="simple", subset=320, batch_size=16, epochs=1, optimizer="sgd", lr=100)
    with pytest.raises(TrainingDivergedError, match=r"at step \d+ \(epoch 1\).*e\.g\. 0\.05"):
        train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    assert issubclass(NonFiniteLossError, TrainingDivergedError)


# -------------------------------------------------------------------------- edited checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = RunFolder.create(tmp_path_factory.mktemp("ckpt") / "run")
    config = RunConfig(model="simple", subset=32, batch_size=16, epochs=1)
    train_run(config, folder, progress=False)
    return folder.checkpoint_file


def edited(checkpoint: Path, tmp_path: Path, change) -> Path:
    import json

    with np.load(checkpoint) as data:
        arrays = {k: data[k] for k in data.files}
    record = json.loads(str(arrays["checkpoint"]))
    change(record)
    arrays["checkpoint"] = np.array(json.dumps(record))
    out = tmp_path / "run" / "checkpoint.npz"
    out.parent.mkdir()
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: r["state"].update(epoch=-1), "epoch must be an integer >= 0, got -1"),
        (lambda r: r["state"].update(epoch="2"), "epoch must be an integer >= 0, got '2'"),
        (lambda r: r["state"].update(loss_sum=None), "loss_sum must be a finite number"),
        (lambda r: r["state"].update(history={"a": 1}), "history must be a list"),
        (lambda r: r.update(state=[1, 2]), "training state must be a JSON object"),
        (lambda r: r.pop("optimizer_steps"), "optimizer_steps"),
        (lambda r: r.update(optimizer_steps=-3), "optimizer_steps must be an integer >= 0"),
        (lambda r: r["config"].update(batch_size=0), "batch_size"),
        (lambda r: r["config"].update(epochs="many"), "epochs"),
        (lambda r: r["config"].update(betas=5), "configuration is damaged"),
        (lambda r: r.update(config="adam"), "must be a JSON object"),
    ],
)
@pytest.mark.slow
def test_an_edited_checkpoint_record_is_one_line(checkpoint, tmp_path, change, words) -> None:
    path = edited(checkpoint, tmp_path, change)
    with pytest.raises(CnnlabError) as info:
        resume_run(path.parent, progress=False)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_models_of_a_run_still_load_after_these_checks(checkpoint: Path) -> None:
    assert cl.Sequential.load(checkpoint.parent / "model.npz").num_params() > 0
