"""The models the web lab knows (the run folders under ``runs_dir``, plus one given on the
command line) and the active one."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.folder import (
    METRICS_FILE,
    list_runs,
    model_name,
    model_path,
    newest_model,
)
from cnnlab.runs.inputs import reads_digits


class UnknownModelError(CnnlabError):
    """No model of that name."""

    http_status = 404


class ModelRegistry:
    """Swapping the active model is atomic under a lock; a prediction takes the current
    (name, model) pair once and keeps using it."""

    def __init__(self, runs_dir: Path, model_file: str | None) -> None:
        self.runs_dir = runs_dir
        self._lock = threading.Lock()
        self._active: tuple[str, Sequential] | None = None
        self._extra: dict[str, Path] = {}  # name → file, for a model outside runs_dir
        self._meta_cache: dict[Path, tuple[int, dict[str, Any]]] = {}
        self.why = "no run yet: train one in the Train tab"  # how the first model was chosen
        if model_file is not None:
            path = model_path(model_file)
            model = Sequential.load(path)
            name = model_name(path)
            if name not in list_runs(self.runs_dir):
                self._extra[name] = path
            self._active = (name, model.eval())
            self.why = "given with --model"
        else:
            start = starting_model(self.runs_dir)
            if start is not None:
                name, model, self.why = start
                self._active = (name, model)

    def files(self) -> dict[str, Path]:
        return {**list_runs(self.runs_dir), **self._extra}

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
            raise UnknownModelError(f"no model named {name!r}; GET /api/models lists them")
        try:
            self.activate(name, files[name])
        except CnnlabError as err:
            raise CnnlabError(f"model {name!r} cannot be used: {err}") from None

    def _describe(self, name: str, path: Path, active: str | None) -> dict[str, Any]:
        stat = path.stat()
        cached = self._meta_cache.get(path)
        if cached is None or cached[0] != stat.st_mtime_ns:
            cached = (stat.st_mtime_ns, read_meta(path))
            self._meta_cache[path] = cached
        info = cached[1]
        return {
            "name": name,
            "created": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
            "accuracy": info.get("accuracy"),
            "preset": info.get("preset"),
            "dataset": Path(str(info["dataset"])).name if info.get("dataset") else None,
            "source": "command line" if name in self._extra else "runs",
            "active": name == active,
        }

    def listing(self) -> dict[str, Any]:
        current = self.active()
        active = current[0] if current else None
        models = [self._describe(n, p, active) for n, p in self.files().items()]
        models.sort(key=lambda m: m["created"], reverse=True)
        return {"active": active, "models": models}


def starting_model(runs_dir: Path) -> tuple[str, Sequential, str] | None:
    """The model the lab starts with and why: the newest run whose model reads digits (the Draw
    tab, the page's first), else the newest run; None when there is no run."""
    found = newest_model(runs_dir, reads_digits, fallback=True)
    if found is None:
        return None
    path, model = found
    if reads_digits(model):
        return model_name(path), model.eval(), "the newest run that reads digits"
    return model_name(path), model.eval(), "the newest run; none reads digits"


def read_meta(path: Path) -> dict[str, Any]:
    """Preset, data set and test accuracy of the model file ``path`` (read by the engine's
    checked loader); the accuracy falls back to the last epoch of a metrics file beside it."""
    info: dict[str, Any] = {}
    try:
        meta = Sequential.load(path).meta
        info.update({k: meta.get(k) for k in ("preset", "dataset", "test_accuracy")})
    except CnnlabError:
        info["error"] = "unreadable model file"
    accuracy = info.pop("test_accuracy", None)
    if not isinstance(accuracy, int | float):
        try:
            history = json.loads((path.parent / METRICS_FILE).read_text(encoding="utf-8"))
            accuracy = history[-1].get("test_accuracy")
        except (OSError, ValueError, AttributeError, TypeError, KeyError, IndexError):
            accuracy = None
    info["accuracy"] = float(accuracy) if isinstance(accuracy, int | float) else None
    return info
