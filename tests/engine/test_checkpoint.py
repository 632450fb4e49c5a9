"""Checkpoints survive what happens to real runs: a kill during a save, a diverging run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.runs import pipeline


def test_kill_9_during_saves_leaves_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    old = cl.build("default", seed=0)
    old.save(path)
    new = cl.build("default", seed=1)
    script = (
        "import cnnlab as cl\n"
        "model = cl.build('default', seed=1)\n"
        "print('saving', flush=True)\n"
        f"while True: model.save({str(path)!r})\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()  # the save loop has started
        time.sleep(0.5)  # let many saves start and finish; the kill lands in one of them
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    loaded = cl.Sequential.load(path).state_arrays()
    versions = [old.state_arrays(), new.state_arrays()]
    assert any(all(np.array_equal(loaded[k], v[k]) for k in v) for v in versions)


@pytest.mark.slow
def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    steps_per_epoch = 256 // 32

    def explode_after_one_epoch(config: object, steps: int) -> object:
        return lambda step: 0.01 if step < steps_per_epoch else 1e12

    monkeypatch.setattr(pipeline, "make_schedule", explode_after_one_epoch)
    out = tmp_path / "run"
    args = ["train", "--subset", "256", "--batch-size", "32", "--epochs", "3", "--quiet"]
    args += ["--outlier-exposure", "0"]  # digits only: 8 steps an epoch
    assert main([*args, "--model", "lenet5", "--optimizer", "sgd", "--out", str(out)]) == 2
    err = capfd.readouterr().err.strip()
    assert "diverged at step" in err and "epoch 2" in err
    assert "lower the learning rate" in err and "checkpoint.npz" in err
    assert len(err.splitlines()) == 1
    checkpoint = load_checkpoint(out / "checkpoint.npz")
    assert checkpoint.state.epoch == 1
    weights = checkpoint.model.state_arrays()
    assert all(np.isfinite(w).all() for w in weights.values())
    assert not (out / "model.npz").exists()
