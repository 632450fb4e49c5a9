"""Run folders: the one place that knows their file names, how they are named and created,
how they are listed, and how a "run folder or model file" argument is resolved.

A run folder holds ``model.npz`` (the model as training left it), ``config.json`` (the
``RunConfig`` plus the architecture and data sizes), ``metrics.json`` (one entry per epoch) and
``checkpoint.npz`` (what ``--resume`` continues from). Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write_text

if TYPE_CHECKING:
    from cnnlab.engine.sequential import Sequential

MODEL_FILE = "model.npz"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.npz"
GRADIENT_FLOW_FILE = "gradient_flow.json"
LOCK_FILE = ".lock"  # holds the PID of the process writing the run
DEFAULT_RUNS_DIR = "runs"


class RunFolder:
    """A run folder at ``path``; ``create`` and ``new`` make one, the constructor only names it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    def holds_run(self) -> bool:
        """Whether a run (finished or resumable) was already written here."""
        return self.model_file.exists() or self.checkpoint_file.exists()

    def refuse_if_used(self) -> None:
        """``CnnlabError`` when a run was already written here (a new run would mix with it)."""
        if self.holds_run():
            raise CnnlabError(
                f"{self.path}: already holds a run; choose another --out, or continue it with "
                "--resume"
            )

    def remove_if_empty(self) -> None:
        """Remove the folder when it holds nothing but its lock file (a run that failed before
        writing anything); call it while holding :meth:`lock`."""
        if {entry.name for entry in self.path.iterdir()} <= {LOCK_FILE}:
            with contextlib.suppress(OSError):
                (self.path / LOCK_FILE).unlink(missing_ok=True)
                self.path.rmdir()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Be the one process writing this run: an exclusive ``flock`` on ``.lock`` (which
        holds our PID), refused with one line while another process holds it. The kernel
        drops the lock when its process ends, however it ends, so no lock goes stale. Once it
        is held, temporary files a killed save left behind are removed."""
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CnnlabError(
                f"{self.path}: cannot write a run here ({err.strerror or err}); choose a "
                "writable folder"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 20, 0).decode(errors="replace").strip() or "?"
                raise CnnlabError(
                    f"{self.path}: another training (process {holder}) is writing this run "
                    "folder; wait for it to end or choose another --out"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            for stale in self.path.glob(".*.tmp"):  # fileio.atomic_write's, from a killed save
                with contextlib.suppress(OSError):
                    stale.unlink()
            yield
        finally:
            os.close(fd)

    @classmethod
    def new(cls, runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR) -> RunFolder:
        """A fresh, empty ``runs_dir/<YYYYmmdd-HHMMSS>[-n]`` folder (created here)."""
        runs_dir = Path(runs_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            folder = runs_dir / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                folder.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            except OSError as err:
                raise CnnlabError(
                    f"cannot create a run folder in {runs_dir}: {err.strerror or err}; "
                    "choose a writable runs folder"
                ) from None
            return cls(folder)
        raise CnnlabError(f"cannot find a free run folder name in {runs_dir}")

    @classmethod
    def create(
        cls, out: str | os.PathLike | None, runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR
    ) -> RunFolder:
        """The folder ``out`` (created if missing, refused if it already holds a run), or a
        ``new`` one under ``runs_dir`` when ``out`` is None."""
        if out is None:
            return cls.new(runs_dir)
        folder = cls(out)
        folder.refuse_if_used()
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CnnlabError(
                f"{folder.path}: cannot write a run folder here ({err.strerror or err}); "
                "choose another --out"
            ) from None
        return folder

    @classmethod
    def of_checkpoint(cls, path: str | os.PathLike) -> RunFolder:
        """The run folder of ``--resume PATH``: the folder itself or its checkpoint file."""
        path = Path(path)
        return cls(path if path.is_dir() else path.parent)

    def write_json(self, file: Path, value: Any) -> None:
        atomic_write_text(file, json.dumps(value, indent=2) + "\n")

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        self.write_json(self.metrics_file, history)


def model_path(path: str | os.PathLike) -> Path:
    """A model file from a path that names the file itself or a run folder holding one."""
    path = Path(path)
    if path.is_dir():
        candidate = RunFolder(path).model_file
        if not candidate.exists():
            raise CnnlabError(
                f"{path}: this folder has no {MODEL_FILE}; is it a cnnlab run folder?"
            )
        return candidate
    return path


def model_name(path: str | os.PathLike) -> str:
    """A model's public name: its run folder's name for a run's model file, else the stem."""
    path = Path(path).resolve()
    return path.parent.name if path.name == MODEL_FILE else path.stem


def list_runs(runs_dir: str | os.PathLike) -> dict[str, Path]:
    """The finished (or stopped) runs under ``runs_dir``: run name → model file."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return {}
    return {f.parent.name: f for f in runs_dir.glob(f"*/{MODEL_FILE}") if f.is_file()}


def runs_newest_first(runs_dir: str | os.PathLike) -> list[Path]:
    """The model files of the runs under ``runs_dir``, the one written last first."""
    return sorted(list_runs(runs_dir).values(), key=lambda f: f.stat().st_mtime, reverse=True)


def newest_run(runs_dir: str | os.PathLike) -> Path | None:
    """The model file of the run under ``runs_dir`` written last, or None when there is none."""
    return next(iter(runs_newest_first(runs_dir)), None)


def newest_model(
    runs_dir: str | os.PathLike, fits: Callable[[Sequential], bool], fallback: bool = False
) -> tuple[Path, Sequential] | None:
    """The model file and model of the newest run under ``runs_dir`` whose model ``fits``; with
    ``fallback``, the newest readable run's when none fits; None when there is none. Runs whose
    model file cannot be loaded are passed over."""
    from cnnlab.engine.sequential import Sequential

    newest = None
    for path in runs_newest_first(runs_dir):
        try:
            model = Sequential.load(path)
        except CnnlabError:
            continue
        if fits(model):
            return path, model
        newest = newest or (path, model)
    return newest if fallback else None
