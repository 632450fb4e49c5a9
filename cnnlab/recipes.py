"""Training recipes: a named set of defaults for ``cnnlab train``.

Any option given on the command line overrides the recipe's value. ``default`` aims for the
best accuracy in a few minutes; ``fast`` for the shortest time to 99% on full MNIST.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class Recipe:
    """Defaults for one way of training; ``epochs`` depends on the size of the data set."""

    model: str
    optimizer: str
    lr: float
    batch_size: int
    schedule: str  # "constant", "cosine" or "onecycle"
    weight_decay: float
    augment: bool
    epochs_small: int  # for data sets of at most 20,000 training images (mnist-sample)
    epochs_large: int  # for full MNIST and Fashion-MNIST

    def epochs(self, n_train: int) -> int:
        return self.epochs_small if n_train <= 20_000 else self.epochs_large

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Measured with one BLAS thread, seed 0 (benchmarks/README.md has the details):
# default: 99.39% on MNIST and 91.0% on Fashion-MNIST after 10 epochs (12 for margin);
# fast: 99.12% on MNIST after 2 epochs. Augmentation is off: it costs about 7 ms per batch of
# 64 (half a training step) and lowered Fashion-MNIST to 89.4%.
RECIPES = {
    "default": Recipe(
        model="default",
        optimizer="adam",
        lr=2e-3,
        batch_size=64,
        schedule="onecycle",
        weight_decay=0.0,
        augment=False,
        epochs_small=12,
        epochs_large=12,
    ),
    "fast": Recipe(
        model="default",
        optimizer="adam",
        lr=3e-3,
        batch_size=64,
        schedule="onecycle",
        weight_decay=0.0,
        augment=False,
        epochs_small=3,
        epochs_large=2,
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``."""
    if name not in RECIPES:
        raise CnnlabError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
