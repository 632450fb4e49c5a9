"""The Teach tab's answers from its examples: how soon, how right, and "none of these".

Three drawn classes (circle, cross, line: the tests' drawings, ``tests/web/test_web_teach.py``)
of 10 examples each, added to a Teach project as the page adds them; for each seed:

- the time from an empty project to the first answer (one example a class; in a fresh process
  the first answer also loads the shipped extractor), to it with its occlusion map (as the page
  shows it), and of an answer with 30 examples;
- how many of the examples, and of 30 new drawings a class, are read as their class and not
  "none of these";
- how many of 30 drawings of each other kind are "none of these": the tune kinds (square,
  triangle, wave) for every margin of ``--margins``, the held-out kinds (zigzag, plus, dot)
  only at the margin the model uses (``cnnlab.runs.prototype.MARGIN``).

``--trained`` also trains the examples as the Train button does (one seed) and reads the new
drawings with the trained model, whose "none of these" is the quick model's verdict.

    python benchmarks/teach_unknowns.py [--seeds 5] [--margins 1,1.25,1.5,2] [--trained]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(p) for p in (ROOT, ROOT / "benchmarks", ROOT / "tests", ROOT / "tests" / "web")]

from test_web_teach import CLASSES, HELD_OUT_KINDS, TUNE_KINDS, drawing  # noqa: E402
from user_machine import HOST_BLAS_PINS, child_env  # noqa: E402

from cnnlab.explain import maps  # noqa: E402
from cnnlab.runs import prototype, unknowns  # noqa: E402
from cnnlab.runs.pictures import read_picture  # noqa: E402
from cnnlab.web.routes.teach import OCCLUSION_PATCH, OCCLUSION_STRIDE  # noqa: E402
from cnnlab.web.teach import Project  # noqa: E402

EXAMPLES, NEW = 10, 30


def cosines(model, pictures: list[bytes]) -> np.ndarray:
    """Each picture's largest cosine to the quick model's prototypes ``(N,)``."""
    x = np.stack([read_picture(model, p).x for p in pictures])
    _, found = unknowns.logits_and_features(model, x)
    return unknowns.cosine(found, np.asarray(model.meta["class_means"]))


def measure(seed: int, margins: list[float], trained: bool) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        project = Project(folder)
        start = time.perf_counter()
        project.create(CLASSES)
        for name in CLASSES:
            project.add_example(name, drawing(name, rng))
        first = project.answer(drawing("circle", rng), None)
        out["first answer s"] = time.perf_counter() - start
        maps.occlusion(first.model, first.x, first.reading.label, OCCLUSION_PATCH, OCCLUSION_STRIDE)
        out["with its occlusion map s"] = time.perf_counter() - start
        out["first answer right"] = float(first.reading.class_name == "circle")
        for _ in range(EXAMPLES - 1):
            for name in CLASSES:
                project.add_example(name, drawing(name, rng))
        start = time.perf_counter()
        project.answer(drawing("cross", rng), None)
        out["answer at 30 s"] = time.perf_counter() - start
        model = project.quick_model()
        below = model.meta["unknown_below"]
        farthest = (1 - below) / prototype.MARGIN

        def kept(pictures: list[bytes], k: int) -> float:
            answers = [project.answer(p, None).reading for p in pictures]
            return float(np.mean([a.known and a.label == k for a in answers]))

        stored = [[p.read_bytes() for p in sorted((project.data_dir / n).glob("*.png"))]
                  for n in CLASSES]  # fmt: skip
        out["examples kept"] = float(np.mean([kept(s, k) for k, s in enumerate(stored)]))
        new = [[drawing(n, rng) for _ in range(NEW)] for n in CLASSES]
        out["new drawings kept"] = float(np.mean([kept(s, k) for k, s in enumerate(new)]))
        own = cosines(model, [p for group in new for p in group])
        others = {kind: cosines(model, [drawing(kind, rng) for _ in range(NEW)])
                  for kind in TUNE_KINDS + HELD_OUT_KINDS}  # fmt: skip
        for m in margins:
            at = 1 - m * farthest
            out[f"m={m} new kept"] = float(np.mean(own >= at))
            for kind in TUNE_KINDS:
                out[f"m={m} {kind}"] = float(np.mean(others[kind] < at))
        for kind in HELD_OUT_KINDS:  # only at the model's own margin
            out[f"held-out {kind}"] = float(np.mean(others[kind] < below))
        if trained:
            out.update(measure_trained(project, new))
    return out


def measure_trained(project: Project, new: list[list[bytes]]) -> dict[str, float]:
    """Train the examples as the Train button does and read the new drawings with the model."""
    from cnnlab.runs.folder import RunFolder
    from cnnlab.runs.pipeline import train_run

    config = project.run_config()
    runs = project.root.parent.parent
    start = time.perf_counter()
    folder = RunFolder.new(runs)
    result = train_run(config, folder, progress=False)
    seconds = time.perf_counter() - start
    project.trained(folder.name, config)
    active = (folder.name, result.model)
    answers = [[project.answer(p, active) for p in group] for group in new]
    assert all(a.source == "trained" for group in answers for a in group)
    right = [np.mean([a.reading.known and a.reading.label == k for a in group])
             for k, group in enumerate(answers)]  # fmt: skip
    return {"trained s": seconds, "trained new drawings kept": float(np.mean(right))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--margins", default="1,1.25,1.5,2")
    parser.add_argument("--trained", action="store_true")
    args = parser.parse_args()
    if any(pin in os.environ for pin in HOST_BLAS_PINS):  # time it as on a user's machine
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=child_env()).returncode)
    margins = [float(m) for m in args.margins.split(",")]
    rows = [measure(seed, margins, args.trained and seed == 0) for seed in range(args.seeds)]
    print(f"margin in use: {prototype.MARGIN}; {args.seeds} seeds, {EXAMPLES} examples a class")
    for key in rows[0]:
        values = [r[key] for r in rows if key in r]
        unit = "" if key.endswith(" s") else " %"
        scale = 1 if key.endswith(" s") else 100
        shown = ", ".join(f"{scale * v:.2f}" for v in values)
        print(f"{key:28s} mean {scale * np.mean(values):7.2f}{unit}   ({shown})")


if __name__ == "__main__":
    main()
