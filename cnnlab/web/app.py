"""The web lab's HTTP side: a FastAPI app serving the page and its JSON API.

``create_app(model_path, runs_dir)`` builds the app. The page (``static/``) talks to the API
only; the API never takes or returns file paths: models are named by their run folder.
Bodies over 2 MB are refused before they are read in full, pictures over ``MAX_PIXELS`` before
they are decoded, and every problem with a request is a 4xx with a one-line JSON ``detail``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.cli._common import model_path as resolve_model_path
from cnnlab.data.preprocess import NoInkError, load_image, preprocess_digit
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.serialize import CONFIG_KEY
from cnnlab.explain import maps
from cnnlab.runs.zoo import PRESETS
from cnnlab.web import inference
from cnnlab.web.training import JobConfig, TrainingBusyError, TrainingManager, available_datasets

MAX_BODY_BYTES = 2 * 1024 * 1024
MODEL_FILE = "model.npz"
STATIC_DIR = Path(__file__).resolve().with_name("static")
KEEPALIVE_S = 15.0  # an SSE comment is sent this often so proxies keep the stream open
POLL_S = 0.1  # how often an SSE stream looks for new events
# The page may load nothing from elsewhere: everything it needs ships with the package.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DIGIT_CLASSES = [str(d) for d in range(10)]


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
                await _send_json(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(declared) > self.limit:
                await _send_json(send, 413, BodyTooLarge().detail)
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


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------- models


class ModelRegistry:
    """The models the lab knows (run folders under ``runs_dir``, plus one given on the command
    line) and the active one. Swapping the active model is atomic under a lock; a prediction
    takes the current (name, model) pair once and keeps using it."""

    def __init__(self, runs_dir: Path, model_path: str | None) -> None:
        self.runs_dir = runs_dir
        self._lock = threading.Lock()
        self._active: tuple[str, Sequential] | None = None
        self._extra: dict[str, Path] = {}  # name → file, for a model outside runs_dir
        self._meta_cache: dict[Path, tuple[int, dict[str, Any]]] = {}
        if model_path is not None:
            path = resolve_model_path(model_path)
            model = Sequential.load(path)
            name = self._name_of(path)
            if name not in self._run_files():
                self._extra[name] = path
            self._active = (name, model.eval())
        else:
            newest = max(
                self._run_files().items(), key=lambda kv: kv[1].stat().st_mtime, default=None
            )
            if newest is not None:
                self._active = (newest[0], Sequential.load(newest[1]).eval())

    def _name_of(self, path: Path) -> str:
        """A model's public name: its run folder's name (or the file's stem), never a path."""
        path = path.resolve()
        return path.parent.name if path.name == MODEL_FILE else path.stem

    def _run_files(self) -> dict[str, Path]:
        if not self.runs_dir.is_dir():
            return {}
        return {f.parent.name: f for f in self.runs_dir.glob(f"*/{MODEL_FILE}") if f.is_file()}

    def files(self) -> dict[str, Path]:
        return {**self._run_files(), **self._extra}

    def active(self) -> tuple[str, Sequential] | None:
        with self._lock:
            return self._active

    def activate(self, name: str, path: Path) -> None:
        model = Sequential.load(path).eval()  # load before taking the lock: swaps are instant
        with self._lock:
            self._active = (name, model)

    def select(self, name: str) -> None:
        files = self.files()
        if name not in files:
            raise HTTPException(404, f"no model named {name!r}; GET /api/models lists them")
        try:
            self.activate(name, files[name])
        except CnnlabError as err:
            raise HTTPException(422, f"model {name!r} cannot be used: {err}") from None

    def _describe(self, name: str, path: Path, active: str | None) -> dict[str, Any]:
        stat = path.stat()
        cached = self._meta_cache.get(path)
        if cached is None or cached[0] != stat.st_mtime_ns:
            cached = (stat.st_mtime_ns, self._read_meta(path))
            self._meta_cache[path] = cached
        info = cached[1]
        return {
            "name": name,
            "created": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
            "accuracy": info.get("accuracy"),
            "preset": info.get("preset"),
            "dataset": info.get("dataset"),
            "source": "command line" if name in self._extra else "runs",
            "active": name == active,
        }

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        """Preset, data set and test accuracy from the model file's meta; the accuracy falls
        back to the last epoch of a metrics.json beside it."""
        info: dict[str, Any] = {}
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data[CONFIG_KEY])).get("meta", {})
            if isinstance(meta, dict):
                info.update({k: meta.get(k) for k in ("preset", "dataset", "test_accuracy")})
        except (OSError, ValueError, KeyError, AttributeError):
            info["error"] = "unreadable model file"
        accuracy = info.pop("test_accuracy", None)
        if not isinstance(accuracy, int | float):
            try:
                history = json.loads((path.parent / "metrics.json").read_text(encoding="utf-8"))
                accuracy = history[-1].get("test_accuracy")
            except (OSError, ValueError, AttributeError, TypeError, KeyError, IndexError):
                accuracy = None
        info["accuracy"] = float(accuracy) if isinstance(accuracy, int | float) else None
        return info

    def listing(self) -> dict[str, Any]:
        current = self.active()
        active = current[0] if current else None
        models = [self._describe(n, p, active) for n, p in self.files().items()]
        models.sort(key=lambda m: m["created"], reverse=True)
        return {"active": active, "models": models}


# ------------------------------------------------------------------------------- requests


class TrainRequest(BaseModel):
    """The Train panel's choices."""

    dataset: str = "mnist-sample"
    preset: Literal["default", "fast", "lenet5", "simple"] = "default"
    activation: Literal["relu", "sigmoid", "tanh"] = "relu"
    epochs: int = Field(1, ge=1, le=50)
    learning_rate: float = Field(0.001, gt=0, le=10)
    optimizer: Literal["sgd", "adam"] = "adam"
    loss: Literal["cross-entropy", "mse"] = "cross-entropy"
    batch_size: int = Field(64, ge=1, le=1024)
    subset: int | None = Field(None, ge=10, le=60000)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class SelectRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["pixels"],
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "items": {"type": "array", "items": {"type": "number"}},
                            "description": "28×28 grey levels in [0, 1], ink bright on dark "
                            "(MNIST style); any 2-D size from 5×5 to 1024×1024 with "
                            "preprocess=true",
                        },
                        "preprocess": {
                            "type": "boolean",
                            "default": False,
                            "description": "crop, fit and centre the array like a picture",
                        },
                    },
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _parse_pixels(body: bytes) -> tuple[np.ndarray, bool]:
    """A JSON ``{"pixels": [[...]], "preprocess": bool}`` body as a float32 (H, W) array."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise HTTPException(422, f"the request body is not valid JSON ({err})") from None
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
    try:
        pixels = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise HTTPException(
            422, '"pixels" must be a rectangular 2-D array of numbers (rows of equal length)'
        ) from None
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


async def _read_input(request: Request) -> tuple[str, np.ndarray | bytes, bool]:
    """The request's picture: ("array", pixels, preprocess) or ("image", bytes, True)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        raise HTTPException(422, "the request body is empty; send an image or a pixels array")
    if kind == "application/json":
        pixels, preprocess = _parse_pixels(body)
        return "array", pixels, preprocess
    if kind.startswith("image/") or kind == "application/octet-stream":
        return "image", body, True
    raise HTTPException(
        415,
        f"unsupported Content-Type {kind or '(none)'!r}; send image bytes (image/png, "
        "image/jpeg) or application/json with a pixels array",
    )


def _model_input(source: str, data: np.ndarray | bytes, preprocess: bool) -> dict[str, Any]:
    """Decode and preprocess: the (28, 28) network input and the steps that led to it."""
    try:
        if source == "image":
            too_big = inference.pixel_limit_message(data)
            if too_big:
                raise HTTPException(413, too_big)
            data = load_image(data, max_pixels=inference.MAX_PIXELS)
        if not preprocess:
            return {"image": data, "steps": {"centred": data}, "inverted": False}
        prepared = preprocess_digit(data)
    except NoInkError as err:
        raise HTTPException(422, str(err)) from None
    except CnnlabError as err:
        raise HTTPException(422, str(err)) from None
    return {"image": prepared.image, "steps": prepared.steps, "inverted": prepared.inverted}


# ------------------------------------------------------------------------------- the app


def create_app(
    model_path: str | None, runs_dir: str = "runs", data_dir: str | None = None
) -> FastAPI:
    """The web lab. ``model_path`` is a model file or run folder; without it the newest
    ``runs_dir/*/model.npz`` is used, and without that the page offers to train one.
    ``data_dir`` is where MNIST / Fashion-MNIST files may be found for training."""
    registry = ModelRegistry(Path(runs_dir), model_path)
    trainer = TrainingManager(runs_dir, data_dir, on_finished=registry.activate)
    app = FastAPI(
        title="cnnlab lab",
        version="1",
        description="Draw a digit and see the network read it; train a network; step a "
        "convolution. Errors are JSON objects with a one-line `detail`.",
    )
    app.state.registry = registry
    app.state.trainer = trainer
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _add_error_handlers(app)

    def current_model() -> tuple[str, Sequential]:
        active = registry.active()
        if active is None:
            raise HTTPException(
                503, "no model yet: train one in the Train tab or start with --model"
            )
        return active

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/health", tags=["lab"])
    def health() -> dict[str, Any]:
        """Liveness, the active model's name and the training state."""
        active = registry.active()
        return {"status": "ok", "model": active[0] if active else None, "training": trainer.state}

    @app.get("/api/models", tags=["models"])
    def models() -> dict[str, Any]:
        """The models of the run folders: name, test accuracy, preset, data set, created."""
        return registry.listing()

    @app.post("/api/models/select", tags=["models"])
    def select_model(request: SelectRequest) -> dict[str, Any]:
        """Make the model of run ``name`` the one used for predictions."""
        registry.select(request.name)
        return registry.listing()

    @app.post("/api/predict", tags=["predict"], openapi_extra=_PREDICT_BODY)
    async def predict(
        request: Request, steps: bool = True, activations: bool = False
    ) -> dict[str, Any]:
        """Read a digit: image bytes, or JSON ``{"pixels": 28×28}``. Returns the label, the
        probabilities of every class, the preprocessing steps (``steps=true``) and the conv
        layers' activation maps (``activations=true``), images as base64 PNG."""
        source, data, preprocess = await _read_input(request)
        name, model = current_model()

        def work() -> dict[str, Any]:
            prepared = _model_input(source, data, preprocess)
            probs = maps.predict_one(model, prepared["image"][None, None])
            label = int(np.argmax(probs))
            classes = model.meta.get("class_names") or DIGIT_CLASSES
            out: dict[str, Any] = {
                "label": label,
                "class_name": str(classes[label]) if label < len(classes) else str(label),
                "class_names": [str(c) for c in classes],
                "probabilities": [round(float(p), 6) for p in probs],
                "model": name,
                "inverted": bool(prepared["inverted"]),
            }
            if steps:
                out["steps"] = inference.step_images(prepared["steps"])
            if activations:
                out["activations"] = inference.layer_map_images(model, prepared["image"])
            return out

        return await run_in_threadpool(work)

    @app.post("/api/occlusion", tags=["predict"], openapi_extra=_PREDICT_BODY)
    async def occlusion(
        request: Request, patch: int = 6, stride: int = 2, label: int | None = None
    ) -> dict[str, Any]:
        """Which parts of the digit the prediction rests on: a grey ``patch``×``patch`` square
        slides over the 28×28 input; each pixel gets the mean drop in the probability of
        ``label`` (default: the predicted one) when covered."""
        if not 2 <= patch <= 14 or not 1 <= stride <= patch:
            raise HTTPException(
                422, f"patch must be 2 to 14 and stride 1 to patch, got {patch} and {stride}"
            )
        source, data, preprocess = await _read_input(request)
        _, model = current_model()

        def work() -> dict[str, Any]:
            image = _model_input(source, data, preprocess)["image"]
            probs = maps.predict_one(model, image[None, None])
            target = int(np.argmax(probs)) if label is None else label
            if not 0 <= target < len(probs):
                raise HTTPException(422, f"label must be 0 to {len(probs) - 1}, got {target}")
            result = maps.occlusion(model, image[None, None], target, patch, stride)
            heat = result.base_probability - result.pixel_map  # (28, 28) mean drop when covered
            top = max(float(heat.max()), 1e-6)
            return {
                "label": target,
                "probability": round(float(probs[target]), 6),
                "patch": patch,
                "stride": stride,
                "values": np.round(heat.astype(np.float64), 4).tolist(),
                "map": inference.png_base64(heat, 0.0, top, colour=True),
                "input": inference.png_base64(image),
            }

        return await run_in_threadpool(work)

    @app.get("/api/article", tags=["convolution"])
    def article() -> dict[str, Any]:
        """The article's 6×6 image and 4×4 filter, for the convolution demo."""
        try:
            from cnnlab.explain.article import ARTICLE_FILTER, ARTICLE_IMAGE
        except ImportError:
            raise HTTPException(
                503, "the article's example (cnnlab.explain.article) is not installed"
            ) from None
        return {
            "image": np.asarray(ARTICLE_IMAGE).tolist(),
            "filter": np.asarray(ARTICLE_FILTER).tolist(),
        }

    @app.get("/api/train/options", tags=["train"])
    def train_options() -> dict[str, Any]:
        """What the Train panel offers: data sets found locally, presets and defaults."""
        defaults = TrainRequest().model_dump()
        return {
            "datasets": available_datasets(data_dir),
            "presets": list(PRESETS),
            "activations": ["relu", "sigmoid", "tanh"],
            "optimizers": ["adam", "sgd"],
            "losses": ["cross-entropy", "mse"],
            "defaults": defaults,
        }

    @app.get("/api/train", tags=["train"])
    def train_status() -> dict[str, Any]:
        """The training job's state (idle, running, finished, stopped, failed)."""
        return trainer.status()

    @app.post("/api/train", tags=["train"], status_code=202)
    def train(request: TrainRequest) -> dict[str, Any]:
        """Start training in the background; 409 while another job runs. Follow it with
        ``GET /api/train/events``."""
        datasets = available_datasets(data_dir)
        if request.dataset not in datasets:
            raise HTTPException(
                422,
                f"data set {request.dataset!r} is not available here; choose one of "
                f"{', '.join(datasets)}",
            )
        try:
            trainer.start(JobConfig(**request.model_dump()))
        except TrainingBusyError as err:
            raise HTTPException(409, str(err)) from None
        return trainer.status()

    @app.post("/api/train/stop", tags=["train"])
    def train_stop() -> dict[str, Any]:
        """Stop the running job after its current step; 409 when none runs."""
        if not trainer.stop():
            raise HTTPException(409, "no training job is running")
        return trainer.status()

    @app.get("/api/train/events", tags=["train"])
    async def train_events(request: Request, after: int = 0) -> Response:
        """Server-Sent Events of the current job: start, progress, filters, epoch, and a final
        done or error. Each event's id lets a reconnecting client resume (Last-Event-ID). The
        stream ends after the final event; 204 when there is nothing (more) to send."""
        last = request.headers.get("last-event-id", "")
        after = max(after, int(last)) if last.isdigit() else after
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
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(err)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        detail = err.detail if isinstance(err.detail, str) else json.dumps(err.detail)
        return JSONResponse({"detail": detail}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "internal error in the lab; the server log has the details"},
            status_code=500,
        )
