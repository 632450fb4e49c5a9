"""cnnlab against PyTorch on the same CPU: epoch time, thread scaling, time to 99%, latency.

    python benchmarks/train_speed.py                     # everything, writes a markdown table
    python benchmarks/train_speed.py --only epoch --repeats 1

Every measurement runs in a fresh process. The headline runs both engines at their defaults
(as installed, no thread settings: cnnlab on every core it may use, PyTorch on its own
default); the scaling runs give both the same thread count (``cnnlab.set_threads`` and
``torch.set_num_threads``, with OPENBLAS/OMP/MKL_NUM_THREADS to match). The two engines' runs
alternate (cnnlab, PyTorch, cnnlab, PyTorch, …) so that a change in the machine's load hits
both; the figures are medians and the ratio is cnnlab / PyTorch. PyTorch trains the identical
network (``cnnlab.export.pytorch.to_torch``: same layers, same initial weights) on the same
batches. The child processes run as on a user's machine: without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE, which some hosts set to pin OpenBLAS to an older, slower kernel; each reports
the BLAS kernel it ran. The epoch runs take cnnlab twice: as installed (with Numba, its compiled
kernels: ``cnnlab.engine.compiled``) and on its NumPy path alone (``cnnlab.set_compiled(False)``),
in the same interleaved rounds; the compiled kernels are loaded from Numba's disk cache before
the clock starts, and each child reports how long that took.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Benchmark the checkout this file sits in, whichever cnnlab happens to be installed.
sys.path.insert(0, str(ROOT))
from user_machine import HOST_BLAS_PINS, child_env  # noqa: E402  (beside this file)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
PRESETS = ("simple", "lenet5", "default", "fast")
# The epoch measurement's engines: cnnlab as installed, cnnlab on its NumPy path, PyTorch.
EPOCH_ENGINES = ("cnnlab", "cnnlab-numpy", "torch")
BATCH = 128
LR = 1e-3


# -- workers: each runs in its own process ------------------------------------------------------


def _load_mnist(data_dir: str):
    import numpy as np

    from cnnlab import data
    from cnnlab.engine.train import to_input

    images, labels = data.load("mnist", "train", data_dir)
    test_images, test_labels = data.load("mnist", "test", data_dir)
    return (
        to_input(images),
        labels.astype(np.int64),
        to_input(test_images),
        test_labels.astype(np.int64),
    )


def _cnnlab_threads(threads: int | None) -> None:
    import cnnlab as cl

    if threads:
        cl.set_threads(threads)


def _torch_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def _backend(engine: str) -> str:
    """The threads, the BLAS kernel and (cnnlab) the compiled kernels the engine ran with."""
    if engine.startswith("cnnlab"):
        from threadpoolctl import threadpool_info

        import cnnlab as cl
        from cnnlab.engine import compiled

        blas = [
            f"{i['internal_api']} {i['version']} {i.get('architecture', '?')} kernel"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        ]
        kernels = (
            f"compiled kernels (numba {_version('numba')})" if compiled.enabled() else "NumPy only"
        )
        return f"{_show(cl.get_threads())}, {', '.join(blas)}, one BLAS thread in each, {kernels}"
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return f"{_show(torch.get_num_threads())}, torch {torch.__version__} {capability} kernels"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _load_kernels() -> float:
    """Load the compiled kernels (from Numba's disk cache; compiling them if it is cold), as the
    first training step would: the seconds it took, 0 on the NumPy path."""
    import numpy as np

    from cnnlab.engine import compiled

    if not compiled.enabled():
        return 0.0
    started = time.perf_counter()
    x = np.ones((2, 1, 2, 2), np.float32)
    out, winners = compiled.max_pool_2x2(x)
    compiled.max_pool_2x2_backward(out, winners, x.shape)
    compiled.relu_backward(compiled.relu(x), x)
    w = np.ones((1, 1, 2, 2), np.float32)
    y, cols, padded = compiled.conv2d(x, w, np.zeros(1, np.float32), 1, 1)
    compiled.conv2d_backward(y, cols, w, padded, 1, 1)
    return time.perf_counter() - started


def worker_epoch(
    engine: str, preset: str, data_dir: str, threads: int | None, max_steps: int
) -> dict:
    """One epoch of training (or ``max_steps`` steps), timed without imports and data loading."""
    import numpy as np

    import cnnlab as cl

    x, y, _, _ = _load_mnist(data_dir)
    if max_steps:
        x, y = x[: max_steps * BATCH], y[: max_steps * BATCH]
    model = cl.build(preset, seed=0)
    steps = -(-len(x) // BATCH)
    load_s = 0.0
    if engine.startswith("cnnlab"):
        _cnnlab_threads(threads)
        cl.set_compiled(engine == "cnnlab")
        load_s = _load_kernels()
        started, cpu_started = time.perf_counter(), time.process_time()
        cl.fit(
            model, cl.CrossEntropyLoss(), cl.Adam(model.parameters(), LR), x, y,
            epochs=1, batch_size=BATCH, seed=0,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    else:
        import torch

        from cnnlab.export.pytorch import to_torch

        _torch_threads(threads)
        net = to_torch(model)
        optimizer = torch.optim.Adam(net.parameters(), LR)
        loss_fn = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        started, cpu_started = time.perf_counter(), time.process_time()
        order = torch.from_numpy(np.random.default_rng([0, 0]).permutation(len(x)))
        for step in range(steps):
            index = order[step * BATCH : (step + 1) * BATCH]
            optimizer.zero_grad()
            loss = loss_fn(net(xt[index]), yt[index])
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return {
        "seconds": seconds, "cpu_seconds": cpu, "steps": steps, "backend": _backend(engine),
        "load_s": load_s,
    }  # fmt: skip


def worker_torch_recipe(recipe_name: str, data_dir: str, threads: int | None, out: str) -> dict:
    """PyTorch following a cnnlab recipe: same network, optimizer, loss, schedule, batches."""
    import numpy as np
    import torch

    import cnnlab as cl
    from cnnlab.export.pytorch import to_torch
    from cnnlab.runs.recipes import get_recipe

    started = time.perf_counter()
    _torch_threads(threads)
    recipe = get_recipe(recipe_name)
    x, y, xv, yv = _load_mnist(data_dir)
    epochs = recipe.epochs(len(x))
    net = to_torch(cl.build(recipe.model, seed=0))
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(
            net.parameters(), recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            net.parameters(), recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay
        )
    steps = -(-len(x) // recipe.batch_size)
    schedule = None
    if recipe.schedule == "onecycle":
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, recipe.lr, total_steps=epochs * steps, anneal_strategy="cos"
        )
    elif recipe.schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    xt, yt, xvt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xv)
    history = []
    fit_started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.from_numpy(np.random.default_rng([0, epoch]).permutation(len(x)))
        for step in range(steps):
            index = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            batch = xt[index]
            if recipe.augment:  # the same distortion as cnnlab's run (runs.build.make_augment)
                from cnnlab.data.augment import random_handwriting
                from cnnlab.runs.recipes import AUGMENT

                rng = np.random.default_rng([0, epoch, step])
                batch = torch.from_numpy(random_handwriting(batch.numpy(), rng, **AUGMENT))
            optimizer.zero_grad()
            loss_fn(net(batch), yt[index]).backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
        net.eval()
        with torch.no_grad():
            predicted = torch.cat(
                [net(xvt[i : i + 1000]).argmax(1) for i in range(0, len(xv), 1000)]
            )
        accuracy = float((predicted.numpy() == yv).mean())
        history.append(
            {"epoch": epoch + 1, "test_accuracy": accuracy,
             "elapsed_s": time.perf_counter() - fit_started}
        )  # fmt: skip
        # The same line as `cnnlab train` prints; the driver times the run by these lines.
        print(f"epoch {epoch + 1}/{epochs}  test acc {100 * accuracy:.2f}%", flush=True)
    Path(out, "metrics.json").write_text(json.dumps(history))
    return {"setup_s": fit_started - started}


def worker_latency(data_dir: str, threads: int | None) -> dict:
    """One preprocessed digit through the default model, p50/p99; and the whole test set on
    one thread and at the default (every core)."""
    import numpy as np

    import cnnlab as cl

    _, _, xv, _ = _load_mnist(data_dir)
    model = cl.build("default", seed=0).eval()
    one = xv[:1]
    times = []
    for i in range(2000):
        digit = xv[i % len(xv)][None]
        started = time.perf_counter()
        model.predict_proba(digit)
        times.append(time.perf_counter() - started)
    times = np.array(times[200:]) * 1000
    whole = {}
    for setting in (1, None):  # None: the default
        cl.set_threads(setting)
        model.predict(xv[:2000])  # warm: the threads' scratch memory
        started = time.perf_counter()
        model.predict(xv)
        whole["default" if setting is None else "1"] = time.perf_counter() - started
    assert model.predict_proba(one).shape == (1, 10)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "test_set_s": whole,
        "backend": _backend("cnnlab"),
    }


# -- the driver ------------------------------------------------------------------------------------

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _env(threads: int | None) -> dict[str, str]:
    """The children's environment: no host BLAS pins; thread variables only when ``threads``
    is set (None: each engine as installed)."""
    env = child_env(drop=THREAD_VARS)
    if threads:
        env.update(dict.fromkeys(THREAD_VARS, str(threads)))
    return env


def _show(threads: int | None) -> str:
    return "defaults" if threads is None else f"{threads} thread{'s' * (threads > 1)}"


def _run_worker(args: list[str], threads: int | None) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *args, "--threads", str(threads or 0)],
        capture_output=True, text=True, env=_env(threads), cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _epoch(engine: str, preset: str, threads: int | None, opts: argparse.Namespace) -> dict:
    return _run_worker(
        ["epoch", engine, preset, opts.data_dir, str(opts.max_steps)], threads
    )  # fmt: skip


def _settings(opts: argparse.Namespace) -> list[int | None]:
    """The thread settings of the epoch runs: the defaults (None) unless ``--no-defaults``, then
    each count of ``--scaling``."""
    return [None] * (not opts.no_defaults) + list(opts.scaling)


def _cell(value: float | None, unit: str = " s") -> str:
    return "–" if value is None else f"{value:.2f}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a / b:.2f}"


def measure_epochs(opts: argparse.Namespace) -> dict:
    """Epoch times at the defaults and at each thread count of ``--scaling``, interleaved."""
    settings = _settings(opts)
    results: dict = {"backend": {}}
    for preset in opts.presets:
        runs = {(engine, s): [] for engine in opts.engines for s in settings}
        cpu = {key: [] for key in runs}
        for _ in range(opts.repeats):
            for setting in settings:
                for engine in opts.engines:
                    out = _epoch(engine, preset, setting, opts)
                    runs[engine, setting].append(out["seconds"])
                    cpu[engine, setting].append(out["cpu_seconds"])
                    results["backend"][engine, setting] = out["backend"]
                    results.setdefault("load_s", []).extend([out["load_s"]] * bool(out["load_s"]))
                    print(
                        f"  epoch {preset:8s} {engine:12s} {_show(setting):10s} "
                        f"{out['seconds']:7.2f} s, CPU {out['cpu_seconds']:7.2f} s   "
                        f"({out['backend']})",
                        flush=True,
                    )
        results[preset] = {
            f"{engine}/{_show(s)}": statistics.median(times) for (engine, s), times in runs.items()
        }
        results[preset]["runs"] = {f"{e}/{_show(s)}": t for (e, s), t in runs.items()}
        results[preset]["cpu"] = {
            f"{e}/{_show(s)}": statistics.median(t) for (e, s), t in cpu.items()
        }  # CPU seconds of all the process's threads: steadier than wall time on a busy machine
    results["backend"] = {f"{e}/{_show(s)}": b for (e, s), b in results["backend"].items()}
    return results


def measure_cliff(opts: argparse.Namespace) -> dict:
    """Each engine at its defaults, alone and beside one other CPU-bound process.

    The busy process is a pure-Python loop (one core's worth of work); ``--cliff-steps`` steps
    of each preset, interleaved idle, busy, idle, busy …
    """
    hog = [sys.executable, "-c", "while True: pass"]
    results: dict = {}
    cut = argparse.Namespace(**{**vars(opts), "max_steps": opts.cliff_steps})
    for preset in opts.presets:
        for engine in ("cnnlab", "torch"):
            times: dict[str, list[float]] = {"idle": [], "busy": []}
            for _ in range(opts.repeats):
                times["idle"].append(_epoch(engine, preset, None, cut)["seconds"])
                busy = subprocess.Popen(hog)
                try:
                    times["busy"].append(_epoch(engine, preset, None, cut)["seconds"])
                finally:
                    busy.kill()
                    busy.wait()
                print(
                    f"  {opts.cliff_steps} steps {preset:8s} {engine:7s} idle "
                    f"{times['idle'][-1]:6.2f} s, beside a busy process {times['busy'][-1]:6.2f} s",
                    flush=True,
                )
            idle, loaded = statistics.median(times["idle"]), statistics.median(times["busy"])
            results[f"{preset}/{engine}"] = {
                "idle_s": idle, "busy_s": loaded, "slowdown": loaded / idle, "runs": times,
            }  # fmt: skip
    return results


def _time_to_99(history: list[dict], epoch_ends: list[float]) -> float | None:
    """Seconds from process start to the end of the first evaluation at or above 99.0%.

    ``epoch_ends[i]`` is when the process printed its line for the evaluation
    ``history[i]``, measured from the moment the process was started; what it did after that
    evaluation (later epochs, saving, plots) does not count.
    """
    first = next((i for i, h in enumerate(history) if h["test_accuracy"] >= 0.99), None)
    return None if first is None else epoch_ends[first]


def _timed_process(command: list[str]) -> tuple[float, int, list[float]]:
    """Run ``command`` at the defaults; return its wall time, its peak resident memory in MiB,
    and when it printed each ``epoch …`` line (seconds since it was started)."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
        "ends = [time.time() for line in p.stdout if line.startswith('epoch ')]\n"
        "code = p.wait()\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'code': code, 'peak_kib': peak, 'ends': ends}))\n"
    )
    started_at, started = time.time(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        capture_output=True, text=True, env=_env(None), cwd=ROOT,
    )  # fmt: skip
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    if report["code"] != 0:
        raise SystemExit(
            f"{' '.join(command)} failed with exit status {report['code']}:\n{done.stderr}"
        )
    return wall, report["peak_kib"] // 1024, [t - started_at for t in report["ends"]]


def measure_time_to_99(opts: argparse.Namespace) -> dict:
    """`cnnlab train --recipe fast` and PyTorch on the same recipe, both at their defaults."""
    runs: dict[str, list] = {"cnnlab": [], "torch": []}
    for _ in range(opts.repeats):
        for engine in ("cnnlab", "torch"):
            with tempfile.TemporaryDirectory() as out:
                if engine == "cnnlab":
                    command = [
                        sys.executable, "-m", "cnnlab", "train", "--dataset", "mnist",
                        "--data-dir", opts.data_dir, "--recipe", "fast", "--out", out, "--quiet",
                    ]  # fmt: skip
                else:
                    command = [
                        sys.executable, __file__, "--worker", "torch-recipe", "fast",
                        opts.data_dir, out, "--threads", "0",
                    ]  # fmt: skip
                wall, peak_mib, epoch_ends = _timed_process(command)
                history = json.loads(Path(out, "metrics.json").read_text())
            final = history[-1]["test_accuracy"]
            to_99 = _time_to_99(history, epoch_ends)
            runs[engine].append(
                {"wall_s": wall, "to_99_s": to_99, "final_accuracy": final, "peak_mib": peak_mib}
            )
            shown = "never" if to_99 is None else f"{to_99:.1f} s"
            print(
                f"  fast recipe {engine:7s} wall {wall:6.1f} s, 99% at {shown}, final "
                f"{100 * final:.2f}%, peak {peak_mib} MiB",
                flush=True,
            )
    summary = {}
    for engine, items in runs.items():
        reached = [r["to_99_s"] for r in items if r["to_99_s"] is not None]
        summary[engine] = {
            "to_99_s": statistics.median(reached) if len(reached) == len(items) else None,
            "wall_s": statistics.median(r["wall_s"] for r in items),
            "final_accuracy": min(r["final_accuracy"] for r in items),
            "peak_mib": max(r["peak_mib"] for r in items),
            "runs": items,
        }
    return summary


def table(results: dict, opts: argparse.Namespace) -> str:
    pins = ", ".join(f"{k}={os.environ[k]}" for k in HOST_BLAS_PINS if k in os.environ)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {_cpu()}, {opts.repeats} interleaved "
        f"run(s) each, load average before: {results['load_before']}, after: "
        f"{results['load_after']}. Host BLAS pins removed in the children: {pins or 'none set'}.",
        "",
        f"Command: `python benchmarks/train_speed.py {' '.join(sys.argv[1:])}`".replace(" `", "`")
        if len(sys.argv) > 1
        else "Command: `python benchmarks/train_speed.py`",
        "",
    ]
    epoch = results.get("epoch")
    if epoch:
        lines += [f"- {name}: {backend}" for name, backend in epoch["backend"].items()] + [""]
    if epoch:
        lines += [
            "| epoch (batch 128, Adam) | cnnlab, compiled kernels | cnnlab, NumPy only | "
            "PyTorch 2.13 CPU | compiled / PyTorch | NumPy / PyTorch |",
            "|---|---|---|---|---|---|",
        ]
        for setting in _settings(opts):
            for preset in opts.presets:
                r = epoch[preset]
                c, n, t = (r.get(f"{e}/{_show(setting)}") for e in EPOCH_ENGINES)
                lines.append(
                    f"| `{preset}`, {_show(setting)} | {_cell(c)} | {_cell(n)} | {_cell(t)} | "
                    f"{_ratio(c, t)} | {_ratio(n, t)} |"
                )
        lines += [
            "",
            "CPU seconds of the whole process (all its threads) during those epochs; a waiting "
            "thread that spins counts too:",
            "",
            "| epoch, CPU time | compiled | NumPy only | PyTorch | compiled / NumPy |",
            "|---|---|---|---|---|",
        ]
        for setting in _settings(opts):
            for preset in opts.presets:
                r = epoch[preset]["cpu"]
                c, n, t = (r.get(f"{e}/{_show(setting)}") for e in EPOCH_ENGINES)
                lines.append(
                    f"| `{preset}`, {_show(setting)} | {_cell(c)} | {_cell(n)} | {_cell(t)} | "
                    f"{_ratio(c, n)} |"
                )
        if epoch.get("load_s"):
            lines += [
                "",
                f"Loading the compiled kernels from the disk cache before each compiled run: "
                f"median {statistics.median(epoch['load_s']):.2f} s (not in the epoch times).",
            ]
        lines.append("")
    if "time_to_99" in results or "latency" in results:
        lines += ["| figure | cnnlab | PyTorch 2.13 CPU | cnnlab / PyTorch |", "|---|---|---|---|"]
    if "time_to_99" in results:
        c, t = results["time_to_99"]["cnnlab"], results["time_to_99"]["torch"]

        def show(v: float | None) -> str:
            return "not reached" if v is None else f"{v:.1f} s"

        ratio = f"{c['to_99_s'] / t['to_99_s']:.2f}" if c["to_99_s"] and t["to_99_s"] else "–"
        lines.append(
            f"| time to ≥ 99.0% test accuracy, `--recipe fast` (whole process), defaults | "
            f"{show(c['to_99_s'])} | {show(t['to_99_s'])} | {ratio} |"
        )
        lines.append(
            f"| final test accuracy of that run (worst of runs) | "
            f"{100 * c['final_accuracy']:.2f}% | {100 * t['final_accuracy']:.2f}% | |"
        )
        lines.append(
            f"| peak resident memory, full-MNIST training run | {c['peak_mib']} MiB | "
            f"{t['peak_mib']} MiB | {c['peak_mib'] / t['peak_mib']:.2f} |"
        )
    if "latency" in results:
        r = results["latency"]
        lines.append(
            f"| one digit through `default`, p50 / p99 | {r['p50_ms']:.3f} / "
            f"{r['p99_ms']:.3f} ms | | |"
        )
        whole = r["test_set_s"]
        lines.append(
            f"| whole 10,000-image test set, 1 thread / defaults | {whole['1']:.2f} / "
            f"{whole['default']:.2f} s | | |"
        )
    if epoch and opts.scaling:
        head = " | ".join(_show(n) for n in opts.scaling)
        lines += [
            "",
            "Thread scaling (epoch seconds; speed-up over 1 thread in brackets):",
            "",
            f"| preset | engine | {head} |",
            "|---|---|" + "---|" * len(opts.scaling),
        ]
        for preset in opts.presets:
            for engine in opts.engines:
                one = epoch[preset].get(f"{engine}/1 thread")
                cells = []
                for n in opts.scaling:
                    seconds = epoch[preset][f"{engine}/{_show(n)}"]
                    gain = f" ({one / seconds:.2f}×)" if one else ""
                    cells.append(f"{seconds:.2f}{gain}")
                lines.append(f"| `{preset}` | {engine} | {' | '.join(cells)} |")
    if "cliff" in results:
        lines += [
            "",
            f"Beside one other CPU-bound process ({opts.cliff_steps} steps, defaults):",
            "",
            "| preset | engine | alone | beside a busy process | slowdown |",
            "|---|---|---|---|---|",
        ]
        for key, r in results["cliff"].items():
            preset, engine = key.split("/")
            lines.append(
                f"| `{preset}` | {engine} | {r['idle_s']:.2f} s | {r['busy_s']:.2f} s | "
                f"{r['slowdown']:.2f}× |"
            )
    return "\n".join(lines)


def _cpu() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({cores} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({cores} cores)"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        threads = int(rest[rest.index("--threads") + 1]) or None
        rest = rest[: rest.index("--threads")]
        if kind == "epoch":
            result = worker_epoch(rest[0], rest[1], rest[2], threads, int(rest[3]))
        elif kind == "torch-recipe":
            result = worker_torch_recipe(rest[0], rest[1], threads, rest[2])
        else:
            result = worker_latency(rest[0], threads)
        print(json.dumps(result))
        return 0

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA), help="MNIST IDX folder")
    parser.add_argument(
        "--scaling", type=int, nargs="*",
        default=sorted({1, *(2**i for i in range(1, 5) if 2**i < cores), cores or 1}),
        help="thread counts of the scaling table, both engines (1 is the one-thread comparison)",
    )  # fmt: skip
    parser.add_argument(
        "--no-defaults", action="store_true",
        help="epoch runs at the --scaling thread counts only, not at each engine's defaults",
    )  # fmt: skip
    parser.add_argument(
        "--engines", nargs="+", default=list(EPOCH_ENGINES), choices=EPOCH_ENGINES,
        help="the epoch runs' engines: cnnlab as installed, cnnlab on NumPy alone, PyTorch",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per engine")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument(
        "--only", nargs="+", choices=("epoch", "time-to-99", "latency", "cliff"),
        default=["epoch", "time-to-99", "latency", "cliff"],
    )  # fmt: skip
    parser.add_argument(
        "--max-steps", type=int, default=0, help="cut each epoch short (a smoke test, not a result)"
    )
    parser.add_argument(
        "--cliff-steps", type=int, default=150, help="steps per run of the busy-machine test"
    )
    parser.add_argument("--json", help="also write the raw results to this file")
    opts = parser.parse_args()
    results: dict = {"load_before": ", ".join(f"{v:.1f}" for v in os.getloadavg())}
    if "epoch" in opts.only:
        print("epoch time", flush=True)
        results["epoch"] = measure_epochs(opts)
    if "time-to-99" in opts.only:
        print("time to 99% (and peak memory)", flush=True)
        results["time_to_99"] = measure_time_to_99(opts)
    if "latency" in opts.only:
        print("prediction latency", flush=True)
        results["latency"] = _run_worker(["latency", opts.data_dir], None)
    if "cliff" in opts.only:
        print("beside a busy process", flush=True)
        results["cliff"] = measure_cliff(opts)
    results["load_after"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print()
    print(table(results, opts))
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
