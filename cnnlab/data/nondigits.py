"""Pictures that are not digits, generated: what a digit model should answer "not a digit" to.

A digit model's softmax names a digit for every picture. To measure, and to train, how it
answers pictures of no class, cnnlab draws its own: zigzag strokes, scribbles, shapes and
letters that share no shape with a digit, printed in fonts or in handwriting fonts. They come
in two groups kept apart on purpose, as ``benchmarks/wild_digits.py`` keeps its digits:

* ``tune`` may be looked at and trained on (outlier exposure): strokes, scribbles, hearts,
  squares, arrows, smileys, crosses, stars (4 to 8 points: outlines, one-stroke stars,
  asterisks), triangles of any shape and spirals (either way round, tight or loose, open or
  closed), and letters in some fonts and hands;
* ``heldout`` holds shape kinds never trained on — crescent moons, lightning bolts, houses,
  flowers — and letters in other font families and hands, read once to see whether what was
  tuned carries over to kinds nobody tuned for.

``draw_nondigits`` renders the ink, bright on dark, on a ``CANVAS``-pixel square as a pen on the
lab's canvas would: every picture of a shape kind at once, as the distance of each pixel to the
shape's line segments. Letters are glyphs from fonts (Pillow renders each font and letter once;
a vectorised affine map turns, scales and slants them per picture). ``nondigit_inputs`` passes
each picture through the preprocessing a user's picture gets (:func:`preprocess_digit`), which
gives the 28×28 digit input. The same seed always gives the same pictures.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from cnnlab.engine.errors import CnnlabError

CANVAS = 56  # side of the drawing, in pixels
# Letters drawn nothing like a digit (no O/o, I/l, S/s, Z/z, B, G, g, q, b, T, A-like 4s kept).
LETTERS = "AEFHKMNRWXYehkmnrwx"
SHAPES = {
    "tune": (
        *("strokes", "scribbles", "hearts", "squares", "arrows", "smileys", "crosses"),
        *("stars", "triangles", "spirals"),
    ),
    "heldout": ("moons", "bolts", "houses", "flowers"),
}
KINDS = {group: (*shapes, "printed letters", "hand letters") for group, shapes in SHAPES.items()}
# Printed fonts: matplotlib's bundled ones; handwriting fonts: Debian packages (fonts-…), the
# same split of hands as benchmarks/wild_digits.py so that held-out hands stay unseen.
_PRINTED = {
    "tune": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"),
    "heldout": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "cmss10.ttf", "cmr10.ttf"),
}
_HANDS = {
    "tune": ("bwht", "humor-sans", "comic-neue", "dancingscript", "klee"),
    "heldout": ("fifthhorseman", "breip", "femkeklaver", "rufscript", "sjfonts", "yusei-magic"),
}
_FONT_ROOT = Path("/usr/share/fonts")
_GLYPH = 40  # letter height in pixels on the canvas before the per-picture scale
_CHUNK = 2_000_000  # pixel-segment distances computed at once: bounds the scratch arrays


def _check_group(group: str) -> None:
    if group not in KINDS:
        raise CnnlabError(f"non-digit group must be one of {', '.join(KINDS)}, got {group!r}")


def _closed(points: np.ndarray) -> np.ndarray:
    """Polygon vertices ``(n, V, 2)`` → its ``(n, V, 2, 2)`` edges, the last back to the first."""
    return np.stack([points, np.roll(points, -1, axis=1)], axis=2)


def _polyline(points: np.ndarray) -> np.ndarray:
    """Vertices ``(n, V, 2)`` → the ``(n, V - 1, 2, 2)`` segments joining them in order."""
    return np.stack([points[:, :-1], points[:, 1:]], axis=2)


def _circle(n: int, steps: int, centre=(0.0, 0.0), radius=1.0, start=0.0, end=2 * np.pi):
    t = np.linspace(start, end, steps)
    points = np.stack([np.cos(t), np.sin(t)], axis=-1) * radius + np.asarray(centre)
    return np.broadcast_to(points, (n, steps, 2))


def _padded(parts: list[np.ndarray], n: int, rows: list[np.ndarray]) -> np.ndarray:
    """Segment arrays ``(len(rows[i]), S_i, 2, 2)`` for the pictures ``rows[i]`` → one
    ``(n, max S_i, 2, 2)`` array, the shorter ones padded by repeating their last segment."""
    most = max(part.shape[1] for part in parts)
    out = np.zeros((n, most, 2, 2))
    for part, row in zip(parts, rows, strict=True):
        out[row] = np.concatenate([part, np.repeat(part[:, -1:], most - part.shape[1], 1)], 1)
    return out


def _strokes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Three or four straight strokes in one line (two can make a 7)."""
    corners = rng.uniform(-1, 1, (n, 5, 2))
    used = np.arange(5) <= rng.integers(3, 5, n)[:, None]
    last = corners[np.arange(n), used.sum(1) - 1][:, None]
    return _polyline(np.where(used[..., None], corners, last))


def _scribbles(n: int, rng: np.random.Generator) -> np.ndarray:
    """A pen wandering with a smoothly changing heading."""
    heading = np.cumsum(rng.normal(0, 0.7, (n, 24)), axis=1) + rng.uniform(0, 7, (n, 1))
    walk = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], -1), axis=1)
    walk -= walk.mean(axis=1, keepdims=True)
    return _polyline(walk / np.abs(walk).max(axis=(1, 2), keepdims=True))


def _hearts(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 41)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return _polyline(np.broadcast_to(np.stack([x, y + 2.5], -1) / 16.5, (n, 41, 2)))


def _squares(n: int, rng: np.random.Generator) -> np.ndarray:
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    return _closed(corners * rng.uniform(0.6, 1, (n, 1, 2)))


def _triangles(n: int, rng: np.random.Generator) -> np.ndarray:
    """Triangles of any shape: angles drawn at random, none under 30° (a thinner one is a 1),
    the pen overshooting the first corner by up to a fifth of the last side."""
    angles = np.deg2rad(30 + 90 * rng.dirichlet((2, 2, 2), n))  # (n, 3), sum 180°
    b = np.sin(angles[:, 1]) / np.sin(angles[:, 2])  # side from corner 0 to 2 (law of sines)
    corners = np.zeros((n, 4, 2))
    corners[:, 1, 0] = 1.0
    corners[:, 2] = b[:, None] * np.stack([np.cos(angles[:, 0]), -np.sin(angles[:, 0])], -1)
    overshoot = rng.uniform(0, 0.2, (n, 1))
    corners[:, 3] = corners[:, 2] + (1 + overshoot) * (corners[:, 0] - corners[:, 2])
    corners -= corners[:, :3].mean(axis=1, keepdims=True)
    return _polyline(corners)


def _stars(n: int, rng: np.random.Generator) -> np.ndarray:
    """Stars of 4 to 8 points, drawn as a pen draws them: the outline around the points, in
    one stroke across the middle (a pentagram and its kin; two triangles for 6 points), or
    as an asterisk of 3 or 4 crossing lines."""
    points = rng.integers(4, 9, n)
    style = rng.integers(0, 3, n)
    style[(style == 1) & (points == 4)] = 0  # a four-point star in one stroke is a square
    parts, rows = [], []
    for p in range(4, 9):
        row = np.flatnonzero((points == p) & (style == 0))
        if len(row):  # the outline: 2p corners, the inner ones at 25-60 % of the radius
            angles = np.pi / 2 + np.arange(2 * p) * np.pi / p + rng.normal(0, 0.04, (len(row), 1))
            radius = np.where(np.arange(2 * p) % 2, rng.uniform(0.25, 0.6, (len(row), 1)), 1.0)
            parts.append(
                _closed(np.stack([np.cos(angles), -np.sin(angles)], -1) * radius[..., None])
            )
            rows.append(row)
        row = np.flatnonzero((points == p) & (style == 1))
        if len(row):  # one stroke from every point to the one `skip` points on
            skip = {5: 2, 6: 2, 7: 3, 8: 3}[p]
            order = (np.arange(p + 1) * skip) % p
            if p == 6:  # {6/2} is two triangles: the pen lifts once
                order = np.array([0, 2, 4, 0, 1, 3, 5, 1])
            corners = np.pi / 2 + order * 2 * np.pi / p
            line = _polyline(np.stack([np.cos(corners), -np.sin(corners)], -1)[None])
            if p == 6:
                line = np.delete(line, 3, axis=1)  # the pen's move between the triangles
            parts.append(np.broadcast_to(line, (len(row), *line.shape[1:])))
            rows.append(row)
    for lines in (3, 4):
        row = np.flatnonzero((style == 2) & (points % 2 == lines % 2))
        if len(row):  # an asterisk: lines through the centre, evenly turned
            angles = np.arange(lines) * np.pi / lines + rng.normal(0, 0.05, (len(row), lines))
            tip = np.stack([np.cos(angles), np.sin(angles)], -1)
            parts.append(np.stack([-tip, tip], axis=2))
            rows.append(row)
    return _padded(parts, n, rows)


def _arrows(n: int, rng: np.random.Generator) -> np.ndarray:
    head = rng.uniform(0.3, 0.6, (n, 1))
    ends = np.zeros((n, 3, 2, 2))
    ends[:, :, 1, 0] = 1.0  # every segment ends at the tip (1, 0)
    ends[:, 0, 0, 0] = -1.0  # the shaft starts at (-1, 0)
    ends[:, 1, 0] = np.concatenate([1 - head, head], axis=1)
    ends[:, 2, 0] = np.concatenate([1 - head, -head], axis=1)
    return ends


def _spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """Spirals of 1.5 to 4 turns either way round, tight or loose in the middle (the radius
    grows as the angle to a power from 0.6 to 1.6), from the centre or from a small open
    middle; a third closed by a last full turn at the outer radius."""
    turns = rng.uniform(1.5, 4.0, (n, 1))
    s = np.linspace(0, 1, 96)
    t = s * turns * 2 * np.pi
    inner = np.where(rng.random((n, 1)) < 0.5, 0.0, rng.uniform(0.05, 0.3, (n, 1)))
    r = inner + (1 - inner) * s ** rng.uniform(0.6, 1.6, (n, 1))
    closed = rng.random(n) < 1 / 3
    ring = np.linspace(0, 2 * np.pi, 25)[1:]
    t = np.concatenate([t, t[:, -1:] + ring], axis=1)
    r = np.concatenate([r, np.where(closed[:, None], 1.0, np.nan) * np.ones((n, 24))], axis=1)
    r[~closed, 96:] = 1.0  # open ones: the extra points repeat the last one
    t[~closed, 96:] = t[~closed, 95:96]
    way = np.where(rng.random((n, 1)) < 0.5, 1.0, -1.0)
    return _polyline(np.stack([way * r * np.cos(t), r * np.sin(t)], -1))


def _smileys(n: int, rng: np.random.Generator) -> np.ndarray:
    face = _polyline(_circle(n, 33))
    mouth = _polyline(_circle(n, 9, (0, 0.05), 0.55, 0.2 * np.pi, 0.8 * np.pi))
    eyes = np.array([[[-0.35, -0.35], [-0.35, -0.25]], [[0.35, -0.35], [0.35, -0.25]]])
    return np.concatenate([face, mouth, np.broadcast_to(eyes, (n, 2, 2, 2))], axis=1)


def _crosses(n: int, rng: np.random.Generator) -> np.ndarray:
    """A plus (an X once turned), arms of unequal length."""
    arms = rng.uniform(0.6, 1.0, (n, 4))
    ends = np.zeros((n, 2, 2, 2))
    ends[:, 0, 0, 0], ends[:, 0, 1, 0] = -arms[:, 0], arms[:, 1]
    ends[:, 1, 0, 1], ends[:, 1, 1, 1] = -arms[:, 2], arms[:, 3]
    return ends


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Crescents: the unit circle's arc outside a second circle of radius ``R`` centred at
    ``(d, 0)``, closed by that circle's arc inside it."""
    d = rng.uniform(0.35, 0.65, (n, 1))
    big = rng.uniform(0.8, 1.0, (n, 1))
    x = (1 - big**2 + d**2) / (2 * d)  # where the circles cross, at (x, ±y)
    y = np.sqrt(np.clip(1 - x**2, 0, 1))
    s = np.linspace(0, 1, 24)
    outer = np.arctan2(y, x) + s * 2 * (np.pi - np.arctan2(y, x))  # through π, top to bottom
    inner_top = np.arctan2(y, x - d)
    inner = -inner_top - s * 2 * (np.pi - inner_top)  # bottom back to top, through π
    points = np.concatenate(
        [
            np.stack([np.cos(outer), -np.sin(outer)], -1),
            np.stack([d + big * np.cos(inner), -big * np.sin(inner)], -1),
        ],
        axis=1,
    )
    return _closed(points)


def _bolts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Lightning bolts: the outline of a zigzag band from a wide top to a point."""
    top = [[0.1, -1], [0.7, -1], [0.25, -0.15], [0.6, -0.15]]
    bottom = [[-0.5, 1], [-0.05, 0.15], [-0.45, 0.15]]
    return _closed(np.array(top + bottom) + rng.normal(0, 0.05, (n, 7, 2)))


def _xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coordinates ``(n, 1)`` each → points ``(n, 2)``."""
    return np.concatenate([x, y], axis=1)


def _houses(n: int, rng: np.random.Generator) -> np.ndarray:
    """A child's house: a box, a roof over it, a door and, half the time, a window."""
    wide, roof = rng.uniform(0.7, 1.0, (n, 1)), rng.uniform(0.4, 0.8, (n, 1))
    eaves = rng.uniform(0, 0.15, (n, 1))
    zero, one, tall = np.zeros((n, 1)), np.ones((n, 1)), rng.uniform(0.9, 1.4, (n, 1))
    box = np.stack([_xy(-wide, tall), _xy(-wide, zero), _xy(wide, zero), _xy(wide, tall)], 1)
    low = eaves * roof / wide  # the roof's lines carried on past the walls
    roof_line = np.stack([_xy(-wide - eaves, low), _xy(zero, -roof), _xy(wide + eaves, low)], 1)
    left = rng.uniform(-0.6, -0.05, (n, 1)) * wide  # the door stays left of the window
    right = left + rng.uniform(0.2, 0.35, (n, 1)) * wide
    top = tall * rng.uniform(0.35, 0.55, (n, 1))
    door = np.stack([_xy(left, tall), _xy(left, top), _xy(right, top), _xy(right, tall)], 1)
    pane = np.array([[0.35, 0.25], [0.65, 0.25], [0.65, 0.55], [0.35, 0.55]])
    window = _closed(pane * _xy(wide, one)[:, None])
    none = rng.random(n) < 0.5
    window[none] = window[none, :1]  # no window: its first side, drawn 4 times
    return np.concatenate([_closed(box), _polyline(roof_line), _polyline(door), window], 1)


def _flowers(n: int, rng: np.random.Generator) -> np.ndarray:
    """A round heart and a ring of 5 to 8 rounded petals around it, as one scalloped line."""
    petals = rng.integers(5, 9, (n, 1))
    t = np.linspace(0, 2 * np.pi, 97)
    heart = rng.uniform(0.2, 0.35, (n, 1))
    r = 0.5 + 0.5 * np.abs(np.sin(petals * t / 2))
    scallop = np.stack([r * np.cos(t), r * np.sin(t)], -1)
    centre = np.stack([heart * np.cos(t[::4]), heart * np.sin(t[::4])], -1)
    return np.concatenate([_polyline(scallop), _polyline(centre)], axis=1)


# Each kind's shapes as line segments ``(n, S, 2, 2)`` (x right, y down), before the
# per-picture turn, stretch and wobble, roughly within [-1, 1]².
_SHAPES = {
    "strokes": _strokes,
    "scribbles": _scribbles,
    "hearts": _hearts,
    "squares": _squares,
    "triangles": _triangles,
    "stars": _stars,
    "arrows": _arrows,
    "spirals": _spirals,
    "smileys": _smileys,
    "crosses": _crosses,
    "moons": _moons,
    "bolts": _bolts,
    "houses": _houses,
    "flowers": _flowers,
}
# Kinds that look right turned any way; the others lean by a few degrees only.
_ANY_TURN = ("strokes", "scribbles", "arrows", "crosses", "triangles", "stars", "spirals",
             "moons", "flowers")  # fmt: skip


def _render(segments: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Segments ``(n, S, 2, 2)`` in canvas pixels → ink ``(n, CANVAS, CANVAS)`` float32: 1
    within ``width / 2`` of a segment, fading to 0 over one pixel."""
    n, s = segments.shape[:2]
    ys, xs = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    pixels = np.stack([xs.ravel(), ys.ravel()], -1)  # (P, 2)
    a = segments[:, :, 0].astype(np.float32)[:, :, None]  # (n, S, 1, 2)
    ab = (segments[:, :, 1] - segments[:, :, 0]).astype(np.float32)[:, :, None]
    length2 = np.maximum((ab**2).sum(-1), 1e-9)  # (n, S, 1)
    distance = np.empty((n, CANVAS * CANVAS), np.float32)
    step = max(1, _CHUNK // (s * CANVAS * CANVAS))
    for i in range(0, n, step):  # chunks of pictures, each vectorised over pixels and segments
        ap = pixels - a[i : i + step]  # (c, S, P, 2)
        t = np.clip((ap * ab[i : i + step]).sum(-1) / length2[i : i + step], 0, 1)
        gap = ap - t[..., None] * ab[i : i + step]
        distance[i : i + step] = np.sqrt((gap**2).sum(-1).min(axis=1))
    ink = np.clip(width[:, None] / 2 - distance + 0.5, 0, 1)
    return ink.reshape(n, CANVAS, CANVAS)


def _draw_shapes(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` pictures of one shape kind, each turned, stretched, wobbled and placed at random."""
    if kind not in _SHAPES:
        raise CnnlabError(f"unknown non-digit shape {kind!r}; use one of {', '.join(_SHAPES)}")
    segments = _SHAPES[kind](n, rng).astype(np.float64)
    turn = rng.uniform(-np.pi, np.pi, n) if kind in _ANY_TURN else rng.normal(0, 0.25, n)
    cos, sin = np.cos(turn), np.sin(turn)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (n, 2, 2)
    stretch = rng.uniform(0.75, 1.25, (n, 1, 1, 2))
    wobble = rng.normal(0, 0.03, segments.shape)
    points = np.einsum("nij,nsej->nsei", rotation, segments * stretch) + wobble
    # Fit into the canvas with a margin, at a random size and offset (preprocessing recentres).
    low, high = points.min(axis=(1, 2)), points.max(axis=(1, 2))  # (n, 2)
    size = rng.uniform(0.45, 0.75, n) * CANVAS / np.maximum((high - low).max(-1), 1e-6)
    centre = (low + high) / 2
    offset = CANVAS / 2 + rng.uniform(-4, 4, (n, 2))
    pixels = (points - centre[:, None, None]) * size[:, None, None, None] + offset[:, None, None]
    return _render(pixels, rng.uniform(2.0, 5.0, n))


def _font_files(group: str, hand: bool) -> list[Path]:
    """The group's printed fonts (matplotlib's) or handwriting fonts (those installed)."""
    if not hand:
        from matplotlib import get_data_path

        folder = Path(get_data_path()) / "fonts" / "ttf"
        return [folder / name for name in _PRINTED[group]]
    return [
        path
        for family in _HANDS[group]
        for path in sorted(_FONT_ROOT.glob(f"*/{family}/*"))
        if path.suffix in (".ttf", ".otf")
    ]


@functools.cache
def _glyph(font: Path, letter: str) -> np.ndarray:
    """One letter of ``font``, white on black, centred on the canvas, about ``_GLYPH`` px tall."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(str(font), _GLYPH)
    left, top, right, bottom = face.getbbox(letter)
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    place = ((CANVAS - right - left) / 2, (CANVAS - bottom - top) / 2)
    ImageDraw.Draw(canvas).text(place, letter, fill=255, font=face)
    return np.asarray(canvas, np.float32) / 255


def _draw_letters(group: str, hand: bool, n: int, rng: np.random.Generator) -> np.ndarray:
    from cnnlab.data.augment import affine_transform

    fonts = _font_files(group, hand)
    if not fonts:  # no handwriting fonts installed: the printed ones stand in
        fonts = _font_files(group, False)
    font = rng.integers(len(fonts), size=n)
    letter = rng.integers(len(LETTERS), size=n)
    pairs, which = np.unique(np.stack([font, letter], 1), axis=0, return_inverse=True)
    glyphs = np.stack([_glyph(fonts[f], LETTERS[c]) for f, c in pairs])  # each drawn once
    turned = affine_transform(
        glyphs[which.ravel()],
        rng.uniform(-3, 3, n),
        rng.uniform(-3, 3, n),
        rng.uniform(-15, 15, n),
        rng.uniform(0.7, 1.15, n),
        rng.uniform(-10, 10, n),
    )
    return np.clip(turned, 0, 1)  # bilinear sampling overshoots 1 by a rounding error


def draw_nondigits(n: int, seed: int, group: str = "tune") -> tuple[np.ndarray, np.ndarray]:
    """``n`` non-digit drawings of ``group`` (``"tune"`` or ``"heldout"``), as many of each kind
    (``KINDS[group]``) as ``n`` allows, shuffled.

    Returns ink ``(n, CANVAS, CANVAS)`` float32 in [0, 1], bright on dark, and each picture's
    kind ``(n,)``. Letters need Pillow and matplotlib (the ``lab`` extra).
    """
    _check_group(group)
    if int(n) < 0:
        raise CnnlabError(f"the number of non-digit pictures must be at least 0, got {n}")
    rng = np.random.default_rng(seed)
    kinds = np.array(KINDS[group])[rng.permutation(np.arange(int(n)) % len(KINDS[group]))]
    ink = np.zeros((len(kinds), CANVAS, CANVAS), np.float32)
    for kind in KINDS[group]:
        chosen = np.flatnonzero(kinds == kind)
        if not len(chosen):
            continue
        if kind.endswith("letters"):
            ink[chosen] = _draw_letters(group, kind == "hand letters", len(chosen), rng)
        else:
            ink[chosen] = _draw_shapes(kind, len(chosen), rng)
    return ink, kinds


def nondigit_inputs(
    n: int, seed: int, group: str = "tune", preprocess: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``draw_nondigits`` made into digit inputs by the preprocessing a user's drawing gets:
    ``(n, 28, 28)`` float32 in [0, 1], ink bright, and the kinds ``(n,)``.

    ``preprocess=False`` does what matters of it for all the pictures at once, for training
    where many are needed quickly: each drawing is scaled so that its ink's longer side fills
    MNIST's 20 px box, moved so that its centre of mass is at (14, 14), and averaged 2×2
    down to 28×28 (no deskewing and no stroke-width normalisation).
    """
    from cnnlab.data.preprocess import preprocess_digit

    ink, kinds = draw_nondigits(n, seed, group)
    if not preprocess:
        return _fitted(ink), kinds
    inputs = np.zeros((len(ink), 28, 28), np.float32)
    for i, picture in enumerate(ink):  # the user's path, one picture at a time
        inputs[i] = preprocess_digit(picture).image
    return inputs, kinds


def _fitted(ink: np.ndarray) -> np.ndarray:
    """Drawings ``(n, CANVAS, CANVAS)`` → ``(n, 28, 28)``: the ink's longer side 20 px, its
    centre of mass at (14, 14), the brightest pixel 1."""
    from cnnlab.data.augment import affine_transform

    n = len(ink)
    if not n:
        return np.zeros((0, 28, 28), np.float32)
    rows, cols = ink.max(axis=2) > 0.1, ink.max(axis=1) > 0.1  # (n, CANVAS) each
    extent = np.maximum(
        CANVAS - rows[:, ::-1].argmax(1) - rows.argmax(1),
        CANVAS - cols[:, ::-1].argmax(1) - cols.argmax(1),
    )
    scale = 40 / np.maximum(extent, 1)  # 40 px on the canvas: 20 once halved
    mass = np.maximum(ink.sum(axis=(1, 2)), 1e-6)
    grid = np.arange(CANVAS)
    com_y, com_x = ink.sum(2) @ grid / mass, ink.sum(1) @ grid / mass
    # The map scales about the canvas centre c: the centre of mass m goes to c + s (m - c) +
    # shift; (14, 14) of the halved picture is 28.5 - 0.5 = 28 - 0.5 + 0.5 on the canvas.
    centre, target = (CANVAS - 1) / 2, 2 * 14.0 + 0.5
    shift_y = target - centre - scale * (com_y - centre)
    shift_x = target - centre - scale * (com_x - centre)
    zero = np.zeros(n)
    moved = affine_transform(ink, shift_y, shift_x, zero, scale, zero)
    half = moved.reshape(n, 28, 2, 28, 2).mean(axis=(2, 4))
    return (half / np.maximum(half.max(axis=(1, 2), keepdims=True), 1e-6)).astype(np.float32)
