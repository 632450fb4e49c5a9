"""Routes of the Teach tab: the project's classes and examples, training them through the lab's
one training job, and predictions with an occlusion map, from the examples at once and from
the model trained on them once it is."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cnnlab.explain import maps
from cnnlab.runs.pictures import PICTURE_SLOTS
from cnnlab.web import inference
from cnnlab.web.routes.models import registry_of
from cnnlab.web.routes.predict import MODEL_THREADS
from cnnlab.web.teach import Project, accuracy_text
from cnnlab.web.training import TrainingBusyError

router = APIRouter()
OCCLUSION_PATCH, OCCLUSION_STRIDE = 8, 2  # on a 32×32 input; scaled with a larger one
TEACH_DIVERGED = (
    "training did not learn from these examples; add more examples to each class, make the "
    "classes look more different from each other, and train again"
)


class ProjectRequest(BaseModel):
    classes: list[str] = Field(min_length=1, max_length=20)


class TrainRequest(BaseModel):
    # one of the project state's "starts"; None: the first (the shipped extractor)
    start_from: str | None = Field(default=None, max_length=100)


def project_of(request: Request) -> Project:
    return request.app.state.teach


@router.get("/api/teach/project", tags=["teach"])
def project(request: Request) -> dict[str, Any]:
    """The project's classes and how many examples each has."""
    return project_of(request).state()


@router.post("/api/teach/project", tags=["teach"])
def create_project(request: Request, body: ProjectRequest) -> dict[str, Any]:
    """Start over with 2 to 10 named classes (their examples are removed); 409 while the
    project's examples are being trained (the model it makes would answer with old classes)."""
    trainer, project = request.app.state.trainer, project_of(request)
    config = trainer.config
    if (
        trainer.state == "running"
        and config is not None
        and config.dataset == str(project.data_dir)
    ):
        raise TrainingBusyError(
            "the Teach examples are being trained; wait for it to finish or stop it first"
        )
    return project.create(body.classes)


@router.post("/api/teach/examples", tags=["teach"])
async def add_example(request: Request, label: str) -> dict[str, Any]:
    """Add the picture in the body (PNG, JPEG, …) as an example of class ``label``."""
    picture = await request.body()
    project = project_of(request)

    def add() -> dict[str, Any]:
        with PICTURE_SLOTS:  # the example is decoded like any picture: a few at once
            return project.add_example(label, picture)

    return await run_in_threadpool(add)


@router.get("/api/teach/examples/{label}/{example}", tags=["teach"])
def example_picture(request: Request, label: str, example: str) -> Response:
    """One stored example of class ``label`` as its 64×64 PNG (``example``: an id the
    project's state lists), for its thumbnail."""
    return Response(project_of(request).example_png(label, example), media_type="image/png")


@router.delete("/api/teach/examples/{label}/{example}", tags=["teach"])
def remove_example(request: Request, label: str, example: str) -> dict[str, Any]:
    """Remove one example of class ``label``; returns the project's state."""
    return project_of(request).remove_example(label, example)


@router.post("/api/teach/train", tags=["teach"], status_code=202)
def train(request: Request, body: TrainRequest | None = None) -> dict[str, Any]:
    """Train the project's examples in the background (the Train tab's job), from one of the
    starting points the project's state offers; 409 while busy."""
    start = body.start_from if body is not None else None
    request.app.state.trainer.start(project_of(request).run_config(start_from=start))
    return train_status(request)


@router.get("/api/teach/train", tags=["teach"])
def train_status(request: Request) -> dict[str, Any]:
    """The job's state with its latest epoch, test accuracy (when done) or error."""
    trainer = request.app.state.trainer
    events, _ = trainer.events_after(0)
    status: dict[str, Any] = {"state": trainer.state, "epoch": 0}
    config = trainer.config
    status["epochs"] = config.epochs if config else None
    for event in events:
        if event["type"] == "epoch":
            status["epoch"] = int(event["epoch"])
        elif event["type"] == "done":
            status["test_accuracy"] = event["test_accuracy"]
            status["test_count"] = event.get("test_count")  # how many held-out examples
            status["accuracy_text"] = accuracy_text(event["test_accuracy"], event["test_count"])
            status["run"] = event["run"]
        elif event["type"] == "error":
            # Teach sets no learning rate: a run that did not learn needs other examples.
            status["error"] = TEACH_DIVERGED if event.get("diverged") else event["message"]
    return status


@router.post("/api/teach/predict", tags=["teach"])
async def predict(request: Request) -> dict[str, Any]:
    """The answer for the picture in the body, as ``/api/predict`` words it (class, unsure and
    runner-up, known, probabilities), with where it comes from (``source``: "examples", the
    quick model of the ``examples`` so far, or "trained", the model trained on them while it
    is the active one and they are unchanged), and an occlusion map (base64 PNG; bright where
    covering the picture lowers the answer's probability). 503 until every class has an
    example."""
    picture = await request.body()
    project, active = project_of(request), registry_of(request).active()

    def work() -> dict[str, Any]:
        found = project.answer(picture, active)
        model, x, label = found.model, found.x, found.reading.label
        scale = max(x.shape[-1] // 32, 1)  # as many patches on a larger input (a ResNet's)
        occ = maps.occlusion(model, x, label, OCCLUSION_PATCH * scale, OCCLUSION_STRIDE * scale)
        heat = np.clip(occ.base_probability - occ.pixel_map, 0, None)
        return {
            **inference.answer(found.reading),
            "source": found.source,
            "examples": found.examples,
            "occlusion": inference.png_base64(heat, 0.0, max(float(heat.max()), 1e-6), True),
            # The same map as numbers (H rows of W), for the page to lay over the picture.
            "occlusion_drop": heat.round(4).tolist(),
        }

    # A prediction with its occlusion map is ~100 forward passes: one per core, as /api/predict.
    return await anyio.to_thread.run_sync(work, limiter=MODEL_THREADS)
