"""Teach offers ResNet-18 trained on ImageNet once its weights are in the cache (it never
downloads them): the project's state lists the starting points usable now, training takes one
of them, and the page shows the choice only when there is one."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from PIL import Image
from resnet_checkpoint import NAME, pin_to, write_checkpoint
from test_web_teach import teach_lab

import cnnlab as cl
from cnnlab.runs.pretrained import weights_path

CLASSES = ["warm", "cold"]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield from teach_lab(tmp_path)


def cache_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a test checkpoint where the downloaded weights are kept, pinned to its hash (the
    host refuses connections: nothing may be downloaded)."""
    path = weights_path(NAME)
    path.parent.mkdir(parents=True)
    write_checkpoint(path, seed=5)
    pin_to("http://127.0.0.1:9/", path.read_bytes(), monkeypatch)


def colour(rgb: tuple[int, int, int], rng: np.random.Generator) -> bytes:
    pixels = np.clip(np.array(rgb) + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def add_examples(client: TestClient, n: int) -> None:
    rng = np.random.default_rng(0)
    client.post("/api/teach/project", json={"classes": CLASSES})
    for _ in range(n):
        for name, rgb in zip(CLASSES, [(220, 90, 40), (40, 90, 220)], strict=True):
            response = client.post(
                f"/api/teach/examples?label={name}",
                content=colour(rgb, rng),
                headers={"Content-Type": "image/png"},
            )
            assert response.status_code == 200, response.text


def test_the_cached_network_is_offered_and_nothing_else(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/api/teach/project").json()["starts"] == ["extractor"]
    page = client.get("/").text
    assert 'id="teach-start-field" hidden' in page  # no choice, no select
    cache_the_weights(monkeypatch)
    assert client.get("/api/teach/project").json()["starts"] == ["extractor", NAME]
    add_examples(client, 2)
    for start in ["scratch", "no-such-start", "/etc/passwd"]:
        response = client.post("/api/teach/train", json={"start_from": start})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "\n" not in detail and f"it offers extractor, {NAME}" in detail


@pytest.mark.slow  # an 11-million-weight network: features, then predictions with occlusion
def test_teach_trains_from_the_cached_network(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_the_weights(monkeypatch)
    add_examples(client, 4)
    assert client.post("/api/teach/train", json={"start_from": NAME}).status_code == 202
    deadline = time.monotonic() + 300
    while (status := client.get("/api/teach/train").json())["state"] == "running":
        assert time.monotonic() < deadline, "training did not end"
        time.sleep(0.1)
    assert status["state"] == "finished", status
    run = client.app.state.trainer.config
    assert (run.start_from, run.image_size) == (NAME, 64)
    model = cl.Sequential.load(tmp_path / "runs" / status["run"] / "model.npz")
    assert model.meta["from"]["source"] == NAME and model.meta["from"]["trained"] == "head"
    assert model.input_shape == (3, 64, 64)
    rng = np.random.default_rng(1)
    response = client.post(
        "/api/teach/predict", content=colour((220, 90, 40), rng),
        headers={"Content-Type": "image/png"},
    )  # fmt: skip
    result = response.json()
    assert response.status_code == 200 and result["class_names"] == sorted(CLASSES)
    assert np.asarray(result["occlusion_drop"]).shape == (64, 64)
