"""RunFolder: one naming scheme, refusing to overwrite a run, listing, and resolving "a run
folder or a model file"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cnnlab as cl
from cnnlab.engine.errors import CnnlabError
from cnnlab.runs.folder import MODEL_FILE, RunFolder, list_runs, model_name, model_path


def test_new_folders_are_timestamped_and_never_shared(tmp_path: Path) -> None:
    first, second = RunFolder.new(tmp_path), RunFolder.new(tmp_path)
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", first.name)
    assert first.path != second.path and first.path.is_dir() and second.path.is_dir()


def test_create_refuses_a_folder_that_holds_a_run(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run")
    cl.build("lenet5").save(folder.model_file)
    with pytest.raises(CnnlabError, match="already holds a run"):
        RunFolder.create(tmp_path / "run")


def test_create_names_an_unwritable_place(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CnnlabError, match="cannot write a run folder here"):
        RunFolder.create(tmp_path / "file" / "run")


def test_listing_and_resolving(tmp_path: Path) -> None:
    done, empty = RunFolder.new(tmp_path / "runs"), RunFolder.new(tmp_path / "runs")
    cl.build("lenet5").save(done.model_file)
    assert list_runs(tmp_path / "runs") == {done.name: done.model_file}
    assert list_runs(tmp_path / "nowhere") == {}
    assert model_path(done.path) == done.model_file
    assert model_path(tmp_path / "x.npz") == tmp_path / "x.npz"
    with pytest.raises(CnnlabError, match=f"has no {MODEL_FILE}"):
        model_path(empty.path)
    assert model_name(done.model_file) == done.name and model_name(tmp_path / "x.npz") == "x"


def test_metrics_are_written_whole(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "run")
    folder.write_metrics([{"epoch": 1, "train_loss": 0.5}])
    assert folder.metrics_file.read_text().startswith("[\n")
    assert sorted(p.name for p in folder.path.iterdir()) == ["metrics.json"]


def test_the_recorded_learning_rate_is_read_beside_a_runs_model(tmp_path: Path) -> None:
    from cnnlab.runs.folder import recorded_optimizer

    run = tmp_path / "run"
    run.mkdir()
    model = run / "model.npz"
    assert recorded_optimizer(model) is None  # no config.json
    (run / "config.json").write_text('{"optimizer": "adam", "lr": 0.002, "epochs": 12}')
    assert recorded_optimizer(model) == ("adam", 0.002)
    (run / "config.json").write_text('{"learning_rate": 0.05}')  # an older web run's name
    assert recorded_optimizer(model) == ("the run's optimizer", 0.05)
    for broken in ('{"lr": -1}', '{"lr": true}', '{"lr": "fast"}', "[0.1]", "{not json"):
        (run / "config.json").write_text(broken)
        assert recorded_optimizer(model) is None, broken
    (run / "config.json").write_text('{"lr": 0.1}')
    assert recorded_optimizer(run / "other.npz") is None  # not a run's model file
