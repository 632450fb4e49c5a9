"""What the web lab shows of one picture: the answer (a ``cnnlab.runs.predict.Reading``), the
preprocessing steps and the conv layers' maps, with the small PNG encoding that carries images
to the page.

Everything here takes plain NumPy arrays and a ``Sequential``; nothing knows about HTTP.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from cnnlab.engine.sequential import Sequential
from cnnlab.explain.maps import maps_after_activation
from cnnlab.runs.predict import Reading

# The preprocessing stages the page shows, with their captions.
STEP_TITLES = {
    "raw": "raw",
    "cropped": "cropped",
    "upright": "filled, upright",
    "fitted": "20×20",
    "centred": "centred 28×28",
}
THUMB_SIDE = 160  # a step image is shrunk to at most this many pixels a side for the page

# A dark-to-bright colour ramp for maps (navy → teal → amber → pale yellow), 256 entries.
_RAMP_STOPS = np.array(
    [[15, 23, 42], [30, 64, 120], [20, 150, 150], [240, 170, 50], [255, 250, 210]], np.float64
)


def _ramp() -> np.ndarray:
    """The 256 × 3 uint8 palette interpolated between ``_RAMP_STOPS``."""
    where = np.linspace(0, len(_RAMP_STOPS) - 1, 256)
    cols = [np.interp(where, np.arange(len(_RAMP_STOPS)), _RAMP_STOPS[:, c]) for c in range(3)]
    return np.stack(cols, axis=1).round().astype(np.uint8)  # (256, 3)


PALETTE = _ramp()


def png_base64(image: np.ndarray, lo: float = 0.0, hi: float = 1.0, colour: bool = False) -> str:
    """Encode a 2-D array as a base64 PNG, mapping [lo, hi] to 0..255.

    Grey by default; ``colour`` uses the lab's palette (a paletted PNG, still one byte a pixel).
    Images larger than ``THUMB_SIDE`` are shrunk for display.
    """
    from PIL import Image

    scale = max(hi - lo, 1e-12)
    levels = np.clip((np.asarray(image, np.float64) - lo) / scale, 0, 1)
    img = Image.fromarray((levels * 255).round().astype(np.uint8), "L")
    if max(img.size) > THUMB_SIDE:
        factor = THUMB_SIDE / max(img.size)
        img = img.resize(
            (max(1, round(img.width * factor)), max(1, round(img.height * factor))),
            Image.Resampling.BOX,
        )
    if colour:
        img = img.convert("P")
        img.putpalette(PALETTE.ravel().tolist())
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=1)  # fast: these images are tiny
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def step_images(steps: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The preprocessing stages shown on the page, each as size and base64 PNG."""
    out = []
    for name, title in STEP_TITLES.items():
        if name in steps:
            image = steps[name]
            out.append(
                {
                    "name": name,
                    "title": title,
                    "width": int(image.shape[1]),
                    "height": int(image.shape[0]),
                    "png": png_base64(image),
                }
            )
    return out


def layer_map_images(model: Sequential, x: np.ndarray) -> list[dict[str, Any]]:
    """The maps of every conv layer after its activation (``maps_after_activation``) for one
    network input ``x`` (C, H, W), for the page.

    Each entry: layer index, title, map size and one colour PNG per map, all maps of a layer on
    one shared scale so their strengths compare (from 0 after a ReLU).
    """
    layers = []
    for layer_maps in maps_after_activation(model, x[None]):
        maps = layer_maps.maps  # (C_out, H, W)
        lo, hi = float(maps.min()), float(maps.max())
        if layer_maps.activation == "ReLU":
            lo = 0.0
        after = f"after {layer_maps.activation}" if layer_maps.activation else "before activation"
        layers.append(
            {
                "layer": layer_maps.index,
                "title": f"conv layer {len(layers) + 1}: {maps.shape[0]} maps, "
                f"{maps.shape[1]}×{maps.shape[2]}, {after}",
                "width": int(maps.shape[2]),
                "height": int(maps.shape[1]),
                "range": [round(lo, 4), round(hi, 4)],
                "maps": [png_base64(m, lo, hi, colour=True) for m in maps],
            }
        )
    return layers


def answer(reading: Reading) -> dict[str, Any]:
    """A reading as the page shows it (the Draw and Teach tabs alike): the class, whether the
    model is unsure and its runner-up, whether the picture is one of the classes at all
    (``known``; when it is not, ``class_name`` is only the closest), every probability."""
    return {
        "label": reading.label,
        "class_name": reading.class_name,
        "known": reading.known,
        "unsure": reading.unsure,
        "runner_up": reading.runner_up_name,
        "class_names": list(reading.class_names),
        "probabilities": [round(float(p), 6) for p in reading.probabilities],
    }
