"""cnnlab against PyTorch on the same CPU: epoch time, time to 99%, prediction latency, memory.

    python benchmarks/train_speed.py                     # everything, writes a markdown table
    python benchmarks/train_speed.py --only epoch --repeats 1

Every measurement runs in a fresh process with the same thread count for both engines
(OPENBLAS/OMP/MKL_NUM_THREADS and torch.set_num_threads), and the two engines' runs alternate
(cnnlab, PyTorch, cnnlab, PyTorch, …) so that a change in the machine's load hits both. The
figures are medians; the ratio is cnnlab / PyTorch. PyTorch trains the identical network
(``cnnlab.export.pytorch.to_torch``: same layers, same initial weights) on the same batches.
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
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
PRESETS = ("simple", "lenet5", "default", "fast")
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


def worker_epoch(engine: str, preset: str, data_dir: str, threads: int, max_steps: int) -> dict:
    """One epoch of training (or ``max_steps`` steps), timed without imports and data loading."""
    import numpy as np

    import cnnlab as cl

    x, y, _, _ = _load_mnist(data_dir)
    if max_steps:
        x, y = x[: max_steps * BATCH], y[: max_steps * BATCH]
    model = cl.build(preset, seed=0)
    steps = -(-len(x) // BATCH)
    if engine == "cnnlab":
        from threadpoolctl import threadpool_info

        started = time.perf_counter()
        cl.fit(
            model, cl.CrossEntropyLoss(), cl.Adam(model.parameters(), LR), x, y,
            epochs=1, batch_size=BATCH, seed=0,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        blas = [
            f"{i['internal_api']} {i['version']} x{i['num_threads']}" for i in threadpool_info()
        ]
    else:
        import torch

        from cnnlab.export.pytorch import to_torch

        torch.set_num_threads(threads)
        net = to_torch(model)
        optimizer = torch.optim.Adam(net.parameters(), LR)
        loss_fn = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        started = time.perf_counter()
        order = torch.from_numpy(np.random.default_rng([0, 0]).permutation(len(x)))
        for step in range(steps):
            index = order[step * BATCH : (step + 1) * BATCH]
            optimizer.zero_grad()
            loss = loss_fn(net(xt[index]), yt[index])
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - started
        blas = [f"torch {torch.__version__} x{torch.get_num_threads()}"]
    return {"seconds": seconds, "steps": steps, "backend": blas}


def worker_torch_recipe(recipe_name: str, data_dir: str, threads: int, out: str) -> dict:
    """PyTorch following a cnnlab recipe: same network, optimizer, loss, schedule, batches."""
    import numpy as np
    import torch

    import cnnlab as cl
    from cnnlab.export.pytorch import to_torch
    from cnnlab.runs.recipes import get_recipe

    started = time.perf_counter()
    torch.set_num_threads(threads)
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
            if recipe.augment:
                from cnnlab.data.augment import random_affine

                rng = np.random.default_rng([0, epoch, step])
                batch = torch.from_numpy(random_affine(batch.numpy(), rng))
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


def worker_latency(data_dir: str, threads: int) -> dict:
    """One preprocessed digit through the default model, p50/p99; and the whole test set."""
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
    started = time.perf_counter()
    model.predict(xv)
    whole = time.perf_counter() - started
    assert model.predict_proba(one).shape == (1, 10)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "test_set_s": whole,
    }


# -- the driver ------------------------------------------------------------------------------------


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def _run_worker(args: list[str], threads: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *args, "--threads", str(threads)],
        capture_output=True, text=True, env=_env(threads), cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_epochs(opts: argparse.Namespace) -> dict:
    results: dict = {}
    for preset in opts.presets:
        runs: dict[str, list[float]] = {"cnnlab": [], "torch": []}
        for _ in range(opts.repeats):
            for engine in ("cnnlab", "torch"):
                out = _run_worker(
                    ["epoch", engine, preset, opts.data_dir, str(opts.max_steps)], opts.threads
                )
                runs[engine].append(out["seconds"])
                results.setdefault("backend", {})[engine] = out["backend"]
                print(f"  epoch {preset:8s} {engine:7s} {out['seconds']:7.2f} s", flush=True)
        results[preset] = {
            "cnnlab_s": statistics.median(runs["cnnlab"]),
            "torch_s": statistics.median(runs["torch"]),
            "runs": runs,
        }
        results[preset]["ratio"] = results[preset]["cnnlab_s"] / results[preset]["torch_s"]
    return results


def _time_to_99(history: list[dict], epoch_ends: list[float]) -> float | None:
    """Seconds from process start to the end of the first evaluation at or above 99.0%.

    ``epoch_ends[i]`` is when the process printed its line for the evaluation
    ``history[i]``, measured from the moment the process was started; what it did after that
    evaluation (later epochs, saving, plots) does not count.
    """
    first = next((i for i, h in enumerate(history) if h["test_accuracy"] >= 0.99), None)
    return None if first is None else epoch_ends[first]


def _timed_process(command: list[str], threads: int) -> tuple[float, int, list[float]]:
    """Run ``command``; return its wall time, its peak resident memory in MiB, and when it
    printed each ``epoch …`` line (seconds since it was started)."""
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
        capture_output=True, text=True, env=_env(threads), cwd=ROOT,
    )  # fmt: skip
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    if report["code"] != 0:
        raise SystemExit(
            f"{' '.join(command)} failed with exit status {report['code']}:\n{done.stderr}"
        )
    return wall, report["peak_kib"] // 1024, [t - started_at for t in report["ends"]]


def measure_time_to_99(opts: argparse.Namespace) -> dict:
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
                        opts.data_dir, out, "--threads", str(opts.threads),
                    ]  # fmt: skip
                wall, peak_mib, epoch_ends = _timed_process(command, opts.threads)
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
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {_cpu()}, {opts.threads} thread(s) per "
        f"engine, {opts.repeats} interleaved run(s) each, load average before: "
        f"{results['load_before']}.",
        "",
        f"Command: `python benchmarks/train_speed.py {' '.join(sys.argv[1:])}`".replace(" `", "`")
        if len(sys.argv) > 1
        else "Command: `python benchmarks/train_speed.py`",
        "",
        "| figure | cnnlab | PyTorch 2.13 CPU | cnnlab / PyTorch |",
        "|---|---|---|---|",
    ]
    for preset in PRESETS:
        if preset in results.get("epoch", {}):
            r = results["epoch"][preset]
            lines.append(
                f"| epoch time, `{preset}` (batch {BATCH}, Adam) | {r['cnnlab_s']:.1f} s | "
                f"{r['torch_s']:.1f} s | {r['ratio']:.2f} |"
            )
    if "time_to_99" in results:
        c, t = results["time_to_99"]["cnnlab"], results["time_to_99"]["torch"]

        def show(v: float | None) -> str:
            return "not reached" if v is None else f"{v:.1f} s"

        ratio = f"{c['to_99_s'] / t['to_99_s']:.2f}" if c["to_99_s"] and t["to_99_s"] else "–"
        lines.append(
            f"| time to ≥ 99.0% test accuracy, `--recipe fast` (whole process) | "
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
        lines.append(f"| whole 10,000-image test set | {r['test_set_s']:.2f} s | | |")
    return "\n".join(lines)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        threads = int(rest[rest.index("--threads") + 1])
        rest = rest[: rest.index("--threads")]
        if kind == "epoch":
            result = worker_epoch(rest[0], rest[1], rest[2], threads, int(rest[3]))
        elif kind == "torch-recipe":
            result = worker_torch_recipe(rest[0], rest[1], threads, rest[2])
        else:
            result = worker_latency(rest[0], threads)
        print(json.dumps(result))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA), help="MNIST IDX folder")
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS/torch threads per engine (same for both)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per engine")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument(
        "--only", nargs="+", choices=("epoch", "time-to-99", "latency"),
        default=["epoch", "time-to-99", "latency"],
    )  # fmt: skip
    parser.add_argument(
        "--max-steps", type=int, default=0, help="cut each epoch short (a smoke test, not a result)"
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
        results["latency"] = _run_worker(["latency", opts.data_dir], opts.threads)
    results["load_after"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print()
    print(table(results, opts))
    print(f"\nload average after: {results['load_after']}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
