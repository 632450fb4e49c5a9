"""Where the Teach tab's time goes in a real browser: 3 classes × 10 drawn examples, Train, and
the first answer, driven through Chromium by Playwright as ``tests/web/test_web_browser.py``
does, with each part timed on its own.

Playwright's input events arrive one per animation frame (about 16.7 ms), so the drawing of the
30 examples is mostly the harness's pace, not the page's; the second table separates it: the
same mouse moves over the pad and over the page's header, and "Add" clicked from inside the
page (no input events), from the click to the new count on the page.

    python benchmarks/teach_browser.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's cnnlab, whatever is installed
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "web"))

from playwright import sync_api  # noqa: E402
from test_web_browser import (  # noqa: E402
    CHROMIUM,
    LAUNCH_ARGS,
    TEACH_CLASSES,
    draw_on_teach_pad,
    teach_strokes,
)
from user_machine import child_env  # noqa: E402
from web_helpers import Server  # noqa: E402

# The page's own share of adding one example: click "Add" from inside the page and wait for
# the list to be drawn again with the new count.
ADD_IN_PAGE = """async () => {
  const list = document.querySelector("#teach-list");
  const drawn = new Promise((resolve) => new MutationObserver((_, observer) => {
    observer.disconnect();
    resolve();
  }).observe(list, { childList: true }));
  const start = performance.now();
  document.querySelector("#teach-list button[data-class='circle']").click();
  await drawn;
  return performance.now() - start;
}"""


def move_ms(page: sync_api.Page, selector: str, moves: int = 100) -> float:
    """Milliseconds per mouse move with the button down over ``selector``."""
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    start = time.monotonic()
    for i in range(moves):
        page.mouse.move(box["x"] + 2 + i % 20, box["y"] + 2 + i % 7)
    elapsed = time.monotonic() - start
    page.mouse.up()
    return 1000 * elapsed / moves


def main() -> None:
    os.environ.update(child_env())  # the server runs this checkout too
    lab = Server("--runs-dir", str(Path(tempfile.mkdtemp()) / "runs"))
    rng = np.random.default_rng(0)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
            )
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(lab.url + "#teach")
            page.fill("#teach-names", ", ".join(TEACH_CLASSES))
            page.click("#teach-create")
            page.wait_for_selector("#teach-list button[data-class='line']")
            drawing = adding = 0.0
            started = time.monotonic()
            for round_ in range(10):
                for name in TEACH_CLASSES:
                    before = time.monotonic()
                    draw_on_teach_pad(page, teach_strokes(name, rng))
                    drawn = time.monotonic()
                    page.click(f"#teach-list button[data-class='{name}']")
                    count = f"{round_ + 1} example{'' if round_ == 0 else 's'}"
                    page.wait_for_selector(f"#teach-list [data-count='{name}']:has-text('{count}')")
                    drawing, adding = drawing + drawn - before, adding + time.monotonic() - drawn
            examples = time.monotonic()
            page.click("#teach-train")
            page.wait_for_selector("#teach-status:has-text('Trained')", timeout=180_000)
            trained = time.monotonic()
            page.click("#teach-clear")
            shown = int(page.get_attribute("#teach-bars", "data-count") or 0)
            draw_on_teach_pad(page, teach_strokes("circle", rng))
            page.wait_for_selector(f"#teach-bars[data-count='{shown + 1}']")
            answered = time.monotonic()

            over_pad, over_header = move_ms(page, "#teach-pad"), move_ms(page, "header.topbar")
            in_page = []
            for _ in range(15):
                draw_on_teach_pad(page, teach_strokes("circle", rng))
                in_page.append(page.evaluate(ADD_IN_PAGE))
            browser.close()
    finally:
        lab.close()
    print("| part | seconds |\n|---|---|")
    print(f"| 30 examples: Playwright drawing them | {drawing:.1f} |")
    print(f"| 30 examples: Playwright clicking Add, to the count shown | {adding:.1f} |")
    print(f"| Train clicked, to 'Trained' shown | {trained - examples:.1f} |")
    print(f"| clear, draw a circle, to its answer shown | {answered - trained:.1f} |")
    print(f"| **first example to a trained model answering** | **{answered - started:.1f}** |")
    print("\n| what | ms |\n|---|---|")
    print(f"| one mouse move over the pad / over the header | {over_pad:.1f} / {over_header:.1f} |")
    print(
        f"| Add clicked in the page, to the new count (median of 15) | {np.median(in_page):.0f} |"
    )


if __name__ == "__main__":
    main()
