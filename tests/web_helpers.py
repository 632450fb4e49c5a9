"""Shared by the web lab's tests: a small trained model (cached between sessions), digit
pictures as PNG bytes, and a real ``cnnlab serve`` process on a free port."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

import cnnlab
from cnnlab import data

TRAIN_DIGITS = 3000  # enough for ~90 % test accuracy in a few seconds of training
MODEL_RUN = "20260101-120000"  # the run folder name the tests give the trained model
LAB_URL = "http://127.0.0.1"  # what a TestClient must call the lab: it answers no other host


def sample_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST sample: uint8 images (N, 28, 28) and labels (N,)."""
    return data.load("mnist-sample", split, progress=False)


def trained_model_file(cache_dir: Path) -> Path:
    """A LeNet-5 trained for one epoch on 3,000 sample digits, trained once and cached.

    Training is seeded, so a cached file equals a fresh one.
    """
    path = cache_dir / f"lenet5-{TRAIN_DIGITS}-v1.npz"
    if path.is_file():
        return path
    images, labels = sample_digits("train")
    model = cnnlab.build("lenet5", seed=0)
    cnnlab.fit(
        model,
        cnnlab.CrossEntropyLoss(),
        cnnlab.Adam(model.parameters(), lr=2e-3),
        cnnlab.to_input(images[:TRAIN_DIGITS]),
        labels[:TRAIN_DIGITS].astype(np.int64),
        epochs=1,
        batch_size=32,
        seed=0,
    )
    model.meta.update({"dataset": "mnist-sample", "class_names": list("0123456789")})
    model.save(path)
    return path


def make_runs_dir(root: Path, model_file: Path) -> Path:
    """A runs folder holding the trained model as run ``MODEL_RUN``."""
    run = root / MODEL_RUN
    run.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, run / "model.npz")
    return root


def digit_png(image: np.ndarray, scale: int = 8, invert: bool = False) -> bytes:
    """A uint8 (28, 28) digit enlarged ``scale`` times as PNG bytes; ``invert`` gives dark ink
    on white paper, as a photo or scan would."""
    from PIL import Image

    big = np.kron(image, np.ones((scale, scale), np.uint8))  # (28·scale, 28·scale)
    if invert:
        big = 255 - big
    buffer = io.BytesIO()
    Image.fromarray(big, "L").save(buffer, format="PNG")
    return buffer.getvalue()


class Server:
    """``python -m cnnlab serve --port 0 ...`` in a subprocess; ``url`` once it listens."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"http://[\w.\[\]:]+/", line)
        if not match:
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            self.close()
            raise RuntimeError(f"cnnlab serve did not start: {line}{rest}")
        self.url = match.group(0)
        self.log: list[str] = []
        # Keep reading the output so the server never blocks on a full pipe.
        threading.Thread(target=lambda: self.log.extend(self.proc.stdout), daemon=True).start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def most_at_once(monkeypatch, limit: int, requests: int, send) -> tuple[list[int], int]:
    """Run ``send()`` (one HTTP request, returning its status code) from ``requests`` threads
    at once with the lab's model-thread limiter at ``limit``, each prediction held 50 ms.
    Returns the status codes and the most predictions that ran at the same time."""
    import time

    from cnnlab.runs import predict as readings
    from cnnlab.web.routes import predict

    monkeypatch.setattr(predict.MODEL_THREADS, "total_tokens", limit)
    active, most, lock = [0], [0], threading.Lock()
    real = readings.assess

    def slow_predict(model, x):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return real(model, x)

    monkeypatch.setattr(readings, "assess", slow_predict)
    codes: list[int] = []
    pool = [threading.Thread(target=lambda: codes.append(send())) for _ in range(requests)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return codes, most[0]
