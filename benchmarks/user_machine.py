"""The environment a benchmark's child processes run in: as on a user's machine.

Some hosts set ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` to keep old OpenBLAS builds safe;
a user's machine does not, and on this project's machine they halve NumPy's sgemm (127 vs 242
GFLOP/s on one core). Benchmarks remove them in their own children only, never in tests or CI.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_BLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def child_env(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment without the host BLAS pins (and ``drop``), with the
    repository first on ``PYTHONPATH`` so the children run this checkout's cnnlab."""
    env = {k: v for k, v in os.environ.items() if k not in HOST_BLAS_PINS + drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
