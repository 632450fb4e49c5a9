"""One way to train: the same choices through ``cnnlab train`` and through the web lab give
the same weights and the same config.json schema, whatever the BLAS's thread count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from threadpoolctl import threadpool_limits
from web_helpers import lab_client

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.web.app import create_app


@pytest.mark.slow  # trains twice
def test_cli_and_web_train_the_same_network(tmp_path: Path) -> None:
    # The BLAS may use 2 threads outside cnnlab's work; both paths keep it on one while they
    # train. The web's training thread comes second, after the command line's main thread
    # (a multi-threaded BLAS on some CPUs changes the last bits of the weights).
    with threadpool_limits(limits=2, user_api="blas"):
        cli_run, web_run = train_through_both(tmp_path)

    cli_config = json.loads((cli_run / "config.json").read_text())
    web_config = json.loads((web_run / "config.json").read_text())
    assert cli_config.keys() == web_config.keys()
    assert cli_config == web_config  # the same run: recipe's schedule and smoothing, momentum
    assert web_config["schedule"] == "onecycle" and web_config["momentum"] == 0.9
    cli_weights = cl.Sequential.load(cli_run / "model.npz").state_arrays()
    web_weights = cl.Sequential.load(web_run / "model.npz").state_arrays()
    assert cli_weights.keys() == web_weights.keys()
    for key, value in cli_weights.items():
        np.testing.assert_array_equal(web_weights[key], value, err_msg=key)
    assert json.loads((cli_run / "metrics.json").read_text())[-1]["epoch"] == 2
    for name in ("curves.png", "confusion.png", "filters.png", "misclassified.png"):
        assert (web_run / name).read_bytes() and (cli_run / name).read_bytes(), name


def train_through_both(tmp_path: Path) -> tuple[Path, Path]:
    """The same small run through ``cnnlab train`` and then ``POST /api/train``."""
    cli_run = tmp_path / "cli"
    args = ["train", "--recipe", "fast", "--model", "lenet5", "--optimizer", "sgd", "--lr",
            "0.03", "--batch-size", "40", "--epochs", "2", "--subset", "200", "--seed", "7",
            "--quiet", "--out", str(cli_run)]  # fmt: skip
    assert main(args) == 0

    request = {"recipe": "fast", "preset": "lenet5", "optimizer": "sgd", "learning_rate": 0.03,
               "batch_size": 40, "epochs": 2, "subset": 200, "seed": 7}  # fmt: skip
    with lab_client(create_app(None, runs_dir=str(tmp_path / "runs"))) as client:
        assert client.post("/api/train", json=request).status_code == 202
        client.app.state.trainer.join(300)
        status = client.get("/api/train").json()
    assert status["state"] == "finished", status
    (web_run,) = (tmp_path / "runs").iterdir()
    return cli_run, web_run
