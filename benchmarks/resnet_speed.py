"""ResNet-18 on the CPU: one 224×224 picture, and the features of 100 pictures at 112 px.

Each measurement runs in a fresh child process as on a user's machine (``user_machine``), and
cnnlab's children alternate with PyTorch's (the same network, ``cnnlab.export.pytorch.to_torch``,
same weights) so that both see the same load; the tables give medians. Random weights: the
arithmetic, not the accuracy, is what is timed.

    python benchmarks/resnet_speed.py                  # 3 interleaved runs of each
    python benchmarks/resnet_speed.py --repeats 1 --calls 5
    python benchmarks/resnet_speed.py --profile        # cnnlab's time by layer type
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from user_machine import child_env


def _child(engine: str, calls: int) -> dict:
    """Run in the child: time one picture at 224 (median of ``calls``) and 100 pictures'
    features at 112 (one pass, after a warm-up), on every core the process may use."""
    import numpy as np
    from threadpoolctl import threadpool_info

    from cnnlab.runs.pretrained import IMAGENET_MEAN, IMAGENET_STD, features
    from cnnlab.runs.zoo import resnet18

    rng = np.random.default_rng(0)
    picture = rng.random((1, 3, 224, 224), dtype=np.float32)
    pictures = rng.integers(0, 256, (100, 3, 112, 112), dtype=np.uint8)
    big = resnet18(seed=0).eval()
    small = resnet18(seed=0, input_shape=(3, 112, 112), n_classes=None).eval()
    small.meta.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    if engine == "cnnlab":
        one = lambda: big.outputs(picture)  # noqa: E731
        many = lambda: features(small, pictures)  # noqa: E731
        kernel = [i.get("architecture") for i in threadpool_info() if i["user_api"] == "blas"]
    else:
        import torch

        from cnnlab.data.imageset import normalise
        from cnnlab.export.pytorch import to_torch

        big_t, small_t = to_torch(big).eval(), to_torch(small).eval()
        x = torch.from_numpy(picture)

        def one() -> None:
            with torch.no_grad():
                big_t(x)

        def many() -> None:
            with torch.no_grad():
                for start in range(0, 100, 64):
                    batch = normalise(pictures[start : start + 64], IMAGENET_MEAN, IMAGENET_STD)
                    small_t(torch.from_numpy(batch))

        kernel = [torch.backends.cpu.get_cpu_capability()]
    one()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    many()
    start = time.perf_counter()
    many()
    return {
        "engine": engine,
        "one_224_ms": 1000 * statistics.median(times),
        "features_100_at_112_s": time.perf_counter() - start,
        "kernel": kernel,
    }


def _profile(calls: int) -> dict:
    """Run in the child: cnnlab's share of one 224×224 forward pass by layer type (the blocks'
    layers counted as themselves), median over ``calls``."""
    import numpy as np

    from cnnlab.engine.layers import Residual
    from cnnlab.runs.zoo import resnet18

    model = resnet18(seed=0).eval()
    picture = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    spent: dict[str, list[float]] = {}

    def timed(layer: object) -> None:
        forward = layer.forward

        def wrapper(x: object) -> object:
            start = time.perf_counter()
            out = forward(x)
            spent.setdefault(type(layer).__name__, []).append(time.perf_counter() - start)
            return out

        layer.forward = wrapper

    for layer in model.layers:
        for inner in layer.sublayers() if isinstance(layer, Residual) else [layer]:
            timed(inner)
    model.forward(picture)
    spent.clear()
    for _ in range(calls):
        model.forward(picture)
    return {name: 1000 * sum(times) / calls for name, times in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10, help="timed 224×224 forward passes")
    parser.add_argument("--profile", action="store_true", help="cnnlab's time by layer type")
    parser.add_argument("--child", choices=("cnnlab", "torch", "profile"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = _profile if args.child == "profile" else lambda calls: _child(args.child, calls)
        print(json.dumps(job(args.calls)))
        return
    if args.profile:
        command = [sys.executable, __file__, "--child", "profile", "--calls", str(args.calls)]
        out = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=True)
        shares = json.loads(out.stdout.strip().splitlines()[-1])
        total = sum(shares.values())
        for name, ms in sorted(shares.items(), key=lambda item: -item[1]):
            print(f"{name:16s} {ms:8.1f} ms  {ms / total:6.1%}")
        return
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {"cnnlab": [], "torch": []}
    for _ in range(args.repeats):
        for engine in runs:
            command = [sys.executable, __file__, "--child", engine, "--calls", str(args.calls)]
            out = subprocess.run(command, env=child_env(), capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            runs[engine].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}")
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    for key, label in (
        ("one_224_ms", "one 224×224 picture (ms)"),
        ("features_100_at_112_s", "features of 100 pictures at 112 px (s)"),
    ):
        ours = statistics.median(r[key] for r in runs["cnnlab"])
        theirs = statistics.median(r[key] for r in runs["torch"])
        print(f"{label}: cnnlab {ours:.3g}, PyTorch {theirs:.3g}, ratio {ours / theirs:.2f}")
    print("kernels:", runs["cnnlab"][0]["kernel"], runs["torch"][0]["kernel"])


if __name__ == "__main__":
    main()
