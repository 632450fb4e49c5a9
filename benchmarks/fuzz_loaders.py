"""Fuzz cnnlab's file loaders with damaged and hostile inputs and count how each case ends.

Every loader must either load a case or refuse it with ``CnnlabError``; anything else (another
exception type, a ``MemoryError`` under the address-space cap, a case past the watchdog) is a
failure. Cases are mutations of real files, drawn from a fixed seed so a run is reproducible:
truncation, bit flips, byte insertion and deletion, 32-bit header fields overwritten with
extreme values, random bytes, and crafted files (model archives with pickles, absurd shapes,
wrong dtypes, unknown layers, mismatched weights, broken JSON; IDX and PNG headers that claim
huge sizes).

    python benchmarks/fuzz_loaders.py                 # 10,000 cases per loader
    python benchmarks/fuzz_loaders.py --cases 500 --loaders model

Prints a Markdown table; exits 1 when any case was not a clean load or refusal.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's cnnlab, whatever is installed
sys.path.insert(0, str(ROOT / "tests"))

from hostile_files import archive, image_seeds, npy, png_claiming, seed_model  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab.engine.errors import CnnlabError  # noqa: E402

EXTREMES = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 10**8 + 1]
LOADERS = ("model", "idx", "image")


class Hang(BaseException):
    """Raised by the watchdog timer when one case runs too long (a BaseException, so no
    ``except Exception`` inside a loader can swallow it)."""


@dataclass
class Tally:
    """How the cases of one loader ended."""

    loaded: int = 0
    rejected: int = 0
    other: Counter = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    slow: int = 0
    hangs: int = 0
    worst_s: float = 0.0

    @property
    def failures(self) -> int:
        return sum(self.other.values()) + self.hangs


# -- mutations ---------------------------------------------------------------------------------


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def flip_bits(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(0, len(out)))
        out[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def insert_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    pos = int(rng.integers(0, len(data) + 1))
    return data[:pos] + rng.bytes(int(rng.integers(1, 17))) + data[pos:]


def delete_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    pos = int(rng.integers(0, len(data)))
    return data[:pos] + data[pos + int(rng.integers(1, 17)) :]


def overwrite_field(data: bytes, rng: np.random.Generator) -> bytes:
    """A 32-bit field (big- or little-endian) set to an extreme value; headers are favoured."""
    out = bytearray(data)
    limit = min(len(out), 128) if rng.random() < 0.6 else len(out)
    pos = int(rng.integers(0, max(limit - 3, 1)))
    value = int(rng.choice(EXTREMES))
    order = "big" if rng.random() < 0.5 else "little"
    out[pos : pos + 4] = value.to_bytes(4, order)
    return bytes(out[: len(data)])


def random_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """Random bytes, half of them behind the seed file's first bytes (its magic number)."""
    body = rng.bytes(int(rng.integers(0, 4096)))
    return data[: int(rng.integers(2, 12))] + body if rng.random() < 0.5 else body


MUTATIONS: list[Callable[[bytes, np.random.Generator], bytes]] = [
    truncate,
    flip_bits,
    insert_bytes,
    delete_bytes,
    overwrite_field,
    random_bytes,
]


# -- seed files and crafted cases --------------------------------------------------------------


def model_archive(config: object = None, arrays: dict | None = None, raw: object = None) -> bytes:
    """A model archive from a config (or a raw 'cnnlab' entry) and weight arrays."""
    model = seed_model()
    arrays = model.state_arrays() if arrays is None else arrays
    members = {f"{name}.npy": npy(value) for name, value in arrays.items()}
    entry = raw if raw is not None else json.dumps(config or model.config())
    members["cnnlab.npy"] = npy(np.array(entry))
    return archive(members)


JSON_ODDITIES: list[object] = [
    None,
    -1,
    0,
    10**9,
    10**30,
    1e308,
    "x",
    [],
    [10**9, 10**9],
    {"a": 1},
    True,
    [[1]],
    "",
]


def crafted_model(rng: np.random.Generator) -> bytes:
    """One hand-made hostile model archive."""
    model = seed_model()
    config, arrays = model.config(), model.state_arrays()
    kind = int(rng.integers(0, 9))
    if kind == 0:  # a pickled object array
        arrays["layers.0.W"] = np.array([object(), {"x": 1}], dtype=object)
    elif kind == 1:  # an .npy header promising a huge array
        payload = npy(arrays["layers.0.W"]).replace(
            b"(2, 1, 3, 3)", f"({int(rng.choice([10**9, 10**12, 2**40]))},)".encode()
        )
        members = {f"{k}.npy": npy(v) for k, v in arrays.items()}
        members["layers.0.W.npy"] = payload
        members["cnnlab.npy"] = npy(np.array(json.dumps(config)))
        return archive(members)
    elif kind == 2:  # wrong dtype or shape of a weight
        name = str(rng.choice(sorted(arrays)))
        arrays[name] = (
            arrays[name].astype(np.int64) if rng.random() < 0.5 else arrays[name].ravel()[:-1]
        )
    elif kind == 3:  # an unknown layer type
        config["layers"][int(rng.integers(0, len(config["layers"])))]["type"] = str(
            rng.choice(["Lambda", "__import__", "Conv3D", ""])
        )
    elif kind == 4:  # a strange value somewhere in the architecture
        layer = config["layers"][int(rng.integers(0, len(config["layers"])))]
        key = str(rng.choice(sorted(layer)))
        layer[key] = JSON_ODDITIES[int(rng.integers(0, len(JSON_ODDITIES)))]
    elif kind == 5:  # a strange top-level field
        key = str(rng.choice(["format", "version", "dtype", "input_shape", "layers", "meta"]))
        config[key] = JSON_ODDITIES[int(rng.integers(0, len(JSON_ODDITIES)))]
    elif kind == 6:  # the architecture entry is not JSON, or deeply nested JSON
        raw = str(rng.choice(["{", "[" * 100_000, '{"format": NaN}', "\x00"]))
        return model_archive(raw=raw, arrays=arrays)
    elif kind == 7:  # an entry that is not an .npy file
        members = {f"{k}.npy": npy(v) for k, v in arrays.items()}
        members["cnnlab.npy"] = npy(np.array(json.dumps(config)))
        members[str(rng.choice(["evil.pkl", "../x.npy.txt", "notes"]))] = b"\x80\x04K\x01."
        return archive(members)
    else:  # missing or stray weights
        if rng.random() < 0.5:
            del arrays[str(rng.choice(sorted(arrays)))]
        else:
            arrays["layers.99.W"] = np.zeros(3, np.float32)
    return model_archive(config, arrays)


def seed_idx_files() -> list[bytes]:
    from cnnlab.data import write_idx

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 6, dtype=np.uint8)
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for array in (images, labels, images.astype(np.float32)):
            for suffix in ("", ".gz"):
                path = Path(folder) / f"seed.idx{suffix}"
                write_idx(path, array)
                out.append(path.read_bytes())
    return out


def crafted_idx(rng: np.random.Generator) -> bytes:
    """An IDX header with extreme dimensions and a little data."""
    ndim = int(rng.integers(0, 6))
    code = int(rng.choice([0x08, 0x0D, 0x0E, 0x01, 0xFF]))
    dims = [int(rng.choice([*EXTREMES, 28, 60000])) for _ in range(ndim)]
    header = bytes([0, 0, code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + rng.bytes(int(rng.integers(0, 64)))


def crafted_image(rng: np.random.Generator) -> bytes:
    """A PNG whose header (with a valid checksum) claims extreme dimensions."""
    width, height = (int(rng.choice(EXTREMES)) for _ in range(2))
    return png_claiming(width, height, rng.bytes(int(rng.integers(0, 256))))


# -- the run -----------------------------------------------------------------------------------


def make_case(
    seeds: list[bytes], crafted: Callable[[np.random.Generator], bytes], rng: np.random.Generator
) -> tuple[str, bytes]:
    """One case: a crafted file (1 in 5) or a mutation of a seed file."""
    if rng.random() < 0.2:
        return "crafted", crafted(rng)
    mutation = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
    seed = seeds[int(rng.integers(0, len(seeds)))]
    return mutation.__name__, mutation(seed, rng)


def loader_setup(name: str) -> tuple[Callable[[Path], object], list[bytes], Callable]:
    """The function under test (given a file path), its seed files and its crafted cases."""
    if name == "model":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "seed.npz"
            seed_model().save(path)
            seeds = [path.read_bytes()]
        return cnnlab.Sequential.load, seeds, crafted_model
    if name == "idx":
        from cnnlab.data import read_idx

        return read_idx, seed_idx_files(), crafted_idx
    from cnnlab.data.preprocess import load_image

    return load_image, image_seeds(), crafted_image


def fuzz(name: str, cases: int, seed: int, slow_s: float, hang_s: float) -> Tally:
    load, seeds, crafted = loader_setup(name)
    rng = np.random.default_rng([seed, LOADERS.index(name)])
    tally = Tally()

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang

    signal.signal(signal.SIGALRM, on_alarm)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.bin"
        for index in range(cases):
            kind, data = make_case(seeds, crafted, rng)
            path.write_bytes(data)
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, hang_s)
            try:
                load(path)
                tally.loaded += 1
            except CnnlabError:
                tally.rejected += 1
            except Hang:
                tally.hangs += 1
                tally.samples.setdefault("hang", f"case {index} ({kind})")
            except Exception as err:  # the failures this script exists to find
                label = type(err).__name__
                tally.other[label] += 1
                tally.samples.setdefault(label, f"case {index} ({kind}): {str(err)[:120]}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            elapsed = time.perf_counter() - start
            if elapsed > slow_s:
                tally.slow += 1
                tally.samples.setdefault("slow", f"case {index} ({kind}): {elapsed:.2f} s")
            tally.worst_s = max(tally.worst_s, elapsed)
    return tally


def available(name: str) -> bool:
    try:
        if name == "idx":
            from cnnlab.data import read_idx  # noqa: F401
        elif name == "image":
            from cnnlab.data.preprocess import load_image  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per loader")
    parser.add_argument("--seed", type=int, default=0, help="seed of the case generator")
    parser.add_argument(
        "--loaders", default=",".join(LOADERS), help="comma-separated: model, idx, image"
    )
    parser.add_argument("--memory-gib", type=float, default=4.0, help="address-space cap")
    parser.add_argument("--slow-s", type=float, default=1.0, help="a case this slow is flagged")
    parser.add_argument("--hang-s", type=float, default=20.0, help="a case this slow is stopped")
    args = parser.parse_args(argv)
    cap = int(args.memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # an allocation bomb → MemoryError
    rows = []
    samples = []
    for name in args.loaders.split(","):
        if name not in LOADERS:
            parser.error(f"unknown loader {name!r}; choose from {', '.join(LOADERS)}")
        if not available(name):
            rows.append(f"| {name} | not available | | | | | |")
            continue
        start = time.perf_counter()
        tally = fuzz(name, args.cases, args.seed, args.slow_s, args.hang_s)
        other = ", ".join(f"{k} {v}" for k, v in tally.other.most_common()) or "0"
        rows.append(
            f"| {name} | {args.cases} | {tally.loaded} | {tally.rejected} | {other} | "
            f"{tally.slow} (hung: {tally.hangs}) | {tally.worst_s:.3f} |"
        )
        samples += [f"- {name}, {label}: {text}" for label, text in tally.samples.items()]
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(f"cases per loader: {args.cases}, seed {args.seed}, memory cap {args.memory_gib} GiB\n")
    print("| loader | cases | loaded | rejected (CnnlabError) | other exception | slow | worst s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if samples:
        print("\nfirst case of each failure (and of each slow case):\n" + "\n".join(samples))
    failed = any("slow" not in line.split(":")[0] for line in samples)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
