"""Does a digit model know what it does not know? Non-digits flagged, digits kept, per score.

For each score of ``cnnlab.runs.unknowns`` (maximum softmax probability, energy, Mahalanobis
distance to the class means), fitted with ``calibrate`` on held-in validation digits (the
training images a run left out with ``--subset``), it prints:

* AUROC — how well the score ranks real digits above non-digits (1 is perfect, 0.5 chance);
* FPR at 95 % TPR — the share of non-digits scored above the score that keeps 95 % of digits;
* flagged — non-digits answered "not a digit" or "unsure" (calibrated top probability below
  ``predict.UNSURE_BELOW``);
* lost — digits the plain softmax reads correctly that the score now calls "not a digit", on
  the bundled MNIST test split and on ``wild_digits.py``'s sources of the same group.

Non-digits are ``cnnlab.data.nondigits``' drawings of the group (``tune`` or ``heldout``), half
as drawn on the lab's canvas, half photographed on paper by ``tests/digits_wild.py``, all
through the preprocessing a user's picture gets. Preprocessed inputs are cached in ``--cache``.

    python benchmarks/unknowns.py RUN [--group tune|heldout] [--n 600] [--per-class 20]
        [--keep 0.99]

Needs the ``lab`` extra, scikit-learn and Debian's handwriting fonts (see wild_digits.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import digits_wild  # noqa: E402
import wild_digits  # noqa: E402

from cnnlab.cli._common import load_model  # noqa: E402
from cnnlab.data import load, nondigits  # noqa: E402
from cnnlab.data.nondigits import draw_nondigits, nondigit_inputs  # noqa: E402
from cnnlab.data.preprocess import NoInkError, preprocess_file  # noqa: E402
from cnnlab.engine.train import to_input  # noqa: E402
from cnnlab.runs import predict, unknowns  # noqa: E402
from cnnlab.runs.config import RunConfig  # noqa: E402
from cnnlab.runs.model_input import prepare  # noqa: E402
from cnnlab.runs.pipeline import hold_out, load_data  # noqa: E402
from cnnlab.runs.predict import UNSURE_BELOW  # noqa: E402


def _inputs(samples: list[tuple[bytes, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded pictures → preprocessed (N, 28, 28) inputs (blank when no ink is found)."""
    x = np.zeros((len(samples), 28, 28), np.float32)
    for i, (data, _) in enumerate(samples):
        with contextlib.suppress(NoInkError):  # no ink found: left blank
            x[i] = preprocess_file(data).image
    return x, np.array([label for _, label in samples], np.int64)


def _photographed_nondigits(n: int, seed: int, group: str) -> np.ndarray:
    ink, _ = draw_nondigits(n, seed, group)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2 * digits_wild.MAX_PAGE,) * 2, np.float32)
    samples = []
    for picture in ink:
        page, _ = digits_wild._paper(picture, rng, noise)
        samples.append((digits_wild._encode(page, rng)[0], -1))
    return _inputs(samples)[0]


def prepared(group: str, n: int, per_class: int, cache: Path) -> dict[str, np.ndarray]:
    """The group's digits (per wild source and MNIST test) and non-digits, cached under the
    drawing code's hash, so that a change of the kinds draws them again."""
    drawn = hashlib.sha256(Path(nondigits.__file__).read_bytes()).hexdigest()[:8]
    path = cache / f"unknowns-{group}-{n}-{per_class}-{drawn}.npz"
    if path.exists():
        with np.load(path) as stored:
            return dict(stored)
    sets: dict[str, np.ndarray] = {}
    for name, make in wild_digits.SOURCES[group].items():
        x, y = _inputs(make(per_class, np.random.default_rng(0)))
        sets[f"digits/{name}"], sets[f"labels/{name}"] = x, y
    seed = 0 if group == "tune" else 1000
    canvas, kinds = nondigit_inputs(n // 2, seed, group)
    sets["nondigits/canvas"], sets["kinds/canvas"] = canvas, kinds
    sets["nondigits/paper"] = _photographed_nondigits(n - n // 2, seed + 1, group)
    sets["kinds/paper"] = draw_nondigits(n - n // 2, seed + 1, group)[1]
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **sets)
    return sets


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of a digit > score of a non-digit), ties counted half (Mann-Whitney U)."""
    both = np.concatenate([inside, outside])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    # average ranks of ties
    _, first, counts = np.unique(both[order], return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    u = ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2
    return float(u / (len(inside) * len(outside)))


def validation(run: Path, model) -> tuple[np.ndarray, np.ndarray]:
    """The run's held-in validation digits: the pictures training held out (its stratified
    split), else the training images after ``--subset``."""
    config = RunConfig.from_json(json.loads((run / "config.json").read_text()))
    run_data = hold_out(load_data(config, progress=False), config)
    if len(run_data.val_labels):
        return prepare(model, run_data.val_images), run_data.val_labels.astype(np.int64)
    if not config.subset:
        sys.exit(f"{run} held no pictures out: train it with --val-fraction F or --subset N")
    images, labels = load(config.dataset, "train")
    return to_input(images[config.subset :]), labels[config.subset :].astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a run folder that held validation pictures out")
    parser.add_argument("--today", help="the run whose right answers may not be lost [model]")
    parser.add_argument("--group", choices=["tune", "heldout"], default="tune")
    parser.add_argument("--n", type=int, default=600, help="non-digits")
    parser.add_argument("--per-class", type=int, default=20, help="digits per wild source class")
    parser.add_argument("--keep", type=float, default=unknowns.KEEP)
    parser.add_argument("--methods", default=",".join(unknowns.SCORES))
    parser.add_argument("--cache", default="/tmp/cnnlab-unknowns")
    args = parser.parse_args(argv)
    model = load_model(args.model).eval()
    today = load_model(args.today or args.model).eval()
    trained = {key: model.meta[key] for key in unknowns.META_KEYS if key in model.meta}
    x_val, y_val = validation(Path(args.model), model)

    sets = prepared(args.group, args.n, args.per_class, Path(args.cache))
    test_x, test_y = load("mnist-sample", "test")
    wild = [key.split("/", 1)[1] for key in sets if key.startswith("digits/")]
    digits = {
        "mnist": (to_input(test_x), test_y.astype(np.int64)),
        "wild": (
            np.concatenate([sets[f"digits/{name}"] for name in wild])[:, None],
            np.concatenate([sets[f"labels/{name}"] for name in wild]),
        ),
    }
    others = np.concatenate([sets["nondigits/canvas"], sets["nondigits/paper"]])[:, None]
    kinds = np.concatenate([sets["kinds/canvas"], sets["kinds/paper"]])
    right = {k: today.predict(x) == y for k, (x, y) in digits.items()}
    unsure_today = (today.predict_proba(others).max(1) < UNSURE_BELOW).mean()
    print(
        f"{args.group}: {len(others)} non-digits, {len(digits['wild'][1])} wild digits; today "
        f"({args.today or args.model}) reads {right['wild'].mean():.1%} of the wild digits and "
        f"{right['mnist'].mean():.2%} of MNIST test right, and is unsure on {unsure_today:.1%} "
        f"of the non-digits; validation: {len(y_val)} digits"
    )
    print("score        T      AUROC  FPR@95  flagged  lost(mnist)  lost(wild)  ECE(mnist)")
    rows = [(m, None) for m in args.methods.split(",")]
    if trained:
        rows.append((f"{trained['unknown_score']} *", trained))
    for method, meta in rows:
        for key in unknowns.META_KEYS:
            model.meta.pop(key, None)
        meta = meta or unknowns.calibrate(model, x_val, y_val, method, args.keep)
        model.meta.update(meta)
        results = {}
        for name, x in (("mnist", digits["mnist"][0]), ("wild", digits["wild"][0]),
                        ("others", others)):  # fmt: skip
            logits, features = unknowns.logits_and_features(model, x)
            means = np.asarray(meta.get("class_means", np.zeros(0)))
            precision = np.asarray(meta.get("feature_precision", np.zeros(0)))
            score = unknowns.scores(
                meta["unknown_score"], logits, features, meta["temperature"], means, precision
            )
            probabilities, known = predict.assess(model, x)
            results[name] = (score, probabilities, known)
        inside = np.concatenate([results["mnist"][0], results["wild"][0]])
        outside = results["others"][0]
        fpr = (outside >= np.quantile(inside, 0.05)).mean()
        _, p_out, known_out = results["others"]
        flagged = ~known_out | (p_out.max(1) < UNSURE_BELOW)
        lost = {k: (~results[k][2] & right[k]).sum() / right[k].sum() for k in right}
        calibration = unknowns.ece(results["mnist"][1], digits["mnist"][1])
        print(
            f"{method:11s} {meta['temperature']:5.2f}  {auroc(inside, outside):.4f}  "
            f"{fpr:6.1%}  {flagged.mean():6.1%}   {lost['mnist']:8.2%}   {lost['wild']:8.2%}"
            f"    {calibration:.2%}"
        )
        per_kind = {k: flagged[kinds == k].mean() for k in np.unique(kinds)}
        shares = ", ".join(f"{k} {v:.0%}" for k, v in per_kind.items())
        print(f"            flagged by kind: {shares}")
    plain = unknowns.ece(model.predict_proba(digits["mnist"][0]), digits["mnist"][1])
    print(f"(* as trained; ECE on MNIST test without calibration {plain:.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
