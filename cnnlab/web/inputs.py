"""A prediction request's picture: read, checked and turned into the 28×28 network input."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import numpy as np
from fastapi import HTTPException, Request

from cnnlab.data.preprocess import ImageTooLargeError, load_image, preprocess_digit
from cnnlab.engine.errors import CnnlabError

# Pictures decoded and preprocessed at once: one per core, at most 4 (peak memory ~4 × 64 MB).
PICTURE_SLOTS = threading.BoundedSemaphore(min(os.cpu_count() or 1, 4))


def parse_pixels(body: bytes) -> tuple[np.ndarray, bool]:
    """A JSON ``{"pixels": [[...]], "preprocess": bool}`` body as a float32 (H, W) array."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise HTTPException(422, f"the request body is not valid JSON ({err})") from None
    except RecursionError:
        raise HTTPException(422, "the request body nests too deeply; send a 2-D array") from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise HTTPException(
            422, 'expected a JSON object {"pixels": 28×28 numbers in [0, 1]}; got no "pixels"'
        )
    preprocess = payload.get("preprocess", False)
    if not isinstance(preprocess, bool):
        raise HTTPException(422, f'"preprocess" must be true or false, got {preprocess!r}')
    rows = payload["pixels"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise HTTPException(422, '"pixels" must be a list of rows (a 2-D array of numbers)')
    # float() would take "0.5" and true: only JSON numbers are pixels. A set of the values'
    # types costs ~40 µs for 28×28; a per-element NumPy check cost 250-350 µs, a third of the
    # server's CPU time per JSON prediction.
    if not {type(v) for row in rows for v in row} <= {int, float}:
        raise HTTPException(
            422, '"pixels" must be a 2-D array of numbers, not strings, true/false or lists'
        )
    try:
        pixels = np.array(rows, dtype=np.float64)
    except ValueError:
        raise HTTPException(
            422, '"pixels" must be a rectangular 2-D array of numbers (rows of equal length)'
        ) from None
    except OverflowError:  # an integer beyond float64
        raise HTTPException(422, '"pixels" values must be finite numbers in [0, 1]') from None
    if pixels.ndim != 2:
        raise HTTPException(422, f'"pixels" must be 2-D, got shape {pixels.shape}')
    if not preprocess and pixels.shape != (28, 28):
        raise HTTPException(
            422,
            f'"pixels" must be 28×28, got {pixels.shape[0]}×{pixels.shape[1]}; '
            'send "preprocess": true for other sizes',
        )
    if preprocess and not (min(pixels.shape) >= 5 and max(pixels.shape) <= 1024):
        raise HTTPException(422, f'"pixels" must be 5×5 to 1024×1024, got {pixels.shape}')
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise HTTPException(422, '"pixels" values must be finite numbers in [0, 1]')
    return pixels.astype(np.float32), preprocess


async def read_input(request: Request) -> tuple[str, np.ndarray | bytes, bool]:
    """The request's picture: ("array", pixels, preprocess) or ("image", bytes, True)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        raise HTTPException(422, "the request body is empty; send an image or a pixels array")
    if kind == "application/json":
        pixels, preprocess = parse_pixels(body)
        return "array", pixels, preprocess
    if kind.startswith("image/") or kind == "application/octet-stream":
        return "image", body, True
    raise HTTPException(
        415,
        f"unsupported Content-Type {kind or '(none)'!r}; send image bytes (image/png, "
        "image/jpeg) or application/json with a pixels array",
    )


def model_input(source: str, data: np.ndarray | bytes, preprocess: bool) -> dict[str, Any]:
    """Decode and preprocess: the (28, 28) network input and the steps that led to it."""
    if not preprocess:
        return {"image": data, "steps": {"centred": data}, "inverted": False}
    try:
        # Decoding and preprocessing allocate (up to ~64 MB a picture) and keep a core busy:
        # more of them at once only thrash memory and caches, so the others wait their turn.
        with PICTURE_SLOTS:
            prepared = preprocess_digit(load_image(data) if source == "image" else data)
    except ImageTooLargeError as err:
        raise HTTPException(413, str(err)) from None
    except CnnlabError as err:
        raise HTTPException(422, str(err)) from None
    return {"image": prepared.image, "steps": prepared.steps, "inverted": prepared.inverted}
