"""Export a cnnlab model as an ONNX graph, for ONNX Runtime and any other ONNX consumer.

``onnx`` (and ``onnxruntime``, to run the result) are the optional extra ``onnx``; without
them the export is a ``MissingPackageError`` naming the command. The graph is built node by
node with ``onnx.helper`` in evaluation mode: dropout disappears and batch norm uses its
running statistics. It takes ``"input"`` of shape ``(N, *input_shape)`` float32 with a
dynamic batch size ``N`` and gives ``"logits"`` ``(N, K)``, or ``"probabilities"`` when the
model ends in a softmax or ``probabilities=True`` appends one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from cnnlab.engine.backend import to_numpy
from cnnlab.engine.errors import CnnlabError, MissingPackageError
from cnnlab.engine.fileio import atomic_write_bytes
from cnnlab.engine.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    MaxPool2D,
    ReLU,
    Residual,
    Sigmoid,
    Softmax,
    Tanh,
)
from cnnlab.engine.sequential import Sequential

OPSET = 17
_ACTIVATIONS = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh"}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingPackageError("ONNX export needs the onnx package", "onnx") from None
    return onnx


def to_onnx(model: Sequential, probabilities: bool = False, opset: int = OPSET) -> Any:
    """The model as a checked ``onnx.ModelProto`` (float32 weights, opset ``opset`` ≥ 17).

    ``probabilities=True`` appends a softmax when the model does not already end in one.
    The model's meta (preset, data set by name, class names, and a picture model's per-channel
    ``mean`` and ``std``) goes into ``metadata_props``.
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(model, Sequential):
        raise CnnlabError(f"to_onnx: expected a cnnlab Sequential, got {type(model).__name__}")
    if not model.input_shape:
        raise CnnlabError("to_onnx: the model has no input_shape; rebuild it with one")
    if opset < OPSET:
        raise CnnlabError(f"to_onnx: opset must be >= {OPSET}, got {opset}")
    nodes: list[Any] = []
    weights: list[Any] = []
    current = "input"
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Dropout):
            continue  # the identity at inference
        out = f"layer{i}_{type(layer).__name__}"
        node, arrays = _node_for(layer, i, current, out, helper)
        nodes.extend(node if isinstance(node, list) else [node])  # a block gives several
        weights.extend(
            numpy_helper.from_array(np.ascontiguousarray(to_numpy(a), dtype=np.float32), name)
            for name, a in arrays.items()
        )
        current = out
    ends_in_softmax = isinstance(model.layers[-1], Softmax)
    if probabilities and not ends_in_softmax:
        nodes.append(helper.make_node("Softmax", [current], ["softmax_out"], axis=1))
        current = "softmax_out"
    output_name = "probabilities" if probabilities or ends_in_softmax else "logits"
    nodes.append(helper.make_node("Identity", [current], [output_name], name="output"))
    batch_in = ["N", *model.input_shape]
    batch_out = ["N", *model.output_shape()]
    graph = helper.make_graph(
        nodes,
        "cnnlab",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, batch_in)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, batch_out)],
        initializer=weights,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="cnnlab",
        producer_version=_version(),
        doc_string="A cnnlab network: input (N, C, H, W) float32 in [0, 1], ink bright on dark.",
    )
    proto.ir_version = min(proto.ir_version, 10)  # readable by ONNX Runtime releases of 2024+
    helper.set_model_props(proto, _metadata(model, output_name))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Sequential, path: str | os.PathLike, probabilities: bool = False) -> Path:
    """Write ``to_onnx(model, probabilities)`` to ``path`` atomically; returns the path."""
    proto = to_onnx(model, probabilities=probabilities)
    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    return path


def _version() -> str:
    from cnnlab import __version__

    return __version__


def _metadata(model: Sequential, output_name: str) -> dict[str, str]:
    """String key/value pairs describing the model, for ``metadata_props``."""
    meta = {"cnnlab_version": _version(), "output": output_name}
    meta["input_shape"] = json.dumps(list(model.input_shape or ()))
    for key in ("preset", "dataset", "activation", "kind", "input"):
        if isinstance(model.meta.get(key), str):
            meta[key] = model.meta[key]
    if "dataset" in meta:  # a folder's name, not where it lay on the machine that trained
        meta["dataset"] = PurePath(meta["dataset"]).name or meta["dataset"]
    if isinstance(model.meta.get("class_names"), list):
        meta["class_names"] = json.dumps([str(c) for c in model.meta["class_names"]])
    # A picture model's per-channel normalisation: input = (pixel / 255 - mean) / std.
    for key in ("mean", "std"):
        if isinstance(model.meta.get(key), list):
            meta[key] = json.dumps([float(v) for v in model.meta[key]])
    # Its calibration: probabilities = softmax(logits / temperature); a picture whose score
    # (unknown_score of the logits: msp, energy, ...) is below unknown_below is none of the
    # classes ("not a digit"), as cnnlab.runs.unknowns.assess judges it.
    for key in ("temperature", "unknown_below"):
        value = model.meta.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            meta[key] = repr(float(value))
    if isinstance(model.meta.get("unknown_score"), str):
        meta["unknown_score"] = model.meta["unknown_score"]
    return meta


def _node_for(
    layer: Layer, i: int | str, x: str, out: str, helper: Any
) -> tuple[Any, dict[str, np.ndarray]]:
    """One ONNX node for one layer, and the initialisers (weights) it reads, by name."""
    name = f"layer{i}" if isinstance(i, int) else i
    if isinstance(layer, Residual | GlobalAvgPool2D):
        return _block_nodes(layer, name, x, out, helper)
    if isinstance(layer, Conv2D):
        p, s = layer.padding, layer.stride
        arrays = {f"{name}.W": layer.params["W"], f"{name}.b": layer.params["b"]}
        node = helper.make_node(
            "Conv",
            [x, *arrays],
            [out],
            name=name,
            kernel_shape=list(layer.kernel_size),
            pads=[p, p, p, p],
            strides=[s, s],
        )
        return node, arrays
    if isinstance(layer, MaxPool2D | AvgPool2D):
        op = "MaxPool" if isinstance(layer, MaxPool2D) else "AveragePool"
        s, p = layer.stride, getattr(layer, "padding", 0)
        pads = {"pads": [p, p, p, p]} if p else {}
        node = helper.make_node(
            op, [x], [out], name=name, kernel_shape=list(layer.kernel_size), strides=[s, s], **pads
        )
        return node, {}
    if type(layer) in _ACTIVATIONS:
        return helper.make_node(_ACTIVATIONS[type(layer)], [x], [out], name=name), {}
    if isinstance(layer, Softmax):
        return helper.make_node("Softmax", [x], [out], name=name, axis=1), {}
    if isinstance(layer, Flatten):
        return helper.make_node("Flatten", [x], [out], name=name, axis=1), {}
    if isinstance(layer, Dense):
        arrays = {f"{name}.W": layer.params["W"], f"{name}.b": layer.params["b"]}
        return helper.make_node("Gemm", [x, *arrays], [out], name=name, transB=1), arrays
    if isinstance(layer, BatchNorm2D | BatchNorm1D):
        arrays = {
            f"{name}.W": layer.params["W"],
            f"{name}.b": layer.params["b"],
            f"{name}.running_mean": layer.buffers["running_mean"],
            f"{name}.running_var": layer.buffers["running_var"],
        }
        node = helper.make_node(
            "BatchNormalization", [x, *arrays], [out], name=name, epsilon=layer.eps
        )
        return node, arrays
    raise CnnlabError(f"to_onnx: layer {i} ({layer!r}) has no ONNX counterpart here")


def _block_nodes(
    layer: Layer, name: str, x: str, out: str, helper: Any
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """The nodes of a global average pooling (``GlobalAveragePool`` then ``Flatten``) or of a
    residual block: its body's and its shortcut's nodes, named ``<name>.body<j>`` and
    ``<name>.shortcut<j>``, joined by ``Add`` (and ``Relu``)."""
    if isinstance(layer, GlobalAvgPool2D):
        pooled = f"{name}_pooled"
        return [
            helper.make_node("GlobalAveragePool", [x], [pooled], name=name),
            helper.make_node("Flatten", [pooled], [out], name=f"{name}.flatten", axis=1),
        ], {}
    assert isinstance(layer, Residual)
    nodes: list[Any] = []
    arrays: dict[str, np.ndarray] = {}
    ends = []
    for path in ("body", "shortcut"):
        current = x
        for j, sub in enumerate(getattr(layer, path)):
            if isinstance(sub, Dropout):
                continue
            sub_name = f"{name}.{path}{j}"
            sub_out = f"{sub_name}_{type(sub).__name__}"
            made, weights = _node_for(sub, sub_name, current, sub_out, helper)
            nodes.extend(made if isinstance(made, list) else [made])
            arrays.update(weights)
            current = sub_out
        ends.append(current)
    added = f"{name}_sum" if layer.relu else out
    nodes.append(helper.make_node("Add", ends, [added], name=f"{name}.add"))
    if layer.relu:
        nodes.append(helper.make_node("Relu", [added], [out], name=f"{name}.relu"))
    return nodes, arrays
