"""Looking inside a trained network: activation maps, occlusion, saliency, top patches.

Every function takes a ``Sequential`` and one preprocessed input ``x`` of shape ``(1, 1, H, W)``
(float, in the model's dtype) unless it says otherwise, and runs the model in evaluation mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    Layer,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from cnnlab.engine.sequential import Sequential


def conv_layer_indices(model: Sequential) -> list[int]:
    """Positions of the ``Conv2D`` layers in ``model.layers``."""
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]


def _check_one(model: Sequential, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[0] != 1:
        raise CnnlabError(f"expected one input of shape (1, C, H, W), got {x.shape}")
    return x.astype(model.dtype, copy=False)


@contextlib.contextmanager
def inference_with_gradients(model: Sequential) -> Iterator[Sequential]:
    """Evaluation mode (dropout off, batch norm on its running statistics) for a forward pass
    whose backward pass is wanted too: on a batch this small every layer keeps what backward
    needs in evaluation mode as well."""
    modes = [layer.training for layer in model.layers]
    model.eval()
    try:
        yield model
    finally:
        for layer, mode in zip(model.layers, modes, strict=True):
            layer.training = mode


def layer_outputs(model: Sequential, x: np.ndarray) -> list[np.ndarray]:
    """The output of every layer for input ``x`` ``(N, C, H, W)``, in evaluation mode."""
    was_training = model.training
    model.eval()
    try:
        model.forward(x)  # validates the input once
        outputs, h = [], x
        for layer in model.layers:
            h = layer.forward(h)
            outputs.append(h)
    finally:
        if was_training:
            model.train()
    return outputs


@dataclass
class LayerMaps:
    """The maps one conv layer gives for one input."""

    index: int  # position in model.layers
    name: str  # e.g. "0 Conv2D(1, 16, 5, padding=2)"
    maps: np.ndarray  # (C_out, H_out, W_out)
    activation: str = ""  # the activation applied to the maps, e.g. "ReLU"; "" for none


def activation_maps(model: Sequential, x: np.ndarray) -> list[LayerMaps]:
    """The output of every conv layer (before pooling and activation) for one input.

    This is the article's activation map: at each position of the filter, the pixels times the
    weights, summed (plus the bias).
    """
    x = _check_one(model, x)
    outputs = layer_outputs(model, x)
    return [
        LayerMaps(i, f"{i} {model.layers[i]!r}", np.asarray(outputs[i][0]))
        for i in conv_layer_indices(model)
    ]


def activation_after(model: Sequential, index: int) -> Layer | None:
    """The activation layer that follows the layer at ``index`` (pooling may sit between), or
    None when a conv or dense layer comes first."""
    for layer in model.layers[index + 1 :]:
        if isinstance(layer, ReLU | Sigmoid | Tanh):
            return layer
        if isinstance(layer, Conv2D | Dense):
            return None
    return None


def maps_after_activation(model: Sequential, x: np.ndarray) -> list[LayerMaps]:
    """``activation_maps`` passed through the activation that follows each conv layer in the
    model (``LayerMaps.activation`` names it): what the next layer receives, before pooling
    (max pooling commutes with a monotone activation)."""
    out = []
    for layer_maps in activation_maps(model, x):
        act = activation_after(model, layer_maps.index)
        if act is not None:
            maps = type(act)(dtype=model.dtype).forward(layer_maps.maps[None])[0]
            layer_maps = LayerMaps(
                layer_maps.index, layer_maps.name, np.asarray(maps), type(act).__name__
            )
        out.append(layer_maps)
    return out


def predict_one(model: Sequential, x: np.ndarray) -> np.ndarray:
    """Class probabilities ``(K,)`` for one input."""
    return np.asarray(model.predict_proba(_check_one(model, x)))[0]


@dataclass
class Occlusion:
    """Zeiler & Fergus occlusion: the class probability with a grey patch at each position."""

    target: int  # the class whose probability is recorded
    base_probability: float  # with nothing occluded
    grid: np.ndarray  # (P, Q) probability with the patch's top-left at (rows[p], cols[q])
    rows: np.ndarray  # (P,) top rows of the patch positions
    cols: np.ndarray  # (Q,) left columns
    pixel_map: np.ndarray  # (H, W) mean probability over the patch positions covering each pixel
    patch: int
    fill: float


def _starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Patch start positions from 0 in steps of ``stride``, the last one flush with the edge."""
    starts = np.arange(0, size - patch + 1, stride)
    if starts[-1] != size - patch:
        starts = np.append(starts, size - patch)
    return starts


def occlusion(
    model: Sequential,
    x: np.ndarray,
    target: int,
    patch: int = 6,
    stride: int = 2,
    fill: float | None = None,
) -> Occlusion:
    """Slide a ``patch``×``patch`` grey square over the image and record ``P(target)`` each time.

    ``fill`` is the square's grey level; by default the image's mean intensity, as Zeiler &
    Fergus did. Where covering the image makes the probability drop, the network was looking.
    All occluded copies are classified in one batch.
    """
    x = _check_one(model, x)
    _, _, h, w = x.shape
    if not 1 <= patch <= min(h, w) or stride < 1:
        raise CnnlabError(
            f"occlusion: patch must be in [1, {min(h, w)}] and stride >= 1, got {patch}, {stride}"
        )
    fill = float(x.mean()) if fill is None else float(fill)
    rows, cols = _starts(h, patch, stride), _starts(w, patch, stride)
    r = np.arange(h)[None, :, None]  # (1, H, 1)
    c = np.arange(w)[None, None, :]  # (1, 1, W)
    top = np.repeat(rows, len(cols))[:, None, None]  # (P·Q, 1, 1)
    left = np.tile(cols, len(rows))[:, None, None]
    masks = (r >= top) & (r < top + patch) & (c >= left) & (c < left + patch)  # (P·Q, H, W)
    occluded = np.where(masks[:, None], model.dtype.type(fill), x)  # (P·Q, 1, H, W)
    probs = np.asarray(model.predict_proba(occluded.astype(model.dtype), batch_size=256))
    p_target = probs[:, target].astype(np.float64)  # (P·Q,)
    pixel_map = (masks * p_target[:, None, None]).sum(axis=0) / masks.sum(axis=0)
    return Occlusion(
        target=int(target),
        base_probability=float(predict_one(model, x)[target]),
        grid=p_target.reshape(len(rows), len(cols)),
        rows=rows,
        cols=cols,
        pixel_map=pixel_map,
        patch=patch,
        fill=fill,
    )


def class_score_gradient(model: Sequential, x: np.ndarray, target: int) -> np.ndarray:
    """d(score of ``target``)/d(input) ``(1, C, H, W)``; the score is the logit before softmax."""
    x = _check_one(model, x)
    layers = model.layers[:-1] if isinstance(model.layers[-1], Softmax) else model.layers
    with inference_with_gradients(model):
        model.forward(x)  # validates the input
        h = x
        for layer in layers:
            h = layer.forward(h)
        grad = np.zeros_like(h)
        grad[0, target] = 1
        layers[0].set_input_grad(True)
        for layer in reversed(layers):
            grad = layer.backward(grad)
    return np.asarray(grad)


def saliency(model: Sequential, x: np.ndarray, target: int) -> np.ndarray:
    """Simonyan-style saliency ``(H, W)``: |d score/d pixel|, the largest over input channels."""
    return np.abs(class_score_gradient(model, x, target))[0].max(axis=0)


def receptive_field(model: Sequential, index: int) -> tuple[int, int, int]:
    """How output pixels of layer ``index`` map onto the input: ``(size, jump, offset)``.

    Output position ``i`` sees input rows ``[i·jump + offset, i·jump + offset + size)`` (the
    offset is negative where padding reaches outside the image).
    """
    size, jump, offset = 1, 1, 0
    for layer in model.layers[: index + 1]:
        if isinstance(layer, Conv2D | MaxPool2D | AvgPool2D):
            k = layer.kernel_size[0]
            pad = layer.padding if isinstance(layer, Conv2D) else 0
            size += (k - 1) * jump
            offset -= pad * jump
            jump *= layer.stride
    return size, jump, offset


@dataclass
class TopPatches:
    """For each filter of one conv layer, the input patches that excite it most."""

    layer_index: int
    patches: np.ndarray  # (C_out, k, size, size) input pixels of each receptive field
    activations: np.ndarray  # (C_out, k) the activation each patch gave, largest first
    sources: np.ndarray  # (C_out, k, 3) (image index, output row, output column)
    size: int  # receptive field side in input pixels


def top_patches(
    model: Sequential,
    images: np.ndarray,
    layer_index: int | None = None,
    k: int = 9,
    batch_size: int = 500,
) -> TopPatches:
    """The ``k`` receptive fields in ``images`` ``(N, 1, H, W)`` that activate each filter most.

    ``layer_index`` defaults to the second conv layer (the first when there is only one). Each
    patch is the region of the input the filter's output pixel depends on, cut from the image
    padded with zeros so fields at the border keep their size.
    """
    indices = conv_layer_indices(model)
    if not indices:
        raise CnnlabError("this model has no Conv2D layer")
    if layer_index is None:
        layer_index = indices[1] if len(indices) > 1 else indices[0]
    if layer_index not in indices:
        raise CnnlabError(f"layer {layer_index} is not a Conv2D layer; conv layers: {indices}")
    images = np.asarray(images, dtype=model.dtype)
    acts = np.concatenate(
        [
            layer_outputs(model, images[i : i + batch_size])[layer_index]
            for i in range(0, len(images), batch_size)
        ]
    )  # (N, C_out, H_out, W_out)
    n, c_out, h_out, w_out = acts.shape
    k = min(k, n * h_out * w_out)
    flat = acts.transpose(1, 0, 2, 3).reshape(c_out, -1)  # (C_out, N·H_out·W_out)
    best = np.argpartition(-flat, k - 1, axis=1)[:, :k]  # (C_out, k), unordered
    order = np.argsort(-np.take_along_axis(flat, best, axis=1), axis=1)
    best = np.take_along_axis(best, order, axis=1)
    img, row, col = np.unravel_index(best, (n, h_out, w_out))  # each (C_out, k)
    size, jump, offset = receptive_field(model, layer_index)
    pad = max(0, -offset, size)
    padded = np.pad(images[:, 0], ((0, 0), (pad, pad), (pad, pad)))  # (N, H+2p, W+2p)
    span = np.arange(size)
    top = row * jump + offset + pad  # (C_out, k)
    left = col * jump + offset + pad
    patches = padded[
        img[..., None, None],
        (top[..., None] + span)[..., :, None],
        (left[..., None] + span)[..., None, :],
    ]  # (C_out, k, size, size)
    return TopPatches(
        layer_index=layer_index,
        patches=patches,
        activations=np.take_along_axis(flat, best, axis=1),
        sources=np.stack([img, row, col], axis=-1),
        size=size,
    )
