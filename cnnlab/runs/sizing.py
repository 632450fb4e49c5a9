"""Training sized to the data: what a run leaves unset is chosen from how many pictures it has.

A folder of one's own pictures may hold 30 pictures or 30,000; one fixed schedule fits neither.
For a folder (any data set that is not a named one), the values a run leaves out are chosen
from the number of training pictures ``n`` and classes ``K``:

- **held out**: a folder of ``VAL_FROM`` training pictures a class or more sets aside
  ``FOLDER_VAL_FRACTION`` of each class's training pictures (at least one, but a class always
  keeps one to train on: :func:`cnnlab.data.stratified_split`) to pick the best epoch, to stop
  early and to calibrate the answers; a smaller folder holds none out and trains on all its
  pictures for the whole schedule (a few pictures a class judge an epoch badly, and every
  picture counts: 10 digits a class read 86.0 % of the test digits so, 81.2 % with 2 of them
  held out; benchmarks/README.md), and its "none of these" comes from the training pictures
  (:func:`cnnlab.runs.prototype.own_threshold`);
- **batch**: a power of two near ``n / PICTURES_PER_BATCH`` between ``MIN_BATCH`` and the
  recipe's batch, so a small folder still takes many steps;
- **epochs**: enough to reach ``TARGET_STEPS`` steps, between the recipe's epochs and
  ``MAX_EPOCHS``; early stopping ends the run after ``patience`` epochs without a better
  held-out score (accuracy, then loss), never before ``STOP_FROM`` of its epochs, and the best
  epoch's weights are kept;
- **balance**: when the largest class has over ``BALANCE_RATIO`` times the pictures of the
  smallest, each epoch repeats the smaller classes' pictures until every class is as large as
  the largest (balanced sampling);
- **augmentation**: crops and colour changes, and mirror images for colour pictures (a grey
  picture may be a digit or a letter, which a mirror changes), other channel orders and grey
  copies of colour pictures unless their colours alone tell the classes apart
  (:func:`colour_tells`), on folders under
  ``LARGE_FOLDER`` pictures; but not when only the new head of a started model trains: then
  the features of the layers that stay are computed once for the whole run
  (``config.RunConfig.resolve``).

A run started from a published network (``PRETRAINED_STARTS``: ResNet-18 trained on ImageNet,
:mod:`cnnlab.runs.pretrained`) loads a folder's pictures at ``FEATURE_SIZE`` pixels a side when
it gives no size (:func:`start_image_size`), and trains its new head alone below ``HEAD_ONLY``
pictures a class, its last residual block and the head above: never the whole network, whose
11 million weights a few hundred pictures would only unlearn.

Named sets (MNIST, Fashion-MNIST, CIFAR-10, ``shapes``) and folders of ``LARGE_FOLDER``
pictures or more keep their recipe's batch and epochs. A named set of ``NAMED_VAL_FROM``
training pictures or more holds out a small fixed share, ``NAMED_VAL_FRACTION`` (1,000 of
MNIST's 60,000, 167 of the bundled sample's 10,000, 100 of ``shapes``' 6,000), which is
measured every epoch but stops nothing: training calibrates the model's probabilities on it and
sets the threshold below which a picture is none of the classes ("not a digit"), which takes
50 pictures at least (``runs/unknowns.py``). Smaller sets (subsets) hold out nothing unless
``val_fraction`` is given. Every value given explicitly wins over these rules.
A resumed run holds out the same pictures; it looks for its best epoch among those it still
runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import data
from cnnlab.engine.backend import to_numpy
from cnnlab.engine.metrics import accuracy
from cnnlab.engine.sequential import Sequential
from cnnlab.engine.train import Callback, TrainState
from cnnlab.runs.pretrained import FEATURE_SIZE, OFFLINE_START, PRETRAINED

if TYPE_CHECKING:
    from cnnlab.runs.config import RunConfig
    from cnnlab.runs.recipes import Recipe

FOLDER_VAL_FRACTION = 0.15
# Outlier exposure (digits): generated non-digits mixed in, this many per training digit.
NONDIGIT_SHARE = 0.25
# A folder holds pictures out only from this many training pictures a class. Below it, the
# pictures held out were too few to choose an epoch well and were missed in training (the tune
# folders of benchmarks/few_examples.py, with the 5-epoch extractor: 10 digits a class 81.2 →
# 86.0 %, 40 drawn symbols 57.8 → 67.8 %, 150 coloured shapes 85.3 → 96.0 % with none held out).
VAL_FROM = 200
NAMED_VAL_FRACTION = 1 / 60
# A named set holds some out only beyond this many training pictures. The bundled sample's
# 10,000 lost 0.05 (default recipe) and 0.2 points (fast) of test accuracy with 166 of them
# held out, and gained a calibrated model that can say "not a digit": without them it is only
# ever unsure (benchmarks/README.md). Subsets keep all theirs.
NAMED_VAL_FROM = 5_001
LARGE_FOLDER = 20_000  # a folder this large trains as its recipe says
PICTURES_PER_BATCH = 24
MIN_BATCH = 8
# About 30 s of the vgg preset at 32×32 on two quiet cores (12 ms a step of 16 pictures).
# Measured on 3 classes of 150 coloured shapes: 1,200 steps read 74.7 % of the test pictures,
# 2,400 steps 86.7 % (benchmarks/README.md).
TARGET_STEPS = 2_400
MAX_EPOCHS = 100
MIN_PATIENCE = 10  # epochs without a better held-out score before stopping, at least
# No run stops early before this share of its epochs: until then a one-cycle schedule's rate is
# high and the held-out score wanders (measured: a 50-epoch run stopped at epoch 25 read 52.7 %
# of its test pictures, 74.7 % when let run).
STOP_FROM = 0.6
BALANCE_RATIO = 1.5
FEW_PICTURES = 5  # a class with fewer training pictures than this is named in the summary
UNBALANCED_RATIO = 10  # classes this unequal are named in the summary
# A model started from another one (but the shipped extractor, which trains whole): below
# HEAD_ONLY training pictures a class only the new head trains, below TOP_ONLY the last
# convolution block and the dense layers too, above it all.
HEAD_ONLY, TOP_ONLY = 30, 300
EXTRACTOR = OFFLINE_START  # the starting point of a folder that names none (runs/pretrain.py)
# Published networks a run may start from by name; each is fine-tuned at FEATURE_SIZE pixels.
PRETRAINED_STARTS = tuple(PRETRAINED)
EXTRACTOR_MIN_SIZE = 32  # its three pooling steps and 4×4 average need pictures this large
# Below this many training pictures a class a folder starts from the extractor; with more, it
# learns its own features better from scratch, and the smaller vgg preset trains faster (3
# classes of coloured shapes, 150 a class: 85.3 % from scratch, 74.0 % from the extractor;
# 10 digits a class: 78.4 and 81.2 %; 40 symbols a class: 48.9 and 57.8 %; measured again with
# none held out: the shapes 96.0 and 75.3 %, their first 50 a class 52.7 and 59.3 %;
# benchmarks/README.md).
EXTRACTOR_BELOW = 100
FINE_TUNE_LR = 0.2  # the recipe's learning rate is scaled by this when started layers train
# A folder whose pictures' mean colours alone tell this share of them apart (colour_tells) keeps
# its colours: no channel orders or grey copies (recipes.FOLDER_COLOUR_AUGMENT), which cost a
# folder of red, green and blue shapes 100 → 73.3 % of its test pictures. Measured on the tune
# folders of benchmarks/few_examples.py: that folder 77 %; photographed symbols 23 %, drawn
# symbols 40 %, coloured shapes 37 % (chance 33 %).
COLOUR_TELLS = 0.6


def default_start(dataset: str, kind: str, image_size: int | None, per_class: float) -> str:
    """Where a run that names no ``--from`` starts: the shipped extractor for a folder of
    pictures of at least ``EXTRACTOR_MIN_SIZE`` pixels and fewer than ``EXTRACTOR_BELOW``
    training pictures a class, else ``"scratch"`` (named sets keep their recipes)."""
    few = is_folder(dataset) and kind == "images" and per_class < EXTRACTOR_BELOW
    return EXTRACTOR if few and (image_size or 32) >= EXTRACTOR_MIN_SIZE else "scratch"


def layers_to_train(per_class: float, start: str = "") -> str:
    """``"head"``, ``"top"`` or ``"all"``: how much of a model started from ``start`` trains on
    data of ``per_class`` training pictures a class. The shipped extractor trains whole: its
    features come from formula-drawn pictures, and real ones need more than its last block to
    adapt (on 10 digits a class: head 71.2 %, top 81.2 %, all 81.8 %; with colour made less
    telling, ``recipes.FOLDER_COLOUR_AUGMENT``, 40 photographed symbols a class: top 42.2 %,
    all 47.8 %; benchmarks/README.md). It costs about 1.7 times the time of training its top
    (10 digits a class: 41 s against 24 s on two shared cores). A published network never
    trains whole (the module docstring)."""
    if start == EXTRACTOR:
        return "all"
    if start in PRETRAINED_STARTS:
        return "head" if per_class < HEAD_ONLY else "top"
    return "head" if per_class < HEAD_ONLY else "top" if per_class < TOP_ONLY else "all"


def start_image_size(dataset: str, start: str | None) -> int | None:
    """The picture size a run on ``dataset`` from ``start`` loads a folder at when it gives
    none: ``FEATURE_SIZE`` for a published network (a quarter of the work of the 224 pixels it
    was trained at), else None (the folder's default)."""
    return FEATURE_SIZE if is_folder(dataset) and start in PRETRAINED_STARTS else None


def is_folder(dataset: str) -> bool:
    """Whether ``dataset`` is a folder of one's own pictures rather than a named set."""
    return str(dataset) not in data.PICTURE_DATASETS


def held_out(counts: Sequence[int], fraction: float) -> int:
    """How many pictures :func:`cnnlab.data.stratified_split` holds out of classes of
    ``counts`` pictures at ``fraction``."""
    if fraction <= 0:
        return 0
    return sum(max(min(max(round(c * fraction), 1), c - 1), 0) for c in counts)


def batch_for(n: int, largest: int) -> int:
    """A power of two near ``n / PICTURES_PER_BATCH``, in [``MIN_BATCH``, ``largest``]."""
    wanted = max(n / PICTURES_PER_BATCH, 1.0)
    return int(min(max(2 ** round(math.log2(wanted)), MIN_BATCH), max(largest, MIN_BATCH)))


def epoch_size(counts: Sequence[int], balance: bool) -> int:
    """Pictures per epoch: all of them, or with balancing every class as large as the largest."""
    return len(counts) * max(counts) if balance and counts else int(sum(counts))


def choose(config: RunConfig, recipe: Recipe, counts: Sequence[int]) -> dict[str, Any]:
    """The values ``config`` leaves out (None) that depend on the data, for training pictures
    ``counts`` per class (before any is held out); see the module docstring for the rules."""
    counts = [int(c) for c in counts]
    n = sum(counts)
    folder = is_folder(config.dataset) and n < LARGE_FOLDER
    chosen: dict[str, Any] = {}
    fraction = config.val_fraction
    if fraction is None:
        fraction = FOLDER_VAL_FRACTION if folder and n >= VAL_FROM * len(counts) else 0.0
        if not is_folder(config.dataset) and n >= NAMED_VAL_FROM:
            fraction = NAMED_VAL_FRACTION
    chosen["val_fraction"] = fraction
    kept = [c - h for c, h in zip(counts, _held_per_class(counts, fraction), strict=True)]
    balance = config.balance
    if balance is None:
        balance = folder and min(kept) > 0 and max(kept) > BALANCE_RATIO * min(kept)
    chosen["balance"] = balance
    per_epoch = epoch_size(kept, balance)
    batch = config.batch_size
    if batch is None:
        batch = batch_for(per_epoch, recipe.batch_size) if folder else recipe.batch_size
    chosen["batch_size"] = batch
    epochs = config.epochs
    if epochs is None:
        epochs = recipe.epochs(n)
        if folder:
            steps = math.ceil(per_epoch / batch)
            epochs = min(max(math.ceil(TARGET_STEPS / steps), epochs), MAX_EPOCHS)
    chosen["epochs"] = epochs
    patience = config.patience
    if patience is None:
        patience = max(MIN_PATIENCE, epochs // 4) if folder and fraction > 0 else 0
    chosen["patience"] = patience
    augment = config.augment
    if augment is None:
        augment = True if folder else recipe.augment
    chosen["augment"] = augment
    return chosen


def _held_per_class(counts: Sequence[int], fraction: float) -> list[int]:
    return [held_out([c], fraction) for c in counts]


def summary(
    given: RunConfig, config: RunConfig, counts: Sequence[int], names: Sequence[str]
) -> str:
    """One line: what the run chose and why, e.g. ``450 pictures, 3 classes: batch 16, up to 60
    epochs (≈ 1,200 steps), 66 held out for early stopping, classes balanced``. ``given`` is the
    configuration as asked (None: to choose), ``config`` the resolved one."""
    counts = [int(c) for c in counts]
    n = sum(counts)
    held = held_out(counts, config.val_fraction)
    held_each = _held_per_class(counts, config.val_fraction)
    kept = [c - h for c, h in zip(counts, held_each, strict=True)]
    per_epoch = epoch_size(kept, config.balance)
    if config.outlier_exposure:
        per_epoch += int(NONDIGIT_SHARE * per_epoch)
    steps = math.ceil(per_epoch / config.batch_size) * config.epochs

    def mark(field: str) -> str:
        return " (given)" if getattr(given, field) is not None else ""

    sized = is_folder(config.dataset) and n < LARGE_FOLDER
    why = "sized to the data" if sized else f"the {config.recipe} recipe's"
    parts = [
        f"{n:,} pictures, {len(counts)} classes ({why}): batch {config.batch_size}"
        f"{mark('batch_size')}",
        f"{'up to ' if config.patience else ''}{config.epochs} epochs{mark('epochs')} "
        f"(≈ {steps:,} steps)",
    ]
    if held and config.patience:
        parts.append(f"{held} held out for early stopping (patience {config.patience})")
    elif held:
        parts.append(f"{held} held out to measure and calibrate on")
    elif config.outlier_exposure:
        parts.append("nothing held out to calibrate on: it can say 'unsure', never 'not a digit'")
    if config.balance:
        parts.append("classes balanced")
    if config.augment:
        parts.append("augmented")
    if config.start_from not in (None, "scratch"):
        size = config.image_size
        at = f" at {size}×{size} pixels" if size and config.start_from in PRETRAINED_STARTS else ""
        parts.append(f"from {config.start_from}{at}, training {config.train_layers}")
    line = ", ".join(parts)
    warnings = []
    if counts and min(counts) < FEW_PICTURES:
        small = names[int(np.argmin(counts))]
        warnings.append(
            f"class {small!r} has only {min(counts)} training pictures: add more for a useful model"
        )
    elif counts and max(counts) > UNBALANCED_RATIO * min(counts):
        small, large = names[int(np.argmin(counts))], names[int(np.argmax(counts))]
        warnings.append(
            f"class {small!r} has {min(counts)} pictures against {max(counts)} of {large!r}: "
            "expect it to be read worse; add pictures of it"
        )
    return "; ".join([line, *warnings])


def colour_tells(images: np.ndarray, labels: np.ndarray) -> bool:
    """Whether the mean colour of each picture alone tells its class, for uint8 or float
    pictures ``(N, C, H, W)`` and their labels ``(N,)``: each picture's mean colour, scaled by
    the spread of all of them, is nearest the mean of its own class (itself left out) for at
    least ``COLOUR_TELLS`` of the pictures. Grey pictures never do."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[1] != 3 or len(labels) < 2:
        return False
    colour = images.mean(axis=(2, 3), dtype=np.float64)  # (N, 3)
    colour /= colour.std(axis=0) + 1e-9
    classes = int(labels.max()) + 1
    own = np.eye(classes, dtype=bool)[labels]  # (N, K): each picture's class
    sums = np.zeros((classes, 3))
    np.add.at(sums, labels, colour)
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    # Each class's mean without the picture itself when it is of that class: (N, K, 3).
    left = counts[None, :] - own
    means = (sums[None] - own[..., None] * colour[:, None]) / np.maximum(left, 1)[..., None]
    distance = np.where(left > 0, ((colour[:, None] - means) ** 2).sum(-1), np.inf)
    return bool(np.mean(distance.argmin(axis=1) == labels) >= COLOUR_TELLS)


def balanced_indices(labels: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Indices into ``labels`` ``(N,)`` in which every class appears as often as the largest:
    a smaller class's pictures repeated whole, the remainder drawn without repeats (seeded)."""
    rng = np.random.default_rng([seed, 2])
    groups = [np.flatnonzero(labels == k) for k in range(n_classes)]
    largest = max(len(g) for g in groups)
    out = []
    for group in groups:
        if len(group) == 0:
            continue
        whole, rest = divmod(largest, len(group))
        out += [np.tile(group, whole), rng.choice(group, rest, replace=False)]
    return np.sort(np.concatenate(out))


class BestEpoch(Callback):
    """Measures the held-out pictures after every epoch (``val_loss``, ``val_accuracy`` in the
    epoch's history entry), remembers the weights of the best epoch (highest accuracy, then
    lowest loss), and with ``patience > 0`` stops the run after that many epochs without a
    better one, once ``stop_from`` epochs have run. ``restore()`` puts the best epoch's weights
    back.

    ``model`` is the network being fitted; ``x_val`` ``(N, ...)`` its inputs, ``y_val`` ``(N,)``.
    """

    def __init__(
        self,
        model: Sequential,
        loss_fn: Any,
        x_val: Any,
        y_val: np.ndarray,
        patience: int,
        stop_from: int = 0,
    ) -> None:
        self.stop_from = stop_from
        self.model, self.loss_fn = model, loss_fn
        self.x_val, self.y_val = x_val, np.asarray(y_val)
        self.patience = patience
        self.best: tuple[float, float] | None = None
        self.best_epoch = 0
        self.weights: list[dict[str, Any]] | None = None
        self.stopped_early = False

    def on_epoch_end(self, state: TrainState, logs: dict[str, Any]) -> None:
        outputs = self.model.outputs(self.x_val, batch_size=1000)
        loss = float(self.loss_fn.forward(outputs, self.y_val))
        acc = accuracy(self.y_val, to_numpy(outputs.argmax(1)))
        logs["val_loss"], logs["val_accuracy"] = loss, acc
        score = (acc, -loss)
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, state.epoch
            self.weights = [
                {k: copy.deepcopy(v) for k, v in {**layer.params, **layer.buffers}.items()}
                for layer in self.model.layers
            ]
        elif (
            self.patience
            and state.epoch >= self.stop_from
            and state.epoch - self.best_epoch >= self.patience
        ):
            self.stopped_early = True
            state.stop = True

    def restore(self) -> int:
        """Put the best epoch's weights back (in place); returns that epoch (1-based)."""
        if self.weights is not None:
            for layer, saved in zip(self.model.layers, self.weights, strict=True):
                for key, value in saved.items():
                    store = layer.params if key in layer.params else layer.buffers
                    store[key][...] = value
        return self.best_epoch
