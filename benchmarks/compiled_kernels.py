"""The compiled kernels against the NumPy reference, layer by layer, on one thread.

    python benchmarks/compiled_kernels.py            # the training shapes of lenet5 and simple

Each figure is the fastest of ``--repeats`` calls (the least disturbed by other processes), in
milliseconds, for a batch of 128 as ``fit`` runs it on one thread: max-pooling forward and
backward, ReLU forward and backward, and each convolution layer's forward and backward (the
whole ``Conv2D`` step: patches, products, bias; the first layer's backward without dL/dx, as in
``fit``). It runs in
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
# The convolutions: (preset, layer, (C_in, C_out, kernel, padding, input size), first layer).
CONVS = [
    ("lenet5", "conv 1", (1, 6, 5, 2, 28), True),
    ("lenet5", "conv 2", (6, 16, 5, 0, 14), False),
    ("simple", "conv 1", (1, 32, 3, 0, 28), True),
    ("simple", "conv 2", (32, 64, 3, 0, 13), False),
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

    import cnnlab as cl
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
        for preset, layer, (c_in, c_out, k, padding, size), first in CONVS:
            conv = cl.Conv2D(c_in, c_out, k, padding=padding, rng=0)
            conv.set_input_grad(not first)
            x = rng.standard_normal((128, c_in, size, size)).astype(np.float32)
            g = rng.standard_normal((128, *conv.output_shape(x.shape[1:]))).astype(np.float32)
            # The two paths alternate call by call (the same layer and scratch arrays), so a
            # burst of load on the machine reaches both; each keeps its fastest call.
            figures = {use: [float("inf"), float("inf")] for use in (False, True)}
            for _ in range(opts.repeats + 1):
                for use in (False, True):
                    previous = cl.set_compiled(use)
                    try:
                        for index, call in enumerate((conv.forward, conv.backward)):
                            started = time.perf_counter()
                            call(x if index == 0 else g)
                            took = 1000 * (time.perf_counter() - started)
                            figures[use][index] = min(figures[use][index], took)
                    finally:
                        cl.set_compiled(previous)
            backward = "backward without dL/dx (the first layer)" if first else "backward"
            for index, what in enumerate((f"{layer} {(c_in, size, size)} forward", backward)):
                a, b = figures[False][index], figures[True][index]
                rows.append(f"| `{preset}` | {what} | {a:.3f} ms | {b:.3f} ms | {a / b:.1f}× |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
