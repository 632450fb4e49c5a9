"""Load test for the web lab: concurrent ``POST /api/predict`` against a real ``cnnlab serve``.

Starts the server in a subprocess on a free port (with ``--model``, or a LeNet-5 trained here
for a few seconds on the bundled sample), then fires a fixed number of requests from several
threads, each with its own keep-alive connection, and reports throughput, p50/p99 latency, the
server's CPU time per request and errors (a failed request, or a label other than the one the
same body got alone) as a Markdown table. Payloads: a 28×28 JSON array (the model alone) and a
PNG of a digit (decoding and preprocessing included).

    python benchmarks/serve_load.py --requests 2000 --concurrency 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's cnnlab, whatever is installed
sys.path.insert(0, str(ROOT / "tests"))

from user_machine import child_env  # noqa: E402
from web_helpers import digit_png, sample_digits, trained_model_file  # noqa: E402

TOKEN = secrets.token_urlsafe(32)  # the lab asks for it on every API request
AUTH = {"Authorization": f"Bearer {TOKEN}"}


SERVE = [sys.executable, "-m", "cnnlab", "serve", "--port", "0"]


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*SERVE, "--model", str(model), "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),  # the server runs as on a user's machine
    )
    line = proc.stdout.readline()
    match = re.search(r"http://[\w.:]+/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stdout.read()}")
    return proc, match.group(0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``; NaN elsewhere). Unlike
    throughput, CPU time per request barely moves when other jobs share the cores."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fire(
    url: str,
    path: str,
    bodies: list[tuple[bytes, str]],
    total: int,
    threads: int,
    expected: dict[int, int],
) -> tuple[np.ndarray, int, float]:
    """Send ``total`` requests from ``threads`` threads; returns latencies (s), errors, wall.
    An error is a failed request or a label other than ``expected[body]``; a body not yet in
    ``expected`` records its label there (run once on one thread first)."""
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    counter = iter(range(total))
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body, kind = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": kind, **AUTH})
                response = conn.getresponse()
                payload = response.read()
                label = json.loads(payload).get("label") if response.status == 200 else None
                ok = label is not None and expected.setdefault(i % len(bodies), label) == label
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            mine.append(time.perf_counter() - start)
            if not ok:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return np.array(latencies), errors[0], time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file or run folder (default: train a quick one)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per payload kind")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    args = parser.parse_args()

    model = Path(args.model) if args.model else trained_model_file(Path(tempfile.gettempdir()))
    images, _ = sample_digits("test")
    arrays = [
        (json.dumps({"pixels": (im / 255).round(3).tolist()}).encode(), "application/json")
        for im in images[:50]
    ]
    # The bare prediction (label and probabilities), what the page draws (with the input image),
    # and a photo-like PNG that goes through the whole preprocessing pipeline.
    payloads = {
        "28×28 JSON array, label + probabilities": ("/api/predict?steps=false", arrays),
        "28×28 JSON array, with step images": ("/api/predict", arrays),
        "PNG image (preprocessed)": (
            "/api/predict",
            [(digit_png(im, scale=4), "image/png") for im in images[:50]],
        ),
    }
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    proc, url = start_server(model)
    rows = []
    try:
        for name, (path, bodies) in payloads.items():
            expected: dict[int, int] = {}  # each body's label, answered alone
            fire(url, path, bodies, len(bodies), 1, expected)  # also the warm-up
            cpu = cpu_seconds(proc.pid)
            latencies, errors, wall = fire(
                url, path, bodies, args.requests, args.concurrency, expected
            )
            cpu = cpu_seconds(proc.pid) - cpu
            rows.append(
                (
                    name,
                    args.requests,
                    args.concurrency,
                    args.requests / wall,
                    1000 * float(np.percentile(latencies, 50)),
                    1000 * float(np.percentile(latencies, 99)),
                    1000 * cpu / args.requests,
                    errors,
                )
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"model: {model.name}; server: {url}")
    print(f"load average before: {load}; after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(
        "| payload | requests | concurrency | predictions/s | p50 ms | p99 ms "
        "| server CPU ms/request | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, c, rate, p50, p99, cpu_ms, errors in rows:
        print(
            f"| {name} | {n} | {c} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {cpu_ms:.2f} | {errors} |"
        )
    return 1 if any(row[-1] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
