"""Training recipes: a named set of defaults for ``cnnlab train``.

Any option given on the command line overrides the recipe's value. ``default`` aims for the
best accuracy in a few minutes; ``fast`` for the shortest time to 99% on full MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.engine.errors import CnnlabError

SCHEDULES = ("constant", "cosine", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """Defaults for one way of training; ``epochs`` depends on the size of the data set."""

    model: str
    optimizer: str
    lr: float
    batch_size: int
    schedule: str  # one of SCHEDULES
    weight_decay: float
    augment: bool
    epochs_small: int  # for data sets of at most 20,000 training images (mnist-sample)
    epochs_large: int  # for full MNIST and Fashion-MNIST
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's moment decay rates
    label_smoothing: float = 0.0  # of the cross-entropy loss
    outlier_exposure: float = 0.0  # on digits: the weight of the pull on generated non-digits

    def epochs(self, n_train: int) -> int:
        return self.epochs_small if n_train <= 20_000 else self.epochs_large


# Measured with one BLAS thread, seed 0 (benchmarks/README.md has the details):
# default: 99.39% on MNIST and 91.0% on Fashion-MNIST after 10 epochs (12 for margin) without
# augmentation. Augmented as AUGMENT says (candidate C1 of the table in benchmarks/README.md,
# "Real-world digits"): 99.61% on MNIST, 91.23% on Fashion-MNIST, and the tune sources of
# benchmarks/wild_digits.py read better (bundled sample: outlined 93.75 -> 95.5 %, tiny 95.0 ->
# 97.25, slanted 89.75 -> 91.5). Distorting every digit (C3) lost printed (98.25 -> 96.25) and
# outlined (-> 92.75): the net must still see plain digits, so half of each batch is left
# alone, which also halves the cost (3.6 ms per batch of 64). A 20 degree shear (C4) read
# slanted digits about 1 point better on full MNIST but outlined ones 0.5-0.75 worse, within
# the noise of 400 pictures; the milder one kept MNIST higher (99.61 against 99.52%).
# Outlier exposure at weight 0.5 (one generated non-digit per four digits): of 600 generated
# non-digits, 92.5 % answered "not a digit" or "unsure" against 50 % without; 1.6 % of the wild
# digits read correctly lose their answer (benchmarks/README.md, "Pictures of no digit").
# fast: one epoch of the batch-normalised ``fast`` preset: 99.11–99.25% on MNIST over seeds
# 0–4. Over seeds 0–3 the same epoch without label smoothing gives 98.87–99.05%, and with
# Adam's usual β₂ = 0.999 99.04–99.15%; β₂ = 0.99 lets Adam's step sizes follow the
# fast-changing gradients of a one-epoch run.

# The distortion of ``--augment`` (``cnnlab.data.augment.random_handwriting``'s options): each
# digit of a batch, with chance ``probability``, is shifted, turned, scaled, slanted, bent by an
# elastic field (Simard et al. 2003), thickened or thinned and blurred; the reasons are above.
AUGMENT = {
    "max_shift": 2.0,
    "max_rotate_deg": 10.0,
    "max_scale": 0.1,
    "max_shear_deg": 10.0,
    "elastic_alpha": 0.5,
    "elastic_sigma": 3.0,
    "max_thicken": 0.3,
    "max_blur": 0.3,
    "probability": 0.5,
}

# The changes of ``--augment`` for pictures that are not digits
# (``cnnlab.data.augment.random_picture``): a shift of up to ``padding`` pixels, brightness,
# contrast and saturation changes of up to ``jitter``, and mirror images of colour pictures.
PICTURE_AUGMENT = {"padding": 4, "jitter": 0.2}
# And for a folder of one's own colour pictures, colour made a less telling cue than shape: half
# the pictures get their channels in another order, a fifth become grey
# (``cnnlab.data.augment.random_channels``). A few dozen pictures a class often share colours
# or backgrounds by chance, which a network learns before the shapes. On the tune folders of
# benchmarks/few_examples.py, with the whole extractor training (``sizing.layers_to_train``),
# 40 photographed symbols a class read 46.7-47.8 % of the test pictures (seeds 0 and 1) against
# 38.9-41.1 % without; drawn symbols and 150 coloured shapes a class stayed within a test
# picture or two (benchmarks/README.md, "Colour made a less telling cue"). A folder whose classes
# differ by colour would pay (3 classes of red, green and blue shapes: 73.3 % of their test
# pictures with it, 100 % without): one whose mean colours alone tell its pictures apart keeps
# its colours (``sizing.colour_tells``). Only a network started from pretrained features gets
# them: trained from scratch, 150 coloured stars, crosses and diamonds a class (a fresh folder of
# benchmarks/few_examples.py's held-out kind) read 60.7 % with them and 73.3 % without; circles,
# squares and triangles 92.0 and 92.7 %.
FOLDER_COLOUR_AUGMENT = {"permute": 0.5, "grey": 0.2}

# pictures: the recipe for every data set that is not digits (colour sets, image folders).
# On ``shapes`` (seed 0, 6 epochs of the ``vgg`` preset): lr 5e-3 reached 89.9% (87.6% once
# training used both cores: sums in another order), lr 2e-3 58.9% after 4 epochs; crop-and-flip
# augmentation lowered 6 epochs to 83.1%: it needs longer runs to pay, so it is off by default
# (``--augment`` turns it on).
RECIPES = {
    "default": Recipe(
        model="default",
        optimizer="adam",
        lr=2e-3,
        batch_size=64,
        schedule="onecycle",
        weight_decay=0.0,
        augment=True,
        epochs_small=12,
        epochs_large=12,
        outlier_exposure=0.5,
    ),
    "fast": Recipe(
        model="fast",
        optimizer="adam",
        lr=5e-3,
        batch_size=64,
        schedule="onecycle",
        weight_decay=0.0,
        augment=False,
        epochs_small=4,
        epochs_large=1,
        betas=(0.9, 0.99),
        label_smoothing=0.1,
    ),
    "pictures": Recipe(
        model="vgg",
        optimizer="adam",
        lr=5e-3,
        batch_size=64,
        schedule="onecycle",
        weight_decay=0.0,
        augment=False,
        epochs_small=6,
        epochs_large=15,
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``."""
    if name not in RECIPES:
        raise CnnlabError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
