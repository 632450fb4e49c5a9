"""Shared fixtures, the opt-in full-data tests, and the rule that nothing skips but GPU tests.

The suite tests the real thing on a plain clone: it needs only the package (its bundled
``mnist-sample`` and sonar files) and what the tests write themselves. Two markers:

* ``gpu``: needs CuPy and an NVIDIA GPU; skips elsewhere. The only skip allowed.
* ``shared_data``: reads the full data sets in ``../shared/data`` beside the repository.
  Deselected unless ``--shared-data`` is given (then a missing folder is a usage error).

Any other skip, or a module skipped at collection, fails the session with the list of reasons:
a skipped test is an untested feature.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load
from cnnlab.engine.errors import install_hint

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shared-data",
        action="store_true",
        help=f"also run the tests marked shared_data, which read {SHARED_DATA}",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--shared-data") and not SHARED_DATA.is_dir():
        raise pytest.UsageError(f"--shared-data: {SHARED_DATA} is missing")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--shared-data"):
        return
    extras = [item for item in items if item.get_closest_marker("shared_data")]
    if extras:
        config.hook.pytest_deselected(items=extras)
        items[:] = [item for item in items if not item.get_closest_marker("shared_data")]


# Skips reported to this process (under xdist, the controller receives the workers' reports).
_SKIPPED: list[str] = []


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return f"{report.nodeid}: {reason.removeprefix('Skipped: ')}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and "gpu" not in report.keywords:
        _SKIPPED.append(_reason(report))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _SKIPPED.append(_reason(report))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller judges
    if _SKIPPED and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _SKIPPED:
        terminalreporter.section("skipped for a reason other than a missing GPU", red=True)
        for line in sorted(set(_SKIPPED)):
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            f"only tests marked gpu may skip: install what is missing ({install_hint('lab,test')}; "
            "the browser tests need Debian's chromium at /usr/bin/chromium)"
        )


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def mnist_small() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First 2,000 train and first 1,000 test digits of MNIST (from the bundled sample)."""
    x_train, y_train = load("mnist-sample", "train")
    x_test, y_test = load("mnist-sample", "test")
    return x_train[:2000], y_train[:2000], x_test[:1000], y_test[:1000]
