"""Routes of the Train panel: what it offers, starting and stopping the background job, and
the job's Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS
from cnnlab.runs.zoo import ACTIVATIONS, PRESETS
from cnnlab.web.schemas import TrainRequest, form_defaults, recipes
from cnnlab.web.training import TrainingBusyError, TrainingManager, available_datasets

router = APIRouter()
KEEPALIVE_S = 15.0  # an SSE comment is sent this often so proxies keep the stream open
POLL_S = 0.1  # how often an SSE stream looks for new events


def trainer_of(request: Request) -> TrainingManager:
    return request.app.state.trainer


@router.get("/api/train/options", tags=["train"])
def train_options(request: Request) -> dict[str, Any]:
    """What the Train panel offers: data sets found locally (digits, and the generated colour
    ``shapes``) with their kinds, recipes, presets and defaults."""
    kinds = available_datasets(request.app.state.data_dir)
    return {
        "datasets": list(kinds),
        "dataset_kinds": kinds,  # "digits" or "images": the page picks the recipe by it
        "recipes": recipes(),
        "presets": list(PRESETS),
        "activations": list(ACTIVATIONS),
        "optimizers": sorted(OPTIMIZERS),
        "losses": sorted(LOSSES),
        "defaults": form_defaults(),
    }


@router.get("/api/train", tags=["train"])
def train_status(request: Request) -> dict[str, Any]:
    """The training job's state (idle, running, finished, stopped, failed)."""
    return trainer_of(request).status()


@router.post("/api/train", tags=["train"], status_code=202)
def train(request: Request, body: TrainRequest) -> dict[str, Any]:
    """Start training in the background; 409 while another job runs. Follow it with
    ``GET /api/train/events``."""
    data_dir = request.app.state.data_dir
    datasets = available_datasets(data_dir)
    if body.dataset not in datasets:
        raise HTTPException(
            422,
            f"data set {body.dataset!r} is not available here; choose one of {', '.join(datasets)}",
        )
    trainer = trainer_of(request)
    try:
        trainer.start(body.to_config(data_dir))
    except TrainingBusyError as err:
        raise HTTPException(409, str(err)) from None
    except CnnlabError as err:
        raise HTTPException(422, str(err)) from None
    return trainer.status()


@router.post("/api/train/stop", tags=["train"])
def train_stop(request: Request) -> dict[str, Any]:
    """Stop the running job after its current step; 409 when none runs."""
    trainer = trainer_of(request)
    if not trainer.stop():
        raise HTTPException(409, "no training job is running")
    return trainer.status()


@router.get("/api/train/events", tags=["train"])
async def train_events(request: Request, after: int = 0) -> Response:
    """Server-Sent Events of the current job: start, progress, filters, epoch, and a final
    done or error. Each event's id lets a reconnecting client resume (Last-Event-ID). The
    stream ends after the final event; 204 when there is nothing (more) to send."""
    trainer = trainer_of(request)
    last = request.headers.get("last-event-id", "")  # ASCII digits only: "²" is a digit too
    after = max(after, int(last)) if re.fullmatch(r"[0-9]{1,18}", last) else after
    pending, ended = trainer.events_after(after)
    if ended and not pending:
        return Response(status_code=204)

    async def stream() -> AsyncIterator[str]:
        sent, quiet_since = after, time.monotonic()
        yield "retry: 2000\n\n"
        while True:
            events, ended = trainer.events_after(sent)
            for event in events:
                sent = event["id"]
                yield f"id: {sent}\ndata: {json.dumps(event)}\n\n"
            if ended and not events:
                return
            if events:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
