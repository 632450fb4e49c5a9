"""Image-folder data sets written by the tests: colour scenes in mixed formats and sizes.

Three classes a small network can tell apart from colour and layout: ``sunset`` (a warm vertical
gradient with a bright disc), ``forest`` (green vertical stripes on brown) and ``sea`` (blue
horizontal waves). Every picture has its own size and aspect ratio, noise, and one of six file
formats, so a loader must handle JPEG, PNG, BMP, WebP, palette GIF and TIFF alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("forest", "sea", "sunset")
FORMATS = (("JPEG", ".jpg"), ("PNG", ".png"), ("BMP", ".bmp"), ("WEBP", ".webp"),
           ("GIF", ".gif"), ("TIFF", ".tif"))  # fmt: skip


def scene(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 ``(height, width, 3)`` picture of class ``kind``."""
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    if kind == "sunset":
        top, bottom = np.array([90, 40, 140]), np.array([250, 140, 40])
        picture = top + (bottom - top) * y + 0 * x
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.12, 0.25)
        disc = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        picture = np.where(disc, np.array([255, 230, 120]), picture)
    elif kind == "forest":
        stripes = np.sin(2 * np.pi * rng.uniform(4, 8) * x + rng.uniform(0, 6)) > 0
        picture = np.where(stripes, np.array([30, 120, 40]), np.array([100, 70, 40])) + 0 * y
    else:
        waves = np.sin(2 * np.pi * (rng.uniform(3, 6) * y + 0.1 * np.sin(6 * x)))
        picture = np.array([20, 80, 160]) + np.array([20, 40, 60]) * waves
    picture = picture + rng.normal(0, 12, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


def save(picture: np.ndarray, path: Path, fmt: str) -> None:
    image = Image.fromarray(picture)
    if fmt == "GIF":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(path, fmt)


def write_picture_folder(
    root: Path, per_class: int = 30, seed: int = 0, classes: tuple[str, ...] = CLASSES
) -> Path:
    """Write ``root/<class>/<i>.<ext>`` for each class; return ``root``."""
    rng = np.random.default_rng(seed)
    for kind in classes:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            fmt, suffix = FORMATS[i % len(FORMATS)]
            height, width = (int(v) for v in rng.integers(24, 160, 2))
            save(scene(kind, height, width, rng), folder / f"{i:03d}{suffix}", fmt)
    return root
