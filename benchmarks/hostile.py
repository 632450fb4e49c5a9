"""Hostile model files and pictures against the real command line and web lab: peak memory of each.

Every case runs in a fresh child process (``python -m cnnlab info|predict ...``, or a
``cnnlab serve`` that receives the hostile requests), and its peak resident memory is read from
the kernel's accounting of that one child (``os.wait4``). The target for every case: refused
or answered within 1 GB, with one line of output and no traceback. A case still running after
``--timeout`` seconds is killed and counts as a hang.

    python benchmarks/hostile.py                  # every case (~1 min; builds ~10 MB of files)
    python benchmarks/hostile.py --only image

Prints a Markdown table; exits 1 when a case misses the target.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hostile_files import archive, model_members, npy, with_zero_member  # noqa: E402
from user_machine import child_env  # noqa: E402

import cnnlab  # noqa: E402

GIB = 1 << 30
TOKEN = secrets.token_urlsafe(32)  # the lab's API asks for it
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TARGET_MB = 1024
ENV = child_env()


@dataclass
class Result:
    case: str
    outcome: str  # the first line of output, or the HTTP statuses
    peak_mb: float
    lines: int
    traceback: bool
    hung: bool = False

    refused: bool = True  # an answer may take more than one line; a refusal may not

    @property
    def ok(self) -> bool:
        one_line = self.lines <= 1 or not self.refused
        return self.peak_mb <= TARGET_MB and one_line and not (self.traceback or self.hung)


def run_child(args: list[str], timeout: float) -> tuple[int, str, float, bool]:
    """Run ``python -m cnnlab *args``; (exit status, output, peak RSS in MB, hung)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", *args], stdout=out, stderr=subprocess.STDOUT, env=ENV
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        hung = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return proc.returncode, out.read().decode(errors="replace"), usage.ru_maxrss / 1024, hung


def cli_case(name: str, args: list[str], timeout: float) -> Result:
    code, output, peak, hung = run_child(args, timeout)
    lines = [line for line in output.splitlines() if line.strip()]
    shown = "hung: killed" if hung else f"exit {code}: {lines[0][:110] if lines else ''}"
    return Result(name, shown, peak, len(lines), "Traceback" in output, hung, code != 0)


# ----------------------------------------------------------------------------- hostile files


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def header_only_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def big_ring(side: int) -> np.ndarray:
    yy, xx = np.ogrid[:side, :side]
    radius = np.hypot(yy / side - 0.5, (xx / side - 0.5) * 1.4)
    return ((radius > 0.22) & (radius < 0.3)).astype(np.uint8) * 255


def write_model(path: Path, config: dict | None = None, **arrays: np.ndarray) -> Path:
    path.write_bytes(archive(model_members(config, **arrays)))
    return path


def model_files(folder: Path) -> dict[str, Path]:
    """The hostile models of issue 13, built in ``folder``."""
    base = model_members()
    seed = json.loads(str(np.load(io.BytesIO(base["cnnlab.npy"]))))
    files = {}
    padded = json.loads(json.dumps(seed))
    padded["layers"][0]["padding"] = 6000
    files["Conv2D padding 6000 (4 KB file)"] = write_model(folder / "padding.npz", padded)
    files["valid model + 2 GiB zero member"] = with_zero_member(
        folder / "zeros.npz", base, "payload.npy", 2 * GIB
    )
    files["checkpoint state of 1 GiB zeros"] = with_zero_member(
        folder / "optimizer.npz", base, "optimizer.0.npy", GIB
    )
    wide = json.loads(json.dumps(seed))
    wide["layers"][4]["out_features"] = 1 << 19  # 177 M weights, stored as 700 MB of zeros
    weights = {k: v for k, v in base.items() if k not in ("layers.4.W.npy", "layers.4.b.npy")}
    weights["cnnlab.npy"] = npy(np.array(json.dumps(wide)))
    files["Dense declaring 177 M weights (zeros)"] = with_zero_member(
        folder / "wide.npz", weights, "layers.4.W.npy", 338 * (1 << 19) * 4
    )
    deep = json.loads(json.dumps(seed))
    deep["input_shape"] = [1, 28, 28]
    deep["layers"][0].update(out_channels=2, kernel_size=63, padding=62)  # 2 × 90² … then huge
    files["Conv2D 63×63, padding 62 (activations)"] = write_model(folder / "wide_act.npz", deep)
    long = json.loads(json.dumps(seed))
    long["layers"] += [{"type": "ReLU"}] * 100_000
    files["100,000 layers"] = write_model(folder / "long.npz", long)
    weights = cnnlab.Sequential.load(write_model(folder / "ok.npz")).state_arrays()
    weights["layers.4.W"][0, 0] = np.nan
    files["NaN weights"] = write_model(folder / "nan.npz", layers__4__W=weights["layers.4.W"])
    (folder / "nested.npz").write_bytes(archive(model_members(raw="[" * 100_000)))
    files["architecture JSON nested 100,000 deep"] = folder / "nested.npz"
    fifo = folder / "fifo.npz"
    os.mkfifo(fifo)
    files["FIFO as the model"] = fifo
    return files


def image_files(folder: Path) -> dict[str, Path]:
    """The hostile pictures of issue 13, built in ``folder``."""
    files = {}
    ring = big_ring(4000)
    rgba = np.zeros((4000, 4000, 4), np.uint8)
    rgba[..., 3] = ring
    files["4000×4000 RGBA PNG"] = folder / "rgba.png"
    files["4000×4000 RGBA PNG"].write_bytes(png(rgba, "RGBA"))
    del rgba
    files["4000×4000 16-bit grey PNG"] = folder / "grey16.png"
    files["4000×4000 16-bit grey PNG"].write_bytes(png(ring.astype(np.uint16) * 257))
    from PIL import Image

    jpeg = folder / "photo.jpg"
    Image.fromarray(255 - ring).convert("RGB").save(jpeg, "JPEG", quality=80)
    files["4000×4000 colour JPEG"] = jpeg
    files["PNG header claiming 100,000×100,000"] = folder / "claims.png"
    files["PNG header claiming 100,000×100,000"].write_bytes(header_only_png(100_000, 100_000))
    files["PNG header claiming 8,000×6,000"] = folder / "claims48.png"
    files["PNG header claiming 8,000×6,000"].write_bytes(header_only_png(8_000, 6_000))
    fifo = folder / "fifo.png"
    os.mkfifo(fifo)
    files["FIFO as the picture"] = fifo
    return files


# ----------------------------------------------------------------------------- the web lab


def start_server(model: Path, runs: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "serve",
            "--port",
            "0",
            "--model",
            str(model),
            "--runs-dir",
            str(runs),
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    line = proc.stdout.readline()
    match = re.search(r":(\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, int(match.group(1))


def post(port: int, path: str, body: bytes, kind: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": kind, **AUTH})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def web_case(name: str, model: Path, runs: Path, send) -> Result:
    """Start a lab, let ``send(port)`` fire its requests, stop it; the server's peak RSS."""
    proc, port = start_server(model, runs)
    try:
        statuses = send(port)
    finally:
        proc.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(proc.pid, 0)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    outcome = ", ".join(f"{n}× {s or 'no answer'}" for s, n in counts.items())
    return Result(name, f"HTTP {outcome}", usage.ru_maxrss / 1024, 1, False)


def parallel(port: int, count: int, body: bytes, kind: str, path: str = "/api/predict"):
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(post(port, path, body, kind)))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def web_cases(folder: Path, model: Path, images: dict[str, Path], bombs: dict[str, Path]):
    runs = folder / "runs"
    for name in ("padding", "zeros"):
        source = next(p for p in bombs.values() if p.stem == name)
        (runs / name).mkdir(parents=True, exist_ok=True)
        os.link(source, runs / name / "model.npz")
    rgba = images["4000×4000 RGBA PNG"].read_bytes()
    deep = b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    yield web_case(
        "web: 16 parallel 4000×4000 RGBA PNGs",
        model,
        runs,
        lambda port: parallel(port, 16, rgba, "image/png"),
    )
    yield web_case(
        "web: select the padding and 2 GiB-member models",
        model,
        runs,
        lambda port: [
            post(port, "/api/models/select", json.dumps({"name": n}).encode(), "application/json")
            for n in ("padding", "zeros")
        ],
    )
    yield web_case(
        "web: 8 parallel 100,000-deep JSON bodies",
        model,
        runs,
        lambda port: parallel(port, 8, deep, "application/json"),
    )


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["model", "image", "web"], help="one group of cases")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a hang")
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        good = folder / "good.npz"
        cnnlab.build("simple", seed=0).save(good)
        digit = folder / "digit.png"
        digit.write_bytes(png(big_ring(200), "L"))
        bombs = model_files(folder)
        images = image_files(folder)
        results.append(
            cli_case(
                "baseline: predict a sound digit", ["predict", str(good), str(digit)], args.timeout
            )
        )
        if args.only in (None, "model"):
            for name, path in bombs.items():
                command = "info" if "member" in name or "zeros" in name else "predict"
                extra = [str(digit)] if command == "predict" else []
                results.append(
                    cli_case(f"{command}: {name}", [command, str(path), *extra], args.timeout)
                )
        if args.only in (None, "image"):
            for name, path in images.items():
                results.append(
                    cli_case(f"predict: {name}", ["predict", str(good), str(path)], args.timeout)
                )
        if args.only in (None, "web"):
            results.extend(web_cases(folder, good, images, bombs))
    print("| case | outcome | peak RSS (MB) | lines | traceback | within target |")
    print("|---|---|---:|---:|---|---|")
    for r in results:
        print(
            f"| {r.case} | {r.outcome.replace('|', '/')} | {r.peak_mb:,.0f} | {r.lines} | "
            f"{'yes' if r.traceback else 'no'} | {'yes' if r.ok else '**no**'} |"
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
