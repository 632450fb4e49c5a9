"""Small picture folders of the kinds a person brings, to measure learning from few examples.

Writes, under ``ROOT/<set>/<folder>/{train,test}/<class>/``, for a ``tune`` set (looked at
while choosing the extractor's recipe) and a ``holdout`` set (measured once, at the end):

- ``shapes``: 3 classes of coloured shapes drawn with Pillow (filled or outlined, on flat,
  gradient or striped backgrounds), 150 training and 50 test pictures a class, mixed sizes and
  file formats. tune: circle, square, triangle; holdout: star, cross, diamond.
- ``digits``: the bundled MNIST sample as PNGs, 10 training pictures a class (tune: the first
  ten of each class; holdout: the next ten), tested on 50 a class of the sample's test split.
- ``drawn`` and ``photo``: 3 categories of objects from font symbols (DejaVu Sans, DejaVu
  Serif, STIX), 40 training and 30 test pictures a category, where the test pictures show
  symbols no training picture shows. ``drawn`` is clip-art-like (a coloured symbol on a plain
  light background); ``photo`` lays the same symbols on textured, unevenly lit backgrounds with
  a shadow, perspective, blur, noise and JPEG compression.
  tune: arrows, stars, crosses; holdout: chess pieces, hands, weather.

    python benchmarks/few_examples.py ROOT                 # write the folders
    python benchmarks/few_examples.py ROOT --measure tune  # train each, as a user would

``--measure SET`` trains every folder of SET with ``cnnlab train --dataset FOLDER`` and no other
option (``--from scratch`` too with ``--scratch``), each in a child process as on a user's
machine, and prints its test accuracy and wall time; and the accuracy of the prototype
classifier on the shipped extractor's features from the first 1 and 5 training pictures a class;
and how its model says "none of these": the share of the test pictures it reads right that it
keeps as one of its classes, and the share of the set's other folders' test pictures (none of
its classes) that it turns away.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.user_machine import child_env
from cnnlab.data import datasets
from cnnlab.engine.sequential import Sequential

FORMATS = (("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp"), ("WEBP", ".webp"))
SHAPE_CLASSES = {"tune": ("circle", "square", "triangle"), "holdout": ("star", "cross", "diamond")}
SYMBOLS = {
    "tune": {
        "arrows": "←↑→↓↔↕↖↗↘↙⇐⇑⇒⇓⇔⇕⇦⇧⇨⇩➔➘➙➚➛➜➝➞➟➠➡➢➣➤➥➦",
        "stars": "★☆✦✧✩✪✫✬✭✮✯✰✱✲✳✴✵✶✷✸✹✺❀❁✿❃❄❅❆❇❈❉❊❋",
        "crosses": "✓✔✕✖✗✘✙✚✛✜✝✞✟✠☓☦☨☩☥✢✣✤✥",
    },
    "holdout": {
        "chess": "♔♕♖♗♘♙♚♛♜♝♞♟",
        "hands": "☚☛☜☝☞☟✌✍☝✋✊",
        "weather": "☀☁☂☃☄☼☽☾⛅⛆⛈",
    },
}
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "STIXGeneral.ttf", "DejaVuSans-Bold.ttf")


def _fonts(size: int) -> list[ImageFont.FreeTypeFont]:
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [ImageFont.truetype(str(folder / name), size) for name in FONT_FILES]


def _has_glyph(font: ImageFont.FreeTypeFont, char: str) -> bool:
    """Whether ``font``'s file maps ``char`` to a glyph of its own."""
    from fontTools.ttLib import TTFont

    if font.path not in _CMAPS:
        _CMAPS[font.path] = set(TTFont(font.path)["cmap"].getBestCmap())
    return ord(char) in _CMAPS[font.path]


_CMAPS: dict[str, set[int]] = {}


def _save(picture: Image.Image, path: Path, rng: np.random.Generator) -> None:
    fmt, suffix = FORMATS[int(rng.integers(len(FORMATS)))]
    picture.save(path.with_suffix(suffix), fmt, **({"quality": 85} if fmt == "JPEG" else {}))


def _background(size: int, rng: np.random.Generator, textured: bool) -> np.ndarray:
    """float ``(size, size, 3)`` in [0, 255]: flat, gradient, stripes (textured: plus grain)."""
    y, x = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(3)
    if kind == 0:
        mix = np.zeros_like(x)
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        mix = (x * np.cos(angle) + y * np.sin(angle)) / 1.5
    else:
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * (x + rng.uniform() * y))
        mix *= 0.5
    out = a + (b - a) * mix[..., None]
    if textured:
        grain = np.asarray(
            Image.fromarray(rng.uniform(0, 255, (size // 8, size // 8)).astype(np.uint8)).resize(
                (size, size), Image.BICUBIC
            ),
            float,
        )
        out += (grain[..., None] - 128) * rng.uniform(0.2, 0.6)
    return out


def shapes_folder(root: Path, classes: tuple[str, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split, count in (("train", 150), ("test", 50)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = (int(v) for v in rng.integers(40, 200, 2))
                side = min(w, h)
                canvas = Image.fromarray(
                    np.clip(_background(max(w, h), rng, rng.random() < 0.5), 0, 255).astype(
                        np.uint8
                    )[:h, :w]
                )
                draw = ImageDraw.Draw(canvas)
                r = side * rng.uniform(0.2, 0.4)
                cx = w / 2 + rng.uniform(-0.5, 0.5) * (side / 2 - r)
                cy = h / 2 + rng.uniform(-0.5, 0.5) * (side / 2 - r)
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                outline = rng.random() < 0.3
                kw = (
                    {"outline": colour, "width": max(2, int(r / 5))}
                    if outline
                    else {"fill": colour}
                )
                if name == "circle":
                    draw.ellipse([cx - r, cy - r, cx + r, cy + r], **kw)
                else:
                    draw.polygon(_corners(name, cx, cy, r, rng.uniform(0, 2 * np.pi)), **kw)
                _save(canvas, folder / f"{i:03d}", rng)


def _corners(name: str, cx: float, cy: float, r: float, turn: float) -> list[tuple]:
    """The corners of a polygon shape ``name`` of radius ``r`` centred at ``(cx, cy)``."""
    corners = {"square": 4, "triangle": 3, "diamond": 4, "star": 10, "cross": 12}[name]
    t = turn + np.arange(corners) * 2 * np.pi / corners
    radius = np.full(corners, r)
    if name == "star":
        radius[1::2] *= 0.45
    if name == "diamond":
        radius[::2] *= 0.55
    if name == "cross":  # twelve corners of a plus sign
        arm = r * 0.33
        pts = np.array([(arm, r), (arm, arm), (r, arm), (r, -arm), (arm, -arm),
                        (arm, -r), (-arm, -r), (-arm, -arm), (-r, -arm), (-r, arm),
                        (-arm, arm), (-arm, r)])  # fmt: skip
        c, s = np.cos(turn), np.sin(turn)
        pts = pts @ np.array([[c, s], [-s, c]]) + [cx, cy]
    else:
        pts = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)
    return [tuple(p) for p in pts]


def digits_folder(root: Path, start: int) -> None:
    (x_train, y_train), (x_test, y_test) = (
        datasets.load("mnist-sample", split) for split in ("train", "test")
    )
    for split, x, y, first, count in (
        ("train", x_train, y_train, start, 10),
        ("test", x_test, y_test, 0, 50),
    ):
        for digit in range(10):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i, index in enumerate(np.flatnonzero(y == digit)[first : first + count]):
                Image.fromarray(x[index]).save(folder / f"{i:03d}.png")


def _symbol(char: str, font: ImageFont.FreeTypeFont, rng: np.random.Generator) -> Image.Image:
    """The symbol's coverage, an ``L`` picture of its bounding box with a margin."""
    mask = font.getmask(char)
    box = Image.new("L", mask.size)
    box.putdata(list(np.asarray(mask).ravel()))
    side = max(mask.size) + 8
    out = Image.new("L", (side, side))
    out.paste(box, ((side - mask.size[0]) // 2, (side - mask.size[1]) // 2))
    return out.rotate(float(rng.uniform(-25, 25)), Image.BICUBIC, expand=True)


def objects_folders(drawn: Path, photo: Path, categories: dict[str, str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    fonts = _fonts(120)
    for name, chars in categories.items():
        glyphs = [(c, f) for c in dict.fromkeys(chars) for f in fonts if _has_glyph(f, c)]
        unique = list(dict.fromkeys(c for c, _ in glyphs))
        order = rng.permutation(len(unique))
        test_chars = {unique[k] for k in order[: max(1, len(unique) // 3)]}
        for split, count in (("train", 40), ("test", 30)):
            pool = [g for g in glyphs if (g[0] in test_chars) == (split == "test")]
            for kind in ("drawn", "photo"):
                (drawn if kind == "drawn" else photo).joinpath(split, name).mkdir(
                    parents=True, exist_ok=True
                )
            for i in range(count):
                char, font = pool[int(rng.integers(len(pool)))]
                cover = _symbol(char, font, rng)
                size = int(rng.integers(64, 180))
                scale = rng.uniform(0.5, 0.85) * size / max(cover.size)
                cover = cover.resize(
                    (max(1, int(cover.size[0] * scale)), max(1, int(cover.size[1] * scale))),
                    Image.BICUBIC,
                )
                at = tuple(int(rng.uniform(0, size - s)) if size > s else 0 for s in cover.size)
                alpha = Image.new("L", (size, size))
                alpha.paste(cover, at)
                a = np.asarray(alpha, float)[..., None] / 255
                colour = rng.uniform(0, 200, 3)
                paper = rng.uniform(225, 255) + np.zeros((size, size, 3))
                clip = paper + (colour - paper) * a
                _save(
                    Image.fromarray(clip.astype(np.uint8)), drawn / split / name / f"{i:03d}", rng
                )
                # The photo: texture, light falling off, a shadow, perspective, blur, noise.
                scene = _background(size, rng, True)
                shadow = np.roll(a, (int(size * 0.03), int(size * 0.03)), (0, 1))
                scene *= 1 - 0.45 * shadow
                scene = scene + (rng.uniform(0, 255, 3) - scene) * a
                y, x = np.mgrid[0:size, 0:size] / size
                light = 0.6 + 0.6 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1))
                scene = np.clip(scene * np.clip(light, 0.35, 1.3)[..., None], 0, 255)
                picture = Image.fromarray(scene.astype(np.uint8))
                d = size * 0.12
                quad = (
                    rng.uniform(-d, d, 8) + np.array([0, 0, 0, size, size, size, size, 0])
                ).tolist()
                picture = picture.transform((size, size), Image.QUAD, quad, Image.BILINEAR)
                picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))
                grain = rng.normal(0, rng.uniform(2, 10), (size, size, 3))
                picture = Image.fromarray(
                    np.clip(np.asarray(picture, float) + grain, 0, 255).astype(np.uint8)
                )
                buffer = io.BytesIO()
                picture.save(buffer, "JPEG", quality=int(rng.integers(40, 90)))
                (photo / split / name / f"{i:03d}.jpg").write_bytes(buffer.getvalue())


def prototype_accuracy(folder: Path, shots: int) -> float:
    """Test accuracy of class prototypes of the first ``shots`` training pictures a class."""
    from cnnlab.data.pictures import load_image_set
    from cnnlab.runs import prototype
    from cnnlab.runs.pretrain import extractor_input, shipped_extractor

    pictures = load_image_set(folder, 32, progress=False)
    y = pictures.y_train
    first = np.concatenate([np.flatnonzero(y == k)[:shots] for k in range(y.max() + 1)])
    extractor = shipped_extractor()
    model = prototype.prototype_model(
        extractor, pictures.x_train[first], y[first], list(pictures.class_names)
    )
    guess = np.asarray(model.predict(extractor_input(extractor, pictures.x_test)))
    return float((guess == pictures.y_test).mean())


def train(folder: Path, extra: list[str]) -> tuple[float, float, Sequential]:
    """``cnnlab train --dataset folder`` in a child process: test accuracy, wall seconds and
    the model it saved."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "cnnlab", "train", "--dataset", str(folder), *extra]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--out", f"{out}/run"], env=child_env(), capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        found = re.search(r"test accuracy ([0-9.]+)%", done.stdout)
        if done.returncode or not found:
            raise SystemExit(f"{folder}: {done.stderr.strip()[-300:]}")
        return float(found.group(1)), seconds, Sequential.load(f"{out}/run/model.npz")


def _test_inputs(model: Sequential, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A folder's test pictures as ``model``'s inputs (grey made colour or the other way)."""
    from cnnlab.data.pictures import load_image_set
    from cnnlab.runs.model_input import prepare

    channels, size = model.input_shape[0], model.input_shape[1]
    pictures = load_image_set(folder, size, progress=False)
    x = pictures.x_test
    if x.shape[1] != channels:
        x = np.repeat(x, channels, 1) if x.shape[1] == 1 else x.mean(1, keepdims=True)
    return prepare(model, x.astype(np.uint8)), pictures.y_test


def none_of_these(model: Sequential, folder: Path, others: list[Path]) -> tuple[float, float]:
    """Of ``folder``'s test pictures the model reads right, the share it keeps as one of its
    classes; of the ``others``' test pictures (no class of its), the share it turns away."""
    from cnnlab.runs import predict

    x, y = _test_inputs(model, folder)
    probabilities, known = predict.assess(model, x)
    right = probabilities.argmax(1) == y
    away = [~predict.assess(model, _test_inputs(model, other)[0])[1] for other in others]
    return float(known[right].mean()), float(np.concatenate(away).mean())


def measure(root: Path, which: str, scratch: bool) -> None:
    print(f"{'folder':8} {'pictures':>8}  {'default':>16}  {'prototype 1 / 5':>16}  "
          f"{'kept / turned away':>18}" + (f"  {'scratch':>16}" if scratch else ""))  # fmt: skip
    folders = sorted((root / which).iterdir())
    for folder in folders:
        n = sum(1 for _ in (folder / "train").rglob("*.*"))
        accuracy, seconds, model = train(folder, [])
        shots = [100 * prototype_accuracy(folder, k) for k in (1, 5)]
        kept, away = none_of_these(model, folder, [f for f in folders if f != folder])
        line = (
            f"{folder.name:8} {n:8}  {accuracy:6.1f} % {seconds:5.0f} s  "
            f"{shots[0]:6.1f} / {shots[1]:5.1f} %  {100 * kept:7.1f} / {100 * away:5.1f} %"
        )
        if scratch:
            accuracy, seconds, _ = train(folder, ["--from", "scratch"])
            line += f"  {accuracy:6.1f} % {seconds:5.0f} s"
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--measure", choices=("tune", "holdout"))
    parser.add_argument("--scratch", action="store_true", help="also train --from scratch")
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.root, args.measure, args.scratch)
        return 0
    for number, which in enumerate(("tune", "holdout")):
        base = args.root / which
        shapes_folder(base / "shapes", SHAPE_CLASSES[which], seed=10 + number)
        digits_folder(base / "digits", start=10 * number)
        objects_folders(base / "drawn", base / "photo", SYMBOLS[which], seed=20 + number)
        print(f"wrote {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
