"""Training sized to the data (cnnlab.runs.sizing): the held-out split, batch, epochs, early
stopping with the best epoch kept, class balance and the one-line summary, each pinned on small
folders the tests draw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from picture_folders import write_picture_folder

import cnnlab as cl
from cnnlab.data import stratified_split
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Dense
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.train import TrainState
from cnnlab.runs import sizing
from cnnlab.runs.config import RunConfig
from cnnlab.runs.divergence import DivergenceWatch
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import RunCallback, RunStart, train_run
from cnnlab.runs.recipes import get_recipe

FOLDER = str(Path(__file__).parent)  # any existing folder: these configs only resolve


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_the_split_holds_out_a_share_of_every_class_and_keeps_one_of_each() -> None:
    labels = np.array([0] * 10 + [1] * 2 + [2] * 1)
    kept, held = stratified_split(labels, 0.2, seed=3)
    # class 0: round(10·0.2) = 2 held; class 1: 1 (at least one); class 2: none (keeps its one)
    assert np.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(labels[kept], minlength=3).tolist() == [8, 1, 1]
    assert sorted([*kept, *held]) == list(range(13))
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(again[0], kept) and np.array_equal(again[1], held)
    assert len(stratified_split(labels, 0.0, seed=3)[1]) == 0
    assert sizing.held_out([10, 2, 1], 0.2) == 3
    with pytest.raises(CnnlabError, match=r"fraction must be in \[0, 1\), got 1"):
        stratified_split(labels, 1, seed=0)


def test_a_small_folder_gets_small_batches_many_epochs_a_held_out_share_and_augmentation() -> None:
    config = RunConfig(dataset=FOLDER).resolve(900, "images", [300, 300, 300])
    # 3 × 300 pictures: 45 of each held out, 765 train in batches of 32 → 24 steps an epoch
    assert config.val_fraction == sizing.FOLDER_VAL_FRACTION
    assert config.batch_size == 32 and config.epochs == 100 and sizing.TARGET_STEPS <= 100 * 24
    assert config.patience == 25 and config.augment is True and config.balance is False
    tiny = RunConfig(dataset=FOLDER).resolve(30, "images", [10, 10, 10])
    assert tiny.batch_size == sizing.MIN_BATCH and tiny.epochs == sizing.MAX_EPOCHS


def test_a_folder_of_few_pictures_a_class_trains_on_all_of_them_to_the_end() -> None:
    few = sizing.VAL_FROM - 1
    config = RunConfig(dataset=FOLDER).resolve(3 * few, "images", [few] * 3)
    assert config.val_fraction == 0 and config.patience == 0
    # 3 × 199 pictures, none held out, in batches of 32 → 19 steps an epoch, 127 epochs capped
    assert config.batch_size == 32 and config.epochs == sizing.MAX_EPOCHS
    enough = RunConfig(dataset=FOLDER).resolve(3 * sizing.VAL_FROM, "images", [200] * 3)
    assert enough.val_fraction == sizing.FOLDER_VAL_FRACTION and enough.patience > 0
    given = RunConfig(dataset=FOLDER, val_fraction=0.2).resolve(30, "images", [10, 10, 10])
    assert given.val_fraction == 0.2 and given.patience == sizing.MAX_EPOCHS // 4


def test_named_sets_keep_their_recipe_and_hold_out_a_small_share_only_when_large() -> None:
    recipe = get_recipe("default")
    mnist = RunConfig(dataset="mnist").resolve(60_000, "digits", [6_000] * 10)
    assert (mnist.batch_size, mnist.epochs) == (recipe.batch_size, recipe.epochs(60_000))
    assert mnist.val_fraction == sizing.NAMED_VAL_FRACTION and mnist.patience == 0
    assert mnist.augment is recipe.augment and mnist.balance is False
    # The bundled sample holds out enough to calibrate on (167 digits, 50 at least).
    sample = RunConfig().resolve(10_000, "digits", [1_000] * 10)
    assert (sample.batch_size, sample.epochs) == (64, 12) and sample.patience == 0
    assert sample.val_fraction == sizing.NAMED_VAL_FRACTION and 10_000 * sample.val_fraction > 50
    subset = RunConfig(subset=96).resolve(96, "digits", [10] * 9 + [6])
    assert subset.val_fraction == 0.0
    small = RunConfig(subset=5_000).resolve(5_000, "digits", [500] * 10)  # keeps all its digits
    assert small.val_fraction == 0.0
    shapes = RunConfig(dataset="shapes").resolve(6_000, "images", [1_000] * 6)
    assert (shapes.batch_size, shapes.epochs, shapes.augment) == (64, 6, False)


def test_every_choice_can_be_given() -> None:
    given = RunConfig(
        dataset=FOLDER, batch_size=4, epochs=3, val_fraction=0.3, patience=0,
        balance=True, augment=False,
    )  # fmt: skip
    config = given.resolve(300, "images", [200, 50, 50])
    assert (config.batch_size, config.epochs, config.val_fraction) == (4, 3, 0.3)
    assert (config.patience, config.balance, config.augment) == (0, True, False)
    with pytest.raises(CnnlabError, match="val_fraction"):
        RunConfig(val_fraction=0.9).validate()


def test_unequal_classes_are_balanced_by_repeating_the_smaller_ones() -> None:
    config = RunConfig(dataset=FOLDER).resolve(160, "images", [100, 40, 20])
    assert config.balance is True
    labels = np.array([0] * 7 + [1] * 3 + [2] * 2)
    index = sizing.balanced_indices(labels, 3, seed=0)
    assert np.bincount(labels[index]).tolist() == [7, 7, 7]
    assert set(index[labels[index] == 2]) == {10, 11}  # every picture of a small class is used


def test_the_summary_says_what_was_chosen_and_why_in_one_line() -> None:
    given = RunConfig(dataset=FOLDER, epochs=40)
    config = given.resolve(900, "images", [300, 300, 300])
    line = sizing.summary(given, config, [300, 300, 300], ["a", "b", "c"])
    assert line == (
        "900 pictures, 3 classes (sized to the data): batch 32, up to 40 epochs (given) "
        "(≈ 960 steps), 135 held out for early stopping (patience 10), augmented"
    )
    small = given.resolve(450, "images", [150, 150, 150])
    line = sizing.summary(given, small, [150, 150, 150], ["a", "b", "c"])
    assert line == (
        "450 pictures, 3 classes (sized to the data): batch 16, 40 epochs (given) "
        "(≈ 1,160 steps), augmented"
    )
    unequal = RunConfig(dataset=FOLDER).resolve(330, "images", [300, 27, 3])
    line = sizing.summary(RunConfig(dataset=FOLDER), unequal, [300, 27, 3], "abc")
    assert "classes balanced" in line and "\n" not in line
    assert line.endswith("class 'c' has only 3 training pictures: add more for a useful model")


def dense_model() -> cl.Sequential:
    return cl.Sequential([Dense(2, 2, rng=0)], (2,))


def test_the_best_epoch_is_kept_and_the_run_stops_after_patience_epochs() -> None:
    model = dense_model()
    x, y = np.eye(2, dtype=np.float32), np.array([0, 1])
    best = sizing.BestEpoch(model, LOSSES["cross-entropy"](), x, y, patience=2)
    state = TrainState()
    dense = model.layers[0]
    for epoch, weights in enumerate([np.eye(2), 5 * np.eye(2), -np.eye(2), -np.eye(2)]):
        dense.params["W"][...] = weights  # epoch 2 (5·I) is right and the most confident
        state.epoch = epoch + 1
        logs: dict = {}
        best.on_epoch_end(state, logs)
        assert set(logs) == {"val_loss", "val_accuracy"}
        assert state.stop is (epoch == 3)  # two epochs without a better score
    assert best.stopped_early and best.restore() == 2
    np.testing.assert_array_equal(dense.params["W"], 5 * np.eye(2))


def test_a_long_slow_run_is_not_judged_at_chance_in_its_first_epochs() -> None:
    """A small folder given 30 epochs of 14 steps: the warm-up of its one-cycle schedule keeps
    the loss up for the first epochs; only a quarter of the planned run judges it."""
    watch = DivergenceWatch(3, lr=0.005, total_steps=30 * 14)
    state = TrainState()
    for _ in range(28):
        state.step += 1
        watch.on_batch_end(state, {"loss": 1.1, "batch_size": 16, "lr": 1.0})
    state.epoch = 2
    logs = {"train_loss": 1.12, "train_accuracy": 0.33, "test_accuracy": 0.33}
    watch.on_epoch_end(state, logs)  # epoch 2: no verdict yet
    early = DivergenceWatch(3, lr=0.005)  # without the plan: judged at 20 steps, as before
    for _ in range(28):
        early.on_batch_end(state, {"loss": 1.1, "batch_size": 16, "lr": 1.0})
    with pytest.raises(cl.CnnlabError, match="chance"):
        early.on_epoch_end(state, logs)


class Recorder(RunCallback):
    def on_run_begin(self, run: RunStart) -> None:
        self.run = run


def test_a_folder_run_holds_out_pictures_records_its_choices_and_keeps_the_best_epoch(
    tmp_path: Path,
) -> None:
    folder = write_picture_folder(tmp_path / "pictures", per_class=10)
    recorder = Recorder()
    config = RunConfig(dataset=str(folder), image_size=12, epochs=4, patience=1, val_fraction=0.15)
    result = train_run(config, RunFolder.create(tmp_path / "run"), [recorder], progress=False)
    # 10 a class: 2 tested, 8 trained on, of which 1 held out
    assert len(result.data.val_labels) == 3 and len(result.data.images) == 21
    assert np.bincount(result.data.val_labels).tolist() == [1, 1, 1]
    assert recorder.run.plan.startswith("24 pictures, 3 classes (sized to the data): batch 8")
    record = json.loads(result.folder.config_file.read_text())
    assert record["val_fraction"] == 0.15 and record["batch_size"] == 8
    assert record["patience"] == 1 and record["augment"] is True
    assert RunConfig.from_json(record) == result.config
    history = json.loads(result.folder.metrics_file.read_text())
    assert all("val_accuracy" in entry for entry in history)
    assert not result.stopped and 1 <= result.model.meta["best_epoch"] <= len(history)


def test_a_folder_run_with_nothing_held_out_can_still_say_none_of_these(tmp_path: Path) -> None:
    folder = write_picture_folder(tmp_path / "pictures", per_class=8)
    result = train_run(
        RunConfig(dataset=str(folder), image_size=12, epochs=1), RunFolder.create(tmp_path / "run"),
        progress=False,
    )  # fmt: skip
    meta = cl.Sequential.load(result.folder.model_file).meta
    assert result.data.val_labels is None or not len(result.data.val_labels)
    assert meta["unknown_score"] == "cosine" and meta["temperature"] == 1.0
    features = result.model.layers[-1].params["W"].shape[1]
    assert np.asarray(meta["class_means"]).shape == (3, features)
    assert -1 <= meta["unknown_below"] < 1


def test_a_class_without_a_picture_to_test_on_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = write_picture_folder(tmp_path / "pictures", per_class=6)
    for extra in sorted((folder / "sea").iterdir())[1:]:
        extra.unlink()  # "sea" keeps one picture
    run = RunFolder.create(tmp_path / "run")
    with pytest.raises(CnnlabError) as info:
        train_run(RunConfig(dataset=str(folder), image_size=12), run, progress=False)
    assert "class 'sea' has 1 picture and none to test on" in str(info.value)
    assert "\n" not in str(info.value) and not run.path.exists()


def test_wildly_unequal_classes_are_named_in_the_summary() -> None:
    counts = [300, 20, 150]
    config = RunConfig(dataset=FOLDER).resolve(470, "images", counts)
    line = sizing.summary(RunConfig(dataset=FOLDER), config, counts, ["a", "b", "c"])
    assert "classes balanced" in line
    assert line.endswith(
        "class 'b' has 20 pictures against 300 of 'a': expect it to be read worse; add pictures "
        "of it"
    )


def test_no_run_stops_early_before_its_share_of_the_epochs() -> None:
    model = dense_model()
    x, y = np.eye(2, dtype=np.float32), np.array([0, 1])
    best = sizing.BestEpoch(model, LOSSES["cross-entropy"](), x, y, patience=1, stop_from=4)
    state = TrainState()
    for epoch in range(1, 5):
        state.epoch = epoch
        best.on_epoch_end(state, {})  # the same weights: never better after the first
        assert state.stop is (epoch == 4)


def test_the_extractor_trains_whole() -> None:
    assert sizing.layers_to_train(10) == "head"
    assert sizing.layers_to_train(10, sizing.EXTRACTOR) == "all"
    assert sizing.layers_to_train(sizing.TOP_ONLY, sizing.EXTRACTOR) == "all"
    few = RunConfig(dataset=FOLDER).resolve(30, "images", [10, 10, 10])
    assert (few.start_from, few.train_layers) == ("extractor", "all")
    assert RunConfig(dataset=FOLDER, train_layers="top").resolve(30, "images").train_layers == (
        "top"
    )  # given, it wins
    small = RunConfig(dataset=FOLDER, image_size=16).resolve(30, "images", [10, 10, 10])
    assert small.start_from == "scratch"  # the extractor needs 32 pixels
    many = RunConfig(dataset=FOLDER).resolve(300, "images", [100, 100, 100])
    assert many.start_from == "scratch"  # enough pictures to learn their own features


def test_colour_tells_a_folder_whose_mean_colours_alone_tell_its_classes() -> None:
    labels = np.array([0, 0, 1, 1])
    red_green = np.zeros((4, 3, 2, 2), np.uint8)
    red_green[:2, 0], red_green[2:, 1] = 200, 200  # two red pictures, two green
    red_green[[0, 2], 2] = 50  # a little blue in one of each
    assert sizing.colour_tells(red_green, labels)
    # By hand: scaled mean colours (channel spreads 100, 100, 25) are (2, 0, 2), (2, 0, 0),
    # (0, 2, 2), (0, 2, 0); left out, the first picture's own class mean is (2, 0, 0), at 4,
    # the other's (0, 2, 1), at 9: right, and so are the three others.
    swapped = red_green[[0, 2, 1, 3]]  # each class one red and one green picture
    assert not sizing.colour_tells(swapped, labels)
    assert not sizing.colour_tells(red_green[:, :1], labels)  # grey
    alone = np.array([0, 0, 0, 1])  # a class of one picture has no mean without it
    assert not sizing.colour_tells(red_green, alone)


def test_the_tune_shares_of_colour_tells_are_between_chance_and_the_colour_folder() -> None:
    assert 1 / 3 < sizing.COLOUR_TELLS < 0.77
