"""Take the README's picture of the web lab: a digit drawn on the Draw tab and what it shows.

    python scripts/screenshot_lab.py                  # writes docs/images/lab.png
    python scripts/screenshot_lab.py --out lab.png

It trains the default network on the bundled MNIST sample into a temporary runs folder (one epoch
on 3,000 digits, seeded: a few seconds), starts ``cnnlab serve`` on a free port with that
folder, draws a 7 with the mouse in Debian's Chromium (driven by Playwright, as the browser
tests do), waits for the prediction and saves the window (1600×1067 shown at 3/4 scale):
1200×800 pixels, a PNG of at most
256 colours, well under 200 KB. ``scripts/build_docs.py`` runs it before it builds the site,
so the picture always shows the lab as it is. Needs ``pip install -e ".[lab,test]"`` and
``apt install chromium``; no network.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images" / "lab.png"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
WIDTH, HEIGHT = 1200, 800  # the picture's pixels
SCALE = 0.75  # of a 1600×1067 window: the pad, the answer, the steps and the maps in one view
MAX_BYTES = 200_000
# A 7, as fractions of the pad: the top bar, then the long diagonal down.
SEVEN = [(0.28, 0.24), (0.72, 0.24), (0.6, 0.45), (0.48, 0.8)]


class ScreenshotError(RuntimeError):
    """What is missing to take the picture, in one line."""


def cnnlab(*args: str) -> list[str]:
    """The command line of ``cnnlab ARGS``; run in ``ROOT``, it is this checkout's cnnlab."""
    return [sys.executable, "-m", "cnnlab", *args]


def train(runs: Path) -> None:
    """The default network, seeded, one epoch on 3,000 bundled digits, as run ``runs/lab``."""
    options = ["--dataset", "mnist-sample", "--subset", "3000", "--epochs", "1", "--seed", "0"]
    command = cnnlab("train", *options, "--out", str(runs / "lab"))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ScreenshotError(f"training the lab's model failed: {last}")


def optimised_png(png: bytes) -> bytes:
    """``png`` as a PNG of at most 256 colours, compressed as far as Pillow goes."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    small = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, "PNG", optimize=True)
    return out.getvalue()


def take(out: Path) -> None:
    """Train, serve, draw and save the picture to ``out``."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ScreenshotError('Playwright is missing: pip install -e ".[lab,test]"') from None
    if not CHROMIUM.is_file():
        raise ScreenshotError(f"{CHROMIUM} is missing: apt install chromium")
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "runs"
        train(runs)
        server = subprocess.Popen(
            cnnlab("serve", "--port", "0", "--runs-dir", str(runs)),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            line = server.stdout.readline()
            match = re.search(r"http://\S+", line)  # with its ?token=, which opens the lab
            if not match:
                raise ScreenshotError(f"cnnlab serve did not start: {line.strip()}")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
                )
                window = {"width": round(WIDTH / SCALE), "height": round(HEIGHT / SCALE)}
                page = browser.new_page(viewport=window, device_scale_factor=SCALE)
                page.set_default_timeout(60_000)
                page.goto(match.group(0))
                page.wait_for_selector("#model-chip.ready")
                box = page.locator("#pad").bounding_box()
                at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in SEVEN]
                page.mouse.move(*at[0])
                page.mouse.down()
                for x, y in at[1:]:
                    page.mouse.move(x, y, steps=8)
                page.mouse.up()
                page.wait_for_selector("#bars[data-count='1']")
                page.wait_for_selector("#maps .layer-maps img")
                page.wait_for_timeout(400)  # the bars' short transition
                png = page.screenshot(scale="device")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    data = optimised_png(png)
    if len(data) > MAX_BYTES:
        raise ScreenshotError(f"the picture is {len(data)} bytes, over {MAX_BYTES}; simplify it")
    sys.path.insert(0, str(ROOT))  # this checkout's cnnlab, as the commands above
    from cnnlab.engine.fileio import atomic_write_bytes

    atomic_write_bytes(out, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    try:
        take(args.out)
    except ScreenshotError as err:
        print(f"screenshot_lab: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.out.stat().st_size // 1000} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
