"""``RunConfig``: everything that decides what a training run computes, in one schema.

Both front ends build one: the command line from its options (``cnnlab train``), the web lab
from its Train form. A value left out (None) takes the recipe's; ``resolve`` fills them in,
``validate`` refuses a bad value with a one-line ``CnnlabError``. The run folder's
``config.json`` is ``to_json()`` plus the architecture and the data sizes; ``from_json`` reads
it back, including files written before this schema (missing fields take their old defaults).

``subset=N`` means the first N training images, on both front ends: the same images whatever
the seed, and a resumed run finds them again.

``dataset`` is a named picture set (``data.PICTURE_DATASETS``) or a folder of pictures, one
sub-folder per class; ``image_size`` resizes a folder's pictures (and renders ``shapes``).
Without a ``recipe``, digits get ``default`` and every other set ``pictures``. Batch, epochs,
the held-out share, early stopping, class balance and augmentation left out are chosen from the
data (``cnnlab.runs.sizing``): sized for a folder, the recipe's for a named set.

``start_from`` is where the weights start: ``"scratch"`` (random), a model file or run folder,
or a name registered in ``cnnlab.runs.transfer``, such as ``"extractor"`` (the pretrained
feature extractor shipped in the package, :mod:`cnnlab.runs.pretrain`), where a folder of
few pictures starts when it names none (``sizing.default_start``), or ``"resnet18-imagenet"``
(ResNet-18 trained on ImageNet, downloaded once: :mod:`cnnlab.runs.pretrained`; a folder is
then read at 112 pixels unless ``image_size`` is given); ``train_layers`` says which of its
layers train (``"head"``, ``"top"`` or ``"all"``; chosen from the data's size when left out;
with the head alone, nothing is augmented unless asked, so that the features of the layers
that stay are computed once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab import data
from cnnlab.data.folders import MAX_SIZE as MAX_IMAGE_SIZE
from cnnlab.data.folders import MIN_SIZE as MIN_IMAGE_SIZE
from cnnlab.engine import validate as check
from cnnlab.engine.backend import DEVICES
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.losses import LOSSES
from cnnlab.engine.optim import OPTIMIZERS
from cnnlab.runs import sizing
from cnnlab.runs.recipes import RECIPES, SCHEDULES, get_recipe
from cnnlab.runs.zoo import ACTIVATIONS, PRESETS

DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}  # for an optimizer other than the recipe's
ADAM_BETAS = (0.9, 0.999)
SGD_MOMENTUM = 0.9
WHO = "run"  # how the checks name the one who complains: "run: lr must be ..."
# Keys of a config.json that describe the run's result, not its configuration.
RECORD_KEYS = ("architecture", "n_train", "n_test")
TRAIN_LAYERS = ("head", "top", "all")
# What a resolved record written before training was sized to the data meant.
_BEFORE_SIZING = {
    "val_fraction": 0.0, "patience": 0, "balance": False, "start_from": "scratch",
    "train_layers": "all",
}  # fmt: skip
# Names that the web lab's config.json used before there was one schema.
_OLD_NAMES = {"preset": "model", "learning_rate": "lr"}


@dataclass(frozen=True)
class RunConfig:
    """One training run. ``None`` means "the recipe's" until ``resolve`` fills it in."""

    recipe: str | None = None  # None: "default" for digits, "pictures" for other pictures
    dataset: str = "mnist-sample"  # a named set, or a folder of pictures
    image_size: int | None = None  # a folder's pictures are resized to this (default 32)
    data_dir: str | None = None
    subset: int | None = None  # train on the first N training images only
    model: str | None = None  # a preset name or an architecture .json file
    activation: str = "relu"
    optimizer: str | None = None
    lr: float | None = None  # the peak learning rate
    momentum: float = SGD_MOMENTUM  # SGD's; Adam ignores it
    betas: tuple[float, float] | None = None  # Adam's; SGD ignores them
    weight_decay: float | None = None
    schedule: str | None = None  # "constant", "cosine" or "onecycle"
    batch_size: int | None = None
    epochs: int | None = None  # None: the recipe's for the data set's size
    loss: str = "cross-entropy"
    label_smoothing: float | None = None
    augment: bool | None = None
    # outlier exposure: the weight of a pull towards uniform probabilities on generated
    # non-digits mixed into a digit run's training pictures (one per four digits); 0 is off,
    # None the recipe's for digits with the cross-entropy loss, else 0
    outlier_exposure: float | None = None
    seed: int = 0
    device: str = "cpu"
    monitor: bool = False  # record per-layer gradient flow (the command line's figure)
    val_fraction: float | None = None  # share of each class's training pictures held out
    patience: int | None = None  # epochs without a better held-out score before stopping; 0: never
    balance: bool | None = None  # repeat the smaller classes' pictures to the largest's count
    start_from: str | None = None  # "scratch", a model file or run folder, or a registered name
    train_layers: str | None = None  # "head", "top" or "all" of a model started from

    def resolve(
        self, n_train: int, kind: str = "digits", counts: Sequence[int] | None = None
    ) -> RunConfig:
        """Every None replaced by the recipe's value for ``n_train`` training images of ``kind``
        (``"digits"`` or ``"images"``), or, for what depends on the data, chosen from its
        per-class training counts ``counts`` (default: ``n_train`` in one class;
        ``cnnlab.runs.sizing``); validated."""
        self.validate()
        if self.outlier_exposure and kind != "digits":
            raise CnnlabError(
                f"{WHO}: outlier exposure uses generated non-digits, for digit data sets only; "
                "drop it"
            )
        name = self.recipe or ("default" if kind == "digits" else "pictures")
        recipe = get_recipe(name)
        chosen = sizing.choose(self, recipe, counts if counts is not None else [n_train])
        per_class = n_train / max(len(counts) if counts is not None else 1, 1)
        start = self.start_from
        if start is None:
            start = sizing.default_start(self.dataset, kind, self.image_size, per_class)
        layers = self.train_layers
        if layers is None:
            layers = "all" if start == "scratch" else sizing.layers_to_train(per_class, start)
        if self.augment is None and layers == "head":  # the frozen layers' features once
            chosen["augment"] = False
        optimizer = self.optimizer if self.optimizer is not None else recipe.optimizer
        own = optimizer == recipe.optimizer  # a recipe's lr and betas belong to its optimizer
        lr = self.lr if self.lr is not None else recipe.lr if own else DEFAULT_LR[optimizer]
        if self.lr is None and start != "scratch" and layers != "head":
            lr *= sizing.FINE_TUNE_LR  # a gentler rate keeps what the start had learnt
        smoothing = self.label_smoothing
        if smoothing is None:
            smoothing = recipe.label_smoothing if self.loss == "cross-entropy" else 0.0
        exposure = self.outlier_exposure
        if exposure is None:
            mine = kind == "digits" and self.loss == "cross-entropy"
            exposure = recipe.outlier_exposure if mine else 0.0
        resolved = dataclasses.replace(
            self,
            recipe=name,
            model=self.model if self.model is not None else recipe.model,
            optimizer=optimizer,
            lr=lr,
            betas=tuple(
                self.betas if self.betas is not None else recipe.betas if own else ADAM_BETAS
            ),
            weight_decay=recipe.weight_decay if self.weight_decay is None else self.weight_decay,
            schedule=self.schedule if self.schedule is not None else recipe.schedule,
            label_smoothing=smoothing,
            outlier_exposure=exposure,
            start_from=start,
            train_layers=layers,
            **chosen,
        )
        resolved.validate()
        return resolved

    def validate(self) -> None:
        """Refuse a value no run can use; None (the recipe's) is always allowed."""
        data.check_picture_source(self.dataset)
        check.choice(WHO, "activation", self.activation, tuple(ACTIVATIONS))
        check.choice(WHO, "loss", self.loss, tuple(LOSSES))
        check.choice(WHO, "device", self.device, tuple(DEVICES))
        check.integer(WHO, "seed", self.seed, 0)
        check.number(WHO, "momentum", self.momentum, 0, 1, high_open=True)
        optional = {
            "recipe": lambda v: check.choice(WHO, "recipe", v, tuple(RECIPES)),
            "image_size": lambda v: check.integer(WHO, "image_size", v, MIN_IMAGE_SIZE)
            and check.number(WHO, "image_size", v, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
            "optimizer": lambda v: check.choice(WHO, "optimizer", v, tuple(OPTIMIZERS)),
            "schedule": lambda v: check.choice(WHO, "schedule", v, SCHEDULES),
            "model": lambda v: v.endswith(".json") or check.choice(WHO, "model", v, tuple(PRESETS)),
            "subset": lambda v: check.integer(WHO, "subset", v, 1),
            "batch_size": lambda v: check.integer(WHO, "batch_size", v, 1),
            "epochs": lambda v: check.integer(WHO, "epochs", v, 1),
            "lr": lambda v: check.number(WHO, "lr", v, 0, low_open=True),
            "weight_decay": lambda v: check.number(WHO, "weight_decay", v, 0),
            "betas": _check_betas,
            "label_smoothing": lambda v: check.number(
                WHO, "label_smoothing", v, 0, 1, high_open=True
            ),
            "outlier_exposure": lambda v: check.number(WHO, "outlier_exposure", v, 0),
            "val_fraction": lambda v: check.number(WHO, "val_fraction", v, 0, 0.5),
            "patience": lambda v: check.integer(WHO, "patience", v, 0),
            "balance": lambda v: _check_type("balance", v, bool, "true or false"),
            "start_from": lambda v: _check_type("start_from", v, str, "a name or a path"),
            "train_layers": lambda v: check.choice(WHO, "train_layers", v, TRAIN_LAYERS),
        }  # fmt: skip
        for name, validate in optional.items():
            if getattr(self, name) is not None:
                validate(getattr(self, name))
        if self.outlier_exposure and self.loss != "cross-entropy":
            raise CnnlabError(
                f"{WHO}: outlier exposure applies to the cross-entropy loss; drop it or the loss"
            )
        if self.label_smoothing and self.loss != "cross-entropy":
            raise CnnlabError(
                f"{WHO}: label smoothing applies to the cross-entropy loss; drop it or the loss"
            )

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        if out["betas"] is not None:
            out["betas"] = list(out["betas"])
        return out

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunConfig:
        """A config from ``to_json``'s dict or an older config.json / checkpoint record; keys
        that describe the run's result are skipped, an unknown key is refused."""
        if not isinstance(record, dict):
            raise CnnlabError(f"a run configuration must be a JSON object, got {record!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {_OLD_NAMES.get(k, k): v for k, v in record.items() if k not in RECORD_KEYS}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise CnnlabError(f"unknown run configuration keys: {', '.join(unknown)}")
        if "optimizer" in values:  # a resolved record: older ones lack the newer fields
            values.setdefault("betas", ADAM_BETAS)
            values.setdefault("label_smoothing", 0.0)
            values.setdefault("outlier_exposure", 0.0)
            for key, before in _BEFORE_SIZING.items():
                values.setdefault(key, before)
        if values.get("betas") is not None:
            values["betas"] = tuple(values["betas"])
        if values.get("recipe") is None:  # the web lab's runs had no recipe
            values.pop("recipe", None)
        config = cls(**values)
        config.validate()
        return config


def _check_betas(betas: Any) -> None:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise CnnlabError(f"{WHO}: betas must be two numbers in [0, 1), got {betas!r}")
    for beta in betas:
        check.number(WHO, "betas", beta, 0, 1, high_open=True)


def _check_type(name: str, value: Any, kind: type, wanted: str) -> None:
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise CnnlabError(f"{WHO}: {name} must be {wanted}, got {value!r}")
