"""The Teach tab in a real browser: name three classes, draw ten examples of each, train, and get
answers from the drawing pad and from Chromium's fake camera."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package)", allow_module_level=True)

from web_helpers import Server  # noqa: E402

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--use-fake-device-for-media-stream",  # a generated test pattern instead of a camera
    "--use-fake-ui-for-media-stream",  # and no permission prompt
]
CLASSES = ("circle", "cross", "line")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sync_api.Page]:
    lab = Server("--runs-dir", str(tmp_path_factory.mktemp("teach") / "runs"))
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(30_000)
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(lab.url + "#teach")
        yield tab
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "lab-teach.png"), full_page=True)
        browser.close()
    lab.close()
    assert errors == []


def shape(kind: str, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Strokes of one drawing, as fractions of the pad's size."""
    cx, cy = rng.uniform(0.4, 0.6, 2)
    r = rng.uniform(0.22, 0.3)
    if kind == "circle":
        angles = np.linspace(0, 2 * np.pi, 24)
        return [[(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]]
    if kind == "cross":
        return [[(cx - r, cy - r), (cx + r, cy + r)], [(cx - r, cy + r), (cx + r, cy - r)]]
    return [[(cx - r, cy), (cx + r, cy + rng.uniform(-0.05, 0.05))]]


def draw(page: sync_api.Page, strokes: list[list[tuple[float, float]]]) -> None:
    box = page.locator("#teach-pad").bounding_box()
    for stroke in strokes:
        at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*at[0])
        page.mouse.down()
        for x, y in at[1:]:
            page.mouse.move(x, y, steps=3)
        page.mouse.up()


def test_drawn_classes_train_and_answer_then_the_camera_adds_and_predicts(page) -> None:
    rng = np.random.default_rng(0)
    page.fill("#teach-names", ", ".join(CLASSES))
    page.click("#teach-create")
    page.wait_for_selector("#teach-list button[data-class='line']")
    started = time.monotonic()
    for round_ in range(10):
        for name in CLASSES:
            draw(page, shape(name, rng))
            page.click(f"#teach-list button[data-class='{name}']")
            count = f"{round_ + 1} example{'' if round_ == 0 else 's'}"
            page.wait_for_selector(f"#teach-list [data-count='{name}']:has-text('{count}')")
    training = time.monotonic()
    page.click("#teach-train")
    page.wait_for_selector("#teach-status:has-text('Trained')", timeout=180_000)
    answers = []
    for name in CLASSES:
        page.click("#teach-clear")
        shown = int(page.get_attribute("#teach-bars", "data-count") or 0)
        draw(page, shape(name, rng))
        page.wait_for_selector(f"#teach-bars[data-count='{shown + 1}']")
        answers.append(page.inner_text("#teach-answer"))
        if len(answers) == 1:
            now = time.monotonic()
            print(f"first example to a trained model answering: {now - started:.1f} s "
                  f"(of which Train to the answer {now - training:.1f} s)")  # fmt: skip
    assert answers == list(CLASSES)
    bars = page.locator("#teach-bars li")
    assert bars.count() == 3
    assert page.is_visible("#teach-occlusion")

    # The fake camera: one snapshot becomes an example, and live predictions follow it.
    page.check("input[name='teach-source'][value='camera']")
    page.click("#teach-camera")
    page.wait_for_selector("#teach-camera:has-text('Stop camera')")  # the video plays
    page.click("#teach-list button[data-class='line']")
    page.wait_for_selector("#teach-list [data-count='line']:has-text('11 examples')")
    shown = int(page.get_attribute("#teach-bars", "data-count"))
    page.wait_for_selector(f"#teach-bars[data-count='{shown + 2}']")  # live, twice
    assert page.inner_text("#teach-answer") in CLASSES
    page.click("#teach-camera")  # stop it
