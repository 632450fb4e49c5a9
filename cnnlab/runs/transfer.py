"""Starting a run from a trained model: reuse what fits, make a new head for the new classes.

``start_from(source, data, config)`` gives the network a run trains. ``source`` is a name of
the registry of starting points (``"scratch"``: random weights, as the config's preset or
architecture file says; other names are added with :func:`register_start`), a model file or a
run folder, or a ``Sequential``. A trained source is adapted to the pictures of ``data``:

- **channels**: a grey model's first convolution is repeated over the three colour channels and
  divided by three; a colour model's is summed over them (a grey picture is one whose three
  channels are equal, so both keep the response to such a picture). Other channel counts, or a
  model that does not begin with a convolution, are refused in one line;
- **size**: the convolutions take any size; a dense layer whose input no longer fits the
  flattened size is made new (its weights cannot be reused), or the conversion is refused in
  one line when the convolutions cannot take the new size;
- **head**: the last dense layer (and what follows it, such as a softmax) is replaced by a new
  one with one output per class of ``data``; a source without a dense layer (a feature
  extractor) gets one after a flatten.

:func:`frozen_layers` says how many leading layers stay as they came for ``"head"`` (all but
the head), ``"top"`` (all before the last convolution) or ``"all"`` (none). The model's
``meta["from"]`` records the source, its data set and what was trained.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.imageset import ImageSet
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Conv2D, Dense, Flatten, Layer, Residual, Softmax
from cnnlab.engine.rng import resolve_rng
from cnnlab.engine.sequential import Sequential
from cnnlab.runs.build import check_loadable, make_model, with_probabilities
from cnnlab.runs.config import RunConfig
from cnnlab.runs.folder import model_path
from cnnlab.runs.model_input import describe_shape
from cnnlab.runs.pretrain import shipped_extractor
from cnnlab.runs.pretrained import fetch_pretrained, is_cached, load_pretrained
from cnnlab.runs.sizing import EXTRACTOR, PRETRAINED_STARTS

SCRATCH = "scratch"


class TransferError(CnnlabError):
    """A model that cannot be started from for these pictures, or a bad starting point."""


# Named starting points: a name → a function that gives the trained source model. "scratch"
# is not in it: it builds the config's own network with random weights.
_STARTS: dict[str, Callable[[], Sequential]] = {}


def register_start(name: str, load: Callable[[], Sequential]) -> None:
    """Make ``name`` a starting point of ``--from``: ``load()`` gives the trained model to
    adapt (it is called once per run, and may raise ``CnnlabError``)."""
    if not name or name == SCRATCH or Path(name).suffix:
        raise CnnlabError(
            f"a starting point needs a plain name other than {SCRATCH!r}, got {name!r}"
        )
    _STARTS[name] = load


def starting_points() -> tuple[str, ...]:
    """The names ``--from`` takes besides a model file or run folder."""
    return (SCRATCH, *sorted(_STARTS))


def ready_starts() -> tuple[str, ...]:
    """The pretrained starting points usable now without a network: the shipped extractor,
    and each published network whose weights are already in the cache."""
    return (EXTRACTOR, *(name for name in PRETRAINED_STARTS if is_cached(name)))


def fetch_start(source: str | None, progress: bool = True) -> None:
    """Download the weights of the published network ``source`` names, unless they are in the
    cache (nothing for any other source): a run calls it before it decodes a picture, so that
    one without a network stops at once."""
    if source in PRETRAINED_STARTS:
        fetch_pretrained(source, progress=progress)


def load_source(source: str) -> tuple[Sequential, str]:
    """The trained model a starting point names, and how to name it in ``meta["from"]``: a
    registered name, else a model file or run folder."""
    if source in _STARTS:
        return _STARTS[source](), source
    path = Path(source).expanduser()
    if not path.exists():
        raise TransferError(
            f"--from {source}: no such model file or run folder, and no starting point of that "
            f"name; use one of {', '.join(starting_points())} or a model file"
        )
    file = model_path(path)
    try:
        return Sequential.load(file), str(file.resolve())
    except CnnlabError as err:
        said = str(err)  # the loader's line names the file, as a rule
        if not said.startswith(str(file)):
            said = f"{file}: {said}"
        raise TransferError(f"--from {said}") from None


def start_from(source: str | Sequential, data: ImageSet, config: RunConfig) -> Sequential:
    """The network a run of ``config`` on ``data`` trains, starting from ``source``: random
    weights for ``"scratch"``, else ``source``'s trained layers adapted to ``data``'s pictures
    and classes with a new head. ``config`` is resolved (its ``train_layers`` is recorded)."""
    if isinstance(source, str) and source == SCRATCH:
        return make_model(config, data)
    if isinstance(source, Sequential):
        trained, name = source, str(source.meta.get("name", "a model"))
    else:
        trained, name = load_source(source)
    model, notes = adapt(trained, data, config.seed, name)
    model = with_probabilities(model, config.loss)
    check_loadable(model, data, name)
    model.meta["from"] = {
        "source": name,
        "dataset": trained.meta.get("dataset"),
        "classes": trained.meta.get("class_names"),
        "trained": config.train_layers,
        "changes": notes,
        "new_from": model.meta.pop("new_from"),
        **_normalisation(trained, data.input_shape[0]),
        **_published(trained),
    }
    return model


def _normalisation(trained: Sequential, channels: int) -> dict[str, list[float]]:
    """The per-channel ``mean`` and ``std`` a picture model ``trained`` normalised its input
    with, for ``channels`` channels (a grey picture takes their averages, a colour one repeats
    a grey model's); empty for a model without them (a digit model)."""
    mean, std = trained.meta.get("mean"), trained.meta.get("std")
    if not isinstance(mean, list) or not isinstance(std, list) or len(mean) != len(std):
        return {}
    if len(mean) != channels:
        mean, std = [float(np.mean(mean))] * channels, [float(np.mean(std))] * channels
    return {"mean": mean, "std": std}


def _published(trained: Sequential) -> dict[str, str]:
    """Where a published network's weights were downloaded from (``weights``: the pinned URL
    and what they are) and their ``licence``; empty for any other model."""
    if "licence" not in trained.meta or "source" not in trained.meta:
        return {}
    return {"weights": str(trained.meta["source"]), "licence": str(trained.meta["licence"])}


def kept_normalisation(model: Sequential) -> dict[str, list[float]]:
    """The ``mean`` and ``std`` a started model keeps from its source: its first layers
    learnt on pictures normalised so, and their batch statistics expect it (empty when it
    started from scratch or from a digit model)."""
    source = model.meta.get("from")
    if not isinstance(source, dict) or "mean" not in source:
        return {}
    return {"mean": source["mean"], "std": source["std"]}


def adapt(
    trained: Sequential, data: ImageSet, seed: int, name: str = "the model"
) -> tuple[Sequential, list[str]]:
    """A copy of ``trained`` that takes ``data``'s pictures and gives one score per class (the
    module docstring has the rules), and what was changed, in words."""
    if trained.input_shape is None or len(trained.input_shape) != 3:
        raise TransferError(
            f"--from {name}: the model declares no picture input shape (C, H, W); "
            "start from a picture model"
        )
    rng = resolve_rng(seed)
    layers = [_copy(layer) for layer in trained.layers]
    notes: list[str] = []
    have, want = tuple(trained.input_shape), data.input_shape
    if have[0] != want[0]:
        layers[0] = _convert_channels(layers[0], have[0], want[0], name)
        notes.append(f"first convolution converted from {have[0]} to {want[0]} channels")
    # The head: the last dense layer and what follows it are replaced.
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, Dense)]
    body = layers[: dense[-1]] if dense else list(layers)
    while body and isinstance(body[-1], Softmax):
        body.pop()
    body = _fit_size(body, want, name, rng, notes)
    reused = {id(layer) for layer in layers}
    fresh = [i for i, layer in enumerate(body) if id(layer) not in reused]  # made new just now
    shape = Sequential(body, want).output_shape(want) if body else want
    if len(shape) != 1:
        body.append(Flatten(dtype=trained.dtype))
    features = int(np.prod(Sequential(body, want).output_shape(want)))
    head = Dense(features, len(data.class_names), init="glorot", rng=rng, dtype=trained.dtype)
    notes.append(f"new head: {features} features → {len(data.class_names)} classes")
    kept = {k: v for k, v in trained.meta.items() if k == "preset"}  # the rest was the source's
    # The first layer made new (a dense layer that no longer fits, else the head): it and
    # every layer after it train, whatever ``train_layers`` says (``frozen_layers``).
    kept["new_from"] = fresh[0] if fresh else len(body)
    return Sequential([*body, head], want, kept), notes


def _copy(layer: Layer) -> Layer:
    """A layer with its own copies of the parameters and buffers (the source stays as it is),
    down to the sub-layers of a residual block, whose ``params`` are theirs."""
    return copy.deepcopy(layer)


def _convert_channels(first: Layer, have: int, want: int, name: str) -> Layer:
    if not isinstance(first, Conv2D):
        raise TransferError(
            f"--from {name}: it takes {have}-channel pictures and does not begin with a "
            f"convolution, so it cannot take {want}-channel ones; start from scratch"
        )
    if (have, want) not in ((1, 3), (3, 1)):
        raise TransferError(
            f"--from {name}: it takes {have}-channel pictures; only grey and colour (1 and 3 "
            f"channels) convert into each other, not into {want}"
        )
    config = first.config()
    weights = first.params["W"]  # (C_out, C_in, kH, kW)
    new = weights.repeat(3, axis=1) / 3 if want == 3 else weights.sum(axis=1, keepdims=True)
    conv = Conv2D(**{**config, "in_channels": want}, dtype=first.dtype)
    conv.params["W"][...] = new
    conv.params["b"][...] = first.params["b"]
    return conv


def _fit_size(
    body: list[Layer], want: tuple[int, ...], name: str, rng: Any, notes: list[str]
) -> list[Layer]:
    """``body`` for input ``want``: each dense layer whose input no longer fits made new."""
    out: list[Layer] = []
    shape: tuple[int, ...] = tuple(want)
    for layer in body:
        if isinstance(layer, Dense) and shape != (layer.in_features,):
            size = int(np.prod(shape))
            notes.append(f"dense layer of {layer.in_features} inputs made new for {size}")
            layer = Dense(size, layer.out_features, init=layer.init, rng=rng, dtype=layer.dtype)
        try:
            shape = tuple(layer.output_shape(shape))
        except CnnlabError:
            raise TransferError(
                f"--from {name}: its layers cannot take {describe_shape(want)} pictures "
                f"({type(layer).__name__} fails at {shape}); train with --image-size set to "
                "the size it was trained on"
            ) from None
        out.append(layer)
    return out


def frozen_layers(model: Sequential, train_layers: str) -> int:
    """How many leading layers of ``model`` stay as they are when ``train_layers`` train:
    ``"all"`` 0, ``"top"`` those before the last convolution or residual block, ``"head"``
    those before the last dense layer (at least the first layer trains); never a layer that
    was made new when the model was started (``meta["from"]["new_from"]``), which has
    nothing to keep."""
    kinds = {"head": Dense, "top": (Conv2D, Residual)}
    if train_layers == "all" or train_layers not in kinds:
        return 0
    last = [i for i, layer in enumerate(model.layers) if isinstance(layer, kinds[train_layers])]
    if not last and train_layers == "top":
        return frozen_layers(model, "head")
    frozen = last[-1] if last else 0
    source = model.meta.get("from")
    new_from = source.get("new_from") if isinstance(source, dict) else None
    if isinstance(new_from, int) and not isinstance(new_from, bool) and new_from >= 0:
        frozen = min(frozen, new_from)
    return frozen


# The pretrained feature extractor shipped in the package: where a picture folder starts.
register_start(EXTRACTOR, shipped_extractor)
# Published networks (ResNet-18 trained on ImageNet): downloaded into the cache the first time.
for _name in PRETRAINED_STARTS:
    register_start(_name, functools.partial(load_pretrained, _name))
