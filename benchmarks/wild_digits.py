"""How well does a cnnlab model read digits it never saw the like of? Accuracy per source.

Sources come in two groups, kept apart on purpose (accuracy on data you tuned against measures
the tuning):

* ``tune`` — looked at while choosing preprocessing and augmentation:
  ``printed``: digits in matplotlib's fonts (DejaVu, Computer Modern, STIX) photographed on
  paper; ``photo-mnist``: MNIST test digits of the bundled sample, upscaled and photographed;
  ``outlined``: the fonts drawn as hollow outlines; ``tiny``: bundled test digits 20-50 px tall
  on 1200-2400 px photos; ``cropped``: bundled test digits cut out to their ink, enlarged;
  ``slanted``: bundled test digits sheared beyond MNIST's usual slant;
  ``uci-lowres``: the UCI optical-recognition digits (43 writers, none of them MNIST's; 8×8
  bitmaps, read from scikit-learn's copy), upscaled, blurred, both polarities; ``photo-uci``:
  the same digits photographed on paper (these two were held out until the first round of tuning
  ended and read them once; they have been tuned on since); ``hands`` and ``hands-lowres``: five
  handwriting fonts' digits (``HANDS["tune"]``), photographed, or averaged down to 8-12 px and
  upscaled as the UCI bitmaps are.
* ``heldout`` — looked at once, at the end of a round of tuning, never tuned on:
  ``printed-liberation``: the Liberation fonts (Debian's fonts-liberation), photographed on
  paper; ``hands`` and ``hands-lowres``: six other handwriting fonts (``HANDS["heldout"]``,
  other hands than the tune ones), the same two ways.

The photographs use ``tests/digits_wild.py``: tinted or grey paper and ink of either polarity,
gradients, shadows, noise, blur, JPEG, slight rotation.

    python benchmarks/wild_digits.py RUN_OR_MODEL [--group tune|heldout|all] [--per-class 40]
        [--ablate zoom,outlines,deskew,paper-noise,shadows]

``--ablate`` switches preprocessing steps off, for the ablation table in benchmarks/README.md.

Needs the ``lab`` extra, scikit-learn for the UCI sources and Debian's handwriting fonts
(``HAND_PACKAGES``) for the ``hands`` sources.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import digits_wild  # noqa: E402  (the photograph simulator of the tests)

from cnnlab.cli._common import load_model  # noqa: E402
from cnnlab.data import load, preprocess  # noqa: E402
from cnnlab.data.preprocess import NoInkError, preprocess_file  # noqa: E402
from cnnlab.runs import predict  # noqa: E402

LIBERATION = Path("/usr/share/fonts/truetype/liberation")
# Handwriting fonts from Debian packages, one hand (or a few) each, split by package before
# any was looked at: the tune hands may be studied, the held-out ones are read once at the end.
HANDS = {
    "tune": ["bwht", "humor-sans", "comic-neue", "dancingscript", "klee"],
    "heldout": ["fifthhorseman", "breip", "femkeklaver", "rufscript", "sjfonts", "yusei-magic"],
}
HAND_PACKAGES = (
    "fonts-bwht fonts-humor-sans fonts-comic-neue fonts-dancingscript fonts-klee "
    "fonts-dkg-handwriting fonts-breip fonts-femkeklaver fonts-rufscript fonts-sjfonts "
    "fonts-yusei-magic"
)

Sample = tuple[bytes, int]


def _uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """UCI optical digits (1797, 8, 8) float32 in [0, 1] and labels (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _upscaled(digit: np.ndarray, factor: float) -> np.ndarray:
    """A small bitmap blown up ``factor`` times with bicubic smoothing, clipped to [0, 1]."""
    from PIL import Image

    h, w = digit.shape
    size = (max(8, round(w * factor)), max(8, round(h * factor)))
    big = Image.fromarray(digit, "F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(big, np.float32), 0, 1)


def _png(ink: np.ndarray, dark_ink: bool, margin: bool = True) -> bytes:
    """An ink map as a plain grey PNG, with a margin or without, dark-on-light or light-on-dark."""
    import io

    from PIL import Image

    page = np.pad(ink, ink.shape[0] // 2 if margin else 0)
    grey = (1 - page) if dark_ink else page
    out = io.BytesIO()
    Image.fromarray((grey * 255 + 0.5).astype(np.uint8), "L").save(out, "PNG")
    return out.getvalue()


def _photographed(ink_of: Callable[[int, np.random.Generator], np.ndarray]) -> Callable:
    """A source that puts ``ink_of(label, rng)`` on simulated paper, as the tests' wild set."""

    def make(per_class: int, rng: np.random.Generator) -> list[Sample]:
        noise = rng.standard_normal((2 * digits_wild.MAX_PAGE,) * 2, np.float32)
        samples = []
        for label in range(10):
            for _ in range(per_class):
                ink = ink_of(label, rng)
                if rng.random() < 0.5:
                    ink = digits_wild._rotate(ink, rng.uniform(-8, 8))
                page, _ = digits_wild._paper(ink, rng, noise)
                samples.append((digits_wild._encode(page, rng)[0], label))
        return samples

    return make


def _printed(label: int, rng: np.random.Generator) -> np.ndarray:
    return digits_wild._printed_ink(label, rng)[0]


def _liberation(label: int, rng: np.random.Generator) -> np.ndarray:
    fonts = sorted(LIBERATION.glob("*.ttf"))
    return _glyph(fonts[rng.integers(len(fonts))], label, int(rng.uniform(20, 300)))


def _hand_fonts(group: str) -> list[Path]:
    fonts = [
        path
        for folder in HANDS[group]
        for path in sorted(Path("/usr/share/fonts").glob(f"*/{folder}/*"))
        if path.suffix in (".ttf", ".otf")
    ]
    if not fonts:
        sys.exit(f"no handwriting fonts found; install them: apt-get install {HAND_PACKAGES}")
    return fonts


def _glyph(font_path: Path, label: int, size: int) -> np.ndarray:
    """The digit ``label`` in the font at ``size`` px, white on black, float32 in [0, 1]."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), size)
    left, top, right, bottom = font.getbbox(str(label))
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), str(label), fill=255, font=font)
    return np.asarray(canvas, np.float32) / 255


def _hand(group: str) -> Callable[[int, np.random.Generator], np.ndarray]:
    """Ink of a digit in one of the ``group``'s handwriting fonts, 20-300 px tall."""

    fonts: list[Path] = []  # found on first use: a group not asked for needs no fonts

    def ink_of(label: int, rng: np.random.Generator) -> np.ndarray:
        fonts[:] = fonts or _hand_fonts(group)
        return _glyph(fonts[rng.integers(len(fonts))], label, int(rng.uniform(20, 300)))

    return ink_of


def _hand_lowres(group: str) -> Callable[[int, np.random.Generator], list[Sample]]:
    """The ``group``'s handwriting fonts averaged down to 8-12 px tall (as UCI's 8×8 bitmaps
    are), upscaled 4-12 times and blurred, either polarity, as plain PNGs."""
    from PIL import Image

    def make(per_class: int, rng: np.random.Generator) -> list[Sample]:
        fonts = _hand_fonts(group)
        samples = []
        for label in range(10):
            for _ in range(per_class):
                ink = _glyph(fonts[rng.integers(len(fonts))], label, 96)
                height = int(rng.integers(8, 13))
                width = max(2, round(ink.shape[1] * height / ink.shape[0]))
                small = Image.fromarray(ink, "F").resize((width, height), Image.Resampling.BOX)
                big = _upscaled(np.asarray(small, np.float32), rng.uniform(4, 12))
                samples.append((_png(big, rng.random() < 0.5), label))
        return samples

    return make


def _bundled_test(label: int, rng: np.random.Generator) -> np.ndarray:
    return _upscaled_mnist(label, rng, rng.uniform(2, 12) if rng.random() < 0.5 else 1.0)


def _outlined(label: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw

    name = digits_wild._FONT_FILES[rng.integers(len(digits_wild._FONT_FILES))]
    size = int(rng.uniform(60, 300))
    font = digits_wild._font(name, size)
    width = max(1, int(size * rng.uniform(0.01, 0.04)))
    left, top, right, bottom = font.getbbox(str(label), stroke_width=width)
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text(
        (2 - left, 2 - top), str(label), font=font, fill=0, stroke_width=width, stroke_fill=255
    )
    return np.asarray(canvas, np.float32) / 255


def _slanted(label: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    ink = _upscaled_mnist(label, rng, factor=rng.uniform(3, 8))
    h = ink.shape[0]
    k = rng.choice([-1, 1]) * rng.uniform(0.6, 1.0)  # columns per row: beyond MNIST's 5-95 %
    pad = int(abs(k) * h) + 2
    wide = Image.fromarray(np.pad(ink, ((0, 0), (pad, pad))), "F")
    sheared = wide.transform(
        wide.size, Image.Transform.AFFINE, (1, k, -k * h / 2, 0, 1, 0), Image.Resampling.BILINEAR
    )
    return np.asarray(sheared, np.float32)


def _tiny(per_class: int, rng: np.random.Generator) -> list[Sample]:
    """Bundled test digits 20-50 px tall, dark on a light noisy 1200-2400 px photo (JPEG)."""
    import io

    from PIL import Image

    samples = []
    for label in range(10):
        for _ in range(per_class):
            ink = _upscaled_mnist(label, rng, factor=rng.uniform(0.8, 1.8))
            side = int(rng.uniform(1200, 2400))
            page = rng.uniform(0.75, 0.95) + rng.normal(0, 0.02, (side, side)).astype(np.float32)
            y, x = (int(rng.integers(0, side - n)) for n in ink.shape)
            region = page[y : y + ink.shape[0], x : x + ink.shape[1]]
            region -= ink * rng.uniform(0.4, 0.7)
            out = io.BytesIO()
            grey = np.clip(page * 255, 0, 255).astype(np.uint8)
            Image.fromarray(grey, "L").save(out, "JPEG", quality=int(rng.integers(60, 95)))
            samples.append((out.getvalue(), label))
    return samples


def _upscaled_mnist(label: int, rng: np.random.Generator, factor: float) -> np.ndarray:
    images, labels = load("mnist-sample", "test")
    pool = np.flatnonzero(labels == label)
    return _upscaled(images[pool[rng.integers(len(pool))]].astype(np.float32) / 255, factor)


def _cropped(per_class: int, rng: np.random.Generator) -> list[Sample]:
    """Bundled test digits cut out to their ink (no margin), enlarged 4-12×, either polarity."""
    samples = []
    for label in range(10):
        for _ in range(per_class):
            ink = _upscaled_mnist(label, rng, factor=rng.uniform(4, 12))
            rows, cols = np.flatnonzero(ink.max(1) > 0.1), np.flatnonzero(ink.max(0) > 0.1)
            tight = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            samples.append((_png(tight, rng.random() < 0.5, margin=False), label))
    return samples


def _uci(label: int, rng: np.random.Generator) -> np.ndarray:
    images, labels = _uci_digits()
    pool = np.flatnonzero(labels == label)
    return _upscaled(images[pool[rng.integers(len(pool))]], rng.uniform(4, 12))


def _uci_lowres(per_class: int, rng: np.random.Generator) -> list[Sample]:
    images, labels = _uci_digits()
    samples = []
    for label in range(10):
        pool = rng.permutation(np.flatnonzero(labels == label))[:per_class]
        samples += [
            (_png(_upscaled(images[i], rng.uniform(4, 12)), rng.random() < 0.5), label)
            for i in pool
        ]
    return samples


SOURCES = {
    "tune": {
        "printed": _photographed(_printed),
        "photo-mnist": _photographed(_bundled_test),
        "outlined": _photographed(_outlined),
        "tiny": _tiny,
        "cropped": _cropped,
        "slanted": _photographed(_slanted),
        "uci-lowres": _uci_lowres,
        "photo-uci": _photographed(_uci),
        "hands": _photographed(_hand("tune")),
        "hands-lowres": _hand_lowres("tune"),
    },
    "heldout": {
        "printed-liberation": _photographed(_liberation),
        "hands": _photographed(_hand("heldout")),
        "hands-lowres": _hand_lowres("heldout"),
    },
}


def _no_zoom() -> None:
    preprocess._ZOOM_BELOW = 0


def _no_outlines() -> None:
    preprocess._fill_outlines = lambda ink: ink


def _no_paper_noise() -> None:
    preprocess._paper_noise = preprocess._noise


def _no_shadows() -> None:
    preprocess._shadow_like = lambda kept: False


def _no_deskew() -> None:
    preprocess._deskew = lambda ink: ink


ABLATIONS = {
    "zoom": _no_zoom,
    "outlines": _no_outlines,
    "deskew": _no_deskew,
    "paper-noise": _no_paper_noise,
    "shadows": _no_shadows,
}


def evaluate(model, samples: list[Sample]) -> dict[str, float]:
    """Accuracy on ``samples`` (a picture with no ink found counts as wrong), the share of
    answers flagged unsure, the accuracy of the sure ones and the share of errors flagged."""
    inputs, labels = [], []
    for data, label in samples:
        try:
            inputs.append(preprocess_file(data).image)
        except NoInkError:
            inputs.append(np.zeros((28, 28), np.float32))
        labels.append(label)
    readings = predict.read(model, np.stack(inputs)[:, None])
    right = np.array([r.label == y for r, y in zip(readings, labels, strict=True)])
    unsure = np.array([r.unsure for r in readings])
    return {
        "n": len(labels),
        "accuracy": right.mean(),
        "unsure": unsure.mean(),
        "sure_accuracy": right[~unsure].mean() if (~unsure).any() else float("nan"),
        "errors_flagged": unsure[~right].mean() if (~right).any() else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a run folder or model file")
    parser.add_argument("--group", choices=["tune", "heldout", "all"], default="tune")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablate", default="", help="comma-separated: " + ", ".join(ABLATIONS))
    args = parser.parse_args(argv)
    for step in filter(None, args.ablate.split(",")):
        ABLATIONS[step]()
    model = load_model(args.model).eval()
    groups = ["tune", "heldout"] if args.group == "all" else [args.group]
    for group in groups:
        for name, make in SOURCES[group].items():
            samples = make(args.per_class, np.random.default_rng(args.seed))
            r = evaluate(model, samples)
            flagged = r["errors_flagged"]
            print(
                f"{group:8s} {name:20s} {r['accuracy']:7.2%} of {r['n']}   unsure "
                f"{r['unsure']:6.1%}, sure ones right {r['sure_accuracy']:7.2%}, "
                + ("no errors" if np.isnan(flagged) else f"errors flagged {flagged:6.1%}")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
