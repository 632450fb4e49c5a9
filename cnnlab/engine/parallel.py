"""Every core: training and inference split over the batch, one thread per core.

``fit`` and ``predict_proba`` cut each batch into as many contiguous slices ("shards") as there
are threads. Each shard runs forward and backward on its own *replica* of the model: a copy
whose layers share the model's parameter and buffer arrays but keep their own gradients,
caches and scratch memory. The BLAS runs on one thread inside each worker, so the workers never
wait for each other inside a matrix product; NumPy's heavy operations release the GIL, so the
shards really run side by side. (Splitting each operation instead was measured and rejected:
see ``benchmarks/README.md``.)

Results are reproducible: the loss is computed on the whole batch, the shards' parameter
gradients are added in shard order, batch normalisation adds the shards' partial sums in shard
order (so its statistics are those of the whole batch) and dropout draws one mask for the whole
batch and gives each shard its rows. The same seed and thread count give bit-identical weights;
another thread count adds the same numbers in another order, which changes the last bits.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl
from threadpoolctl import ThreadpoolController

from cnnlab.engine import validate
from cnnlab.engine.backend import xp_of

# A shard smaller than this is not worth a thread: the per-layer Python overhead of a second
# pass would outweigh what the split saves (lenet5, 16 rows: 1.1 ms forward + backward, most of
# it overhead).
MIN_ROWS = 16

_threads: int | None = None  # set_threads(); None: every core the process may use


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, _cgroup_quota(Path("/sys/fs/cgroup/cpu.max"))))


def _cgroup_quota(path: Path) -> int:
    """Whole CPUs allowed by a cgroup v2 ``cpu.max`` file ("quota period"), or a huge number."""
    try:
        quota, period = path.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no such file, or "max": no quota
        return 1 << 30


def set_threads(threads: int | None) -> int | None:
    """Run cnnlab's training and inference on ``threads`` cores; None: all it may use.

    Returns the setting it replaces, so that a caller can put it back.
    """
    global _threads
    if threads is not None:
        threads = validate.integer("set_threads", "threads", threads, 1)
    previous, _threads = _threads, threads
    return previous


def get_threads() -> int:
    """How many threads ``fit`` and ``predict_proba`` use (see ``set_threads``)."""
    return _threads or available_cores()


# -- the BLAS on one thread while cnnlab works ------------------------------------------------

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit: Any = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the BLAS on one thread inside this context (nested and concurrent uses are counted).

    cnnlab's products are small (one per sample), and a multi-threaded BLAS splits and
    re-joins its threads on each, spinning while it waits: beside one other busy process an
    epoch took 4-5× as long. The engine's own threads use the cores instead.
    """
    global _blas_users, _blas_limit
    with _blas_lock:
        if _blas_users == 0:
            # Found afresh each time (about 1 ms): a BLAS loaded since (SciPy's, say) is
            # limited too.
            blas = ThreadpoolController().select(user_api="blas")
            _release_blas_control()
            _blas_limit = blas.limit(limits=1)
            _release_blas_control()
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _release_blas_control()
                _blas_limit.restore_original_limits()
                _release_blas_control()


def _release_blas_control() -> None:
    """Let the next thread that limits OpenBLAS do so.

    threadpoolctl (3.8 on) lets only one thread at a time change a pthreads OpenBLAS's thread
    count: the first thread to set it keeps control until it releases it, and a limit set from
    any other thread is silently ignored. ``one_blas_thread`` is entered and left from any
    thread (the command line's main thread, the web lab's training thread, the last of several
    users), so without this the BLAS of a run trained on another thread after one on the main
    thread kept all its threads, and the run's weights changed in their last bits. cnnlab's own
    changes are serialised by ``_blas_lock``, so nothing of cnnlab fights over the control.
    """
    openblas = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(openblas, "clear_controlling_thread", None)
    if clear is not None:  # threadpoolctl before 3.8 has no controlling thread
        clear(force=True)


# -- shards and the threads that run them ------------------------------------------------------


def split_rows(n: int, threads: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each shard: at most ``threads`` contiguous slices of ``n`` rows,
    none below ``MIN_ROWS`` (one slice when ``n`` is small), sizes differing by at most one."""
    count = max(1, min(threads, n // MIN_ROWS))
    bounds = [n * i // count for i in range(count + 1)]
    return list(itertools.pairwise(bounds))


class _Group:
    """What the shards of one step share: a barrier for sums over the whole batch, and values
    made once per step (dropout masks)."""

    def __init__(self, shards: int) -> None:
        self.partials: list[Any] = [None] * shards
        self.total: Any = None
        self.barrier = threading.Barrier(shards, action=self._add)
        self.made: dict[int, Any] = {}
        self.lock = threading.Lock()

    def _add(self) -> None:
        # Runs once, in the last shard to arrive, before any is released: shard order, always.
        total = self.partials[0].copy()
        for part in self.partials[1:]:
            total += part
        self.total = total


class Shard:
    """One replica's place in the whole batch: rows ``start`` to ``start + n`` of ``rows``.

    Layers whose result depends on the whole batch (``BatchNorm``, ``Dropout``) find it in
    their ``shard`` attribute; it is None when a layer sees the whole batch itself.
    """

    def __init__(self, group: _Group, index: int, start: int, rows: int) -> None:
        self.group, self.index, self.start, self.rows = group, index, start, rows

    def sum(self, partial: Any) -> Any:
        """The sum of every shard's ``partial`` (each shard passes its own), added in shard
        order, so each shard gets the same bits whichever finishes first."""
        self.group.partials[self.index] = partial
        self.group.barrier.wait()
        return self.group.total

    def once(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, called by the first shard to ask in this step; the others get its value."""
        with self.group.lock:
            if id(key) not in self.group.made:
                self.group.made[id(key)] = make()
            return self.group.made[id(key)]


class _Workers:
    """``count`` threads that each run one job at a time, handed over through a queue."""

    def __init__(self, count: int) -> None:
        self.inboxes = [queue.SimpleQueue() for _ in range(count)]
        self.outboxes = [queue.SimpleQueue() for _ in range(count)]
        self.threads = [
            threading.Thread(target=self._serve, args=(i,), daemon=True, name=f"cnnlab-{i + 1}")
            for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _serve(self, i: int) -> None:
        while (job := self.inboxes[i].get()) is not None:
            self.outboxes[i].put(job())  # a failure comes back as the exception (see run)

    def run(self, jobs: list[Callable[[], Any]], abort: Callable[[], None]) -> list[Any]:
        """Run ``jobs[0]`` here and the others on the threads; their results in order.

        Every job runs under the caller's ``np.errstate`` (a thread starts with NumPy's default:
        a run the caller watches for overflow itself would print warnings from the others).
        A failing job calls ``abort``, which releases the others from any barrier they wait
        at; the first failure (in job order) is raised once every job has stopped.
        """

        errors = np.geterr()  # the caller's handling of overflow and NaN, in every thread

        def guarded(job: Callable[[], Any]) -> Any:
            try:
                with np.errstate(**errors):
                    return job()
            except BaseException as err:
                abort()
                return err

        for inbox, job in zip(self.inboxes, jobs[1:], strict=False):
            inbox.put(lambda job=job: guarded(job))
        results = [guarded(jobs[0])]
        results += [outbox.get() for outbox in self.outboxes[: len(jobs) - 1]]
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            primary = [f for f in failures if not isinstance(f, threading.BrokenBarrierError)]
            raise (primary or failures)[0]
        return results

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for thread in self.threads:
            thread.join()


def _replicate(model: Any) -> Any:
    """A copy of ``model`` for another thread: same parameters and buffers, own gradients."""
    layers = [layer.replica() for layer in model.layers]
    return type(model)(layers, input_shape=model.input_shape, meta=model.meta)


def _splittable(model: Any, x: Any) -> bool:
    """Whether ``x`` is a batch worth the engine's threads: NumPy (not CuPy), rows to split,
    and no layer whose ``forward`` or ``backward`` was replaced on the instance (a hook such as
    ``cnnlab.runs.monitor``'s, which expects to see the whole batch on that very layer)."""
    hooked = any(name in vars(layer) for layer in model.layers for name in ("forward", "backward"))
    return isinstance(x, np.ndarray) and len(x) >= 2 * MIN_ROWS and not hooked


# -- training ------------------------------------------------------------------------------------


class DataParallel:
    """``forward`` and ``backward`` of ``model``, each batch split over ``threads`` shards.

    The same calls as ``Sequential``: ``forward(x)`` returns the whole batch's output,
    ``backward(grad)`` leaves the whole batch's parameter gradients in the model's ``grads``.
    A batch too small to split runs on the model itself. Use it as a context manager: it owns
    ``threads − 1`` worker threads.
    """

    def __init__(self, model: Any, threads: int) -> None:
        self.model = model
        self.replicas = [_replicate(model) for _ in range(threads)]
        self.workers = _Workers(threads - 1)
        self.group = _Group(1)
        self.bounds: list[tuple[int, int]] = []

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.workers.close()

    def _run(self, job: Callable[[Any, Any], Any], parts: list[Any]) -> list[Any]:
        jobs = [
            (lambda r=replica, p=part: job(r, p))
            for replica, part in zip(self.replicas, parts, strict=False)
        ]
        return self.workers.run(jobs, self.group.barrier.abort)

    def forward(self, x: Any) -> Any:
        """The model's output for ``x`` ``(N, ...)``: each shard's rows through its replica."""
        self.bounds = split_rows(len(x), len(self.replicas))
        if len(self.bounds) == 1:
            return self.model.forward(x)
        n = len(x)
        self.group = _Group(len(self.bounds))
        for index, (replica, (start, _)) in enumerate(
            zip(self.replicas, self.bounds, strict=False)
        ):
            shard = Shard(self.group, index, start, n)
            for twin, layer in zip(replica.layers, self.model.layers, strict=True):
                twin.training, twin.shard = layer.training, shard
        outputs = self._run(lambda r, b: r.forward(x[b[0] : b[1]]), self.bounds)
        return np.concatenate(outputs)

    def backward(self, grad_out: Any, input_grad: bool = True) -> Any:
        """Back-propagate dL/doutput of the last ``forward``; the model's ``grads`` get the sum
        of the shards' gradients, added in shard order. Returns dL/dinput (None without
        ``input_grad``)."""
        if len(self.bounds) == 1:
            return self.model.backward(grad_out, input_grad)
        inputs = self._run(lambda r, b: r.backward(grad_out[b[0] : b[1]], input_grad), self.bounds)
        used = self.replicas[: len(self.bounds)]
        for i, layer in enumerate(self.model.layers):
            for key, total in layer.grads.items():
                np.add(used[0].layers[i].grads[key], used[1].layers[i].grads[key], out=total)
                for replica in used[2:]:
                    total += replica.layers[i].grads[key]
        return np.concatenate(inputs) if input_grad else None


@contextlib.contextmanager
def data_parallel(model: Any, x: Any) -> Iterator[Any]:
    """What ``fit`` trains through: a ``DataParallel`` when ``x`` (the training inputs) is worth
    splitting, else the model itself; either way with the BLAS on one thread."""
    with one_blas_thread():
        if get_threads() == 1 or not _splittable(model, x):
            yield model
            return
        with DataParallel(model, get_threads()) as net:
            yield net


# -- inference -----------------------------------------------------------------------------------


def forward_in_chunks(model: Any, x: Any, batch_size: int) -> Any:
    """``model.forward`` over ``x`` in chunks of at most ``batch_size`` rows, split over the
    threads when ``x`` is a large NumPy batch; the concatenated output, or None for no rows."""
    if not _splittable(model, x):  # one digit: no thread to start, no BLAS setting to change
        return _chunks(model, x, batch_size)
    bounds = split_rows(len(x), get_threads())
    with one_blas_thread():
        if len(bounds) == 1:
            return _chunks(model, x, batch_size)
        replicas = [model] + [_replicate(model) for _ in bounds[1:]]
        for replica in replicas[1:]:
            for twin, layer in zip(replica.layers, model.layers, strict=True):
                twin.training = layer.training
        workers = _Workers(len(bounds) - 1)
        try:
            jobs = [
                (lambda r=replica, b=b: _chunks(r, x[b[0] : b[1]], batch_size))
                for replica, b in zip(replicas, bounds, strict=True)
            ]
            return np.concatenate(workers.run(jobs, lambda: None))
        finally:
            workers.close()


def _chunks(model: Any, x: Any, batch_size: int) -> Any:
    if 0 < len(x) <= batch_size:
        return model.forward(x)
    parts = [model.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return xp_of(x).concatenate(parts) if parts else None
