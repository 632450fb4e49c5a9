"""Routes of the lab's state and its models: health, listing, choosing the active one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.inputs import kind_of
from cnnlab.web.registry import ModelRegistry
from cnnlab.web.schemas import SelectRequest

router = APIRouter()


class NoModelError(CnnlabError):
    """The lab has no model yet."""

    http_status = 503


class WrongKindError(CnnlabError):
    """The active model reads another kind of picture than the tab sends."""

    http_status = 409


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


def current_model(request: Request, kind: str = "digits") -> tuple[str, Sequential]:
    """The active (name, model); 503 while there is none, 409 when it reads pictures of another
    ``kind`` (``"digits"`` for the Draw tab, ``"images"`` for the Teach tab)."""
    active = registry_of(request).active()
    if active is None:
        raise NoModelError("no model yet: train one in the Train tab or start with --model")
    if kind_of(active[1]) != kind:
        raise WrongKindError(
            "the active model reads digits; train the Teach classes first"
            if kind == "images"
            else "the active model reads pictures, not digits; use the Teach tab or pick a "
            "digit model in the Train tab",
        )
    return active


@router.get("/api/health", tags=["lab"])
def health(request: Request) -> dict[str, Any]:
    """Liveness, the active model's name and the training state."""
    active = registry_of(request).active()
    return {
        "status": "ok",
        "model": active[0] if active else None,
        "training": request.app.state.trainer.state,
    }


@router.get("/api/models", tags=["models"])
def models(request: Request) -> dict[str, Any]:
    """The models of the run folders: name, test accuracy, preset, data set, created."""
    return registry_of(request).listing()


@router.post("/api/models/select", tags=["models"])
def select_model(request: Request, body: SelectRequest) -> dict[str, Any]:
    """Make the model of run ``name`` the one used for predictions."""
    registry = registry_of(request)
    registry.select(body.name)
    return registry.listing()
