"""``cnnlab experiment NAME``: the article's ideas as small experiments with numbers and figures."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from cnnlab.cli._common import Formatter, load_model, positive_float, positive_int

NAMES = (
    "convolution",
    "curve-detector",
    "error-surface",
    "learning-rate",
    "activations",
    "losses",
    "features",
)

DESCRIPTION = """\
Run one of the article's ideas as an experiment; print its numbers and write its figures to
--out (default runs/experiments/NAME/).

  convolution     the 6×6 image and 4×4 filter: every position's multiply-and-sum, the map
                  (convolution_steps.png, convolution.gif)
  curve-detector  a curve filter on an image with the curve and on one without: peaks
                  (curve_detector.png)
  error-surface   a linear neuron with two weights: its loss bowl and gradient descent
                  walking down it, w ← w − η·dL/dw (error_surface.png)
  learning-rate   plain SGD at η = 1e-4 … 3 on one CNN: loss curves and verdicts
                  (learning_rates.png)
  activations     8-layer plain networks with sigmoid, tanh, ReLU: gradient per layer
                  (activation_gradients.png)
  losses          the article's MSE against cross-entropy: accuracy per epoch (losses.png)
  features        first-layer filters and the maps they give on a digit (features.png)

Training experiments use the bundled mnist-sample digits and take well under a minute with
the defaults; --samples and --epochs make them smaller or larger.

examples:
  cnnlab experiment convolution
  cnnlab experiment error-surface --lr 1.0 --steps 20
  cnnlab experiment learning-rate --lrs 0.001 0.1 3 --samples 500
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "experiment",
        help="run one of the article's ideas as an experiment (convolution, learning-rate, ...)",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    p.add_argument("name", metavar="NAME", choices=NAMES, help="one of: " + ", ".join(NAMES))
    p.add_argument("--out", help="folder for the figures (default: runs/experiments/NAME)")
    p.add_argument("--samples", type=positive_int, help="training digits (default per experiment)")
    p.add_argument(
        "--epochs", type=positive_int, help="epochs (losses, activations: 3; features: 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for weights and batch order")
    p.add_argument(
        "--lrs", type=positive_float, nargs="+", help="learning-rate: the rates to sweep"
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        help="error-surface/losses/activations: the learning rate (0.5 / 0.1 / 0.05)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=50, help="error-surface: gradient-descent steps"
    )
    p.add_argument("--depth", type=positive_int, default=8, help="activations: hidden layers")
    p.add_argument("--model", help="features: a trained model (default: train a small CNN)")
    p.add_argument("--index", type=int, default=0, help="features: which test digit to show")
    p.add_argument("--dataset", default="mnist-sample", help="data set of digits to train on")
    p.add_argument("--data-dir", help="folder holding downloaded data sets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path("runs") / "experiments" / args.name
    files = RUNNERS[args.name](args, out)
    print(f"\nwrote {', '.join(str(f) for f in files)}")
    return 0


def _data(args: argparse.Namespace, default_samples: int) -> dict:
    return {
        "samples": args.samples or default_samples,
        "seed": args.seed,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
    }


def _matrix(values: np.ndarray) -> str:
    return "\n".join("  " + " ".join(f"{v:4g}" for v in row) for row in values)


def _convolution(args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.article import (
        ARTICLE_FILTER,
        ARTICLE_IMAGE,
        activation_map,
        convolution_steps,
    )

    steps = convolution_steps(ARTICLE_IMAGE, ARTICLE_FILTER)
    print("image (6×6, 1 = ink: a handwritten 7):\n" + _matrix(ARTICLE_IMAGE))
    print("filter (4×4, a '/' stroke detector):\n" + _matrix(ARTICLE_FILTER))
    print("\nthe filter at each position: pixel × weight, summed (zero products left out)")
    for s in steps:
        terms = [
            f"{p:g}×{w:g}"
            for p, w in zip(s.patch.ravel(), ARTICLE_FILTER.ravel(), strict=True)
            if p and w
        ]
        shown = " + ".join(terms) if terms else "all 16 products are 0"
        print(f"  position ({s.row}, {s.col}): {shown} = {s.total:g}")
    amap = activation_map(ARTICLE_IMAGE, ARTICLE_FILTER)
    print("\nactivation map (3×3), computed by cnnlab.Conv2D:\n" + _matrix(amap))
    peak = np.unravel_index(int(amap.argmax()), amap.shape)
    print(
        f"peak {amap.max():g} at position {tuple(int(v) for v in peak)}: "
        "there the filter lies exactly on the 7's diagonal stroke"
    )
    return [
        experiment_figures.plot_convolution_strip(
            ARTICLE_IMAGE, ARTICLE_FILTER, steps, out / "convolution_steps.png"
        ),
        experiment_figures.save_convolution_gif(
            ARTICLE_IMAGE, ARTICLE_FILTER, steps, out / "convolution.gif"
        ),
    ]


def _curve(args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.article import CURVE_FILTER, curve_detector

    results = curve_detector()
    print(
        f"curve filter: {CURVE_FILTER.shape[0]}×{CURVE_FILTER.shape[1]}, "
        f"{int(CURVE_FILTER.sum())} weights of 1 along a curve, 0 elsewhere"
    )
    rows = [
        [name, f"{r['peak']:g}", str(r["peak_at"]), f"{r['map'].mean():.3f}"]
        for name, r in results.items()
    ]
    from cnnlab.cli.tables import table

    print(table(["image", "peak activation", "at (row, col)", "mean activation"], rows))
    ratio = results["curve"]["peak"] / max(results["no curve"]["peak"], 1e-12)
    print(f"the peak on the curve is {ratio:.2f}× the peak on the straight stroke")
    return [
        experiment_figures.plot_curve_detector(CURVE_FILTER, results, out / "curve_detector.png")
    ]


def _error_surface(args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.cli.tables import table
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.surface import TRUE_WEIGHTS, error_surface

    surface = error_surface(
        lr=args.lr or 0.5, steps=args.steps, samples=args.samples or 100, seed=args.seed
    )
    w1, w2 = surface.optimum
    low, high = surface.curvatures
    print(
        f"a linear neuron o = w1·x1 + w2·x2 on {len(surface.t)} examples made from weights "
        f"{TRUE_WEIGHTS} plus noise; loss L = (1/N) Σ ½ (t − o)²"
    )
    print(f"lowest loss {surface.min_loss:.4f} at w = ({w1:.3f}, {w2:.3f})")
    print(
        f"curvatures of the bowl {low:.3f} and {high:.3f}: gradient descent diverges for "
        f"η > 2/{high:.3f} = {surface.critical_lr:.3f}; fastest near η = {surface.best_lr:.3f}"
    )
    shown = sorted({*range(0, len(surface.path), max(1, len(surface.path) // 8)),
                    len(surface.path) - 1})  # fmt: skip
    rows = [
        [k, f"{surface.path[k, 0]:.4f}", f"{surface.path[k, 1]:.4f}", f"{surface.path_loss[k]:.4f}"]
        for k in shown
    ]
    start = f"({surface.path[0, 0]:g}, {surface.path[0, 1]:g})"
    print(f"\ngradient descent from w = {start} with η = {surface.lr:g}:")
    print(table(["step", "w1", "w2", "loss"], rows))
    if len(surface.path) <= args.steps:
        print(f"stopped after {len(surface.path) - 1} steps: the weights overflowed (diverged)")
    verdict = "reached the bottom" if surface.converged else "did not reach the bottom"
    print(f"{verdict}: {surface.distance_to_optimum:.4f} from the lowest point")
    return [experiment_figures.plot_error_surface(surface, out / "error_surface.png")]


def _learning_rate(args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.cli.tables import table
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.experiments import DEFAULT_LEARNING_RATES, learning_rate_sweep

    lrs = args.lrs or DEFAULT_LEARNING_RATES
    options = _data(args, 1000)
    print(
        f"plain SGD, batch 32, {options['samples']} digits, {args.epochs or 1} epoch(s); "
        "held-out loss on 200 test digits"
    )
    runs = learning_rate_sweep(lrs, epochs=args.epochs or 1, **options)
    rows = []
    for r in runs:
        end = "—" if math.isnan(r.end) else f"{r.end:.3f}"
        if r.diverged_at and len(r.losses) < r.diverged_at:
            jump = r.diverged_loss / r.losses[0]
            size = f"loss ×{jump:.0f}" if math.isfinite(jump) else "loss overflowed"
            note = f"stopped at step {r.diverged_at}: {size}"
        elif r.diverged_at:
            note = f"jumped at step {r.diverged_at}, never recovered"
        else:
            note = "best" if r.best else ""
        rows.append([f"{r.lr:g}", f"{r.start:.3f}", end, r.verdict, note])
    print(table(["η", "loss before", "loss after", "verdict", "note"], rows))
    return [experiment_figures.plot_learning_rates(runs, out / "learning_rates.png")]


def _activations(args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.cli.tables import table
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.experiments import activation_gradients, activation_verdict

    options = _data(args, 2000)
    epochs = args.epochs or 3
    runs = activation_gradients(depth=args.depth, lr=args.lr or 0.05, epochs=epochs, **options)
    print(
        f"{args.depth} hidden dense layers of 64 units + output (He initialisation for ReLU, "
        f"Glorot for sigmoid and tanh), plain SGD on {options['samples']} digits for {epochs} "
        "epochs; mean ‖dL/dW‖ per layer over the first epoch"
    )
    header = ["layer"] + [r.activation for r in runs]
    rows = [
        [f"{i + 1} ({name.split('.')[0]}.Dense)"] + [f"{r.grad_norms[i]:.2e}" for r in runs]
        for i, name in enumerate(runs[0].layer_names)
    ]
    print(table(header, rows))
    for r in runs:
        extra = (
            f"saturated units {r.saturated_fraction:.1%}"
            if r.saturated_fraction is not None
            else f"dead ReLUs {r.dead_fraction:.1%}"
        )
        print(f"{r.activation:8s} {extra}")
    print("\n" + "\n".join(activation_verdict(runs)))
    return [experiment_figures.plot_activation_gradients(runs, out / "activation_gradients.png")]


def _losses(args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.cli.tables import table
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.experiments import compare_losses

    options = _data(args, 1000)
    epochs = args.epochs or 3
    runs = compare_losses(epochs=epochs, lr=args.lr or 0.1, **options)
    print(
        f"same CNN and weights, plain SGD η = {args.lr or 0.1:g}, {options['samples']} "
        "digits; test accuracy on 1000 test digits"
    )
    rows = [[e + 1] + [f"{r.test_accuracy[e]:.1%}" for r in runs] for e in range(epochs)]
    print(table(["epoch"] + [r.loss for r in runs], rows))
    return [experiment_figures.plot_losses(runs, out / "losses.png")]


def _features(args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.cli.tables import table
    from cnnlab.explain import experiment_figures
    from cnnlab.explain.experiments import features

    model = load_model(args.model) if args.model else None
    options = _data(args, 2000)
    feat = features(model, index=args.index, epochs=args.epochs or 1, **options)
    if feat.test_accuracy is not None:
        print(
            f"trained a small CNN for {args.epochs or 1} epoch(s) on {options['samples']} "
            f"digits: test accuracy {feat.test_accuracy:.1%}"
        )
    print(f"test digit #{args.index} (a {feat.label})")
    for lm in feat.layers:
        peaks = lm.maps.reshape(len(lm.maps), -1).max(axis=1)  # (C,)
        active = (lm.maps > 0).reshape(len(lm.maps), -1).mean(axis=1)  # (C,)
        rows = [[k, f"{peaks[k]:.3f}", f"{active[k]:.0%}"] for k in range(len(lm.maps))]
        print(f"\nlayer {lm.name}: {lm.maps.shape[1]}×{lm.maps.shape[2]} maps")
        print(table(["filter", "peak", "positive area"], rows))
    return [experiment_figures.plot_features(feat, out / "features.png")]


RUNNERS = {
    "convolution": _convolution,
    "curve-detector": _curve,
    "error-surface": _error_surface,
    "learning-rate": _learning_rate,
    "activations": _activations,
    "losses": _losses,
    "features": _features,
}
