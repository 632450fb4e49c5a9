"""The package's metadata reads without a deprecation warning (what ``pip install`` prints)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_without_deprecation_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    # `project.license` as a TOML table ({ text = "MIT" }) is deprecated: an SPDX string is not.
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "MIT"
    assert [Path(f).name for f in dist.metadata.license_files] == ["LICENSE"]


def test_the_web_test_client_imports_without_deprecation_warnings() -> None:
    # Starlette's TestClient warned that running on httpx is deprecated (the test extra's
    # httpx2 is what it wants). A fresh interpreter: this one may have imported it already.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import fastapi.testclient"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
