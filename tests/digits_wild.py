"""A generator of realistic "wild" digit images: what people actually feed a digit demo.

``make_wild_digits`` returns encoded PNG/JPEG files of two kinds, in equal numbers per class:

* printed digits rendered from the TrueType fonts that ship with matplotlib (sans, serif, mono,
  Computer Modern, STIX; regular, bold, italic), 20 to 400 px tall;
* handwriting: the bundled MNIST sample's test digits (never trained on), upscaled smoothly
  onto large canvases with thicker or thinner strokes.

Both are then put on paper: dark ink on light or the reverse, grey or coloured, at contrasts
down to 0.2, off-centre with wide margins, on flat, gradient, shadowed or noisy backgrounds,
slightly rotated, sometimes out of focus, sometimes JPEG-compressed.
Needs Pillow and matplotlib (both in the ``lab`` extra).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np

MAX_PAGE = 640  # longest page side in pixels, which keeps generation fast

_FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
)


@functools.cache
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The bundled sample's test images (2000, 28, 28) uint8 and labels (2000,) uint8."""
    from cnnlab.data import load

    return load("mnist-sample", "test")


@functools.cache
def _font(name: str, size: int):
    from matplotlib import get_data_path
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(get_data_path()) / "fonts" / "ttf" / name), size)


def _printed_ink(label: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Ink coverage (h, w) float32 in [0, 1] of a rendered digit, tightly cropped."""
    from PIL import Image, ImageDraw

    name = _FONT_FILES[rng.integers(len(_FONT_FILES))]
    height = int(np.exp(rng.uniform(np.log(20), np.log(400))))  # digit height in pixels
    font = _font(name, max(8, int(height * 1.4)))
    left, top, right, bottom = font.getbbox(str(label))
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), str(label), fill=255, font=font)
    ink = np.asarray(canvas, np.float32) / 255
    return ink, f"printed {name} {bottom - top}px"


def _handwritten_ink(label: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An MNIST test digit of class ``label`` upscaled smoothly, strokes thickened or thinned."""
    from PIL import Image

    images, labels = mnist_test()
    pool = np.flatnonzero(labels == label)
    index = int(pool[rng.integers(len(pool))])
    digit = images[index].astype(np.float32) / 255
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    digit = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    factor = np.exp(rng.uniform(np.log(2.0), np.log(20.0)))
    size = (max(2, round(digit.shape[1] * factor)), max(2, round(digit.shape[0] * factor)))
    big = np.asarray(Image.fromarray(digit, "F").resize(size, Image.Resampling.BICUBIC))
    # A threshold with a soft edge of about one pixel: low levels give fat strokes, high thin.
    level = rng.uniform(0.15, 0.75)
    soft = 0.5 / (factor + 1)
    ink = np.clip((big - level) / soft + 0.5, 0, 1).astype(np.float32)
    return ink, f"handwritten mnist-test#{index} x{factor:.1f} level {level:.2f}"


def _rotate(ink: np.ndarray, degrees: float) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(ink, "F").rotate(degrees, Image.Resampling.BILINEAR, expand=True)
    return np.asarray(img, np.float32)


def _paper(ink: np.ndarray, rng: np.random.Generator, noise: np.ndarray):
    """Place ``ink`` on a larger RGB page (a Pillow image) and say how.

    ``noise`` is a bank of standard normal samples (S, S) that pages crop their noise from.
    """
    from PIL import Image, ImageChops, ImageFilter

    h, w = ink.shape
    side = max(h, w)
    # From a tight crop to very wide margins, pages mostly within MAX_PAGE pixels a side.
    margin = max(min(rng.uniform(0.1, 2.5) * side, (MAX_PAGE - side) / 2), 0.05 * side)
    H = int(h + 2 * margin * rng.uniform(0.5, 1.0)) + 4
    W = int(w + 2 * margin * rng.uniform(0.5, 1.0)) + 4
    top = int(rng.integers(0, H - h + 1))
    left = int(rng.integers(0, W - w + 1))
    cover = np.zeros((H, W), np.uint8)
    cover[top : top + h, left : left + w] = np.clip(ink * 255 + 0.5, 0, 255).astype(np.uint8)

    dark_ink = rng.random() < 0.7
    if rng.random() < 0.5:  # grey
        paper = np.full(3, rng.uniform(0.6, 1.0) if dark_ink else rng.uniform(0.0, 0.3))
        pen = np.full(3, rng.uniform(0.0, 0.4) if dark_ink else rng.uniform(0.6, 1.0))
        colour = "grey"
    else:  # tinted paper and coloured ink, kept apart in brightness
        paper = rng.uniform(0.7, 1.0, 3) if dark_ink else rng.uniform(0.0, 0.3, 3)
        pen = rng.uniform(0.0, 0.45, 3) if dark_ink else rng.uniform(0.65, 1.0, 3)
        colour = "colour"
    page = Image.composite(
        Image.new("RGB", (W, H), tuple(int(v * 255) for v in pen)),
        Image.new("RGB", (W, H), tuple(int(v * 255) for v in paper)),
        Image.fromarray(cover, "L"),
    )

    shade = np.zeros((H, W), np.float32)  # grey offset in 0..255 units, same in every channel
    background = "flat"
    if rng.random() < 0.4:  # uneven lighting: a linear gradient across the page
        angle = rng.uniform(0, 2 * np.pi)
        yy = np.arange(H, dtype=np.float32)[:, None] / H
        xx = np.arange(W, dtype=np.float32)[None, :] / W
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(25, 75)
        shade += (ramp - ramp.mean()) * (1 if dark_ink else 0.5)
        background = "gradient"
    if rng.random() < 0.25:  # a soft shadow edge across the page
        angle = rng.uniform(0, 2 * np.pi)
        yy = np.arange(H, dtype=np.float32)[:, None] / max(H, W) - rng.uniform(0.2, 0.8)
        xx = np.arange(W, dtype=np.float32)[None, :] / max(H, W) - rng.uniform(0.2, 0.8)
        across = (np.cos(angle) * xx + np.sin(angle) * yy) / rng.uniform(0.05, 0.3)
        shade -= rng.uniform(20, 60) / (1 + np.exp(-across))
        background += " shadow"
    if rng.random() < 0.5:  # sensor / paper noise, cropped from the bank at a random offset
        sigma = rng.uniform(0.01, 0.08)
        oy = int(rng.integers(0, max(1, noise.shape[0] - H)))
        ox = int(rng.integers(0, max(1, noise.shape[1] - W)))
        patch = np.resize(noise[oy : oy + H, ox : ox + W], (H, W))
        shade += (255 * sigma) * patch
        background += f" noise {sigma:.2f}"
    if background != "flat":  # one grey offset for all channels, centred on 128
        offset = Image.fromarray(np.clip(shade + 128.5, 0, 255).astype(np.uint8), "L")
        page = ImageChops.add(page, Image.merge("RGB", [offset] * 3), offset=-128)
    if rng.random() < 0.2:  # out of focus
        radius = rng.uniform(0.005, 0.02) * side
        page = page.filter(ImageFilter.GaussianBlur(radius))
        background += f" blur {radius:.1f}px"
    polarity = "dark-on-light" if dark_ink else "light-on-dark"
    return page, f"{polarity} {colour} {background} {W}x{H}"


def _encode(img, rng: np.random.Generator) -> tuple[bytes, str]:
    """Encode a Pillow RGB image as PNG or JPEG, sometimes converted to grey first."""
    if rng.random() < 0.3:
        img = img.convert("L")
    out = io.BytesIO()
    if rng.random() < 0.5:
        quality = int(rng.integers(25, 95))
        img.save(out, "JPEG", quality=quality)
        return out.getvalue(), f"jpeg q{quality} {img.mode}"
    img.save(out, "PNG", compress_level=1)
    return out.getvalue(), f"png {img.mode}"


def make_wild_digits(n_per_class: int, seed: int) -> list[tuple[bytes, int, str]]:
    """``n_per_class`` images of each digit 0-9, half printed and half handwritten.

    Returns a list of (encoded PNG or JPEG bytes, label, description), shuffled; the same
    ``seed`` gives the same files.
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2 * MAX_PAGE, 2 * MAX_PAGE), np.float32)
    samples = []
    for label in range(10):
        for k in range(n_per_class):
            make_ink = _printed_ink if k % 2 == 0 else _handwritten_ink
            ink, what = make_ink(label, rng)
            tilt = rng.uniform(-8, 8) if rng.random() < 0.5 else 0.0
            if tilt:
                ink = _rotate(ink, tilt)
            page, how = _paper(ink, rng, noise)
            data, fmt = _encode(page, rng)
            samples.append((data, label, f"{what}, rotated {tilt:.0f}°, {how}, {fmt}"))
    order = rng.permutation(len(samples))
    return [samples[i] for i in order]
