"""Activation maps, occlusion, saliency, receptive fields and top patches on a trained CNN."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
from explain_support import trained_small_cnn

import cnnlab
from cnnlab.engine.gradcheck import kink_pattern
from cnnlab.explain.experiments import digits
from cnnlab.explain.maps import (
    activation_after,
    activation_maps,
    class_score_gradient,
    layer_outputs,
    maps_after_activation,
    occlusion,
    receptive_field,
    saliency,
    top_patches,
)
from cnnlab.runs.pictures import Picture, read_picture


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def seven() -> Picture:
    return read_picture(trained_small_cnn(), "mnist-sample:test:17")


def test_read_picture_reads_a_dataset_digit(seven) -> None:
    images, labels = cnnlab.data.load("mnist-sample", "test")
    assert seven.label == int(labels[17]) == 7
    np.testing.assert_allclose(seven.display, images[17] / 255.0, atol=1e-7)
    assert seven.x.shape == (1, 28, 28) and seven.size == (28, 28)


@pytest.mark.parametrize("spec", ["mnist-sample:test:99999", "sonar:test:1", "no-such-file.png"])
def test_read_picture_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(cnnlab.CnnlabError):
        read_picture(trained_small_cnn(), spec)


@pytest.mark.parametrize(("kind", "make"), [("FIFO", os.mkfifo), ("folder", os.mkdir)])
def test_read_picture_names_a_path_that_is_no_file(tmp_path, kind, make) -> None:
    path = tmp_path / "digit.png"
    make(path)
    with pytest.raises(cnnlab.CnnlabError, match=f"is a {kind}, not a regular file"):
        read_picture(trained_small_cnn(), str(path))


def test_activation_maps_are_the_conv_outputs(seven) -> None:
    model = trained_small_cnn()
    x = seven.x[None]
    maps = activation_maps(model, x)
    assert [m.index for m in maps] == [0, 3]
    assert maps[0].maps.shape == (6, 24, 24) and maps[1].maps.shape == (12, 8, 8)
    # The first map is the first layer's convolution, recomputed by hand for filter 2.
    w, b = model.layers[0].params["W"][2, 0], model.layers[0].params["b"][2]
    windows = np.lib.stride_tricks.sliding_window_view(seven.display, (5, 5))
    np.testing.assert_allclose(maps[0].maps[2], (windows * w).sum(axis=(2, 3)) + b, atol=1e-5)
    assert {m.activation for m in maps} == {""}


def test_maps_after_activation_apply_the_activation_that_follows_each_conv(seven) -> None:
    model = trained_small_cnn()  # conv → pool → ReLU → conv → pool → ReLU → ...
    x = seven.x[None]
    after = maps_after_activation(model, x)
    for raw, act in zip(activation_maps(model, x), after, strict=True):
        assert (act.index, act.name, act.activation) == (raw.index, raw.name, "ReLU")
        np.testing.assert_array_equal(act.maps, np.maximum(raw.maps, 0))
    # Max pooling commutes with ReLU: pooling the maps gives the pool → ReLU output of the model.
    pooled = after[0].maps.reshape(6, 12, 2, 12, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(pooled, layer_outputs(model, x)[2][0])
    tanh = cnnlab.Sequential([cnnlab.Conv2D(1, 2, 3, rng=0), cnnlab.Conv2D(2, 2, 3), cnnlab.Tanh()])
    assert [activation_after(tanh, i) is None for i in (0, 1)] == [True, False]
    first, second = maps_after_activation(tanh, x)
    assert (first.activation, second.activation) == ("", "Tanh")
    np.testing.assert_array_equal(first.maps, layer_outputs(tanh, x)[0][0])
    np.testing.assert_allclose(second.maps, layer_outputs(tanh, x)[2][0], rtol=1e-6)


def test_occlusion_is_lowest_over_the_strokes(seven) -> None:
    model = trained_small_cnn()
    occ = occlusion(model, seven.x[None], target=7)
    assert occ.grid.shape == (12, 12)
    assert occ.base_probability > 0.5
    strokes = seven.display > 0.5
    far = ~np.pad(strokes, 3)[:28, :28] & (seven.display == 0)  # background, not next to ink
    assert occ.pixel_map[strokes].mean() < occ.pixel_map[far].mean()
    # The most damaging patch position covers ink.
    r, c = np.unravel_index(occ.grid.argmin(), occ.grid.shape)
    top, left = occ.rows[r], occ.cols[c]
    assert strokes[top : top + occ.patch, left : left + occ.patch].any()


def test_occlusion_figure_shows_the_numbers_explain_prints(
    seven, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # The console said "lowest 0.7517" while the figure's colours spanned 0.950-1.000.
    from cnnlab.explain import figures

    occ = occlusion(trained_small_cnn(), seven.x[None], target=7)
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig) or path)
    figures.plot_occlusion(seven.display, occ, "7", tmp_path / "occlusion.png")
    middle = drawn[0].axes[1]
    np.testing.assert_array_equal(middle.images[0].get_array(), occ.grid)
    assert middle.images[0].get_clim() == (occ.grid.min(), occ.grid.max())
    assert f"lowest {occ.grid.min():.4f}" in middle.get_title()


def test_the_raw_step_is_labelled_with_the_files_own_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # A 640×480 photo was labelled "raw 384×512", the size it is drawn at.
    from PIL import Image

    from cnnlab.explain import figures

    page = np.full((480, 640), 230, np.uint8)
    page[150:350, 280:320] = 20  # a dark "1"
    Image.fromarray(page).save(tmp_path / "photo.png")
    item = read_picture(trained_small_cnn(), tmp_path / "photo.png")
    assert item.steps["raw"].shape == (384, 512) and item.size == (640, 480)
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig) or path)
    figures.plot_preprocessing(item.steps, tmp_path / "steps.png", {"raw": item.size[::-1]})
    titles = [ax.get_title() for ax in drawn[0].axes]
    assert titles[0] == "raw\n480×640 (shown 384×512)"
    assert titles[-1] == "centred\n28×28"


def test_saliency_is_the_gradient_of_the_class_score(seven) -> None:
    model = copy.deepcopy(trained_small_cnn()).astype(np.float64)
    x = seven.x[None].astype(np.float64)
    grad = class_score_gradient(model, x, 7)
    sal = saliency(model, x, 7)
    np.testing.assert_allclose(sal, np.abs(grad[0, 0]))
    model.train()
    model.forward(x)
    base = kink_pattern(model)
    eps, compared = 1e-6, 0
    ink = np.argwhere(seven.display > 0.5)
    for pixel in map(tuple, ink[:: max(1, len(ink) // 30)]):
        up, down = x.copy(), x.copy()
        up[(0, 0, *pixel)] += eps
        down[(0, 0, *pixel)] -= eps
        score_up = model.forward(up)[0, 7]
        crossed = not same(kink_pattern(model), base)
        score_down = model.forward(down)[0, 7]
        if crossed or not same(kink_pattern(model), base):
            continue  # a ReLU or max-pool kink sits right here: no derivative to compare
        compared += 1
        numeric = (score_up - score_down) / (2 * eps)
        assert grad[(0, 0, *pixel)] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    assert compared >= 3


def test_receptive_fields_of_the_presets() -> None:
    assert receptive_field(cnnlab.build("lenet5"), 3) == (14, 2, -2)
    assert receptive_field(cnnlab.build("default"), 3) == (14, 2, 0)
    assert receptive_field(cnnlab.build("lenet5"), 0) == (5, 1, -2)


def test_top_patches_are_the_strongest_receptive_fields() -> None:
    model = trained_small_cnn()
    x, _ = digits(200, "test")
    top = top_patches(model, x, k=9)
    assert top.layer_index == 3 and top.size == 14
    assert top.patches.shape == (12, 9, 14, 14)
    acts = layer_outputs(model, x)[3]  # (N, 12, 8, 8)
    for f in (0, 5, 11):
        best = np.sort(acts[:, f].ravel())[::-1][:9]
        np.testing.assert_allclose(top.activations[f], best, rtol=1e-6)
        n, i, j = top.sources[f, 0]
        assert acts[n, f, i, j] == top.activations[f, 0]
        # No padding in small_cnn: output (i, j) sees input rows 2i .. 2i+13.
        np.testing.assert_array_equal(
            top.patches[f, 0], x[n, 0, 2 * i : 2 * i + 14, 2 * j : 2 * j + 14]
        )
