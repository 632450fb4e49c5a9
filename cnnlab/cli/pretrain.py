"""``cnnlab pretrain``: make the feature extractor that picture folders start from, again."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from cnnlab.cli._common import Formatter, positive_int
from cnnlab.engine.train import Callback, TrainState
from cnnlab.runs.pretrain import BUNDLED, PretrainRecipe, pretrain, save_extractor, sources


def register(sub: argparse._SubParsersAction) -> None:
    defaults = PretrainRecipe()
    p = sub.add_parser(
        "pretrain",
        help="make the pretrained feature extractor again",
        description=(
            "Draw the pretraining pictures (fractals, stroke glyphs, geometric outlines and "
            "the generated shapes set, on noise, flat and paper backgrounds) and train the "
            "feature extractor that picture folders and the Teach tab start from. The same "
            "seed and thread count give the same file; the shipped one is "
            f"{BUNDLED.name}, made with the defaults on 2 cores."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--out", default="extractor.npz", help="the extractor file to write")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seeds the pictures and weights")
    p.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    p.add_argument(
        "--per-class",
        type=positive_int,
        default=defaults.per_class,
        help="pictures of each fractal and glyph class",
    )
    p.set_defaults(func=run)


class _EpochLine(Callback):
    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        print(
            f"epoch {state.epoch}: loss {logs['train_loss']:.3f}, "
            f"accuracy {100 * logs['train_accuracy']:.1f}% ({logs['elapsed_s']:.0f} s)",
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    recipe = dataclasses.replace(
        PretrainRecipe(), seed=args.seed, epochs=args.epochs, per_class=args.per_class
    )
    recipe.check()
    for source in sources(recipe):
        print(f"- {source}")
    model = pretrain(recipe, callbacks=[_EpochLine()], log=print)
    save_extractor(model, args.out)
    print(f"wrote {args.out} ({model.meta['extractor']['seconds']:.0f} s)")
    return 0
