"""The lab against other web pages and hostile clients: Host and Origin checks, form posts,
nosniff, no server paths in messages, deep or mistyped JSON, request heads bounded in bytes
and time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from web_helpers import LAB_URL, MODEL_RUN, Server, lab_client

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
    with lab_client(app, "http://lab.local:8000") as c:
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
        answer = raw_request(server.origin, head + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        unfinished = raw_request(server.origin, head)  # never ends: refused once over the limit
        assert unfinished.startswith(b"HTTP/1.1 431"), unfinished[:80]
        ok = raw_request(
            server.origin,
            b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: Bearer " + server.token.encode() + b"\r\n\r\n",
        )
        assert ok.startswith(b"HTTP/1.1 200")
    finally:
        server.close()


@contextlib.contextmanager
def quick_server(model_file, **limits):
    """A lab served with its timeouts shortened to ``limits`` (attributes of
    ``GuardedHttpToolsProtocol``); yields its URL and the app."""
    import uvicorn

    protocol = type("Quick", (GuardedHttpToolsProtocol,), limits)
    app = create_app(str(model_file), runs_dir="unused-runs")
    config = uvicorn.Config(app, port=0, http=protocol, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.05)
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)


def health_request(app) -> bytes:
    return (
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: Bearer " + app.state.token.encode() + b"\r\n\r\n"
    )


def test_a_client_that_never_finishes_its_head_is_cut_off(model_file):
    """A server whose head timeout is 0.2 s closes a connection that sends half a head; a
    socket left open would block ``recv`` until its own 60 s timeout raised."""
    with quick_server(model_file, head_timeout_s=0.2) as (url, app):
        idle = raw_request(url, b"")
        half = raw_request(url, b"GET /api/health HTTP/1.1\r\nHost: 12")
        assert idle == b"" and half == b""
        assert raw_request(url, health_request(app)).startswith(b"HTTP/1.1 200")


def test_a_client_that_never_finishes_its_body_is_cut_off(model_file):
    """The head is whole, the body never ends: closed after the body timeout (0.3 s here)."""
    with quick_server(model_file, body_timeout_s=0.3) as (url, app):
        slow = (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Authorization: Bearer " + app.state.token.encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n\x89PNG"
        )
        assert raw_request(url, slow) == b""
        assert raw_request(url, health_request(app)).startswith(b"HTTP/1.1 200")


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


@pytest.mark.slow
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
    with lab_client(app) as c:
        response = c.post("/api/train", json=TRAIN)
        assert response.status_code == 422
        assert "cannot create a run folder" in detail(response)
        assert c.get("/api/train").json()["state"] == "idle"


# --------------------------------------------------------------------- the token


def api_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every API route in the lab's schema, path parameters filled in."""
    import re

    return [
        (method.upper(), re.sub(r"\{[^}]*\}", "x", path))
        for path, methods in app.openapi()["paths"].items()
        for method in methods
        if path.startswith("/api")
    ]


def test_every_api_route_asks_for_the_token(client):
    routes = api_routes(client.app)
    assert len(routes) >= 10
    for method, path in routes:
        for header, status in (("", 401), ("Bearer not-the-token", 403), ("Basic abc", 401)):
            response = client.request(method, path, json={}, headers={"Authorization": header})
            assert response.status_code == status, (method, path, header)
            assert "?token=" in detail(response)
    wrong = client.get("/api/health?token=nope", headers={"Authorization": ""})
    assert wrong.status_code == 403
    right = f"/api/health?token={client.app.state.token}"
    assert client.get(right, headers={"Authorization": ""}).status_code == 200


def test_the_printed_address_sets_a_strict_cookie_and_leaves_the_address_bar(runs_dir):
    from fastapi.testclient import TestClient

    app = create_app(None, runs_dir=str(runs_dir))
    with TestClient(app, base_url=LAB_URL, follow_redirects=False) as browser:
        assert browser.get("/").status_code == 200  # the page itself holds nothing private
        assert browser.get("/api/models").status_code == 401
        assert browser.get("/?token=wrong").status_code == 403
        first = browser.get(f"/?token={app.state.token}")
        assert first.status_code == 303 and first.headers["location"] == "/"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert app.state.token in cookie
        assert browser.get("/api/models").json()["active"] == MODEL_RUN  # the cookie is kept
        response = browser.post("/api/models/select", json={"name": MODEL_RUN})
        assert response.status_code == 200


def test_serve_prints_the_token_it_was_given(model_file, tmp_path):
    token = "a-token-of-my-own-0123"
    server = Server("--model", str(model_file), "--runs-dir", str(tmp_path / "runs"))
    other = Server("--model", str(model_file), "--token", token, "--runs-dir", str(tmp_path))
    try:
        assert other.token == token and server.token != token
        assert len(server.token) >= 40  # 32 random bytes
        for lab, status in ((server, 403), (other, 200)):
            ask = (
                b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
            )
            assert raw_request(lab.origin, ask).startswith(f"HTTP/1.1 {status}".encode())
    finally:
        server.close()
        other.close()


# --------------------------------------------------------------------- the runs folder


@pytest.mark.parametrize("inside", ["", "teach", "teach/project", "teach/project/data"])
@pytest.mark.parametrize("mode", [0o777, 0o757, 0o733])
def test_a_runs_folder_other_users_can_write_is_refused(tmp_path, inside, mode):
    from cnnlab.runs.folder import SharedFolderError

    runs = tmp_path / "runs"
    (runs / inside).mkdir(parents=True, exist_ok=True)
    (runs / inside).chmod(mode)
    try:
        with pytest.raises(SharedFolderError, match="writable by other users") as info:
            create_app(None, runs_dir=str(runs))
        assert "\n" not in str(info.value) and "chmod go-w" in str(info.value)
    finally:
        (runs / inside).chmod(0o755)
    assert create_app(None, runs_dir=str(runs)).state.token


def test_a_planted_teach_link_is_refused_and_nothing_outside_is_deleted(tmp_path):
    from cnnlab.runs.folder import SharedFolderError
    from cnnlab.web.teach import Project, TeachError

    owners = tmp_path / "owners" / "data"
    owners.mkdir(parents=True)
    (owners / "thesis.txt").write_text("keep me")
    runs = tmp_path / "runs"
    (runs / "teach").mkdir(parents=True)
    (runs / "teach" / "project").symlink_to(owners.parent)
    with pytest.raises(SharedFolderError, match="is a link"):
        create_app(None, runs_dir=str(runs))
    project = Project(runs)  # a link planted after the lab started
    actions = (lambda: project.create(["a", "b"]), lambda: project.add_example("a", b""))
    for action in (*actions, project.run_config):
        with pytest.raises(TeachError, match="is a link"):
            action()
    assert (owners / "thesis.txt").read_text() == "keep me"


def test_a_listing_reads_no_device_fifo_or_weights(client, runs_dir, model_file, monkeypatch):
    import os
    import shutil

    from cnnlab.engine import serialize

    for name, plant in (("zero", lambda p: p.symlink_to("/dev/zero")), ("fifo", os.mkfifo)):
        (runs_dir / name).mkdir()
        shutil.copyfile(model_file, runs_dir / name / "model.npz")
        plant(runs_dir / name / "metrics.json")
    read = []
    real = serialize._read_member
    monkeypatch.setattr(
        serialize,
        "_read_member",
        lambda a, m, like=None: read.append(m.filename) or real(a, m, like),
    )
    listing = client.get("/api/models").json()["models"]
    assert {m["name"] for m in listing} == {MODEL_RUN, "zero", "fifo"}
    assert set(read) == {"cnnlab.npy"}  # the architecture entries alone, no weights
    assert all(m["accuracy"] is None for m in listing if m["name"] != MODEL_RUN)


def test_a_client_leaving_mid_body_and_odd_event_ids_log_no_traceback(model_file, tmp_path):
    import time

    server = Server("--model", str(model_file), "--runs-dir", str(tmp_path / "runs"))
    auth = b"Authorization: Bearer " + server.token.encode() + b"\r\n"
    try:
        host, port = server.origin.split("//")[1].rstrip("/").rsplit(":", 1)
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(
                    b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                    + auth
                    + b"Content-Length: 100000\r\n\r\n"
                    + b"\x89PNG" * 10
                )
                time.sleep(0.2)
        for last in ("²", "9" * 5000, "-1", "1e3"):
            answer = raw_request(
                server.origin,
                b"GET /api/train/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                + auth
                + b"Last-Event-ID: "
                + last.encode()
                + b"\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 204"), (last, answer[:60])
        ok = raw_request(
            server.origin,
            b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + auth
            + b"\r\n",
        )
        assert ok.startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
    finally:
        server.close()
    time.sleep(0.2)
    assert "Traceback" not in "".join(server.log), "".join(server.log)[-2000:]


def test_the_maps_of_a_model_of_many_conv_layers_are_capped():
    import numpy as np

    import cnnlab
    from cnnlab.web import inference

    layers = [cnnlab.Conv2D(1, 8, 3, padding=1, rng=0)]
    for i in range(39):
        layers += [cnnlab.ReLU(), cnnlab.Conv2D(8, 8, 3, padding=1, rng=i + 1)]
    model = cnnlab.Sequential(layers, input_shape=(1, 28, 28))
    shown = inference.layer_map_images(model, np.zeros((1, 28, 28), np.float32))
    assert sum(len(layer["maps"]) for layer in shown) == inference.MAX_MAPS == 256
    assert len(shown) == 32 and shown[-1]["title"].startswith("conv layer 32: 8 maps")
    assert all(": 8 maps" in layer["title"] for layer in shown)
    model = cnnlab.Sequential([cnnlab.Conv2D(1, 300, 3, padding=1, rng=0)], input_shape=(1, 28, 28))
    (only,) = inference.layer_map_images(model, np.zeros((1, 28, 28), np.float32))
    assert len(only["maps"]) == 256 and "first 256 of 300 maps" in only["title"]
