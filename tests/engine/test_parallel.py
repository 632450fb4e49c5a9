"""Training and inference split over threads: the same sums as one thread, reproducibly."""

from __future__ import annotations

import copy
import itertools
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import cnnlab as cl
from cnnlab.engine import parallel
from cnnlab.engine.errors import NonFiniteError
from cnnlab.engine.parallel import MIN_ROWS, DataParallel, split_rows

F64 = np.float64


@pytest.fixture
def threads():
    """Set the engine's thread count for one test, and put the old setting back after it."""
    previous = parallel.set_threads(None)
    yield parallel.set_threads
    parallel.set_threads(previous)


def batch(rng: np.random.Generator, n: int, dtype=F64) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)


def grads(model: cl.Sequential) -> dict[str, np.ndarray]:
    return {name: g.copy() for name, _, g in model.named_parameters()}


def buffers(model: cl.Sequential) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_arrays().items() if ".buffers." in k}


# -- the split -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 16, 31, 32, 33, 64, 127, 128, 1000])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_split_rows_covers_the_batch_in_even_contiguous_shards(n, threads) -> None:
    bounds = split_rows(n, threads)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert len(bounds) == max(1, min(threads, n // MIN_ROWS))
    assert max(sizes) - min(sizes) <= 1
    assert len(bounds) == 1 or min(sizes) >= MIN_ROWS


# -- the same gradients as one thread --------------------------------------------------------------


@pytest.mark.parametrize("preset", ["fast", "simple", "lenet5", "default"])
@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.slow
def test_data_parallel_gives_the_whole_batch_gradients(preset, count, rng) -> None:
    """Loss, parameter gradients, input gradient and batch-norm running statistics of a batch
    split over threads equal those of the whole batch (float64: to rounding). The presets
    cover batch norm (statistics over all shards) and dropout (one mask, split)."""
    whole, split = cl.build(preset, seed=1, dtype=F64), cl.build(preset, seed=1, dtype=F64)
    x, y = batch(rng, 70)
    loss_fn = cl.CrossEntropyLoss(label_smoothing=0.1)
    loss = loss_fn.forward(whole.forward(x), y)
    dx = whole.backward(loss_fn.backward())
    with DataParallel(split, count) as net:
        loss_split = loss_fn.forward(net.forward(x), y)
        dx_split = net.backward(loss_fn.backward())
        assert len(net.bounds) == count
    assert loss_split == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(dx_split, dx, rtol=1e-9, atol=1e-15)
    expected, got = grads(whole), grads(split)
    for name, g in expected.items():
        scale = np.abs(g).max()
        np.testing.assert_allclose(
            got[name], g, rtol=0, atol=1e-12 * max(scale, 1e-3), err_msg=name
        )
    for name, b in buffers(whole).items():
        np.testing.assert_allclose(buffers(split)[name], b, rtol=1e-13, err_msg=name)


def test_data_parallel_runs_a_small_batch_on_the_model_itself(rng) -> None:
    model = cl.build("fast", seed=1, dtype=F64)
    x, y = batch(rng, 2 * MIN_ROWS - 1)
    loss_fn = cl.CrossEntropyLoss()
    with DataParallel(model, 2) as net:
        loss_fn.forward(net.forward(x), y)
        net.backward(loss_fn.backward(), input_grad=False)
        assert len(net.bounds) == 1
    reference = cl.build("fast", seed=1, dtype=F64)
    loss_fn.forward(reference.forward(x), y)
    reference.backward(loss_fn.backward(), input_grad=False)
    for name, g in grads(reference).items():
        np.testing.assert_array_equal(grads(model)[name], g, err_msg=name)


@pytest.mark.slow
def test_data_parallel_matches_torch_with_batch_norm(rng) -> None:
    """The parity suite's check, on a batch split over three threads: PyTorch's gradients of
    the whole batch (its batch norm sees all 60 rows)."""
    torch = pytest.importorskip("torch")
    from cnnlab.export.pytorch import to_torch

    model = cl.build("fast", seed=2, dtype=F64)
    net = to_torch(model)
    x, y = batch(rng, 60)
    loss_fn = cl.CrossEntropyLoss()
    with DataParallel(model, 3) as split:
        loss = loss_fn.forward(split.forward(x), y)
        split.backward(loss_fn.backward(), input_grad=False)
    ref = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-10)
    theirs = [p.grad.numpy() for p in net.parameters()]
    for (name, _, g), t in zip(model.named_parameters(), theirs, strict=True):
        scale = max(np.abs(t).max(), 1e-3)
        np.testing.assert_allclose(g, t, rtol=0, atol=1e-9 * scale, err_msg=name)


# -- fit: reproducible, and the same as one thread up to rounding ----------------------------------


def small_run(
    set_threads, count: int, dtype=np.float32, callbacks=(), model=None, **kw
) -> tuple[cl.Sequential, cl.TrainState]:
    """Two epochs of ``fast`` (batch norm) with a dropout layer added, on ``count`` threads."""
    set_threads(count)
    rng = np.random.default_rng(7)
    x, y = rng.random((200, 1, 28, 28)).astype(dtype), rng.integers(0, 10, 200)
    if model is None:
        model = cl.build("fast", seed=3, dtype=dtype)
        model.layers.insert(-1, cl.Dropout(0.3, rng=4, dtype=dtype))  # a mask to split, too
    kw.setdefault("optimizer", cl.Adam(model.parameters(), 3e-3))
    state = cl.fit(
        model, cl.CrossEntropyLoss(), kw.pop("optimizer"), x, y, epochs=2, batch_size=64,
        seed=5, validation=(x[:100], y[:100]), callbacks=callbacks, **kw,
    )  # fmt: skip
    return model, state


def history(state: cl.TrainState) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "elapsed_s"} for entry in state.history]


@pytest.mark.parametrize("count", [2, 3])
def test_fit_same_seed_and_threads_gives_identical_weights(threads, count) -> None:
    a, state_a = small_run(threads, count)
    b, state_b = small_run(threads, count)
    assert history(state_a) == history(state_b)
    for key, value in a.state_arrays().items():
        np.testing.assert_array_equal(b.state_arrays()[key], value, err_msg=key)


def test_fit_on_two_threads_follows_one_thread_to_rounding(threads) -> None:
    """Another thread count adds the same numbers in another order: float64 SGD stays within
    rounding of one thread. (Adam in float32 amplifies the difference: it takes a full step on
    a gradient that is pure rounding noise, such as a conv bias before batch norm.)"""

    def run(count: int) -> tuple[cl.Sequential, cl.TrainState]:
        model = cl.build("fast", seed=3, dtype=F64)
        model.layers.insert(-1, cl.Dropout(0.3, rng=4, dtype=F64))
        optimizer = cl.SGD(model.parameters(), 0.05, momentum=0.9)
        return small_run(threads, count, F64, model=model, optimizer=optimizer)

    (one, state_one), (two, state_two) = run(1), run(2)
    for key, value in one.state_arrays().items():
        np.testing.assert_allclose(two.state_arrays()[key], value, rtol=1e-9, atol=1e-12)
    for a, b in zip(history(state_one), history(state_two), strict=True):
        assert b == pytest.approx(a, rel=1e-9)


def test_fit_resumed_on_threads_matches_uninterrupted(threads) -> None:
    class StopAt(cl.Callback):
        def on_batch_end(self, state, logs) -> None:
            state.stop = state.step == 3

    reference, _ = small_run(threads, 2)
    model = cl.build("fast", seed=3)
    model.layers.insert(-1, cl.Dropout(0.3, rng=4))
    optimizer = cl.Adam(model.parameters(), 3e-3)
    _, state = small_run(threads, 2, model=model, optimizer=optimizer, callbacks=[StopAt()])
    assert state.stop and state.step == 3
    small_run(threads, 2, model=model, optimizer=optimizer, state=state)
    for key, value in reference.state_arrays().items():
        np.testing.assert_array_equal(model.state_arrays()[key], value, err_msg=key)


def test_fit_with_a_hooked_layer_trains_on_the_model_itself(threads) -> None:
    """A hook put on a layer instance (as the gradient monitor does) sees every whole batch."""
    threads(2)
    model = cl.build("lenet5", seed=0)
    layer = model.layers[-1]
    seen = []

    def backward(grad_out):
        seen.append(len(grad_out))
        return type(layer).backward(layer, grad_out)

    layer.backward = backward
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 100)
    cl.fit(model, cl.CrossEntropyLoss(), cl.SGD(model.parameters(), 0.01), x, y, batch_size=64)
    assert seen == [64, 36]


# -- inference -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2 * MIN_ROWS, 301])
def test_predict_proba_on_threads_equals_one_thread(threads, n, rng) -> None:
    model = cl.build("fast", seed=0)
    model.train()
    x, _ = batch(rng, n, np.float32)
    threads(1)
    expected = model.predict_proba(x, batch_size=100)
    threads(3)
    got = model.predict_proba(x, batch_size=100)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert got.shape == (n, 10) and model.training  # the mode is put back


def test_one_model_predicting_from_many_threads_answers_each_its_own_input(rng) -> None:
    """The web lab's request threads share one model: no prediction may read another's
    scratch (before, 20 of 1,600 concurrent answers here were another input's)."""
    model = cl.build("lenet5", seed=0).eval()
    xs = rng.random((32, 1, 1, 28, 28)).astype(np.float32)
    expected = [model.predict_proba(x) for x in xs]
    wrong = []

    def predict(k: int) -> None:
        for r in range(100):
            i = (7 * k + r) % len(xs)
            if not np.array_equal(model.predict_proba(xs[i]), expected[i]):
                wrong.append(i)

    pool = [threading.Thread(target=predict, args=(k,)) for k in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert wrong == []


def test_conv_scratch_is_each_threads_own_and_fresh_in_copies() -> None:
    conv = cl.Conv2D(1, 2, 3)
    mine = conv._buffer("cols", (4, 9), np.float32)
    theirs = []
    t = threading.Thread(target=lambda: theirs.append(conv._buffer("cols", (4, 9), np.float32)))
    t.start()
    t.join()
    assert conv._buffer("cols", (4, 9), np.float32) is not mine  # a view of the same array
    assert np.shares_memory(conv._buffer("cols", (4, 9), np.float32), mine)
    assert not np.shares_memory(theirs[0], mine)
    for twin in (conv.replica(), copy.deepcopy(conv)):
        assert not np.shares_memory(twin._buffer("cols", (4, 9), np.float32), mine)


# -- failures stop every shard ---------------------------------------------------------------------


def test_a_failing_shard_raises_its_error_and_frees_the_others(rng) -> None:
    """NaN in the second shard's rows: that shard refuses its input while the first waits at
    batch norm for it; the first is released and the one-line error comes out."""
    model = cl.build("fast", seed=0, dtype=F64)
    x, _ = batch(rng, 64)
    x[40] = np.nan
    with DataParallel(model, 2) as net:
        with pytest.raises(NonFiniteError):
            net.forward(x)
        x[40] = 0.5  # and the next batch runs normally
        assert net.forward(x).shape == (64, 10)
    assert threading.active_count() < 50  # the workers were shut down, not leaked


def test_every_shard_runs_under_the_callers_errstate(rng) -> None:
    """Overflow on every shard: ignored where the caller ignores it (no warning from a worker
    thread), raised where the caller raises."""
    import warnings

    model = cl.build("fast", seed=0)
    x, _ = batch(rng, 64)
    x = (x.astype(np.float32) + 1) * 1e38  # the first conv overflows on every shard's rows
    with DataParallel(model, 2) as net, warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore", invalid="ignore"):
            net.forward(x)
        with np.errstate(over="raise", invalid="raise"), pytest.raises(FloatingPointError):
            net.forward(x)


# -- settings --------------------------------------------------------------------------------------


def test_set_threads_checks_and_returns_the_old_setting(threads) -> None:
    assert threads(3) is None
    assert parallel.get_threads() == 3
    assert threads(None) == 3
    assert parallel.get_threads() == parallel.available_cores()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(cl.CnnlabError, match="set_threads: threads must be an integer >= 1"):
            threads(bad)


@pytest.mark.parametrize(
    "text,cores",
    [("max 100000\n", 1 << 30), ("200000 100000\n", 2), ("150000 100000", 2), ("50000 100000", 1)],
)
def test_cgroup_quota_caps_the_cores(tmp_path, text, cores) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert parallel._cgroup_quota(path) == cores
    assert parallel._cgroup_quota(tmp_path / "missing") == 1 << 30


def blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_one_blas_thread_nests_and_restores() -> None:
    with threadpool_limits(2, user_api="blas"):
        assert blas_threads() and set(blas_threads()) == {2}
        with parallel.one_blas_thread():
            assert set(blas_threads()) == {1}
            with parallel.one_blas_thread():
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}  # the outer user still holds it
        assert set(blas_threads()) == {2}


def test_one_blas_thread_limits_the_blas_whichever_thread_enters_it() -> None:
    # threadpoolctl lets one thread at a time control a pthreads OpenBLAS: the web lab's
    # training thread, entering after the command line's main thread, must still get one.
    seen: list[set[int]] = []

    def other_thread() -> None:
        with parallel.one_blas_thread():
            seen.append(set(blas_threads()))
        seen.append(set(blas_threads()))

    with threadpool_limits(2, user_api="blas"):
        with parallel.one_blas_thread():
            seen.append(set(blas_threads()))
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        with parallel.one_blas_thread():  # and the main thread again after it
            seen.append(set(blas_threads()))
        seen.append(set(blas_threads()))
    assert seen == [{1}, {1}, {2}, {1}, {2}]
