"""The figure base (one figure maker, one atomic save) and the training-run figures."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cnnlab.engine.errors import MissingPackageError, install_hint
from cnnlab.figures import base, plots


def test_without_matplotlib_a_figure_is_a_one_line_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if absent
    with pytest.raises(MissingPackageError, match=re.escape(install_hint("lab"))) as err:
        base.new_figure(2, 2)
    assert "\n" not in str(err.value)


def test_save_writes_a_png_and_keeps_the_old_file_when_drawing_fails(tmp_path: Path) -> None:
    fig = base.new_figure(2, 1.5)
    fig.subplots().plot([0, 1], [1, 0])
    path = base.save(fig, tmp_path / "a.png")
    assert path == tmp_path / "a.png"
    assert Image.open(path).size == (round(2 * base.DPI), round(1.5 * base.DPI))

    class Broken:
        def savefig(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("drawing failed")

    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        base.save(Broken(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left


@pytest.mark.parametrize(
    ("count", "shape"), [(1, (1, 1)), (6, (1, 6)), (8, (1, 8)), (16, (2, 8)), (17, (3, 8))]
)
def test_grid_shape(count: int, shape: tuple[int, int]) -> None:
    assert base.grid_shape(count) == shape


def test_filters_share_one_colour_scale(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append(fig) or Path(path))
    filters = np.stack([np.full((5, 5), 0.1), np.full((5, 5), -2.0), np.eye(5)])  # (3, 5, 5)
    plots.plot_filters(filters, tmp_path / "f.png")
    images = [image for ax in drawn[0].axes for image in ax.get_images()]
    assert len(images) == 3
    assert {image.get_clim() for image in images} == {(-2.0, 2.0)}


def test_filter_grid_grows_by_rows_of_eight(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    six = Image.open(plots.plot_filters(rng.normal(size=(6, 5, 5)), tmp_path / "6.png"))
    sixteen = Image.open(plots.plot_filters(rng.normal(size=(16, 5, 5)), tmp_path / "16.png"))
    assert sixteen.width > six.width and sixteen.height > six.height


def test_the_loss_curve_shows_training_and_test_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append(fig) or Path(path))
    history = [
        {"epoch": e, "train_loss": 1 / e, "test_loss": 1.2 / e, "train_accuracy": 0.5,
         "test_accuracy": 0.6}
        for e in (1, 2, 3)
    ]  # fmt: skip
    plots.plot_curves(history, tmp_path / "curves.png")
    loss_ax = drawn[0].axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in loss_ax.get_lines()}
    assert lines == {"train": [1, 0.5, 1 / 3], "test": [1.2, 0.6, 1.2 / 3]}
    # A run from before the test loss was recorded still draws its training loss.
    old = [{k: v for k, v in h.items() if k != "test_loss"} for h in history]
    plots.plot_curves(old, tmp_path / "curves.png")
    assert [line.get_label() for line in drawn[1].axes[0].get_lines()] == ["train"]
