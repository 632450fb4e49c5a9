"""``cnnlab explain MODEL IMAGE``: what the network saw in one image, as numbers and pictures."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from cnnlab.cli._common import (
    Formatter,
    add_model_argument,
    answer,
    chosen_model,
    load_model,
    positive_int,
)

DESCRIPTION = """\
Explain one prediction. IMAGE is an image file (prepared as `cnnlab predict` does), a colour
photo bundled with cnnlab (photo:cat, photo:coffee, photo:astronaut, photo:rocket) or a picture
of a data set written DATASET:SPLIT:INDEX, e.g. mnist-sample:test:17 or shapes:test:3.

Prints the top-3 prediction, the occlusion and saliency summaries and the strongest filters,
and writes to --out (default: runs/explain/<IMAGE's file name>/ under the current folder,
e.g. runs/explain/my-digit.png/; the last line names it): preprocessing.png, prediction.png,
activation_maps_conv<n>.png (conv layer n, counted from 1 among the conv layers as the web lab
counts them), filters_conv1.png, occlusion.png (Zeiler & Fergus), saliency.png,
top_patches.png (the 9 patches of --patch-dataset that excite each filter of the second conv
layer most; digit models only) and report.html, one self-contained page with every figure. A
colour model's first-layer filters are drawn as colour patches.

example:
  cnnlab explain runs/20250101-120000 mnist-sample:test:17 --out runs/explain/seven
  cnnlab explain runs/my-photos photo:cat
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="show activation maps, filters, occlusion and saliency for one image",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    add_model_argument(p)
    p.add_argument("image", metavar="IMAGE", help="an image file, or DATASET:SPLIT:INDEX")
    p.add_argument(
        "--out", help="folder for the figures (default: runs/explain/<IMAGE's file name>/)"
    )
    p.add_argument(
        "--patches",
        type=positive_int,
        default=2000,
        help="how many test images to search for each filter's top patches",
    )
    p.add_argument("--patch-dataset", default="mnist-sample", help="where the patches come from")
    p.add_argument("--data-dir", help="folder holding downloaded data sets")
    p.add_argument("--occlusion-patch", type=positive_int, default=6, help="grey square side")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.tables import table, vector
    from cnnlab.explain.experiments import digits
    from cnnlab.explain.prediction import explain_prediction
    from cnnlab.runs.model_input import class_names, kind_of
    from cnnlab.runs.pictures import needed, read_picture
    from cnnlab.runs.predict import none_of_these, read

    model = load_model(chosen_model(args.model, args.runs_dir, *needed(args.image)))
    item = read_picture(model, args.image, data_dir=args.data_dir, original=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(args.image).name)
    out = Path(args.out) if args.out else Path("runs") / "explain" / slug
    earlier = (out / "report.html").exists()  # a picture of the same name explained before
    patch_images = None
    if kind_of(model) == "digits":
        patch_images, _ = digits(args.patches, "test", args.patch_dataset, args.data_dir)
    names = class_names(model)
    result = explain_prediction(
        model, item, patch_images, names, out_dir=out, occlusion_patch=args.occlusion_patch,
        patch_source=args.patch_dataset,
    )  # fmt: skip

    truth = f" (true class {names[item.label]})" if item.label is not None else ""
    print(f"image: {item.source}{truth}")
    h, w = item.display.shape[:2]
    print("preprocessing: " + (" -> ".join(item.steps) or "none") + f" -> network input {w}×{h}")
    (reading,) = read(model, [item])
    print(f"\nanswer: {answer(reading, none_of_these(model))}")
    print("prediction vector: " + vector(result.probabilities))
    top = [[r + 1, names[i], f"{p:.4f}"] for r, (i, p) in enumerate(result.top_k(3))]
    print(table(["rank", "class", "probability"], top))
    occ = result.occlusion
    low = np.unravel_index(int(occ.grid.argmin()), occ.grid.shape)
    print(
        f"\nocclusion ({occ.patch}×{occ.patch} grey patch, fill {occ.fill:.3f}): "
        f"P({names[occ.target]}) = {occ.base_probability:.4f} unoccluded, lowest "
        f"{occ.grid.min():.4f} with the patch's corner at row {occ.rows[low[0]]}, "
        f"column {occ.cols[low[1]]}"
    )
    peak = np.unravel_index(int(result.saliency.argmax()), result.saliency.shape)
    print(
        f"saliency: largest |d score/d pixel| = {result.saliency.max():.4g} "
        f"at row {peak[0]}, column {peak[1]}"
    )
    rows = []
    for number, layer in enumerate(result.layers, start=1):
        strongest = layer.maps.reshape(len(layer.maps), -1).max(axis=1)  # (C,)
        best = int(strongest.argmax())
        size = f"{layer.maps.shape[2]}×{layer.maps.shape[1]}"  # width × height
        row = [number, layer.name, layer.maps.shape[0], size, best, f"{strongest[best]:.3f}"]
        rows.append(row)
    header = ["conv layer", "model layer", "maps", "size", "strongest filter", "its peak"]
    print("\n" + table(header, rows))
    again = " (replacing the earlier explanation there; --out DIR keeps both)" if earlier else ""
    print(f"\nwrote {len(result.files)} files to {out}/{again}; open {result.files['report']}")
    return 0
