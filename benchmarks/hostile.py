"""Hostile model files and pictures against the real command line and web lab: peak memory of each.

Every case runs in a fresh child process (``python -m cnnlab info|predict ...``, or a
``cnnlab serve`` that receives the hostile requests). Its peak resident memory is the child's
own high-water mark (``VmHWM``), which the child writes as it exits: the kernel's ``wait4``
figure also counts what the parent held when it forked the child (this script holds ~200 MB
of built files by then). The target for every case: refused
or answered within 500 MB, with one line of output and no traceback, and a refused picture
within 2 s of CPU. A case still running after ``--timeout`` seconds is killed and counts as a
hang. CPU seconds are the child's user plus system time (the server's, for the web cases).

    python benchmarks/hostile.py                  # every case (~3 min; builds ~200 MB of files)
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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hostile_files import (  # noqa: E402
    archive,
    jpeg_with_scans,
    model_members,
    npy,
    png_claiming,
    tiff_with_strips,
    with_zero_member,
)
from picture_folders import write_picture_folder  # noqa: E402
from user_machine import child_env  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab.cli._common import neutralised  # noqa: E402

GIB = 1 << 30
TOKEN = secrets.token_urlsafe(32)  # the lab's API asks for it
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TARGET_MB = 500
TARGET_PICTURE_CPU_S = 2.0
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
    cpu_s: float = 0.0
    picture: bool = False  # a refused picture must also cost at most TARGET_PICTURE_CPU_S
    expected: bool = True  # the case's own check (e.g. no escape byte printed) held

    @property
    def ok(self) -> bool:
        one_line = self.lines <= 1 or not self.refused
        slow = self.picture and self.refused and self.cpu_s > TARGET_PICTURE_CPU_S
        bad = self.traceback or self.hung or slow or not self.expected
        return self.peak_mb <= TARGET_MB and one_line and not bad


# ``python -m cnnlab`` that writes its own peak resident memory (VmHWM, kB) to $HOSTILE_HWM as
# it exits (a SIGINT'd server exits normally too).
CHILD = (
    "import atexit, os, sys\n"
    "def hwm():\n"
    "    status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
    "    open(os.environ['HOSTILE_HWM'], 'w').write(status)\n"
    "atexit.register(hwm)\n"
    "from cnnlab.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def child_command(args: list[str]) -> tuple[list[str], dict[str, str], Path]:
    """The command, environment and peak-memory file of a ``cnnlab`` child."""
    fd, hwm = tempfile.mkstemp(prefix="hwm-")
    os.close(fd)
    return [sys.executable, "-c", CHILD, *args], {**ENV, "HOSTILE_HWM": hwm}, Path(hwm)


def peak_mb(hwm: Path, usage) -> float:
    """The child's own VmHWM; the kernel's figure (with the parent's share) when it wrote none
    (killed)."""
    try:
        text = hwm.read_text().strip()
        hwm.unlink()
        return int(text) / 1024 if text else usage.ru_maxrss / 1024
    except (OSError, ValueError):
        return usage.ru_maxrss / 1024


def run_child(args: list[str], timeout: float) -> tuple[int, str, float, bool, float]:
    """Run ``python -m cnnlab *args``; (exit status, output, peak RSS in MB, hung, CPU s)."""
    with tempfile.TemporaryFile() as out:
        command, env, hwm = child_command(args)
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        hung = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode(errors="replace")
        cpu = usage.ru_utime + usage.ru_stime
        return proc.returncode, output, peak_mb(hwm, usage), hung, cpu


def cli_case(
    name: str,
    args: list[str],
    timeout: float,
    picture: bool = False,
    check=None,
    one_line: bool = True,
) -> Result:
    """``check(output)``, when given, must hold too (e.g. no escape byte was printed);
    ``one_line=False`` for a command that prints progress before its one-line refusal."""
    code, output, peak, hung, cpu = run_child(args, timeout)
    lines = [line for line in output.splitlines() if line.strip()]
    last = lines[0] if one_line or not lines else lines[-1]  # after progress: the answer
    first = neutralised(last[:110]) if lines else ""
    shown = "hung: killed" if hung else f"exit {code}: {first}"
    expected = check(output) if check is not None else True
    return Result(
        name, shown, peak, len(lines), "Traceback" in output, hung, code != 0 and one_line,
        cpu, picture, expected,
    )  # fmt: skip


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
    """The hostile models of the first probe, built in ``folder``."""
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
    """The hostile pictures of the first probe, built in ``folder``."""
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


def start_server(model: Path | None, runs: Path) -> tuple[subprocess.Popen, int, list[str], Path]:
    command, env, hwm = child_command(
        [
            "serve",
            "--port",
            "0",
            *(["--model", str(model)] if model is not None else []),
            "--runs-dir",
            str(runs),
            "--token",
            TOKEN,
        ]
    )
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    line = proc.stdout.readline()
    match = re.search(r":(\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}")
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
    return proc, int(match.group(1)), log, hwm


def post(port: int, path: str, body: bytes, kind: str) -> int:
    return request(port, "POST", path, body, {"Content-Type": kind, **AUTH})[0]


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    return request(port, "GET", path, None, AUTH if headers is None else headers)


def request(port: int, method: str, path: str, body, headers: dict) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def web_case(name: str, model: Path | None, runs: Path, send, expect=None) -> Result:
    """Start a lab, let ``send(port)`` fire its requests (their statuses, or (statuses,
    extra words for the outcome)), stop it: the server's peak RSS, CPU seconds, and whether
    its log holds a traceback. ``expect(statuses)`` must hold when given."""
    proc, port, log, hwm = start_server(model, runs)
    try:
        sent = send(port)
        start = time.perf_counter()
        health = get(port, "/api/health")[0]
        after_ms = 1000 * (time.perf_counter() - start)
    finally:
        proc.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(proc.pid, 0)
    statuses, note = sent if isinstance(sent, tuple) else (sent, "")
    note += f"; then health {health} in {after_ms:.0f} ms"
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    outcome = ", ".join(f"{n}× {s or 'no answer'}" for s, n in counts.items())
    traceback = "Traceback" in "".join(log)
    expected = expect(statuses) if expect is not None else True
    cpu = usage.ru_utime + usage.ru_stime
    return Result(
        name, f"HTTP {outcome}{note}", peak_mb(hwm, usage), 1, traceback, False, True, cpu,
        False, expected,
    )  # fmt: skip


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


# ----------------------------------------------------------------------------- the second probe

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07"


def no_escape(output: str) -> bool:
    return "\x1b" not in output and "\x07" not in output


def zip_of_entries(path: Path, count: int) -> Path:
    """A zip archive of ``count`` empty entries, its local headers and central directory
    written by hand (zipfile would take minutes), streamed to ``path``."""
    import struct

    central = io.BytesIO()
    with open(path, "wb") as out:
        for i in range(count):
            name = f"{i:07d}".encode()
            offset = out.tell()
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, 0, 0, 0, 7, 0))
            out.write(name)
            central.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    20,
                    20,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    7,
                    0,
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
            )
            central.write(name)
        start = out.tell()
        out.write(central.getvalue())
        size = out.tell() - start
        if count >= 0xFFFF:  # zip64 end record and locator
            out.write(
                struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start)
            )
            out.write(struct.pack("<IIQI", 0x07064B50, 0, start + size, 1))
        small = min(count, 0xFFFF)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, small, small, size, start, 0))
    return path


def model_cases(folder: Path, good: Path, digit: Path) -> list[tuple[str, list[str], dict]]:
    """(name, cnnlab arguments, cli_case options) of the model-file and printing cases."""
    cases = []
    wide = [cnnlab.Conv2D(1, 8, 63, padding=62, rng=0), cnnlab.Flatten()]
    path = folder / "shapeless.npz"  # weights that fit: only the activations are too big
    cnnlab.Sequential([*wide, cnnlab.Dense(8 * 90 * 90, 10, rng=1)]).save(path)
    cases.append(
        ("predict: no input_shape, Conv2D 63×63 padding 62", ["predict", str(path), str(digit)], {})
    )
    path = zip_of_entries(folder / "entries.npz", 1_000_000)
    cases.append(("info: zip of 1,000,000 directory entries", ["info", str(path)], {}))
    pool = cnnlab.Sequential(
        [
            cnnlab.Conv2D(1, 2, 3, rng=0),
            cnnlab.MaxPool2D(17, stride=1),
            cnnlab.Flatten(),
            cnnlab.Dense(200, 10, rng=1),
        ],
        input_shape=(1, 28, 28),
    )
    pool.save(folder / "pool17.npz")
    cases.append(
        ("predict: MaxPool2D kernel 17", ["predict", str(folder / "pool17.npz"), str(digit)], {})
    )
    for label, accuracy in (("a string", "0.9"), ("a list", [0.9])):
        model = cnnlab.Sequential.load(good)
        model.meta.update(test_accuracy=accuracy, note=ESCAPES, class_names=[ESCAPES] * 10)
        model.save(folder / f"meta-{len(cases)}.npz")
        cases.append(
            (
                f"info: test_accuracy {label}, escapes in meta and class names",
                ["info", str(folder / f"meta-{len(cases)}.npz")],
                {"check": no_escape},
            )
        )
    for label, value in (("'x'", "x"), ("1e400", 1e400)):
        model = cnnlab.Sequential.load(good)
        model.meta.update(split_seed=value, dataset="mnist-sample")
        model.save(folder / f"seed-{len(cases)}.npz")
        cases.append(
            (
                f"evaluate: split_seed {label}",
                ["evaluate", str(folder / f"seed-{len(cases)}.npz")],
                {},
            )
        )
    model = cnnlab.Sequential.load(good)
    model.meta["dataset"] = "/usr"
    model.save(folder / "usr.npz")
    cases.append(("evaluate: meta dataset '/usr'", ["evaluate", str(folder / "usr.npz")], {}))
    (folder / "mem.npz").symlink_to("/proc/self/mem")
    cases.append(("info: model linked to /proc/self/mem", ["info", str(folder / "mem.npz")], {}))
    (folder / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.json")
    for label, name in (("linked to /dev/zero", "zero.json"), ("a FIFO", "fifo.json")):
        train = [
            "train",
            "--model",
            str(folder / name),
            "--out",
            str(folder / f"r-{name}"),
            "--quiet",
        ]
        cases.append((f"train: --model z.json {label}", train, {"one_line": False}))
    named = folder / "escaped"
    named.mkdir()
    (named / f"a{ESCAPES}.png").write_bytes(digit.read_bytes())
    cases.append(
        (
            "predict DIR: file names with escapes",
            ["predict", str(good), str(named)],
            {"check": no_escape},
        )
    )
    return cases


def picture_cases(folder: Path) -> dict[str, Path]:
    files = {
        "TIFF of 4,000,000 strips": ("strips.tif", tiff_with_strips(4_000_000)),
        "progressive JPEG of 65,612 scans": ("scans.jpg", jpeg_with_scans(65_612)),
        "PNG of 1 × 16,000,000 pixels": ("row.png", png_claiming(16_000_000, 1, bytes(16_000_001))),
    }
    out = {}
    for name, (file, data) in files.items():
        (folder / file).write_bytes(data)
        out[f"{name}, {len(data) / 1e6:.1f} MB"] = folder / file
    return out


def train_cases(folder: Path) -> list[tuple[str, list[str], dict]]:
    """The training cases: refused before decoding, and divergence with no warning lines."""
    cases = []
    long = folder / "long-names"
    write_picture_folder(long, per_class=2, classes=("a" * 101, "b"))
    out = ["--quiet", "--epochs", "1"]
    cases.append(
        (
            "train: class folder name of 101 characters",
            ["train", "--dataset", str(long), "--out", str(folder / "t1"), *out],
            {"one_line": False},
        )
    )
    pics = folder / "pics"
    write_picture_folder(pics, per_class=2)
    cases.append(
        (
            "train: --image-size 512 --model vgg",
            [
                "train",
                "--dataset",
                str(pics),
                "--image-size",
                "512",
                "--model",
                "vgg",
                "--out",
                str(folder / "t2"),
                *out,
            ],
            {"one_line": False},
        )
    )
    data = folder / "cifar"
    (data / "cifar10").mkdir(parents=True)
    import tarfile

    with tarfile.open(data / "cifar10" / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for i in range(300_000):
            tar.addfile(tarfile.TarInfo(f"e{i}"))
    cases.append(
        (
            "train: CIFAR .tar.gz of 300,000 empty members",
            [
                "train",
                "--dataset",
                "cifar10",
                "--data-dir",
                str(data),
                "--out",
                str(folder / "t3"),
                *out,
            ],
            {"one_line": False},
        )
    )
    quiet = {"one_line": False, "check": lambda o: "Warning" not in o and "warn" not in o}
    for label, extra in (
        ("--lr 1e308", ["--lr", "1e308"]),
        ("--optimizer sgd --lr 50", ["--optimizer", "sgd", "--lr", "50"]),
    ):
        cases.append(
            (
                f"train: {label} (divergence)",
                [
                    "train",
                    "--dataset",
                    "mnist-sample",
                    "--subset",
                    "640",
                    *extra,
                    "--out",
                    str(folder / f"t-{label[-3:]}"),
                    *out,
                ],
                quiet,
            )
        )
    tiny = {"one_line": False, "check": lambda o: "lower learning rate" not in o}
    cases.append(
        (
            "train: --lr 1e-300",
            [
                "train",
                "--dataset",
                "mnist-sample",
                "--subset",
                "2000",
                "--lr",
                "1e-300",
                "--out",
                str(folder / "t-tiny"),
                *out,
            ],
            tiny,
        )
    )
    return cases


def raw(port: int, payload: bytes, wait: bool = True) -> socket.socket | None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(payload)
    if wait:
        sock.close()
        return None
    return sock


def second_web_cases(folder: Path, good: Path):
    """The token, listings, maps, event ids, clients leaving and slow bodies."""
    runs = folder / "runs2"
    runs.mkdir()
    yield web_case(
        "web: /api/models with no token, a wrong one",
        good,
        runs,
        lambda port: [
            get(port, "/api/models", {})[0],
            get(port, "/api/models", {"Authorization": "Bearer wrong"})[0],
        ],
        lambda statuses: statuses == [401, 403],
    )
    dense = [cnnlab.Dense(784, 5000, rng=0), cnnlab.Dense(5000, 10, rng=1)]
    heavy = cnnlab.Sequential([cnnlab.Flatten(), *dense], input_shape=(1, 28, 28))
    heavy = heavy.astype(np.float64)
    heavy.save(folder / "heavy.npz")
    for i in range(20):
        (runs / f"heavy{i:02d}").mkdir()
        os.link(folder / "heavy.npz", runs / f"heavy{i:02d}" / "model.npz")
    (runs / "zero").mkdir()
    shutil.copyfile(good, runs / "zero" / "model.npz")
    (runs / "zero" / "metrics.json").symlink_to("/dev/zero")
    (runs / "fifo").mkdir()
    shutil.copyfile(good, runs / "fifo" / "model.npz")
    os.mkfifo(runs / "fifo" / "metrics.json")
    yield web_case(
        "web: 20 listings of 20 float64 runs (31 MB each), metrics.json → /dev/zero and a FIFO",
        good,
        runs,
        lambda port: [get(port, "/api/models")[0] for _ in range(20)],
        lambda statuses: statuses == [200] * 20,
    )
    layers = [cnnlab.Conv2D(1, 8, 3, padding=1, rng=0)]
    for i in range(126):
        layers += [cnnlab.ReLU(), cnnlab.Conv2D(8, 8, 3, padding=1, rng=i + 1)]
    layers += [cnnlab.Flatten(), cnnlab.Dense(8 * 28 * 28, 10, rng=0)]
    cnnlab.Sequential(layers, input_shape=(1, 28, 28)).save(folder / "deep.npz")
    pixels = json.dumps({"pixels": (big_ring(28) / 255).tolist()}).encode()

    def maps(port: int):
        status, body = request(
            port,
            "POST",
            "/api/predict?activations=true",
            pixels,
            {"Content-Type": "application/json", **AUTH},
        )
        return [status], f", {len(body) / 1e6:.1f} MB of JSON"

    yield web_case(
        "web: activations=true on a 255-layer model", folder / "deep.npz", folder / "runs3", maps
    )

    def event_ids(port: int):
        return [
            get(port, "/api/train/events", {**AUTH, "Last-Event-ID": last})[0]
            for last in ("²", "9" * 5000)
        ]

    yield web_case(
        "web: Last-Event-ID '²' and 5,000 digits",
        good,
        folder / "runs3",
        event_ids,
        lambda statuses: statuses == [204, 204],
    )
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n\x89PNG"
    )

    def leaving(port: int):
        for _ in range(50):
            raw(port, head)
        return [get(port, "/api/health")[0]]

    yield web_case(
        "web: 50 clients leaving mid-body (log checked)", good, folder / "runs3", leaving
    )

    def slow(port: int):
        held = [raw(port, head, wait=False) for _ in range(205)]
        time.sleep(1)
        during = get(port, "/api/health")[0]
        time.sleep(31)  # the body timeout: 30 s
        after = get(port, "/api/health")[0]
        for sock in held:
            sock.close()
        return [during, after], f" (at 1 s: {during}; at 32 s: {after})"

    yield web_case(
        "web: 205 slow bodies held open, then /api/health",
        good,
        folder / "runs3",
        slow,
        lambda statuses: statuses[-1] == 200,
    )


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", choices=["model", "image", "web", "train"], help="one group of cases"
    )
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
            for name, argv, options in model_cases(folder, good, digit):
                results.append(cli_case(name, argv, args.timeout, **options))
        if args.only in (None, "image"):
            for name, path in {**images, **picture_cases(folder)}.items():
                results.append(
                    cli_case(
                        f"predict: {name}", ["predict", str(good), str(path)], args.timeout, True
                    )
                )
        if args.only in (None, "train"):
            for name, argv, options in train_cases(folder):
                results.append(cli_case(name, argv, args.timeout, **options))
        if args.only in (None, "web"):
            results.extend(web_cases(folder, good, images, bombs))
            results.extend(second_web_cases(folder, good))
    print("| case | outcome | peak RSS (MB) | CPU (s) | lines | traceback | within target |")
    print("|---|---|---:|---:|---:|---|---|")
    for r in results:
        print(
            f"| {r.case} | {r.outcome.replace('|', '/')} | {r.peak_mb:,.0f} | {r.cpu_s:.2f} | "
            f"{r.lines} | {'yes' if r.traceback else 'no'} | {'yes' if r.ok else '**no**'} |"
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
