"""A request's picture, as the picture door takes it: image bytes, or a JSON array of pixels.

Only the request is read here; :func:`cnnlab.runs.pictures.read_picture` checks the pixels and
makes the network input.
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import Request

from cnnlab.engine.errors import CnnlabError


class UnsupportedMediaError(CnnlabError):
    """A request body of a type the route does not read."""

    http_status = 415


def parse_pixels(body: bytes) -> tuple[np.ndarray, bool]:
    """A JSON ``{"pixels": [[...]], "preprocess": bool}`` body as a float64 2-D array."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise CnnlabError(f"the request body is not valid JSON ({err})") from None
    except RecursionError:
        raise CnnlabError("the request body nests too deeply; send a 2-D array") from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise CnnlabError(
            'expected a JSON object {"pixels": 28×28 numbers in [0, 1]}; got no "pixels"'
        )
    preprocess = payload.get("preprocess", False)
    if not isinstance(preprocess, bool):
        raise CnnlabError(f'"preprocess" must be true or false, got {preprocess!r}')
    rows = payload["pixels"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise CnnlabError('"pixels" must be a list of rows (a 2-D array of numbers)')
    # float() would take "0.5" and true: only JSON numbers are pixels. A set of the values'
    # types is a fraction of the cost of a per-element NumPy check.
    if not {type(v) for row in rows for v in row} <= {int, float}:
        raise CnnlabError(
            '"pixels" must be a 2-D array of numbers, not strings, true/false or lists'
        )
    try:
        pixels = np.array(rows, dtype=np.float64)
    except ValueError:
        raise CnnlabError(
            '"pixels" must be a rectangular 2-D array of numbers (rows of equal length)'
        ) from None
    except OverflowError:  # an integer beyond float64
        raise CnnlabError('"pixels" values must be finite numbers in [0, 1]') from None
    return pixels, preprocess


async def read_input(request: Request) -> tuple[np.ndarray | bytes, bool]:
    """The request's picture and whether to preprocess it: (pixels, flag) or (bytes, True)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        raise CnnlabError("the request body is empty; send an image or a pixels array")
    if kind == "application/json":
        return parse_pixels(body)
    if kind.startswith("image/") or kind == "application/octet-stream":
        return body, True
    raise UnsupportedMediaError(
        f"unsupported Content-Type {kind or '(none)'!r}; send image bytes (image/png, "
        "image/jpeg) or application/json with a pixels array"
    )
