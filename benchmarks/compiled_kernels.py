"""The compiled kernels against the NumPy reference, layer by layer, on one thread.

    python benchmarks/compiled_kernels.py            # the training shapes of lenet5 and simple

Each figure is the fastest of ``--repeats`` calls (the least disturbed by other processes), in
milliseconds, for a batch of 128 as ``fit`` runs it on one thread: max-pooling forward and
backward, ReLU forward and backward. It runs in
this process with the host BLAS pins removed from its environment first (``user_machine``) and
loads the kernels before timing them. Needs Numba (``pip install -e ".[fast]"``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cnnlab
from user_machine import HOST_BLAS_PINS  # beside this file

# The maps each preset pools and activates, batch 128: (preset, layer, shape).
SHAPES = [
    ("lenet5", "pool 1", (128, 6, 28, 28)),
    ("lenet5", "pool 2", (128, 16, 10, 10)),
    ("simple", "pool 1", (128, 32, 26, 26)),
    ("simple", "pool 2", (128, 64, 11, 11)),
]


def fastest(call: Callable[[], object], repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    opts = parser.parse_args()
    if any(k in os.environ for k in HOST_BLAS_PINS):  # as on a user's machine: re-run without
        env = {k: v for k, v in os.environ.items() if k not in HOST_BLAS_PINS}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    import numpy as np
    from threadpoolctl import threadpool_limits

    from cnnlab.engine import compiled, functional

    if not compiled.available():
        raise SystemExit('needs Numba: pip install -e ".[fast]"')
    rng = np.random.default_rng(0)
    rows = [
        "| preset | layer, batch 128 | NumPy | compiled | NumPy / compiled |",
        "|---|---|---|---|---|",
    ]

    def row(preset: str, what: str, numpy_call: Callable, compiled_call: Callable) -> None:
        a, b = fastest(numpy_call, opts.repeats), fastest(compiled_call, opts.repeats)
        rows.append(f"| `{preset}` | {what} | {a:.3f} ms | {b:.3f} ms | {a / b:.1f}× |")

    with threadpool_limits(1, user_api="blas"):
        for preset, layer, shape in SHAPES:
            x = rng.standard_normal(shape).astype(np.float32)
            h_out, w_out = shape[2] // 2, shape[3] // 2
            out, winners = functional.max_pool_2x2(x, h_out, w_out)
            g = rng.standard_normal(out.shape).astype(np.float32)
            row(
                preset,
                f"{layer} {shape[1:]} forward",
                lambda x=x, h=h_out, w=w_out: functional.max_pool_2x2(x, h, w),
                lambda x=x: compiled.max_pool_2x2(x),
            )
            row(
                preset,
                f"{layer} backward",
                lambda g=g, m=winners, s=shape: functional.max_pool_2x2_backward(g, m, s),
                lambda g=g, m=winners, s=shape: compiled.max_pool_2x2_backward(g, m, s),
            )
            y = functional.relu(out)
            row(
                preset,
                f"ReLU after {layer}, forward + backward",
                lambda o=out, g=g, y=y: functional.relu_backward(g, functional.relu(o)),
                lambda o=out, g=g, y=y: compiled.relu_backward(g, compiled.relu(o)),
            )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
