"""The README's picture of the web lab: committed, a real PNG of the size
``scripts/screenshot_lab.py`` takes, small, and shown by the README (the site's build takes it
again from the running lab)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PICTURE = ROOT / "docs" / "images" / "lab.png"


def _screenshot_script():
    spec = importlib.util.spec_from_file_location(
        "screenshot_lab", ROOT / "scripts" / "screenshot_lab.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_labs_picture_is_a_small_png_of_the_size_the_script_takes() -> None:
    script = _screenshot_script()
    assert script.OUT == PICTURE
    assert PICTURE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(PICTURE) as image:
        image.verify()  # a whole, undamaged PNG
    with Image.open(PICTURE) as image:
        assert image.format == "PNG"
        assert image.size == (script.WIDTH, script.HEIGHT) == (1200, 800)
    assert PICTURE.stat().st_size <= script.MAX_BYTES == 200_000


def test_the_readme_shows_the_picture_near_its_top() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    shown = [i for i, line in enumerate(lines) if "](docs/images/lab.png)" in line]
    assert shown and shown[0] < 5 and lines[shown[0]].startswith("![")
