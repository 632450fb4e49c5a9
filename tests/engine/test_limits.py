"""What a model file may make cnnlab allocate (cnnlab.engine.limits): hostile architectures
and archives are refused before the memory they ask for is taken, with one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (
    archive,
    fifo_writer,
    model_file,
    model_members,
    peak_bytes,
    seed_model,
    with_zero_member,
)

import cnnlab
from cnnlab.engine import limits
from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.serialize import model_from_config
from cnnlab.engine.train import TrainState

MB = 1 << 20


def config_with(layer: int, **changes: object) -> dict:
    config = seed_model().config()
    config["layers"][layer].update(changes)
    return config


def on_disk(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    return path


def test_a_padding_bomb_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """``padding: 6000`` fits every stored weight and would make 12,028² activations."""
    path = on_disk(tmp_path, model_file(config_with(0, padding=6000)))
    assert peak_bytes(cnnlab.Sequential.load, path) < 4 * MB
    with pytest.raises(CnnlabError, match=r"layer 0 \(Conv2D\) has padding 6000.*limit of 64"):
        cnnlab.Sequential.load(path)


def test_padding_as_wide_as_the_kernel_is_refused(tmp_path: Path) -> None:
    path = on_disk(tmp_path, model_file(config_with(0, padding=3)))
    with pytest.raises(CnnlabError, match="pads by 3, not less than its kernel 3"):
        cnnlab.Sequential.load(path)


def test_activations_too_big_for_the_input_are_refused(tmp_path: Path) -> None:
    config = seed_model().config()
    config["input_shape"] = [1, 1200, 1200]  # the conv unfolds it into 9 × 1198² numbers
    path = on_disk(tmp_path, model_file(config))
    with pytest.raises(CnnlabError, match=r"layer 0 \(Conv2D\(1, 2, 3\)\) would hold 12,916,836"):
        cnnlab.Sequential.load(path)
    config["input_shape"] = [1, 4000, 4000]
    with pytest.raises(CnnlabError, match="its input would hold 16,000,000 numbers"):
        cnnlab.Sequential.load(on_disk(tmp_path, model_file(config)))


def test_without_an_input_shape_activations_are_bounded_at_the_assumed_one(
    tmp_path: Path,
) -> None:
    """No ``input_shape``: the digits' 1×28×28 is assumed (what every command feeds such a
    model), or the size the meta's ``input`` describes; layers taking neither are refused."""
    config = config_with(0, kernel_size=63, padding=62)  # 63² taps × 90² positions at 28×28
    config["input_shape"] = None
    path = on_disk(tmp_path, model_file(config))
    assert peak_bytes(cnnlab.Sequential.load, path) < 4 * MB
    with pytest.raises(CnnlabError, match=r"layer 0 \(Conv2D\(1, 2, 63.*would hold 32,148,900"):
        cnnlab.Sequential.load(path)
    config = seed_model().config()
    config["input_shape"] = None
    config["meta"] = {"input": "600x600 grey"}  # 9 taps × 598² positions
    with pytest.raises(CnnlabError, match="would hold 3,218,436 numbers"):
        cnnlab.Sequential.load(on_disk(tmp_path, model_file(config)))
    config["meta"] = {"input": "28x28 colour (RGB)"}  # the conv takes one channel, not three
    with pytest.raises(CnnlabError, match=r"declares no input_shape and layer 0 .* 3×28×28"):
        cnnlab.Sequential.load(on_disk(tmp_path, model_file(config)))
    del config["meta"]
    assert cnnlab.Sequential.load(on_disk(tmp_path, model_file(config))).input_shape is None
    dense = cnnlab.Sequential([cnnlab.Dense(60, 2)])  # a first dense layer names its input
    dense.save(tmp_path / "dense.npz")
    assert cnnlab.Sequential.load(tmp_path / "dense.npz").layers[0].in_features == 60


def test_a_conv_unfolding_too_much_is_refused() -> None:
    layers = [cnnlab.Conv2D(1, 1, 31, padding=15)]  # 31² taps × 256² positions = 63 M
    with pytest.raises(CnnlabError, match="would hold 62,980,096 numbers"):
        limits.check_activations(layers, (1, 256, 256), "x.npz")
    limits.check_activations(layers, (1, 28, 28), "x.npz")  # 31² × 28² = 0.75 M: within


def test_too_many_layers_are_refused(tmp_path: Path) -> None:
    config = seed_model().config()
    config["layers"] += [{"type": "ReLU"}] * limits.MAX_LAYERS
    with pytest.raises(CnnlabError, match=r"\d+ layers, more than the limit of 256"):
        cnnlab.Sequential.load(on_disk(tmp_path, model_file(config)))


def test_an_architecture_from_json_is_bounded_too() -> None:
    config = {"layers": [{"type": "Dense", "in_features": 1000, "out_features": 20_000}]}
    with pytest.raises(CnnlabError, match="declares 20,020,000 weights, more than the 16,777,216"):
        model_from_config(cnnlab.Sequential, config)
    with pytest.raises(CnnlabError, match="kernel_size 99, more than the limit of 64"):
        model_from_config(cnnlab.Sequential, {"layers": [{"type": "MaxPool2D", "kernel_size": 99}]})


def test_an_undeclared_member_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A valid model plus 256 MB of deflated zeros (1 MB on disk): refused from the archive's
    directory; reading it would have cost 256 MB."""
    path = with_zero_member(tmp_path / "bomb.npz", model_members(), "zeros.npy", 256 * MB)
    assert path.stat().st_size < 2 * MB
    assert peak_bytes(cnnlab.Sequential.load, path) < 4 * MB
    with pytest.raises(CnnlabError, match=r"holds 'zeros\.npy', which its architecture does not"):
        cnnlab.Sequential.load(path)


def test_optimizer_state_bigger_than_the_weights_is_refused(tmp_path: Path) -> None:
    path = with_zero_member(tmp_path / "bomb.npz", model_members(), "optimizer.0.npy", 64 * MB)
    assert peak_bytes(cnnlab.Sequential.load, path) < 4 * MB
    members = model_members() | {"optimizer.40.npy": model_members()["layers.0.W.npy"]}
    with pytest.raises(
        CnnlabError, match=r"'optimizer\.40\.npy' is more optimizer state than 10 weight"
    ):
        cnnlab.Sequential.load(on_disk(tmp_path, archive(members)))


def test_a_real_checkpoint_still_loads(tmp_path: Path) -> None:
    model = seed_model()
    optimizer = cnnlab.Adam(model.parameters(), lr=1e-3)
    state = TrainState(epoch=1)
    save_checkpoint(tmp_path / "c.npz", model, optimizer, state, {"lr": 1e-3})
    back = load_checkpoint(tmp_path / "c.npz")
    assert len(back.optimizer_arrays) == 2 * len(model.parameters())
    assert cnnlab.Sequential.load(tmp_path / "c.npz").num_params() == model.num_params()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_weights_that_are_not_finite_are_refused(tmp_path: Path, bad: float) -> None:
    weights = seed_model().state_arrays()["layers.4.W"].copy()
    weights[3, 5] = bad
    path = on_disk(tmp_path, model_file(layers__4__W=weights))
    with pytest.raises(CnnlabError, match=r"layers\.4\.W holds NaN or inf.*diverged"):
        cnnlab.Sequential.load(path)


def test_a_member_is_read_in_bounded_chunks() -> None:
    import io

    data = np.arange(3 * limits.CHUNK_BYTES // 4 + 5, dtype=np.float32)
    reads = []

    class Recorder(io.BytesIO):
        def readinto(self, buffer) -> int:
            reads.append(len(buffer))
            return super().readinto(buffer)

    out = np.empty_like(data)
    limits.read_into(Recorder(data.tobytes()), out, "x.npy")
    np.testing.assert_array_equal(out, data)
    assert max(reads) == limits.CHUNK_BYTES and len(reads) == 4
    with pytest.raises(ValueError, match="ends 20 bytes before"):
        limits.read_into(io.BytesIO(data.tobytes()[:-20]), np.empty_like(data), "x.npy")


def test_a_fifo_given_as_a_model_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    with fifo_writer(fifo), pytest.raises(CnnlabError, match="is a FIFO, not a regular file"):
        cnnlab.Sequential.load(fifo)


def test_the_presets_are_far_inside_the_limits() -> None:
    for name in ("default", "fast", "lenet5", "simple"):
        model = cnnlab.build(name)
        config = json.loads(json.dumps(model.config()))
        limits.check_arguments(config["layers"], name)
        limits.check_activations(model.layers, model.input_shape, name)
        assert model.num_params() < limits.MAX_WEIGHTS // 16


def test_an_archive_listing_too_many_entries_is_refused_from_its_end_record(
    tmp_path: Path,
) -> None:
    members = model_members() | {f"x{i}.npy": b"" for i in range(limits.MAX_MEMBERS + 1)}
    path = on_disk(tmp_path, archive(members))
    assert peak_bytes(cnnlab.Sequential.load, path) < 2 * MB  # zipfile's directory: 500+ KB
    with pytest.raises(CnnlabError, match=r"lists 1,052 entries .* at most 1,040"):
        cnnlab.Sequential.load(path)


def test_the_meta_is_read_without_the_weights(tmp_path: Path) -> None:
    from cnnlab.engine.serialize import read_meta

    members = model_members()
    members["layers.0.W.npy"] = b"damaged"  # loading the model would refuse it
    path = on_disk(tmp_path, archive(members))
    assert read_meta(path) == {"preset": "fuzz"}
    with pytest.raises(CnnlabError, match="damaged"):
        cnnlab.Sequential.load(path)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_a_model_linked_to_an_unreadable_regular_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "model.npz").symlink_to("/proc/self/mem")
    with pytest.raises(CnnlabError, match="cannot read it") as info:
        cnnlab.Sequential.load(tmp_path / "model.npz")
    assert "\n" not in str(info.value)
