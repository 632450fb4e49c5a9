"""Fixtures of the web API tests: a trained model, a runs folder holding it, a lab client."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_helpers import lab_client, make_runs_dir, trained_model_file

from cnnlab.web.app import create_app


@pytest.fixture(scope="session")
def model_file(request: pytest.FixtureRequest) -> Path:
    return trained_model_file(Path(request.config.cache.mkdir("cnnlab-web")))


@pytest.fixture
def runs_dir(tmp_path: Path, model_file: Path) -> Path:
    return make_runs_dir(tmp_path / "runs", model_file)


@pytest.fixture
def client(runs_dir: Path) -> TestClient:
    with lab_client(create_app(None, runs_dir=str(runs_dir))) as test_client:
        yield test_client
        test_client.app.state.trainer.stop()
        test_client.app.state.trainer.join(60)
