"""The web lab's HTTP side: a FastAPI app serving the page and its JSON API.

``create_app(model_path, runs_dir)`` builds the app. The page (``static/``) talks to the API
only; the API never takes or returns file paths: models are named by their run folder.
Bodies over 2 MB are refused before they are read in full, pictures over
``preprocess.MAX_PIXELS`` before they are decoded, and every problem with a request is a 4xx
with a one-line JSON ``detail``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.engine.errors import CnnlabError
from cnnlab.runs.folder import DEFAULT_RUNS_DIR, check_private
from cnnlab.web.registry import ModelRegistry
from cnnlab.web.routes import models, predict, teach, train
from cnnlab.web.security import (
    RequestGuard,
    allowed_hosts,
    new_token,
    send_json,
    without_paths,
)
from cnnlab.web.teach import Project
from cnnlab.web.training import TrainingManager

MAX_BODY_BYTES = 2 * 1024 * 1024
STATIC_DIR = Path(__file__).resolve().with_name("static")
# The page may load nothing from elsewhere: everything it needs ships with the package.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# ------------------------------------------------------------------------------- body limit


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            413, f"request body over the limit of {MAX_BODY_BYTES} bytes; send a smaller image"
        )


class BodyLimit:
    """ASGI middleware refusing request bodies over ``limit`` bytes: from Content-Length before
    anything is read, and by counting while the body streams in (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_json(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(declared) > self.limit:
                await send_json(send, 413, BodyTooLarge().detail)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)


# ------------------------------------------------------------------------------- the app


def create_app(
    model_path: str | None,
    runs_dir: str = DEFAULT_RUNS_DIR,
    data_dir: str | None = None,
    hosts: tuple[str, ...] = (),
    token: str | None = None,
) -> FastAPI:
    """The web lab. ``model_path`` is a model file or run folder; without it the newest run
    under ``runs_dir`` is used, and without that the page offers to train one.
    ``data_dir`` is where MNIST / Fashion-MNIST files may be found for training. The lab
    answers only for the loopback names and ``hosts`` (the address it was started on), and
    its API only to requests carrying ``token`` (a random one when None: ``app.state.token``).
    A runs folder another user could write is refused (``check_private``)."""
    teach_project = Project(runs_dir)
    check_private(runs_dir, *teach_project.folders())
    registry = ModelRegistry(Path(runs_dir), model_path)
    app = FastAPI(
        title="cnnlab lab",
        version="1",
        description="Draw a digit and see the network read it; train a network; step a "
        "convolution. Errors are JSON objects with a one-line `detail`.",
        docs_url=None,  # the interactive docs load scripts from a CDN: the lab works offline
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.token = token or new_token()

    def finished(run: str, model_file: Path) -> None:
        registry.activate(run, model_file)
        teach_project.trained(run, app.state.trainer.config)  # a Teach run answers for them

    app.state.trainer = TrainingManager(runs_dir, on_finished=finished)
    app.state.data_dir = data_dir
    app.state.teach = teach_project
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(RequestGuard, hosts=allowed_hosts(hosts), token=app.state.token)  # outermost
    _add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for routes in (models.router, predict.router, train.router, teach.router):
        app.include_router(routes)
    return app


def _validation_message(err: RequestValidationError) -> str:
    """FastAPI's validation errors as one readable line: ``epochs: must be <= 50 (got 500)``."""
    parts = []
    for error in err.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        if error.get("type") == "json_invalid":
            parts.append("the request body is not valid JSON")
            continue
        text = error.get("msg", "invalid value")
        given = error.get("input")
        shown = f" (got {json.dumps(given)[:40]})" if isinstance(given, str | int | float) else ""
        parts.append(f"{where}: {text}{shown}" if where else f"{text}{shown}")
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CnnlabError)
    async def refused(request: Request, err: CnnlabError) -> JSONResponse:
        """Every cnnlab error type answers with its own ``http_status`` and its one line."""
        return JSONResponse({"detail": without_paths(str(err))}, status_code=err.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": without_paths(_validation_message(err))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        detail = err.detail if isinstance(err.detail, str) else json.dumps(err.detail)
        return JSONResponse(
            {"detail": without_paths(detail)}, status_code=err.status_code, headers=err.headers
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(  # sent outside the middleware: it adds its own nosniff
            {"detail": "internal error in the lab; the server log has the details"},
            status_code=500,
            headers={"X-Content-Type-Options": "nosniff"},
        )
