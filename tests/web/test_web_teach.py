"""The Teach tab's API: name classes, add drawn examples, train through the lab's one job, and
ask the trained model — plus every refusal in one line, and the project as a data set the CLI
can use."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from threadpoolctl import threadpool_limits
from web_helpers import LAB_URL, most_at_once

import cnnlab
from cnnlab.engine.metrics import describe_accuracy
from cnnlab.web.app import create_app

CLASSES = ["circle", "cross", "line"]


def drawing(kind: str, rng: np.random.Generator, size: int = 224) -> bytes:
    """A PNG of dark ink on white, as the Teach pad sends: a circle, a cross or a line."""
    image = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    pen = ImageDraw.Draw(image)
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.2, 0.3) * size
    ink = (29, 42, 91, 255)
    if kind == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), outline=ink, width=14)
    elif kind == "cross":
        pen.line((cx - r, cy - r, cx + r, cy + r), fill=ink, width=14)
        pen.line((cx - r, cy + r, cx + r, cy - r), fill=ink, width=14)
    else:
        angle = rng.uniform(-0.3, 0.3)
        dx, dy = r * np.cos(angle), r * np.sin(angle)
        pen.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=ink, width=14)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    # One BLAS thread, as `cnnlab serve` runs (cnnlab/cli/main.py): many threads on tiny
    # batches made this training 30x slower on a busy 2-core machine.
    with (
        threadpool_limits(1, user_api="blas"),
        TestClient(
            create_app(None, runs_dir=str(tmp_path / "runs")), base_url=LAB_URL
        ) as test_client,
    ):
        yield test_client
        test_client.app.state.trainer.stop()
        test_client.app.state.trainer.join(60)


def send(client: TestClient, path: str, picture: bytes, **headers: str):
    """POST a picture as the Teach page does: its bytes, labelled with their type."""
    return client.post(path, content=picture, headers={"Content-Type": "image/png", **headers})


def wait_for_training(client: TestClient, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/api/teach/train").json()
        if status["state"] != "running":
            return status
        time.sleep(0.1)
    raise AssertionError("training did not end")


def test_three_drawn_classes_train_and_answer(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    started = time.monotonic()
    state = client.post("/api/teach/project", json={"classes": CLASSES}).json()
    assert [c["name"] for c in state["classes"]] == CLASSES
    for _ in range(10):
        for name in CLASSES:
            response = send(client, f"/api/teach/examples?label={name}", drawing(name, rng))
            assert response.status_code == 200, response.text
    assert [c["examples"] for c in response.json()["classes"]] == [10, 10, 10]
    trained_from = time.monotonic()
    assert client.post("/api/teach/train", json={}).status_code == 202
    status = wait_for_training(client)
    assert status["state"] == "finished", status
    # 2 of each class's 10 examples are held out to test: the page says how few
    right = round(status["test_accuracy"] * 6)
    assert status["accuracy_text"] == f"Trained: right on {describe_accuracy(right, 6)} held out."
    answers = []
    for name in CLASSES:
        result = send(client, "/api/teach/predict", drawing(name, rng)).json()
        assert result["class_names"] == CLASSES
        assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert len(result["occlusion"]) > 100
        answers.append(result["class_name"])
    now = time.monotonic()
    print(f"first example to a trained model answering: {now - started:.1f} s "
          f"(of which training and three answers {now - trained_from:.1f} s)")  # fmt: skip
    assert answers == CLASSES
    # The Draw tab reads digits: with the Teach model active it says so instead of guessing.
    refused = send(client, "/api/predict", drawing("line", rng))
    assert refused.status_code == 409 and "Teach tab" in refused.json()["detail"]
    # The project is an image-folder data set, and the run an ordinary run folder.
    data_dir = tmp_path / "runs" / "teach" / "project" / "data"
    assert sorted(p.name for p in data_dir.iterdir()) == CLASSES
    run = tmp_path / "runs" / status["run"]
    model = cnnlab.Sequential.load(run / "model.npz")
    assert model.meta["class_names"] == CLASSES and model.input_shape == (3, 32, 32)
    _answers_share_the_model_threads(client, monkeypatch)


def _answers_share_the_model_threads(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Teach answers (an occlusion map each) wait for the Draw tab's one-per-core threads."""
    picture = drawing("circle", np.random.default_rng(1))

    def answer() -> int:
        return send(client, "/api/teach/predict", picture).status_code

    codes, most = most_at_once(monkeypatch, limit=1, requests=4, send=answer)
    assert codes == [200] * 4
    assert most == 1


def test_teach_answers_are_worded_as_the_draw_tabs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.runs import predict

    # A picture model that ignores its input: every class 1/3, so always unsure.
    model = cnnlab.Sequential(
        [cnnlab.Flatten(), cnnlab.Dense(3 * 32 * 32, 3)], input_shape=(3, 32, 32)
    )
    for array in model.layers[1].params.values():
        array[...] = 0
    model.meta.update(kind="images", class_names=CLASSES, mean=[0.5] * 3, std=[0.25] * 3)
    model.save(tmp_path / "shapes.npz")
    app = create_app(str(tmp_path / "shapes.npz"), runs_dir=str(tmp_path / "runs"))
    picture = drawing("circle", np.random.default_rng(0))
    with TestClient(app, base_url=LAB_URL) as client:
        body = send(client, "/api/teach/predict", picture).json()
        assert (body["class_name"], body["unsure"], body["runner_up"]) == (
            CLASSES[0],
            True,
            CLASSES[1],
        )
        assert body["known"] is True
        real = predict.assess
        monkeypatch.setattr(predict, "assess", lambda m, x: (real(m, x)[0], np.zeros(len(x), bool)))
        assert send(client, "/api/teach/predict", picture).json()["known"] is False


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["only"], "name 2 to 10 classes"),
        (["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"], "name 2 to 10 classes"),
        (["cat", "Cat"], "must differ"),
        (["cat", "../dog"], "letters, digits, spaces"),
    ],
)
def test_bad_class_names_are_refused(client: TestClient, classes: list, message: str) -> None:
    response = client.post("/api/teach/project", json={"classes": classes})
    assert response.status_code == 422 and message in response.json()["detail"]


def test_a_run_that_does_not_learn_asks_for_other_examples(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Teach sets no learning rate, so "train again with a lower learning rate" is no advice.
    from cnnlab.engine.errors import TrainingDivergedError
    from cnnlab.web.routes.teach import TEACH_DIVERGED

    def stuck(config, folder):
        raise TrainingDivergedError(
            "training stopped learning at step 30: train again with a lower learning rate"
        )

    rng = np.random.default_rng(2)
    client.post("/api/teach/project", json={"classes": CLASSES})
    for _ in range(3):
        for name in CLASSES:
            send(client, f"/api/teach/examples?label={name}", drawing(name, rng))
    monkeypatch.setattr(client.app.state.trainer, "_train", stuck)
    assert client.post("/api/teach/train", json={}).status_code == 202
    status = wait_for_training(client)
    assert status["state"] == "failed" and status["error"] == TEACH_DIVERGED


def test_bad_examples_and_early_training_are_refused(client: TestClient) -> None:
    client.post("/api/teach/project", json={"classes": ["a", "b"]})
    bad = send(client, "/api/teach/examples?label=a", b"not a picture")
    assert bad.status_code == 422 and "not usable" in bad.json()["detail"]
    unknown = send(client, "/api/teach/examples?label=z", drawing("line", np.random.default_rng(1)))
    assert unknown.status_code == 422 and "no class 'z'" in unknown.json()["detail"]
    early = client.post("/api/teach/train", json={})
    assert early.status_code == 422 and "at least 2 examples" in early.json()["detail"]
    no_model = send(client, "/api/teach/predict", drawing("line", np.random.default_rng(2)))
    assert no_model.status_code == 503


def test_a_picture_over_the_pixel_budget_is_refused_from_its_header(client: TestClient) -> None:
    from hostile_files import png_claiming

    client.post("/api/teach/project", json={"classes": ["a", "b"]})
    for path in ("/api/teach/examples?label=a", "/api/teach/predict"):
        response = send(client, path, png_claiming(5000, 4000))  # 20 MP; the budget is 16
        if path.endswith("predict"):  # no picture model yet: refused before decoding
            assert response.status_code == 503
            continue
        assert response.status_code == 413, response.text
        detail = response.json()["detail"]
        assert "more than the limit" in detail and "\n" not in detail
    assert client.get("/api/teach/project").json()["classes"][0]["examples"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/teach/project", {"json": {"classes": ["a", "b"]}}),
        ("post", "/api/teach/examples?label=a", {"content": b"x"}),
        ("post", "/api/teach/train", {"json": {}}),
        ("post", "/api/teach/predict", {"content": b"x"}),
    ],
)
def test_teach_changes_come_only_from_the_labs_own_page(
    client: TestClient, method: str, path: str, body: dict
) -> None:
    headers = {"Origin": "http://evil.example", "Content-Type": "image/png"}
    refused = getattr(client, method)(path, headers=headers, **body)
    assert refused.status_code == 403 and "may not change the lab" in refused.json()["detail"]
    other_host = getattr(client, method)(
        path, headers={"Host": "evil.example", "Content-Type": "image/png"}, **body
    )
    assert other_host.status_code == 421
    assert client.get("/api/teach/project").json()["classes"] == []


def test_teach_training_is_the_labs_one_job_with_its_run_folder_cap(
    client: TestClient, tmp_path: Path
) -> None:
    from cnnlab.web.training import MAX_RUNS

    rng = np.random.default_rng(3)
    client.post("/api/teach/project", json={"classes": ["a", "b"]})
    for name in ("a", "a", "b", "b"):
        send(client, f"/api/teach/examples?label={name}", drawing("line", rng))
    for n in range(MAX_RUNS):  # as many old run folders as the lab ever makes
        (tmp_path / "runs" / f"old-{n}").mkdir()
    full = client.post("/api/teach/train", json={})
    assert full.status_code == 422 and f"limit of {MAX_RUNS}" in full.json()["detail"]
    assert client.get("/api/train").json()["state"] == "idle"


def _example() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_starting_over_never_deletes_what_a_linked_class_points_to(tmp_path: Path) -> None:
    from cnnlab.web.teach import Project

    project = Project(tmp_path / "runs")
    project.create(["a", "b"])
    project.add_example("a", _example())
    mine = tmp_path / "my-pictures"
    mine.mkdir()
    (mine / "cat.png").write_bytes(_example())
    (project.data_dir / "linked").symlink_to(mine, target_is_directory=True)
    (project.data_dir / "a" / "photo.jpg").write_bytes(b"not ours")  # a stray file
    state = project.create(["x", "y"])
    assert [c["name"] for c in state["classes"]] == ["x", "y"]
    assert (mine / "cat.png").exists()
    assert "runs" not in state["folder"].split("/")[0] and not state["folder"].startswith("/")


def test_an_example_never_brings_back_a_class_nor_overwrites_one(tmp_path: Path) -> None:
    from cnnlab.web.teach import Project, TeachError

    project = Project(tmp_path / "runs")
    project.create(["a", "b"])
    for _ in range(3):
        project.add_example("a", _example())
    (project.data_dir / "a" / "0000.png").unlink()  # removed by hand
    project.add_example("a", _example())
    assert sorted(p.name for p in (project.data_dir / "a").iterdir()) == [
        "0001.png",
        "0002.png",
        "0003.png",
    ]
    project.create(["x", "y"])
    with pytest.raises(TeachError, match="no class 'a'"):
        project.add_example("a", _example())
    assert project.classes() == ["x", "y"]
