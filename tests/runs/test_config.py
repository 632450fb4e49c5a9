"""RunConfig: the recipe fills what a front end leaves out, bad values are refused in one
line, and config.json round-trips (old files included)."""

from __future__ import annotations

import json

import pytest

from cnnlab.engine.errors import CnnlabError
from cnnlab.runs.config import RunConfig
from cnnlab.runs.recipes import RECIPES


def test_resolve_takes_the_recipes_values_for_what_is_left_out() -> None:
    fast = RECIPES["fast"]
    config = RunConfig(recipe="fast", subset=100).resolve(n_train=100)
    assert config.model == "fast" and config.optimizer == "adam" and config.lr == fast.lr
    assert config.betas == (0.9, 0.99) and config.label_smoothing == 0.1
    assert config.schedule == "onecycle" and config.epochs == fast.epochs_small
    assert RunConfig(recipe="fast").resolve(n_train=60_000).epochs == fast.epochs_large


def test_another_optimizer_gets_its_own_lr_and_usual_betas_and_sgd_momentum() -> None:
    config = RunConfig(recipe="fast", optimizer="sgd").resolve(n_train=100)
    assert config.lr == 0.05 and config.betas == (0.9, 0.999) and config.momentum == 0.9
    assert RunConfig(optimizer="sgd", lr=0.3).resolve(100).lr == 0.3


def test_mse_gets_no_label_smoothing_from_the_recipe() -> None:
    assert RunConfig(recipe="fast", loss="mse").resolve(100).label_smoothing == 0.0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"recipe": "slow"}, "recipe must be one of 'default', 'fast', 'pictures', got 'slow'"),
        ({"model": "resnet"}, "model must be one of"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"dataset": "sonar"}, "'sonar' is not a picture data set"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"subset": 2.5}, "subset must be an integer >= 1, got 2.5"),
        ({"momentum": 1.0}, "momentum must be in [0, 1)"),
        ({"betas": (0.9,)}, "betas must be two numbers in [0, 1)"),
        ({"label_smoothing": 1.5}, "run: label_smoothing must be in [0, 1), got 1.5"),
        ({"loss": "mse", "label_smoothing": 0.1}, "smoothing applies to the cross-entropy loss"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"outlier_exposure": -0.5}, "outlier_exposure must be a finite number >= 0"),
        ({"loss": "mse", "outlier_exposure": 0.5}, "outlier exposure applies to the cross-"),
    ],
)
def test_bad_values_are_refused_in_one_line(change: dict, words: str) -> None:
    with pytest.raises(CnnlabError) as err:
        RunConfig(**change).resolve(100)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_outlier_exposure_is_for_digits() -> None:
    config = RunConfig(dataset="shapes", outlier_exposure=0.5)
    with pytest.raises(CnnlabError, match="generated non-digits, for digit data sets only"):
        config.resolve(100, "images")
    assert RunConfig(outlier_exposure=0.5).resolve(100).outlier_exposure == 0.5


def test_json_round_trip_is_exact() -> None:
    config = RunConfig(recipe="fast", model="lenet5", subset=64, seed=3).resolve(64)
    text = json.dumps({**config.to_json(), "architecture": {}, "n_train": 64, "n_test": 10})
    assert RunConfig.from_json(json.loads(text)) == config


def test_old_config_files_still_read() -> None:
    # cnnlab train before RunConfig: no momentum, no betas (it used Adam's usual ones); the web
    # lab: preset, learning_rate.
    cli = {"recipe": "default", "dataset": "mnist-sample", "data_dir": None, "model": "simple",
           "epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.05,
           "schedule": "onecycle", "weight_decay": 0.0, "loss": "cross-entropy",
           "label_smoothing": 0.0, "activation": "relu", "augment": False, "subset": 512,
           "seed": 0, "device": "cpu", "monitor": False, "n_train": 512}  # fmt: skip
    old = RunConfig.from_json(cli)
    assert old.momentum == 0.9 and old.betas == (0.9, 0.999) and old.model == "simple"
    web = {"dataset": "mnist-sample", "preset": "lenet5", "activation": "relu", "epochs": 1,
           "learning_rate": 0.002, "optimizer": "adam", "loss": "cross-entropy",
           "batch_size": 50, "subset": 200, "seed": 0}  # fmt: skip
    assert RunConfig.from_json(web).resolve(200).lr == 0.002


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(CnnlabError, match="unknown run configuration keys: colour"):
        RunConfig.from_json({"colour": True})
