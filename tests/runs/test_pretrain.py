"""The feature extractor: pretraining, its file and meta, and refusing a file that is not one."""

from __future__ import annotations

import numpy as np
import pytest
from picture_folders import write_picture_folder

from cnnlab.cli.main import main
from cnnlab.engine.sequential import Sequential
from cnnlab.runs import pretrain
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import RunFolder
from cnnlab.runs.pipeline import train_run
from cnnlab.runs.pretrain import ExtractorError, PretrainRecipe
from cnnlab.runs.zoo import build

TINY = PretrainRecipe(
    fractal_classes=2, stroke_classes=2, per_class=4, outline_pictures=17, shapes_pictures=6,
    epochs=1, batch_size=8,
)  # fmt: skip


def test_the_shipped_extractor_loads_with_its_recipe_and_sources() -> None:
    model = pretrain.load_extractor()
    info = model.meta["extractor"]
    assert model.input_shape == pretrain.SHAPE
    assert info["format"] == pretrain.FORMAT and info["recipe"]["seed"] == 0
    assert any("fractals" in s for s in info["sources"])
    assert len(model.meta["mean"]) == len(model.meta["std"]) == 3
    assert pretrain.BUNDLED.stat().st_size < 3 * 1024**2
    x = np.zeros((2, 1, 32, 32), np.uint8)
    assert pretrain.features(model, x).shape == (2, pretrain.WIDTHS[-1])


def test_the_pretraining_set_has_every_class_and_is_reproducible() -> None:
    images, labels = pretrain.pretraining_set(TINY)
    again, _ = pretrain.pretraining_set(TINY)
    assert images.shape == (8 + 8 + 17 + 6, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images, again)
    assert sorted(set(labels.tolist())) == list(range(len(pretrain.class_names(TINY))))


def test_pretraining_writes_a_file_that_loads_as_an_extractor(tmp_path) -> None:
    model = pretrain.pretrain(TINY)
    path = tmp_path / "extractor.npz"
    pretrain.save_extractor(model, path)
    loaded = pretrain.load_extractor(path)
    assert loaded.meta["extractor"]["recipe"]["per_class"] == 4
    assert loaded.meta["class_names"] == pretrain.class_names(TINY)
    same = pretrain.pretrain(TINY)  # same seed, same threads: the same weights
    for (a, _), (b, _) in zip(model.parameters(), same.parameters(), strict=True):
        assert np.array_equal(a, b)


def test_a_damaged_or_foreign_extractor_file_is_one_line(tmp_path) -> None:
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(pretrain.BUNDLED.read_bytes()[:2000])
    with pytest.raises(ExtractorError, match=r"cannot be read.*cnnlab pretrain"):
        pretrain.load_extractor(damaged)
    foreign = tmp_path / "foreign.npz"
    build("vgg", input_shape=(3, 32, 32)).save(foreign)
    with pytest.raises(ExtractorError, match="not a cnnlab feature extractor"):
        pretrain.load_extractor(foreign)


def test_the_command_writes_the_extractor(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("cnnlab.cli.pretrain.PretrainRecipe", lambda: TINY)
    out = tmp_path / "x.npz"
    assert main(["pretrain", "--out", str(out), "--epochs", "1", "--per-class", "3"]) == 0
    assert isinstance(pretrain.load_extractor(out), Sequential)
    assert "fractals" in capsys.readouterr().out


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return write_picture_folder(tmp_path / "pictures", per_class=5)


def test_a_picture_folder_starts_from_the_extractor_and_reads_as_it_does(tiny_folder, tmp_path):
    config = RunConfig(dataset=str(tiny_folder), epochs=1)
    result = train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    assert result.config.start_from == "extractor"
    source = pretrain.shipped_extractor()
    assert result.model.meta["from"]["source"] == "extractor"
    assert result.model.meta["mean"] == source.meta["mean"]  # the extractor's normalisation
    trained = result.model.layers[0].params["W"]
    assert trained.shape == source.layers[0].params["W"].shape


def test_from_scratch_opts_out_and_a_named_set_keeps_its_recipe(tiny_folder, tmp_path):
    config = RunConfig(dataset=str(tiny_folder), epochs=1, start_from="scratch")
    result = train_run(config, RunFolder.create(tmp_path / "run"), progress=False)
    assert "from" not in result.model.meta and result.model.meta["preset"] == "vgg"
    assert RunConfig(dataset="shapes").resolve(6000, "images").start_from == "scratch"
    assert RunConfig().resolve(10_000, "digits").start_from == "scratch"
