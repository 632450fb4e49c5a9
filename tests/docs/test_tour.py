"""The tour's notebooks are stored clean, listed everywhere, checked by asserts, and a failing
assert fails their execution (``scripts/build_docs.py``, which CI runs on every notebook)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "docs" / "tour").glob("*.ipynb"))


def load_build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "scripts" / "build_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_there_is_a_notebook_per_section_of_the_article() -> None:
    assert len(NOTEBOOKS) >= 10
    assert [p.name[:3] for p in NOTEBOOKS] == [f"{i:02d}-" for i in range(1, len(NOTEBOOKS) + 1)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs_and_asserts_its_numbers(path: Path) -> None:
    cells = code_cells(path)
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells)
    assert sum("assert" in "".join(c["source"]) for c in cells) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_calls_the_library_not_the_command_line(path: Path) -> None:
    # The command line parses and prints; a notebook calls what it calls (runs, explain, export).
    code = "\n".join("".join(c["source"]) for c in code_cells(path))
    assert not re.search(r"^\s*(from|import)\s+cnnlab\.cli\b", code, re.MULTILINE)
    assert not re.search(r"^\s*from\s+cnnlab\s+import\s+.*\bcli\b", code, re.MULTILINE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_in_the_site_and_in_the_tours_index(path: Path) -> None:
    assert f"tour/{path.name}" in (ROOT / "mkdocs.yml").read_text()
    assert f"]({path.name})" in (ROOT / "docs" / "tour" / "README.md").read_text()


def write_notebook(path: Path, *sources: str) -> Path:
    cells = [
        {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
         "outputs": [], "source": source}
        for i, source in enumerate(sources)
    ]  # fmt: skip
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook))
    return path


@pytest.mark.slow
def test_a_failing_assert_fails_the_notebook_and_names_the_cell(tmp_path: Path) -> None:
    build_docs = load_build_docs()
    good = write_notebook(tmp_path / "good.ipynb", "x = 6 * 7", "assert x == 42\nprint(x)")
    bad = write_notebook(tmp_path / "bad.ipynb", "x = 6 * 7", "assert x == 41, 'the answer moved'")
    path, _, error = build_docs.execute(good, tmp_path / "good-run.ipynb", timeout=120)
    assert path == good and error == ""
    executed = json.loads((tmp_path / "good-run.ipynb").read_text())
    assert "".join(executed["cells"][1]["outputs"][0]["text"]) == "42\n"
    _, _, error = build_docs.execute(bad, tmp_path / "bad-run.ipynb", timeout=120)
    assert "AssertionError: the answer moved" in error
    assert "assert x == 41" in error
    assert "\x1b[" not in error  # no terminal colours in the log
