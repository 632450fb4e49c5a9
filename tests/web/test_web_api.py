"""The web lab's JSON API through FastAPI's test client: predictions, refusals, models,
background training with its event stream, and the convolution demo's data."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("PIL")

from fastapi.testclient import TestClient
from web_helpers import (
    MODEL_RUN,
    digit_png,
    lab_client,
    most_at_once,
    sample_digits,
)

import cnnlab
from cnnlab.data.shapes import CLASSES as SHAPES
from cnnlab.engine.errors import CnnlabError
from cnnlab.web.app import MAX_BODY_BYTES, create_app
from cnnlab.web.training import MovingAverage


@pytest.fixture(scope="module")
def test_digits() -> tuple[np.ndarray, np.ndarray]:
    images, labels = sample_digits("test")
    return images[:60], labels[:60]


def decode_png(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def assert_refused(response, status: int, words: str) -> None:
    """A 4xx JSON refusal with a one-line message mentioning ``words``, no traceback."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    assert words.lower() in detail.lower(), detail


# -- predictions ----------------------------------------------------------------------------


def test_predict_array_matches_the_model_and_reads_mnist(client, model_file, test_digits):
    images, labels = test_digits
    model = cnnlab.Sequential.load(model_file)
    expected = np.asarray(model.predict_proba(cnnlab.to_input(images)))
    got = []
    for image in images:
        response = client.post("/api/predict", json={"pixels": (image / 255).tolist()})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == MODEL_RUN
        assert body["label"] == int(np.argmax(body["probabilities"]))
        assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        got.append(body["probabilities"])
    np.testing.assert_allclose(np.array(got), expected, atol=2e-6)
    accuracy = float((np.argmax(got, axis=1) == labels).mean())
    assert accuracy >= 0.85, accuracy


def test_predict_png_of_a_dark_on_light_digit_shows_each_step(client, test_digits):
    images, labels = test_digits
    model_says = [
        client.post("/api/predict", json={"pixels": (im / 255).tolist()}).json()["label"]
        for im in images[:10]
    ]
    index = next(i for i in range(10) if model_says[i] == labels[i])  # a digit it reads
    response = client.post(
        "/api/predict?activations=true",
        content=digit_png(images[index], scale=6, invert=True),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == labels[index]
    assert body["inverted"] is True
    steps = {s["name"]: s for s in body["steps"]}
    assert list(steps) == ["raw", "cropped", "upright", "fitted", "centred"]
    assert decode_png(steps["centred"]["png"]).shape == (28, 28)
    assert max(steps["fitted"]["width"], steps["fitted"]["height"]) == 20
    assert (steps["raw"]["width"], steps["raw"]["height"]) == (168, 168)
    convs = [layer for layer in body["activations"]]
    assert [c["layer"] for c in convs] == [0, 3]  # LeNet-5's two conv layers
    assert len(convs[0]["maps"]) == 6 and len(convs[1]["maps"]) == 16
    assert decode_png(convs[0]["maps"][0]).shape == (28, 28)
    assert decode_png(convs[1]["maps"][0]).shape == (10, 10)
    assert "after ReLU" in convs[0]["title"]


def test_occlusion_map_is_a_28_by_28_probability_drop(client, test_digits):
    images, _ = test_digits
    response = client.post("/api/occlusion", json={"pixels": (images[0] / 255).tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    values = np.array(body["values"])
    assert values.shape == (28, 28)
    assert values.max() > 0.0  # covering some of the digit lowers its probability
    assert values.max() <= body["probability"] + 1e-6
    assert decode_png(body["map"]).shape == (28, 28)


# -- refusals -------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` pixels, with a tiny image data chunk."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_body_over_2_mb_is_refused_from_its_content_length(client):
    response = client.post(
        "/api/predict",
        content=b"\x00" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "image/png"},
    )
    assert_refused(response, 413, "limit")


def test_streamed_body_over_2_mb_is_refused_while_counting(client):
    def chunks():
        for _ in range(3):
            yield b"\x00" * (1024 * 1024)

    response = client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert_refused(response, 413, "limit")


def test_image_claiming_too_many_pixels_is_refused_before_decoding(client):
    response = client.post(
        "/api/predict", content=png_header_only(20000, 20000), headers={"Content-Type": "image/png"}
    )
    assert_refused(response, 413, "pixels")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"not an image at all", "image/png", 422, "not an image"),
        (b"", "image/png", 422, "empty"),
        (b"{", "application/json", 422, "not valid JSON"),
        (b"[1, 2]", "application/json", 422, "pixels"),
        (b'{"pixels": [[1, 2], [3]]}', "application/json", 422, "rectangular"),
        (b'{"pixels": [[0.5, 0.5]]}', "application/json", 422, "28×28"),
        (b'{"pixels": "abc"}', "application/json", 422, "list of rows"),
        (b'{"pixels": [[1]], "preprocess": "yes"}', "application/json", 422, "preprocess"),
        (b"hello", "text/plain", 415, "Content-Type"),
    ],
)
def test_malformed_input_is_a_4xx_with_a_message(client, body, content_type, status, words):
    response = client.post("/api/predict", content=body, headers={"Content-Type": content_type})
    assert_refused(response, status, words)


@pytest.mark.parametrize("value", [float("nan"), 2.0, -0.5])
def test_pixel_values_outside_0_1_are_refused(client, value):
    pixels = np.zeros((28, 28))
    pixels[3, 4] = value
    body = json.dumps({"pixels": pixels.tolist()})  # json writes NaN, which Python reads back
    response = client.post(
        "/api/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert_refused(response, 422, "[0, 1]")


def test_blank_picture_has_no_ink(client):
    blank = digit_png(np.zeros((28, 28), np.uint8))
    response = client.post("/api/predict", content=blank, headers={"Content-Type": "image/png"})
    assert_refused(response, 422, "no ink")


def test_occlusion_refuses_a_bad_patch(client, test_digits):
    pixels = (test_digits[0][0] / 255).tolist()
    assert_refused(client.post("/api/occlusion?patch=40", json={"pixels": pixels}), 422, "patch")
    assert_refused(client.post("/api/occlusion?patch=abc", json={"pixels": pixels}), 422, "patch")


def test_predict_without_any_model_asks_for_training(tmp_path):
    with lab_client(create_app(None, runs_dir=str(tmp_path / "empty"))) as empty:
        assert empty.get("/api/models").json() == {"active": None, "models": []}
        response = empty.post("/api/predict", json={"pixels": np.zeros((28, 28)).tolist()})
        assert_refused(response, 503, "train")


def test_unknown_routes_and_methods_are_json(client):
    assert_refused(client.get("/api/nothing"), 404, "not found")
    assert_refused(client.get("/api/predict"), 405, "not allowed")


# -- models ---------------------------------------------------------------------------------


def test_models_are_listed_by_name_without_paths(client, runs_dir):
    response = client.get("/api/models")
    assert response.status_code == 200
    listing = response.json()
    assert listing["active"] == MODEL_RUN
    (entry,) = listing["models"]
    assert entry["name"] == MODEL_RUN and entry["active"] is True
    assert entry["preset"] == "lenet5" and entry["dataset"] == "mnist-sample"
    assert str(runs_dir) not in response.text and "/tmp" not in response.text


def test_select_accepts_only_listed_names(client, runs_dir, model_file):
    other = runs_dir / "second-run"
    other.mkdir()
    (other / "model.npz").write_bytes(model_file.read_bytes())
    (other / "metrics.json").write_text(json.dumps([{"epoch": 1, "test_accuracy": 0.5}]))
    listing = client.post("/api/models/select", json={"name": "second-run"}).json()
    assert listing["active"] == "second-run"
    assert {m["name"]: m["accuracy"] for m in listing["models"]}["second-run"] == 0.5
    assert client.get("/api/health").json()["model"] == "second-run"
    for name in ["../second-run", "/etc/passwd", str(other), "nope"]:
        assert_refused(client.post("/api/models/select", json={"name": name}), 404, "no model")
    assert_refused(client.post("/api/models/select", json={}), 422, "name")


def test_model_given_on_the_command_line_is_listed_by_its_stem(tmp_path, model_file):
    app = create_app(str(model_file), runs_dir=str(tmp_path / "runs"))
    with lab_client(app) as c:
        listing = c.get("/api/models").json()
    assert listing["active"] == model_file.stem
    assert listing["models"][0]["source"] == "command line"


@pytest.mark.parametrize(("bias", "unsure", "runner_up"), [(0.0, True, "1"), (9.0, False, "0")])
def test_predict_says_when_the_model_is_unsure(
    tmp_path: Path, bias: float, unsure: bool, runner_up: str
) -> None:
    # A model that ignores its input: equal logits (every class 10 %) or a clear 3.
    model = cnnlab.Sequential([cnnlab.Flatten(), cnnlab.Dense(784, 10)], input_shape=(1, 28, 28))
    model.layers[1].params["W"][...] = 0
    model.layers[1].params["b"][...] = 0
    model.layers[1].params["b"][3] = bias
    model.save(tmp_path / "flat.npz")
    with lab_client(create_app(str(tmp_path / "flat.npz"), runs_dir=str(tmp_path))) as c:
        body = c.post("/api/predict?steps=false", json={"pixels": np.eye(28).tolist()}).json()
    assert (body["unsure"], body["runner_up"], body["known"]) == (unsure, runner_up, True)
    assert body["class_name"] == ("0" if unsure else "3")


def test_predict_says_when_a_drawing_is_not_a_digit(client, monkeypatch) -> None:
    from cnnlab.runs import predict

    real = predict.assess
    monkeypatch.setattr(
        predict, "assess", lambda model, x: (real(model, x)[0], np.zeros(len(x), bool))
    )
    body = client.post("/api/predict?steps=false", json={"pixels": np.eye(28).tolist()}).json()
    assert body["known"] is False
    assert body["label"] == int(np.argmax(body["probabilities"]))
    assert body["class_name"] == body["class_names"][body["label"]]


# -- training -------------------------------------------------------------------------------


def read_events(client: TestClient) -> list[dict]:
    """Follow the SSE stream until the server ends it after the final event."""
    events = []
    with client.stream("GET", "/api/train/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    return events


def test_the_curves_moving_average_by_hand() -> None:
    average = MovingAverage(steps=2)  # β = 0.5
    assert average.add(4.0) == 4.0  # 0.5·4 = 2, corrected by 1 − 0.5: the first value itself
    assert average.add(2.0) == pytest.approx((0.5 * 2 + 0.5 * 2) / (1 - 0.25))  # 2.667
    steady = MovingAverage(steps=20)
    assert all(steady.add(0.7) == pytest.approx(0.7) for _ in range(50))  # no pull towards 0
    with pytest.raises(CnnlabError, match="steps must be an integer >= 1, got 0"):
        MovingAverage(steps=0)


def test_the_progress_curve_is_a_moving_average_of_every_step_across_epochs(client):
    # 96 digits and the 24 generated non-digits the digit recipe mixes in: 3 equal batches.
    config = {"preset": "simple", "epochs": 2, "subset": 96, "batch_size": 40, "seed": 3}
    assert client.post("/api/train", json=config).status_code == 202
    progress = [e for e in read_events(client) if e["type"] == "progress"]
    assert [(p["epoch"], p["batch"]) for p in progress] == [
        (e, b) for e in (1, 2) for b in (1, 2, 3)
    ]
    # Each step's own loss, from the epoch's running mean (equal batches).
    losses: list[float] = []
    for p in progress:
        k = p["batch"]
        losses.append(k * p["loss"] - (k - 1) * (progress[len(losses) - 1]["loss"] if k > 1 else 0))
    average = MovingAverage()
    for p, loss in zip(progress, losses, strict=True):
        assert p["smoothed_loss"] == pytest.approx(average.add(loss), rel=1e-6)
        assert 0 <= p["smoothed_accuracy"] <= 1
    # The first step's accuracy is its own; the running mean counts only pictures of a digit.
    assert progress[0]["smoothed_accuracy"] == pytest.approx(progress[0]["accuracy"], abs=1e-9)
    # The epoch's running mean starts again at the second epoch; the moving average does not.
    assert progress[3]["loss"] == pytest.approx(losses[3])
    assert progress[3]["smoothed_loss"] != pytest.approx(progress[3]["loss"])


@pytest.mark.slow
def test_training_streams_events_saves_a_run_and_activates_it(client, runs_dir):
    config = {
        "preset": "lenet5",
        "epochs": 1,
        "subset": 200,
        "batch_size": 50,
        "learning_rate": 0.01,  # 4 steps gave 14.9 % on the test split (0.002: 9.5-10.4 %, chance)
    }
    response = client.post("/api/train", json=config)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "running"
    assert_refused(client.post("/api/train", json=config), 409, "already running")
    events = read_events(client)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    # 200 digits and, by the default recipe's outlier exposure, 50 generated non-digits
    assert events[0]["train_size"] == 200 and events[0]["batches"] == 5
    progress = [e for e in events if e["type"] == "progress"]
    assert [p["batch"] for p in progress] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(p["loss"]) and 0 <= p["accuracy"] <= 1 for p in progress)
    (epoch,) = [e for e in events if e["type"] == "epoch"]
    filters = [e for e in events if e["type"] == "filters"][-1]["filters"]
    assert np.array(filters).shape == (6, 5, 5)  # LeNet-5's first layer: 6 filters of 5×5
    done = events[-1]
    assert done["stopped"] is False and done["activated"] is True
    assert done["test_accuracy"] == pytest.approx(epoch["test_accuracy"])
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    run = runs_dir / done["run"]
    saved = cnnlab.Sequential.load(run / "model.npz")
    assert saved.meta["test_accuracy"] == pytest.approx(done["test_accuracy"])
    assert json.loads((run / "metrics.json").read_text())[0]["epoch"] == 1
    assert json.loads((run / "config.json").read_text())["subset"] == 200
    listing = client.get("/api/models").json()
    assert listing["active"] == done["run"]
    assert {m["name"] for m in listing["models"]} == {MODEL_RUN, done["run"]}
    assert client.get("/api/train").json()["state"] == "finished"
    # The stream has nothing more to say once the job is over.
    assert (
        client.get("/api/train/events", headers={"Last-Event-ID": str(ids[-1])}).status_code == 204
    )
    # Predictions now come from the new model.
    pixels = np.zeros((28, 28))
    pixels[4:24, 13:15] = 1.0
    assert (
        client.post("/api/predict", json={"pixels": pixels.tolist()}).json()["model"] == done["run"]
    )


def test_stopped_training_is_saved_but_not_activated(client, runs_dir):
    response = client.post(
        "/api/train", json={"preset": "lenet5", "subset": 2000, "batch_size": 10, "epochs": 3}
    )
    assert response.status_code == 202
    with client.stream("GET", "/api/train/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "progress":
                break
    assert client.post("/api/train/stop", json={}).status_code == 200
    done = [e for e in read_events(client) if e["type"] == "done"][-1]
    assert done["stopped"] is True and done["activated"] is False
    assert (runs_dir / done["run"] / "model.npz").is_file()
    assert client.get("/api/models").json()["active"] == MODEL_RUN
    assert client.get("/api/train").json()["state"] == "stopped"
    assert_refused(client.post("/api/train/stop", json={}), 409, "no training job")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"epochs": 500}, "epochs"),
        ({"epochs": "many"}, "epochs"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"preset": "resnet"}, "preset"),
        ({"subset": 3}, "subset"),
        ({"dataset": "sonar"}, "not available"),
        ({"dataset": "../../etc"}, "not available"),
    ],
)
def test_bad_training_settings_are_refused(client, change, words):
    assert_refused(client.post("/api/train", json=change), 422, words)
    assert client.get("/api/train").json()["state"] == "idle"


def test_train_options_offer_the_bundled_sample(client):
    options = client.get("/api/train/options").json()
    assert options["datasets"][0] == "mnist-sample"
    assert set(options["presets"]) == {"default", "fast", "lenet5", "simple", "vgg"}
    assert options["defaults"]["epochs"] is None  # the recipe's, as the command line


def test_the_forms_defaults_train_what_cnnlab_train_runs(client):
    from cnnlab.cli.main import build_parser
    from cnnlab.cli.train import config_from_args
    from cnnlab.web.schemas import TrainRequest

    defaults = client.get("/api/train/options").json()["defaults"]
    web = TrainRequest(**defaults).to_config(None)
    cli = config_from_args(build_parser().parse_args(["train"]))
    for n_train in (10_000, 60_000):  # the sample, and full MNIST
        assert web.resolve(n_train) == cli.resolve(n_train)


# -- the rest -------------------------------------------------------------------------------


def test_article_example_comes_from_the_explain_module(client):
    from cnnlab.explain.article import ARTICLE_FILTER, ARTICLE_IMAGE

    body = client.get("/api/article").json()
    np.testing.assert_array_equal(body["image"], ARTICLE_IMAGE)
    np.testing.assert_array_equal(body["filter"], ARTICLE_FILTER)


def test_page_and_openapi_schema_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "cnnlab" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ["app.js", "app.css", "favicon.svg"]:
        assert client.get(f"/static/{asset}").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ["/api/predict", "/api/models", "/api/train", "/api/train/events"]:
        assert path in paths
    assert "image/png" in paths["/api/predict"]["post"]["requestBody"]["content"]


def test_serve_refuses_a_port_in_use(capsys):
    import socket

    from cnnlab.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        status = main(["serve", "--port", str(port), "--runs-dir", "/nonexistent-runs"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


@pytest.mark.slow
def test_the_train_tab_offers_the_colour_shapes_and_trains_them(client, runs_dir):
    options = client.get("/api/train/options").json()
    assert "shapes" in options["datasets"] and options["dataset_kinds"]["shapes"] == "images"
    assert options["dataset_kinds"]["mnist-sample"] == "digits"
    config = {"dataset": "shapes", "recipe": "pictures", "epochs": 1, "subset": 64}
    assert client.post("/api/train", json=config).status_code == 202
    events = read_events(client)
    assert events[0]["type"] == "start" and events[0]["train_size"] == 64, events[-1]
    assert events[0]["plan"].startswith("64 pictures, 6 classes (the pictures recipe's): batch 64")
    assert np.array(events[0]["filters"]).ndim == 3  # a colour model's filters, channel-averaged
    done = events[-1]
    assert done["type"] == "done", done
    model = cnnlab.Sequential.load(runs_dir / done["run"] / "model.npz")
    assert model.meta["kind"] == "images" and model.input_shape == (3, 32, 32)
    assert model.meta["class_names"] == list(SHAPES)


def test_predictions_run_on_at_most_the_model_threads(client, monkeypatch) -> None:
    """Requests beyond the limit wait in the event loop instead of crowding the cores."""
    pixels = [[0.0] * 28 for _ in range(28)]

    def send() -> int:
        return client.post("/api/predict?steps=false", json={"pixels": pixels}).status_code

    codes, most = most_at_once(monkeypatch, limit=2, requests=8, send=send)
    assert codes == [200] * 8
    assert most == 2


def test_the_model_list_shows_a_folder_data_set_by_its_name_only(runs_dir: Path) -> None:
    model = cnnlab.Sequential.load(runs_dir / MODEL_RUN / "model.npz")
    model.meta["dataset"] = "/home/someone/private/holiday-photos"
    model.save(runs_dir / MODEL_RUN / "model.npz")
    with lab_client(create_app(None, runs_dir=str(runs_dir))) as lab:
        shown = {m["name"]: m for m in lab.get("/api/models").json()["models"]}
    assert shown[MODEL_RUN]["dataset"] == "holiday-photos"
