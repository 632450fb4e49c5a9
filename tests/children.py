"""Run a snippet of Python in a child process that imports this checkout's cnnlab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_child(code: str, *args: str) -> str:
    """The stdout of ``python -c code args…``, with the repository first on ``PYTHONPATH``;
    fails the test, with the child's stderr, when the child fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
