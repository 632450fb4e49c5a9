"""Routes that read a picture: prediction, occlusion map, and the article's example."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, Request

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.parallel import available_cores
from cnnlab.explain import maps
from cnnlab.explain.article import ARTICLE_FILTER, ARTICLE_IMAGE
from cnnlab.runs.pictures import read_picture
from cnnlab.runs.predict import read
from cnnlab.web import inference
from cnnlab.web.inputs import read_input
from cnnlab.web.routes.models import current_model
from cnnlab.web.schemas import PREDICT_BODY

router = APIRouter()
# Predictions run on at most one thread per core; the others wait in the event loop. With the
# thread pool's default 40, 32 clients on 2 cores got 538-665 JSON answers/s and PNGs
# p99 0.8-1.0 s; with this limit 625-744/s and 0.74 s (benchmarks/serve_load.py).
MODEL_THREADS = anyio.CapacityLimiter(available_cores())


@router.post("/api/predict", tags=["predict"], openapi_extra=PREDICT_BODY)
async def predict(
    request: Request, steps: bool = True, activations: bool = False
) -> dict[str, Any]:
    """Read a digit: image bytes, or JSON ``{"pixels": 28×28}``. Returns the label, whether
    the model is unsure (top probability below 80 %) and its runner-up, whether the picture is
    a digit at all (``known``), the probabilities of every class, the preprocessing steps
    (``steps=true``) and the conv layers' activation maps (``activations=true``), images as
    base64 PNG."""
    source, preprocess = await read_input(request)
    name, model = current_model(request)

    def work() -> dict[str, Any]:
        picture = read_picture(model, source, preprocess=preprocess)
        (reading,) = read(model, [picture])
        out = {**inference.answer(reading), "model": name, "inverted": picture.inverted}
        if steps:
            out["steps"] = inference.step_images(picture.steps)
        if activations:
            out["activations"] = inference.layer_map_images(model, picture.x)
        return out

    return await anyio.to_thread.run_sync(work, limiter=MODEL_THREADS)


@router.post("/api/occlusion", tags=["predict"], openapi_extra=PREDICT_BODY)
async def occlusion(
    request: Request, patch: int = 6, stride: int = 2, label: int | None = None
) -> dict[str, Any]:
    """Which parts of the digit the prediction rests on: a grey ``patch``×``patch`` square
    slides over the 28×28 input; each pixel gets the mean drop in the probability of
    ``label`` (default: the predicted one) when covered."""
    if not 2 <= patch <= 14 or not 1 <= stride <= patch:
        raise CnnlabError(f"patch must be 2 to 14 and stride 1 to patch, got {patch} and {stride}")
    source, preprocess = await read_input(request)
    _, model = current_model(request)

    def work() -> dict[str, Any]:
        picture = read_picture(model, source, preprocess=preprocess)
        x = picture.x[None]  # (1, 1, 28, 28)
        probs = maps.predict_one(model, x)
        target = int(np.argmax(probs)) if label is None else label
        if not 0 <= target < len(probs):
            raise CnnlabError(f"label must be 0 to {len(probs) - 1}, got {target}")
        result = maps.occlusion(model, x, target, patch, stride)
        heat = result.base_probability - result.pixel_map  # (28, 28) mean drop when covered
        top = max(float(heat.max()), 1e-6)
        return {
            "label": target,
            "probability": round(float(probs[target]), 6),
            "patch": patch,
            "stride": stride,
            "values": np.round(heat.astype(np.float64), 4).tolist(),
            "map": inference.png_base64(heat, 0.0, top, colour=True),
            "input": inference.png_base64(picture.display),
        }

    return await anyio.to_thread.run_sync(work, limiter=MODEL_THREADS)


@router.get("/api/article", tags=["convolution"])
def article() -> dict[str, Any]:
    """The article's 6×6 image and 4×4 filter, for the convolution demo."""
    return {
        "image": np.asarray(ARTICLE_IMAGE).tolist(),
        "filter": np.asarray(ARTICLE_FILTER).tolist(),
    }
