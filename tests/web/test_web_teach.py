"""The Teach tab's API: name classes, add drawn examples, train through the lab's one job, and
ask the trained model — plus every refusal in one line, and the project as a data set the CLI
can use."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from threadpoolctl import threadpool_limits
from web_helpers import lab_client, most_at_once

import cnnlab
from cnnlab.engine.metrics import describe_accuracy
from cnnlab.web.app import create_app

CLASSES = ["circle", "cross", "line"]


# Kinds of drawing that are none of CLASSES, for "none of these": the tune kinds chose how
# Teach sets its threshold (benchmarks/teach_unknowns.py); the held-out ones only measure it.
TUNE_KINDS = ("square", "triangle", "wave")
HELD_OUT_KINDS = ("zigzag", "plus", "dot")


def drawing(kind: str, rng: np.random.Generator, size: int = 224) -> bytes:
    """A PNG of dark ink on white, as the Teach pad sends: a circle, a cross or a line, or one
    of the other kinds above."""
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
    elif kind == "line":
        angle = rng.uniform(-0.3, 0.3)
        dx, dy = r * np.cos(angle), r * np.sin(angle)
        pen.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=ink, width=14)
    elif kind in ("square", "triangle"):
        corners = 4 if kind == "square" else 3
        turn = np.pi / corners + rng.uniform(-0.2, 0.2)
        angle = turn + 2 * np.pi * np.arange(corners + 1) / corners
        points = np.stack([cx + r * np.sin(angle), cy - r * np.cos(angle)], 1)
        pen.line([tuple(p) for p in points], fill=ink, width=14, joint="curve")
    elif kind in ("wave", "zigzag"):
        t = np.linspace(-1, 1, 40 if kind == "wave" else 6)
        height = rng.uniform(0.3, 0.5) * r * (1 if kind == "wave" else (-1) ** np.arange(6))
        y = np.sin(3 * t + rng.uniform(0, np.pi)) if kind == "wave" else np.ones(6)
        pen.line(list(zip(cx + r * t, cy + height * y, strict=True)), fill=ink, width=14,
                 joint="curve")  # fmt: skip
    elif kind == "plus":
        pen.line((cx - r, cy, cx + r, cy), fill=ink, width=14)
        pen.line((cx, cy - r, cx, cy + r), fill=ink, width=14)
    elif kind == "dot":
        r *= rng.uniform(0.3, 0.5)
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=ink)
    else:
        raise ValueError(f"no drawing of kind {kind!r}")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def teach_lab(tmp_path: Path) -> Iterator[TestClient]:
    """A lab on ``tmp_path / "runs"``, its training job stopped afterwards. One BLAS thread, as
    `cnnlab serve` runs (cnnlab/cli/main.py): many threads on tiny batches made this training
    30x slower on a busy 2-core machine."""
    with (
        threadpool_limits(1, user_api="blas"),
        lab_client(create_app(None, runs_dir=str(tmp_path / "runs"))) as test_client,
    ):
        yield test_client
        test_client.app.state.trainer.stop()
        test_client.app.state.trainer.join(60)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from teach_lab(tmp_path)


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


@pytest.mark.slow
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
    before = send(client, "/api/teach/predict", drawing("cross", rng)).json()
    assert (before["source"], before["examples"], before["class_name"]) == ("examples", 30, "cross")
    trained_from = time.monotonic()
    assert client.post("/api/teach/train", json={}).status_code == 202
    status = wait_for_training(client)
    assert status["state"] == "finished", status
    # The page says the accuracy with how many held-out examples it was measured on.
    right = status["test_accuracy"] * status["test_count"]
    assert 0 < status["test_count"] < 30 and right == pytest.approx(round(right))
    # 2 of each class's 10 examples are held out to test: the page says how few
    right = round(status["test_accuracy"] * 6)
    assert status["accuracy_text"] == f"Trained: right on {describe_accuracy(right, 6)} held out."
    answers = []
    for name in CLASSES:
        result = send(client, "/api/teach/predict", drawing(name, rng)).json()
        assert result["class_names"] == CLASSES
        assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert len(result["occlusion"]) > 100
        drop = np.asarray(result["occlusion_drop"])  # the same map as numbers, for the overlay
        assert drop.shape == (32, 32) and 0 <= drop.min() <= drop.max() <= 1
        assert (result["source"], result["examples"], result["known"]) == ("trained", 30, True)
        answers.append(result["class_name"])
    now = time.monotonic()
    print(f"first example to a trained model answering: {now - started:.1f} s "
          f"(of which training and three answers {now - trained_from:.1f} s)")  # fmt: skip
    assert answers == CLASSES
    # Another kind of drawing is none of these for the trained model too (the examples' verdict).
    other = send(client, "/api/teach/predict", drawing("triangle", rng)).json()
    assert (other["source"], other["known"]) == ("trained", False)
    # A new example: the trained model has not seen it, the examples answer again.
    send(client, "/api/teach/examples?label=line", drawing("line", rng))
    after = send(client, "/api/teach/predict", drawing("line", rng)).json()
    assert (after["source"], after["examples"], after["class_name"]) == ("examples", 31, "line")
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


def test_teach_answers_from_its_first_examples_worded_as_the_draw_tabs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.runs import predict

    # An active picture model that did not learn these examples never answers for them.
    model = cnnlab.Sequential(
        [cnnlab.Flatten(), cnnlab.Dense(3 * 32 * 32, 3)], input_shape=(3, 32, 32)
    )
    model.meta.update(kind="images", class_names=CLASSES, mean=[0.5] * 3, std=[0.25] * 3)
    model.save(tmp_path / "shapes.npz")
    app = create_app(str(tmp_path / "shapes.npz"), runs_dir=str(tmp_path / "runs"))
    rng = np.random.default_rng(0)
    with lab_client(app) as client:
        client.post("/api/teach/project", json={"classes": CLASSES})
        for name in CLASSES[:2]:
            send(client, f"/api/teach/examples?label={name}", drawing(name, rng))
        early = send(client, "/api/teach/predict", drawing("circle", rng))
        assert early.status_code == 503
        assert early.json()["detail"] == "give every class an example first; 'line' has none"
        send(client, "/api/teach/examples?label=line", drawing("line", rng))
        for name in CLASSES:  # one example a class is enough to answer
            body = send(client, "/api/teach/predict", drawing(name, rng)).json()
            assert (body["source"], body["examples"]) == ("examples", 3)
            assert (body["class_name"], body["known"]) == (name, True)
            assert np.asarray(body["occlusion_drop"]).shape == (32, 32)
        real = predict.assess
        even = np.full((1, 3), 1 / 3)  # every class 1/3: unsure, the runner-up the second
        monkeypatch.setattr(predict, "assess", lambda m, x: (even, real(m, x)[1]))
        body = send(client, "/api/teach/predict", drawing("circle", rng)).json()
        assert (body["class_name"], body["unsure"], body["runner_up"]) == (
            CLASSES[0],
            True,
            CLASSES[1],
        )
        monkeypatch.setattr(predict, "assess", lambda m, x: (even, np.zeros(len(x), bool)))
        assert send(client, "/api/teach/predict", drawing("circle", rng)).json()["known"] is False


def test_teach_says_none_of_these_for_another_kind_and_keeps_its_examples(
    client: TestClient,
) -> None:
    rng = np.random.default_rng(4)
    client.post("/api/teach/project", json={"classes": CLASSES})
    for _ in range(10):
        for name in CLASSES:
            send(client, f"/api/teach/examples?label={name}", drawing(name, rng))
    examples = client.get("/api/teach/project").json()["classes"]

    def answer(picture: bytes) -> tuple[str | None, str]:
        body = send(client, "/api/teach/predict", picture).json()
        assert (body["source"], body["examples"]) == ("examples", 30)
        return (body["class_name"] if body["known"] else None), body["class_name"]

    for k, name in enumerate(CLASSES):  # an example is its own class, and a new drawing too
        shown = examples[k]["pictures"][0]
        assert answer(client.get(f"/api/teach/examples/{name}/{shown['id']}").content)[0] == name
        assert answer(drawing(name, rng))[0] == name
    # Another kind of drawing is none of these (tests/web/test_teach_quick.py: more kinds).
    assert answer(drawing("square", rng))[0] is None


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


def test_starting_over_is_refused_while_the_examples_train(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    release = threading.Event()

    def held(config, folder):
        release.wait(60)
        return {"run": "x", "test_accuracy": 0.9, "test_count": 6, "stopped": False,
                "activated": False}  # fmt: skip

    rng = np.random.default_rng(3)
    client.post("/api/teach/project", json={"classes": CLASSES})
    for _ in range(2):
        for name in CLASSES:
            send(client, f"/api/teach/examples?label={name}", drawing(name, rng))
    monkeypatch.setattr(client.app.state.trainer, "_train", held)
    assert client.post("/api/teach/train", json={}).status_code == 202
    refused = client.post("/api/teach/project", json={"classes": ["a", "b"]})
    assert refused.status_code == 409 and "being trained" in refused.json()["detail"]
    assert [c["name"] for c in client.get("/api/teach/project").json()["classes"]] == sorted(
        CLASSES
    )
    release.set()
    assert wait_for_training(client)["state"] == "finished"
    assert client.post("/api/teach/project", json={"classes": ["a", "b"]}).status_code == 200


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
        ("delete", "/api/teach/examples/a/0000", {}),
    ],
)
def test_teach_changes_come_only_from_the_labs_own_page(
    client: TestClient, method: str, path: str, body: dict
) -> None:
    headers = {"Origin": "http://evil.example", "Content-Type": "image/png"}
    if method == "delete":  # an example a page from elsewhere could try to remove
        client.post("/api/teach/project", json={"classes": ["a", "b"]})
        send(client, "/api/teach/examples?label=a", _example())
    before = client.get("/api/teach/project").json()["classes"]
    refused = getattr(client, method)(path, headers=headers, **body)
    assert refused.status_code == 403 and "may not change the lab" in refused.json()["detail"]
    other_host = getattr(client, method)(
        path, headers={"Host": "evil.example", "Content-Type": "image/png"}, **body
    )
    assert other_host.status_code == 421
    assert client.get("/api/teach/project").json()["classes"] == before


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


def test_classes_keep_the_order_typed_and_examples_are_listed_shown_and_removed(
    client: TestClient, tmp_path: Path
) -> None:
    typed = ["line", "cross", "circle"]  # not alphabetical
    state = client.post("/api/teach/project", json={"classes": typed}).json()
    assert [c["name"] for c in state["classes"]] == typed
    for _ in range(3):
        state = send(client, "/api/teach/examples?label=cross", _example()).json()
    cross = state["classes"][1]
    assert cross["examples"] == 3
    assert [e["id"] for e in cross["pictures"]] == ["0000", "0001", "0002"]
    # The folders stay a plain image-folder data set; the order is kept beside them.
    data_dir = tmp_path / "runs" / "teach" / "project" / "data"
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(typed)
    assert [c["name"] for c in client.get("/api/teach/project").json()["classes"]] == typed

    shown = client.get("/api/teach/examples/cross/0001")
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(shown.content)).size == (64, 64)

    removed = client.delete(
        "/api/teach/examples/cross/0001", headers={"Content-Type": "application/json"}
    )
    assert removed.status_code == 200, removed.text
    cross = removed.json()["classes"][1]
    assert (cross["examples"], [e["id"] for e in cross["pictures"]]) == (2, ["0000", "0002"])
    assert not (data_dir / "cross" / "0001.png").exists()
    for path in ("/api/teach/examples/cross/0001", "/api/teach/examples/cross/0001.png"):
        gone = client.get(path)
        assert gone.status_code == 404 and "no example" in gone.json()["detail"]
    unknown = client.delete(
        "/api/teach/examples/dog/0000", headers={"Content-Type": "application/json"}
    )
    assert unknown.status_code == 422 and "no class 'dog'" in unknown.json()["detail"]


def test_a_project_from_before_the_order_was_kept_lists_its_folders_sorted(tmp_path: Path) -> None:
    from cnnlab.web.teach import Project

    project = Project(tmp_path / "runs")
    project.create(["b", "a"])
    project.order_file.unlink()
    assert project.classes() == ["a", "b"]
    project.order_file.write_text("not json")
    assert project.classes() == ["a", "b"]
    project.order_file.write_text('["b"]')  # a class folder it does not name comes after
    assert project.classes() == ["b", "a"]


def test_an_example_is_never_read_through_a_link(tmp_path: Path) -> None:
    from cnnlab.web.teach import ExampleNotFoundError, Project

    project = Project(tmp_path / "runs")
    project.create(["a", "b"])
    secret = tmp_path / "secret.png"
    secret.write_bytes(_example())
    (project.data_dir / "a" / "0000.png").symlink_to(secret)
    assert project.state()["classes"][0]["examples"] == 1  # listed, as the data set would
    with pytest.raises(ExampleNotFoundError):
        project.example_png("a", "0000")
    with pytest.raises(ExampleNotFoundError):
        project.remove_example("a", "0000")
    assert secret.exists()
