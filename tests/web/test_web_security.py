"""The lab against other web pages and hostile clients: Host and Origin checks, form posts,
nosniff, no server paths in messages, deep or mistyped JSON, request heads bounded in bytes
and time."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient
from web_helpers import LAB_URL, MODEL_RUN, Server

from cnnlab.web.app import create_app
from cnnlab.web.security import GuardedHttpToolsProtocol, host_name, without_paths

TRAIN = {"dataset": "mnist-sample", "preset": "simple", "subset": 20, "epochs": 1}


def detail(response) -> str:
    return response.json()["detail"]


@pytest.mark.parametrize("route", ["/api/health", "/api/models", "/"])
def test_a_foreign_host_name_is_refused(client, route):
    response = client.get(route, headers={"Host": "evil.example"})
    assert response.status_code == 421
    assert "evil.example" in detail(response) and "127.0.0.1" in detail(response)


def test_dns_rebinding_cannot_start_training(client, runs_dir):
    before = sorted(p.name for p in runs_dir.iterdir())
    response = client.post(
        "/api/train",
        json=TRAIN,
        headers={"Host": "evil.example:8000", "Origin": "http://evil.example:8000"},
    )
    assert response.status_code == 421
    assert client.get("/api/train").json()["state"] == "idle"
    assert sorted(p.name for p in runs_dir.iterdir()) == before


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000"])
def test_the_loopback_names_are_answered_on_any_port(client, host):
    assert client.get("/api/health", headers={"Host": host}).status_code == 200


def test_the_names_given_at_start_are_answered(runs_dir):
    app = create_app(None, runs_dir=str(runs_dir), hosts=("lab.local",))
    with TestClient(app, base_url="http://lab.local:8000") as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"Host": "other.local"}).status_code == 421


@pytest.mark.parametrize(
    ("route", "body"),
    [("/api/train", TRAIN), ("/api/models/select", {"name": MODEL_RUN}), ("/api/train/stop", {})],
)
def test_a_cross_site_origin_may_not_change_the_lab(client, route, body):
    response = client.post(route, json=body, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    assert "evil.example" in detail(response)
    assert client.get("/api/train").json()["state"] == "idle"


def test_a_browser_labelled_cross_site_request_is_refused(client):
    response = client.post("/api/train", json=TRAIN, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert client.get("/api/train").json()["state"] == "idle"


def test_the_labs_own_origin_may_change_it(client):
    response = client.post(
        "/api/models/select", json={"name": MODEL_RUN}, headers={"Origin": LAB_URL}
    )
    assert response.status_code == 200


def test_a_plain_form_post_cannot_stop_training(client):
    assert client.post("/api/train", json=TRAIN).status_code == 202
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain", None):
        headers = {"Content-Type": kind} if kind else {}
        response = client.post("/api/train/stop", content=b"", headers=headers)
        assert response.status_code == 415, kind
        assert "application/json" in detail(response)
    assert client.app.state.trainer.stop_requested is False


def test_every_answer_says_nosniff(client):
    for response in (
        client.get("/api/health"),
        client.get("/api/nothing-here"),
        client.get("/static/app.js"),
        client.get("/api/health", headers={"Host": "evil.example"}),
        client.post("/api/predict", content=b"x", headers={"Content-Length": "99999999"}),
    ):
        assert response.headers.get("x-content-type-options") == "nosniff", response.url


@pytest.mark.parametrize("route", ["/docs", "/redoc"])
def test_no_docs_page_loads_scripts_from_elsewhere(client, route):
    assert client.get(route).status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_a_damaged_model_is_refused_without_the_servers_path(client, runs_dir):
    broken = runs_dir / "broken"
    broken.mkdir()
    (broken / "model.npz").write_bytes(b"PK\x03\x04 not really a zip")
    response = client.post("/api/models/select", json={"name": "broken"})
    assert response.status_code == 422
    assert "model.npz" in detail(response)
    assert str(runs_dir.parent) not in detail(response) and "/tmp" not in detail(response)


def test_paths_in_messages_are_cut_to_their_file_name():
    message = "cannot read /home/ann/runs/20260101/model.npz ('/srv/x y/a.png'): denied"
    assert without_paths(message) == "cannot read model.npz ('a.png'): denied"
    assert without_paths("image/png at http://127.0.0.1:8000/api and 1/2") == (
        "image/png at http://127.0.0.1:8000/api and 1/2"
    )


def test_a_deeply_nested_json_body_is_a_422(client):
    body = b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post(
        "/api/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "nests too deeply" in detail(response)


@pytest.mark.parametrize("value", ['"0.5"', "true", "false", '"abc"', "null", "[0]", "{}"])
def test_pixels_must_be_json_numbers(client, value):
    rows = ",".join("[" + ",".join(["0"] * 27 + [value]) + "]" for _ in range(28))
    response = client.post(
        "/api/predict",
        content=('{"pixels": [' + rows + "]}").encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "numbers" in detail(response)


def test_a_pixel_beyond_float_range_is_a_422(client):
    rows = [[0] * 28 for _ in range(28)]
    rows[3][4] = 10**400
    response = client.post("/api/predict", json={"pixels": rows})
    assert response.status_code == 422
    assert "finite" in detail(response)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("::1", "::1"),
        ("Lab.Local", "lab.local"),
    ],
)
def test_host_names_lose_port_and_brackets(value, name):
    assert host_name(value) == name


# --------------------------------------------------------------------- the request head


def raw_request(url: str, payload: bytes) -> bytes:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_an_oversized_request_head_is_a_431(model_file):
    server = Server("--model", str(model_file))
    try:
        head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 40_000
        answer = raw_request(server.url, head + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        unfinished = raw_request(server.url, head)  # never ends: refused once over the limit
        assert unfinished.startswith(b"HTTP/1.1 431"), unfinished[:80]
        ok = raw_request(
            server.url, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        assert ok.startswith(b"HTTP/1.1 200")
    finally:
        server.close()


def test_a_client_that_never_finishes_its_head_is_cut_off(model_file):
    """A server whose head timeout is 0.2 s closes a connection that sends half a head; a
    socket left open would block ``recv`` until its own 60 s timeout raised."""
    import uvicorn

    class QuickTimeout(GuardedHttpToolsProtocol):
        head_timeout_s = 0.2

    app = create_app(str(model_file), runs_dir="unused-runs")
    config = uvicorn.Config(app, port=0, http=QuickTimeout, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.05)
        idle = raw_request(f"http://127.0.0.1:{port}", b"")
        half = raw_request(f"http://127.0.0.1:{port}", b"GET /api/health HTTP/1.1\r\nHost: 12")
        assert idle == b"" and half == b""
        whole = raw_request(
            f"http://127.0.0.1:{port}",
            b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        assert whole.startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        thread.join(30)


# --------------------------------------------------------------------- hostile pictures


def test_pictures_are_decoded_a_few_at_a_time(client, monkeypatch):
    """Eight pictures sent at once: no more than ``PICTURE_SLOTS`` are ever in decoding and
    preprocessing together (each may take ~64 MB), the others wait their turn."""
    import time

    from web_helpers import digit_png, sample_digits

    from cnnlab.data import preprocess
    from cnnlab.runs.pictures import PICTURE_SLOTS

    slots = PICTURE_SLOTS._initial_value
    busy, most = [0], [0]
    lock = threading.Lock()
    real = preprocess.preprocess_digit

    def tracked(image):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.3)  # long enough for the other requests to arrive
        try:
            return real(image)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(preprocess, "preprocess_digit", tracked)
    png = digit_png(sample_digits("test")[0][0])
    codes = []

    def send() -> None:
        response = client.post("/api/predict", content=png, headers={"Content-Type": "image/png"})
        codes.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8
    assert 1 <= most[0] <= slots < 8


# --------------------------------------------------------------------- careless training


def events_of(client) -> list[dict]:
    client.app.state.trainer.join(300)
    body = client.get("/api/train/events").text
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def test_a_diverging_job_fails_and_the_good_model_stays_active(client, runs_dir):
    request = {**TRAIN, "subset": 640, "batch_size": 32, "optimizer": "sgd", "learning_rate": 10}
    assert client.post("/api/train", json=request).status_code == 202
    last = events_of(client)[-1]
    assert last["type"] == "error" and "stopped learning" in last["message"]
    assert client.get("/api/models").json()["active"] == MODEL_RUN
    assert client.get("/api/train").json()["state"] == "failed"


def test_a_model_no_better_than_chance_is_not_made_active(client, monkeypatch):
    from cnnlab.web import training

    real = training.train_run

    def at_chance(*args, **kwargs):
        result = real(*args, **kwargs)
        result.test_accuracy = 0.1
        return result

    monkeypatch.setattr(training, "train_run", at_chance)
    assert client.post("/api/train", json=TRAIN).status_code == 202
    last = events_of(client)[-1]
    assert last["type"] == "done" and last["activated"] is False
    assert client.get("/api/models").json()["active"] == MODEL_RUN


def test_the_lab_creates_a_bounded_number_of_run_folders(client, runs_dir, monkeypatch):
    from cnnlab.web import training

    monkeypatch.setattr(training, "MAX_RUNS", 3)
    for name in ("a", "b"):
        (runs_dir / name).mkdir()
    response = client.post("/api/train", json=TRAIN)
    assert response.status_code == 422
    assert "3 run folders, the lab's limit of 3" in detail(response)
    assert client.get("/api/train").json()["state"] == "idle"


def test_an_unwritable_runs_folder_fails_before_training(tmp_path, model_file):
    (tmp_path / "file").write_text("not a folder")
    app = create_app(str(model_file), runs_dir=str(tmp_path / "file" / "runs"))
    with TestClient(app, base_url=LAB_URL) as c:
        response = c.post("/api/train", json=TRAIN)
        assert response.status_code == 422
        assert "cannot create a run folder" in detail(response)
        assert c.get("/api/train").json()["state"] == "idle"
