"""``cnnlab gradcheck``: the backward pass against central differences, layer by layer."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnlab.cli._common import Formatter, load_model, positive_float, positive_int
from cnnlab.engine.gradcheck import ATOL, EPS, RTOL

DESCRIPTION = """\
Compare the analytic gradient of every parameter (and of the input) with the central
difference (L(θ+ε) − L(θ−ε)) / 2ε on a few digits, in float64. Prints a table of the largest
relative error per parameter and PASS or FAIL; exits with status 1 on FAIL. An entry passes
when |analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|), as in PyTorch's gradcheck:
the absolute floor atol covers gradients that are truly ~0 (a conv bias right before batch
norm), whose relative error compares rounding noise with rounding noise.

ReLU and max-pool have kinks. A nudge that flips a ReLU or moves a max-pool winner on one side
is compared by the one-sided difference of the other side; one that crosses on both sides is
skipped and counted in the "kinks" column, never reported as an error.

examples:
  cnnlab gradcheck
  cnnlab gradcheck --model lenet5 --activation sigmoid
  cnnlab gradcheck --model runs/20250101-120000
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gradcheck",
        help="check every layer's gradients against finite differences",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    p.add_argument("--model", default="default", help="a preset name, a model file or a run")
    p.add_argument(
        "--activation",
        default="relu",
        choices=("relu", "sigmoid", "tanh"),
        help="the activation of a preset",
    )
    p.add_argument("--samples", type=positive_int, default=2, help="digits in the batch")
    p.add_argument("--entries", type=positive_int, default=10, help="entries per parameter")
    p.add_argument("--eps", type=positive_float, default=EPS, help="the nudge ε")
    p.add_argument("--rtol", type=positive_float, default=RTOL, help="largest relative error")
    p.add_argument(
        "--atol", type=positive_float, default=ATOL, help="absolute floor of the tolerance"
    )
    p.add_argument("--seed", type=int, default=0, help="which entries are checked")
    p.add_argument("--out", default="runs/gradcheck", help="folder for gradcheck.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.tables import table
    from cnnlab.engine.gradcheck import gradient_check
    from cnnlab.explain import figures
    from cnnlab.explain.experiments import digits
    from cnnlab.runs.zoo import DIGITS, PRESETS, build

    if args.model in PRESETS:
        # Built for the digits it is checked on (the colour preset too).
        model = build(args.model, activation=args.activation, seed=args.seed, input_shape=DIGITS)
        what = f"preset {args.model} ({args.activation})"
    else:
        model = load_model(args.model)
        what = args.model
    x, true = digits(args.samples, "test")
    # Wrong labels on purpose: the loss, and every gradient, stays far from zero even for a
    # trained model, so the differences are not drowned in rounding noise.
    rng = np.random.default_rng(args.seed)
    y = (true + rng.integers(1, 10, size=len(true))) % 10
    check = gradient_check(model, x, y, args.entries, args.eps, args.rtol, args.atol, args.seed)
    print(
        f"gradient check of {what} on {args.samples} digits with deliberately wrong labels, "
        f"ε = {args.eps:g}, float64"
    )
    rows = [
        [
            r.name,
            "×".join(map(str, r.shape)),
            r.checked,
            r.one_sided,
            r.kinks,
            f"{r.max_error:.2e}",
            f"{r.max_abs_error:.1e}",
            ("ok ~0" if r.floored else "ok") if r.passed else "FAIL",
        ]
        for r in check.rows
    ]
    header = ["parameter", "shape", "checked", "one-sided", "kinks", "max rel. err", "max |Δ|", ""]
    print(table(header, rows))
    bound = f"|Δ| ≤ {args.atol:g} + {args.rtol:g}·|gradient|"
    print(
        f"\nPASS: every entry within {bound}" if check.passed else f"\nFAIL: entries exceed {bound}"
    )
    if any(r.floored and r.passed for r in check.rows):
        print(
            "ok ~0: the true gradient is about zero (e.g. a conv bias right before batch norm,\n"
            "       which the normalisation cancels), so its relative error only compares\n"
            f"       rounding noise; it passes because |Δ| ≤ atol = {args.atol:g}"
        )
    path = figures.plot_gradcheck(check, Path(args.out) / "gradcheck.png")
    print(f"wrote {path}")
    return 0 if check.passed else 1
