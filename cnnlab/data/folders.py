"""Image-folder data sets: a person's own pictures, one sub-folder per class.

Layout: ``PATH/<class>/*.jpg`` (any depth below the class folder), or ``PATH/train/<class>/``
with an optional ``PATH/test/<class>/``. Without a ``test/`` folder a seeded, stratified fifth of
each class is held out for testing. Hidden files are ignored; every other file that cannot be
used is counted, listed in ``ImageSet.skipped`` with its reason, and left out — one bad picture
never stops a run. Links are followed only while they lead inside the folder given, and each
file is used once: a picture reached by two paths keeps the class of the folder it lies in, and
one in both ``train/`` and ``test/`` is kept for training only (the rule: :func:`scan`).

Each picture is decoded upright (EXIF orientation), palette/CMYK/16-bit/alpha converted (alpha
laid on white), then **centre-cropped** to a square and resized to ``image_size``. Cropping keeps
the aspect ratio and fills every input pixel with picture: the subject of a photo is usually near
its centre, while padding would show the network bars whose width tells the original shape
rather than the class. A set is grey (1 channel) when every picture is grey, else colour
(3 channels).

Decoding is fast: JPEGs are decoded at a reduced scale (Pillow's ``draft``: the DCT does most of
the shrinking), and files are decoded on a thread pool (Pillow releases the GIL while decoding
and resizing). The decoded arrays are cached in ``~/.cache/cnnlab/folders/<key>.npz`` (plain
arrays, read without pickle); the key hashes each file's path, size and modification time and
the image size, so a second run with unchanged files starts at once, and any change re-decodes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import sys
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab.data.download import cache_dir
from cnnlab.data.imageset import ImageSet, stratified_split
from cnnlab.data.preprocess import _pil, _upright, open_picture, quiet_pillow
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write
from cnnlab.engine.progress import ProgressBar

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
MAX_FILES = 1_000_000  # a folder tree bigger than this is surely the wrong folder
MAX_CLASSES = 1000
MIN_SIZE, MAX_SIZE = 8, 512  # image sizes a network here can train on
TEST_FRACTION = 0.2
_CACHE_VERSION = 1
# The decode cache keeps its most recently used files within this many bytes (32 px: 3 KB a
# picture, so about 680,000 pictures); older ones are deleted after each write.
CACHE_BYTES = 2 * 1024**3
# Bytes per pixel value held while training: the uint8 decoded copy plus the float32 input.
_BYTES_PER_VALUE = 1 + 4
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class FolderError(CnnlabError):
    """An image folder cannot be used as a data set (layout, classes, size)."""


# ---------------------------------------------------------------------------- finding the files


def _outside(path: Path, root: Path) -> str | None:
    """Where ``path`` really leads (its links resolved) when that is outside the resolved folder
    ``root``; None when it stays inside."""
    target = os.path.realpath(path)
    return None if Path(target).is_relative_to(root) else target


def _walk(
    folder: Path, root: Path, skipped: list[tuple[str, str]], budget: list[int]
) -> list[tuple[Path, tuple[int, int], bool]]:
    """Every image file below ``folder`` as ``(path, (st_dev, st_ino), reached through a link)``,
    sorted by path. Links are followed while they lead inside the resolved folder ``root``; a
    folder is never visited twice."""
    seen: set[tuple[int, int]] = set()
    stack = [(folder, folder.is_symlink())]
    found: list[tuple[Path, tuple[int, int], bool]] = []
    while stack:
        current, via_link = stack.pop()
        try:
            info = current.stat()
            entries = list(os.scandir(current))
        except OSError as err:
            skipped.append((str(current), f"cannot list the folder: {err.strerror or err}"))
            continue
        if (info.st_dev, info.st_ino) in seen:
            skipped.append(
                (str(current), "this folder was already read (a link loop, or another link to it)")
            )
            continue
        seen.add((info.st_dev, info.st_ino))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            budget[0] -= 1
            if budget[0] < 0:
                raise FolderError(
                    f"{folder}: more than {MAX_FILES:,} files below it; is this the right folder?"
                )
            path = Path(entry.path)
            try:
                is_dir, is_file, is_link = entry.is_dir(), entry.is_file(), entry.is_symlink()
                image = is_file and path.suffix.lower() in IMAGE_SUFFIXES
                stats = entry.stat() if image else None  # of the file a link leads to
            except OSError as err:
                skipped.append((str(path), f"cannot read: {err.strerror or err}"))
                continue
            outside = _outside(path, root) if is_link and (is_dir or is_file) else None
            if outside is not None:
                skipped.append((str(path), f"link leads outside the data folder: {outside}"))
            elif is_dir:
                stack.append((path, via_link or is_link))
            elif not is_file:
                skipped.append((str(path), "not a regular file (a broken or looping link?)"))
            elif not image:
                skipped.append((str(path), f"not an image file ({path.suffix or 'no suffix'})"))
            else:
                found.append((path, (stats.st_dev, stats.st_ino), via_link or is_link))
    return sorted(found, key=lambda item: item[0])


def _class_folders(root: Path) -> dict[str, Path]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as err:
        raise FolderError(f"{root}: cannot list it ({err.strerror or err})") from None
    return {e.name: Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()}


def scan(
    root: str | os.PathLike,
) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]], list[tuple[str, str]]]:
    """Find the classes and files of an image folder, checking its layout.

    Returns the class names (sorted folder names), ``{"train": [(file, label)], "test": [...]}``
    (``test`` empty when the folder has no ``test/``) and the ``(path, reason)`` of files that
    are not usable images.

    Links are followed only while they lead inside ``root`` (resolved): a link in a class folder
    that leads outside is skipped, and a ``train/``, ``test/`` or class folder that does is
    refused. Each file (its device and inode) is used once, however many paths reach it: a
    training picture before a test one (a test picture the model was trained on would flatter
    it), then where the file lies before where a link leads to it (so a link in class ``a`` to a
    picture of class ``b`` never relabels it), then in class and path order. Every other path to
    it is skipped, naming the path kept and its class.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FolderError(
            f"{root}: no such folder; give a folder with one sub-folder of pictures per class"
        )
    real_root = Path(os.path.realpath(root))
    layout = {"train": root, "test": None}
    if (root / "train").is_dir():
        layout = {
            "train": root / "train",
            "test": root / "test" if (root / "test").is_dir() else None,
        }
    elif (root / "test").is_dir():
        raise FolderError(f"{root}: has test/ but no train/; add train/<class>/ folders")
    classes = _class_folders(layout["train"])
    if len(classes) < 2:
        only = f" (only {', '.join(classes)})" if classes else ""
        raise FolderError(
            f"{layout['train']}: needs at least 2 class folders{only}; a classifier must tell "
            "classes apart: add a sub-folder of pictures for each class"
        )
    if len(classes) > MAX_CLASSES:
        raise FolderError(f"{layout['train']}: {len(classes)} class folders, at most {MAX_CLASSES}")
    odd = [name for name in classes if not name.isprintable()]
    if odd:  # a class name is printed wherever the model answers: no control characters
        raise FolderError(
            f"{layout['train']}: class folder {odd[0]!a} has control characters in its "
            "name; rename it"
        )
    names = tuple(classes)
    skipped: list[tuple[str, str]] = []
    budget = [MAX_FILES]
    walked: list[tuple[str, int, Path, tuple[int, int], bool]] = []
    for split, base in layout.items():
        if base is None:
            continue
        folders = _class_folders(base)
        unknown = sorted(set(folders) - set(names))
        if unknown:
            raise FolderError(
                f"{base}: class folder {unknown[0]!r} is not among the training classes "
                f"({', '.join(names)}); rename it or add it to train/"
            )
        for folder in [base, *folders.values()]:
            outside = _outside(folder, real_root)
            if outside is not None:
                raise FolderError(
                    f"{folder}: a link that leads outside the data folder ({outside}); move "
                    f"the pictures into {root}"
                )
        for label, name in enumerate(names):
            found = _walk(folders[name], real_root, skipped, budget) if name in folders else []
            if split == "train" and not found:
                raise FolderError(
                    f"{folders[name]}: class folder {name!r} holds no pictures; add some "
                    "(.jpg, .png, ...) or remove the folder"
                )
            walked += [(split, label, *item) for item in found]
        stray = [e for e in os.scandir(base) if e.is_file() and not e.name.startswith(".")]
        skipped += [(e.path, "not inside a class folder") for e in sorted(stray, key=str)]
    # The stable sort keeps class and path order among equals (see the docstring's rule).
    keeper: dict[tuple[int, int], int] = {}
    for i in sorted(range(len(walked)), key=lambda i: (walked[i][0] == "test", walked[i][4])):
        keeper.setdefault(walked[i][3], i)
    files: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for i, (split, label, path, key, _) in enumerate(walked):
        kept_split, kept_label, kept_path = walked[keeper[key]][:3]
        if keeper[key] == i:
            files[split].append((path, label))
        else:
            role = "training" if kept_split == "train" else "test"
            skipped.append(
                (
                    str(path),
                    f"the same file as {kept_path}, already a {role} picture of class "
                    f"{names[kept_label]!r}",
                )
            )
    counts = np.bincount([label for _, label in files["train"]], minlength=len(names))
    if not counts.all():
        name = names[int(np.argmin(counts))]
        raise FolderError(
            f"{layout['train'] / name}: class folder {name!r} holds only pictures that another "
            "class already has (links to them); add pictures of its own or remove the folder"
        )
    return names, files, skipped


# -------------------------------------------------------------------------------------- decoding


def _as_8bit(img):
    """A decoded Pillow image in mode ``L`` or ``RGB``; alpha laid on white."""
    Image = _pil()
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        levels = np.nan_to_num(np.asarray(img, np.float64))
        peak = 65535 if img.mode.startswith("I;16") or levels.max() > 255 else 255
        return Image.fromarray(np.clip(levels * (255 / peak), 0, 255).round().astype(np.uint8))
    grey = img.mode in _GREY_MODES or (img.mode == "P" and _palette_is_grey(img))
    if img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        backdrop.alpha_composite(rgba)
        img = backdrop
    return img.convert("L" if grey else "RGB")


def _shrunk(img, size: int):
    """``img`` averaged down by a whole factor while its shorter side stays at least
    ``2 · size``, before any conversion: converting a 16 MP 16-bit or float picture first took
    350-540 MB; reduced, its conversions work on a few thousand pixels."""
    factor = min(img.size) // (2 * size)
    if factor < 2:
        return img
    if img.mode.startswith("I;16"):
        img = img.convert("I")  # 4 bytes a pixel, which reduce() takes
    try:
        return img.reduce(factor)
    except ValueError:  # a mode reduce() does not take (palette, 1-bit): converted as it is
        return img


def _palette_is_grey(img) -> bool:
    palette = np.frombuffer(img.palette.tobytes(), np.uint8)
    if img.palette.mode != "RGB" or len(palette) % 3:
        return False
    rgb = palette.reshape(-1, 3)
    return bool((rgb == rgb[:, :1]).all())


def read_pixels(
    source: str | os.PathLike | bytes, size: int, name: str = "the file"
) -> tuple[np.ndarray, str]:
    """One picture (a path or the file's bytes) as uint8 ``(size, size, 3)`` (grey repeated in
    each channel) and ``"grey"`` or ``"colour"``.

    Read as a digit photo is, under the same budget (:func:`cnnlab.data.preprocess.open_picture`,
    whose one-line errors name the picture as ``name``).
    """
    Image = _pil()
    with open_picture(source, name=name) as img:
        # Decode a JPEG at the smallest power-of-two scale that keeps both sides >= size.
        img.draft(None, (size, size))
        img = _as_8bit(_shrunk(_upright(img), size))
        side = min(img.size)
        left, top = (img.size[0] - side) / 2, (img.size[1] - side) / 2
        img = img.resize(
            (size, size),
            Image.Resampling.BILINEAR,
            box=(left, top, left + side, top + side),
            reducing_gap=3.0,
        )
        pixels = np.asarray(img)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2), "grey"
    return pixels, "colour"


def decode(source: str | os.PathLike | bytes, size: int) -> tuple[np.ndarray | None, str]:
    """``read_pixels``, or ``(None, reason)``: never raises for a bad file (a folder's bad
    pictures are listed and skipped)."""
    try:
        return read_pixels(source, size)
    except CnnlabError as err:
        return None, str(err)


def _cache_key(files: Sequence[Path], size: int) -> str:
    listing = []
    for path in files:
        try:
            stat = path.stat()
            listing.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        except OSError:
            listing.append([str(path), -1, -1])
    blob = json.dumps({"version": _CACHE_VERSION, "size": size, "files": listing})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _read_cache(path: Path, n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached ``(pixels, reasons)`` for ``n`` files, or None when absent or unusable.

    Each member's header is checked before its data is read: ``np.load`` allocates whatever a
    header declares (a 3 MB file of compressed zeros declaring 3 GiB took 3 GB).
    """
    wanted = {"pixels": ((n, size, size, 3), "u"), "reasons": ((n,), "U")}
    try:
        with zipfile.ZipFile(path) as archive:
            for name, (shape, kind) in wanted.items():
                with archive.open(f"{name}.npy") as stream:
                    version = np.lib.format.read_magic(stream)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    found, _, dtype = read_header(stream)
                if found != shape or dtype.kind != kind or dtype.itemsize > 4 * 512:
                    return None
        with np.load(path, allow_pickle=False) as archive:
            pixels, reasons = archive["pixels"], archive["reasons"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    if pixels.dtype != np.uint8:
        return None
    return pixels, reasons


def _prune_cache(newest: Path) -> None:
    """Delete the least recently used decode-cache files beside ``newest`` beyond
    ``CACHE_BYTES`` in all (``newest`` itself always stays)."""
    entries = []
    for path in newest.parent.glob("*.npz"):
        with contextlib.suppress(OSError):  # another process may be pruning too
            info = path.stat()
            entries.append((path != newest, -info.st_mtime_ns, info.st_size, path))
    total = 0
    for _, _, size, path in sorted(entries):
        total += size
        if total > CACHE_BYTES and path != newest:
            with contextlib.suppress(OSError):
                path.unlink()


def _decode_all(
    files: Sequence[Path], size: int, progress: bool, workers: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every file on a thread pool: uint8 ``(n, size, size, 3)`` and one reason each
    (``"grey"``, ``"colour"``, or why the file was skipped)."""
    _pil()  # without Pillow: one error now, not one per file
    pixels = np.zeros((len(files), size, size, 3), np.uint8)
    reasons = np.empty(len(files), dtype=object)
    workers = workers or min(32, os.cpu_count() or 1)
    with (
        # The warning filters are one global list: each worker's open_picture saves and restores
        # it around Image.open, in any order, so it is also set here, around all of them.
        warnings.catch_warnings(),
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
        ProgressBar(len(files), desc="decoding", unit="img", enabled=progress) as bar,
    ):
        quiet_pillow()
        for i, (image, reason) in enumerate(pool.map(lambda f: decode(f, size), files)):
            if image is not None:
                pixels[i] = image
            reasons[i] = reason
            bar.update(1)
    return pixels, reasons.astype(str)


def memory_budget() -> int:
    """Bytes a data set may take: half the memory the system reports as available."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 2**31


def load_folder(
    root: str | os.PathLike,
    image_size: int = 32,
    *,
    seed: int = 0,
    cache: bool = True,
    progress: bool = True,
    workers: int | None = None,
    max_bytes: int | None = None,
) -> ImageSet:
    """Read an image folder as an :class:`ImageSet` (see the module docstring for the rules).

    ``max_bytes`` (default :func:`memory_budget`) bounds the memory the decoded set and its
    training copy may take; a bigger set is refused, with its size, before anything is decoded.
    """
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise FolderError(f"--image-size must be {MIN_SIZE} to {MAX_SIZE}, got {image_size}")
    root = Path(root).expanduser()
    names, found, skipped = scan(root)
    entries = found["train"] + found["test"]
    files = [path for path, _ in entries]
    labels = np.array([label for _, label in entries], np.int64)
    limit = memory_budget() if max_bytes is None else max_bytes
    needed = len(files) * 3 * image_size * image_size * _BYTES_PER_VALUE
    if needed > limit:
        raise FolderError(
            f"{root}: {len(files):,} pictures at {image_size}×{image_size} need about "
            f"{needed / 1e9:.2f} GB in memory, more than the {limit / 1e9:.2f} GB available; "
            "use a smaller --image-size or fewer pictures"
        )
    cache_file = cache_dir("folders") / f"{_cache_key(files, image_size)}.npz"
    cached = _read_cache(cache_file, len(files), image_size) if cache else None
    if cached is None:
        pixels, reasons = _decode_all(files, size=image_size, progress=progress, workers=workers)
        if cache:
            try:
                with atomic_write(cache_file) as handle:
                    np.savez(handle, pixels=pixels, reasons=reasons)
                _prune_cache(cache_file)
            except (OSError, CnnlabError) as err:  # a cache is a convenience, never a failure
                if progress:
                    print(f"note: the decode cache was not written ({err})", file=sys.stderr)
    else:
        pixels, reasons = cached
        with contextlib.suppress(OSError):
            os.utime(cache_file)  # recently used: pruned last
    ok = np.isin(reasons, ("grey", "colour"))
    skipped += [(str(f), str(r)) for f, r, good in zip(files, reasons, ok, strict=True) if not good]
    n_train = len(found["train"])
    for label, name in enumerate(names):
        if not ok[:n_train][labels[:n_train] == label].any():
            raise FolderError(
                f"{root}: none of the pictures of class {name!r} could be read "
                f"({len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]}); "
                "replace them with JPEG or PNG files"
            )
    channels = 3 if (reasons[ok] == "colour").any() else 1
    images = np.ascontiguousarray(pixels[..., :channels].transpose(0, 3, 1, 2))
    is_train = np.arange(len(files)) < n_train
    if not found["test"]:
        train_idx, test_idx = stratified_split(labels[ok], TEST_FRACTION, seed, len(names))
        kept = np.flatnonzero(ok)
        train_idx, test_idx = kept[train_idx], kept[test_idx]
    else:
        train_idx, test_idx = np.flatnonzero(ok & is_train), np.flatnonzero(ok & ~is_train)
    if len(test_idx) == 0:
        raise FolderError(
            f"{root}: no pictures left for testing; give each class at least 2 pictures"
        )
    return ImageSet(
        name=str(root.resolve()),
        class_names=names,
        x_train=images[train_idx],
        y_train=labels[train_idx],
        x_test=images[test_idx],
        y_test=labels[test_idx],
        skipped=tuple(skipped),
        from_cache=cached is not None,
    )
