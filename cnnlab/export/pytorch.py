"""Move a model between cnnlab and PyTorch: ``to_torch(model)`` and ``from_torch(module)``.

PyTorch is an optional extra (``engine.errors.install_hint("torch")``); it is imported inside the
functions, so ``import cnnlab.export.pytorch`` needs only NumPy. Both directions copy the
weights and the batch-norm running statistics, keep the dtype (float32 or float64) and the
training flag, and refuse a module or option that cnnlab cannot reproduce exactly with one line
saying which.

Layer correspondence (cnnlab ↔ ``torch.nn``): Conv2D ↔ Conv2d, MaxPool2D ↔ MaxPool2d,
AvgPool2D ↔ AvgPool2d, ReLU, Sigmoid, Tanh, Softmax ↔ Softmax(dim=1), Flatten ↔ Flatten(1, -1),
Dense ↔ Linear, Dropout, BatchNorm2D ↔ BatchNorm2d, BatchNorm1D ↔ BatchNorm1d,
GlobalAvgPool2D ↔ AdaptiveAvgPool2d(1) and a flatten, Residual ↔ a module adding its ``body``
and its ``shortcut`` (from torchvision's ``BasicBlock``: ``conv1``, ``bn1``, ``relu``,
``conv2``, ``bn2``, ``downsample``). ``from_torch`` also takes torchvision's ``ResNet`` with
basic blocks (ResNet-18 and ResNet-34): the result has ``cnnlab.runs.zoo.resnet18``'s layout.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from cnnlab.engine.backend import to_numpy
from cnnlab.engine.errors import CnnlabError, MissingPackageError
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


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingPackageError("cnnlab.export.pytorch needs torch", "torch") from None
    return torch


# -- cnnlab → torch ---------------------------------------------------------------------------


def to_torch(model: Sequential) -> Any:
    """A ``torch.nn.Sequential`` computing the same function as ``model``, weights copied.

    The result has the model's dtype and training mode; it takes ``(N, *input_shape)`` tensors.
    """
    torch = _import_torch()
    nn = torch.nn
    if not isinstance(model, Sequential):
        raise CnnlabError(f"to_torch: expected a cnnlab Sequential, got {type(model).__name__}")
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[model.dtype]
    modules = [_module_for(layer, nn, i) for i, layer in enumerate(model.layers)]
    module = nn.Sequential(*modules).to(dtype)
    with torch.no_grad():
        for layer, mod in zip(model.layers, modules, strict=True):
            _copy_into_torch(layer, mod, torch)
    return module.train(model.training)


def _module_for(layer: Layer, nn: Any, index: int) -> Any:
    """The empty ``torch.nn`` module matching one cnnlab layer."""
    if isinstance(layer, Residual | GlobalAvgPool2D):
        return _block_module(layer, nn, index)
    if isinstance(layer, Conv2D):
        return nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
        )
    if isinstance(layer, MaxPool2D):
        return nn.MaxPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding)
    if isinstance(layer, AvgPool2D):
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride)
    if isinstance(layer, Dense):
        return nn.Linear(layer.in_features, layer.out_features)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, BatchNorm2D | BatchNorm1D):
        cls = nn.BatchNorm2d if isinstance(layer, BatchNorm2D) else nn.BatchNorm1d
        return cls(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, Softmax):
        return nn.Softmax(dim=1)
    simple = {ReLU: nn.ReLU, Sigmoid: nn.Sigmoid, Tanh: nn.Tanh, Flatten: nn.Flatten}
    if type(layer) in simple:
        return simple[type(layer)]()
    raise CnnlabError(f"to_torch: layer {index} ({layer!r}) has no PyTorch counterpart here")


def _copy_into_torch(layer: Layer, module: Any, torch: Any) -> None:
    """Copy ``W``/``b`` into ``weight``/``bias`` and the running statistics into the buffers."""
    if isinstance(layer, Residual):
        shortcut = list(module.shortcut) if layer.shortcut else []
        for sub, mod in zip(layer.sublayers(), [*module.body, *shortcut], strict=True):
            _copy_into_torch(sub, mod, torch)
        return
    pairs = [("W", "weight"), ("b", "bias")]
    for ours, theirs in pairs:
        if ours in layer.params:
            getattr(module, theirs).copy_(torch.from_numpy(to_numpy(layer.params[ours])))
    for name in ("running_mean", "running_var"):
        if name in layer.buffers:
            getattr(module, name).copy_(torch.from_numpy(to_numpy(layer.buffers[name])))


# -- torch → cnnlab ---------------------------------------------------------------------------


def from_torch(
    module: Any,
    input_shape: tuple[int, ...] = (1, 28, 28),
    meta: dict[str, Any] | None = None,
) -> Sequential:
    """A cnnlab ``Sequential`` from a ``torch.nn.Sequential`` of supported modules.

    ``input_shape`` is one sample's shape (default one 28×28 grey image); nested
    ``nn.Sequential`` containers are flattened. Conv and Linear layers without a bias get a
    zero bias. Raises ``CnnlabError`` naming the first module or option cnnlab cannot run.
    """
    torch = _import_torch()
    nn = torch.nn
    if _is_resnet(module):
        modules = _resnet_modules(module, nn)
    elif not isinstance(module, nn.Sequential):
        raise CnnlabError(
            f"from_torch: expected a torch.nn.Sequential, got {type(module).__name__}; "
            "wrap the modules in nn.Sequential(...)"
        )
    else:
        modules = _flatten(module, nn)
    if not modules:
        raise CnnlabError("from_torch: the nn.Sequential is empty")
    dtype = _dtype_of(module, torch)
    layers = [_layer_for(mod, nn, i, dtype) for i, mod in enumerate(modules)]
    for layer, mod in zip(layers, modules, strict=True):
        _copy_from_torch(mod, layer)
        layer.training = bool(module.training)
    return Sequential(layers, input_shape=input_shape, meta=meta)


def _flatten(module: Any, nn: Any) -> list[Any]:
    out = []
    for child in module.children():
        out.extend(_flatten(child, nn) if isinstance(child, nn.Sequential) else [child])
    return out


def _dtype_of(module: Any, torch: Any) -> np.dtype:
    """The single floating dtype of the module's parameters and buffers (float32 if none)."""
    tensors = [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]
    found = {t.dtype for t in tensors}
    known = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
    if not found:
        return np.dtype(np.float32)
    if len(found) > 1 or not found <= set(known):
        names = ", ".join(sorted(str(d) for d in found))
        raise CnnlabError(
            f"from_torch: weights must all be float32 or all float64, got {names}; "
            "convert with module.float() or module.double()"
        )
    return known[found.pop()]


def _same_pair(value: Any) -> int | None:
    """``3`` or ``(3, 3)`` → 3; an unequal pair or a string → None."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple | list) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


def _refuse(index: int, module: Any, what: str) -> CnnlabError:
    return CnnlabError(f"from_torch: module {index} ({module!r}): {what} is not supported")


def _layer_for(mod: Any, nn: Any, i: int, dtype: np.dtype) -> Layer:
    """The cnnlab layer matching one ``torch.nn`` module, with freshly shaped parameters."""
    if _is_basic_block(mod) or isinstance(mod, nn.AdaptiveAvgPool2d | _residual_class(nn)):
        return _block_layer(mod, nn, i, dtype)
    if isinstance(mod, nn.Conv2d):
        return _conv_layer(mod, nn, i, dtype)
    if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
        return _pool_layer(mod, nn, i, dtype)
    if isinstance(mod, nn.Linear):
        return Dense(mod.in_features, mod.out_features, rng=0, dtype=dtype)
    if type(mod) is nn.Dropout:
        return Dropout(mod.p, rng=0, dtype=dtype)
    if isinstance(mod, nn.BatchNorm2d | nn.BatchNorm1d):
        if not mod.track_running_stats or mod.running_mean is None:
            raise _refuse(i, mod, "track_running_stats=False")
        if mod.momentum is None:
            raise _refuse(i, mod, "momentum=None (cumulative average)")
        cls = BatchNorm2D if isinstance(mod, nn.BatchNorm2d) else BatchNorm1D
        return cls(mod.num_features, eps=mod.eps, momentum=mod.momentum, dtype=dtype)
    if isinstance(mod, nn.Softmax):
        if mod.dim not in (1, -1):
            raise _refuse(i, mod, f"dim={mod.dim} (cnnlab's Softmax works over dim 1 of (N, K))")
        return Softmax(dtype=dtype)
    if isinstance(mod, nn.Flatten):
        if (mod.start_dim, mod.end_dim) != (1, -1):
            raise _refuse(i, mod, f"start_dim={mod.start_dim}, end_dim={mod.end_dim}")
        return Flatten(dtype=dtype)
    simple = {nn.ReLU: ReLU, nn.Sigmoid: Sigmoid, nn.Tanh: Tanh}
    if type(mod) in simple:
        return simple[type(mod)](dtype=dtype)
    supported = "Conv2d, MaxPool2d, AvgPool2d, ReLU, Sigmoid, Tanh, Softmax, Flatten, Linear, "
    raise CnnlabError(
        f"from_torch: module {i} ({type(mod).__name__}) has no cnnlab counterpart; "
        f"supported: {supported}Dropout, BatchNorm2d, BatchNorm1d"
    )


def _conv_layer(mod: Any, nn: Any, i: int, dtype: np.dtype) -> Conv2D:
    if type(mod) is not nn.Conv2d:
        raise _refuse(i, mod, f"the {type(mod).__name__} subclass")
    if mod.groups != 1:
        raise _refuse(i, mod, f"groups={mod.groups}")
    if tuple(mod.dilation) != (1, 1):
        raise _refuse(i, mod, f"dilation={mod.dilation}")
    if mod.padding_mode != "zeros":
        raise _refuse(i, mod, f"padding_mode={mod.padding_mode!r}")
    padding = 0 if mod.padding == "valid" else _same_pair(mod.padding)
    if padding is None:
        raise _refuse(i, mod, f"padding={mod.padding!r} (cnnlab pads all sides equally)")
    stride = _same_pair(mod.stride)
    if stride is None:
        raise _refuse(i, mod, f"stride={mod.stride} (cnnlab strides both axes equally)")
    return Conv2D(
        mod.in_channels,
        mod.out_channels,
        tuple(mod.kernel_size),
        stride=stride,
        padding=padding,
        rng=0,
        dtype=dtype,
    )


def _pool_layer(mod: Any, nn: Any, i: int, dtype: np.dtype) -> Layer:
    if mod.ceil_mode:
        raise _refuse(i, mod, "ceil_mode=True")
    padding = _same_pair(mod.padding)
    if padding != 0 and not (isinstance(mod, nn.MaxPool2d) and padding is not None):
        raise _refuse(i, mod, f"padding={mod.padding}")
    if isinstance(mod, nn.MaxPool2d):
        if _same_pair(mod.dilation) != 1:
            raise _refuse(i, mod, f"dilation={mod.dilation}")
        if mod.return_indices:
            raise _refuse(i, mod, "return_indices=True")
    elif mod.divisor_override is not None:
        raise _refuse(i, mod, f"divisor_override={mod.divisor_override}")
    kernel = mod.kernel_size
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    stride = _same_pair(mod.stride)
    if stride is None:
        raise _refuse(i, mod, f"stride={mod.stride} (cnnlab strides both axes equally)")
    if isinstance(mod, nn.MaxPool2d):
        return MaxPool2D(kernel, stride=stride, padding=padding, dtype=dtype)
    return AvgPool2D(kernel, stride=stride, dtype=dtype)


def _copy_from_torch(mod: Any, layer: Layer) -> None:
    """Copy weight, bias and running statistics into the layer.

    A module without a bias (or a batch norm without ``affine``) leaves cnnlab's defaults, a
    zero bias and a unit scale, which compute the same function.
    """
    if isinstance(layer, Residual):
        for sub, part in zip(layer.sublayers(), _block_parts(mod), strict=True):
            _copy_from_torch(part, sub)
        return
    for ours, theirs in (("W", "weight"), ("b", "bias")):
        tensor = getattr(mod, theirs, None)
        if ours in layer.params and tensor is not None:
            layer.params[ours][...] = tensor.detach().cpu().numpy()
    for name in ("running_mean", "running_var"):
        if name in layer.buffers:
            layer.buffers[name][...] = getattr(mod, name).detach().cpu().numpy()


# -- residual networks ----------------------------------------------------------------------------


@functools.cache
def _residual_class(nn: Any) -> type:
    """A ``torch.nn`` module computing cnnlab's ``Residual``: relu(body(x) + shortcut(x))."""

    class Residual(nn.Module):
        def __init__(self, body: Any, shortcut: Any, relu: bool) -> None:
            super().__init__()
            self.body, self.shortcut, self.relu = body, shortcut, relu

        def forward(self, x: Any) -> Any:
            out = self.body(x) + self.shortcut(x)
            return out.clamp_min(0) if self.relu else out

    return Residual


def _block_module(layer: Layer, nn: Any, index: int) -> Any:
    if isinstance(layer, GlobalAvgPool2D):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert isinstance(layer, Residual)
    body = nn.Sequential(*[_module_for(sub, nn, index) for sub in layer.body])
    shortcut = nn.Sequential(*[_module_for(sub, nn, index) for sub in layer.shortcut])
    return _residual_class(nn)(body, shortcut if layer.shortcut else nn.Identity(), layer.relu)


_RESNET_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _is_resnet(module: Any) -> bool:
    """Whether ``module`` looks like torchvision's ``ResNet`` (by its parts' names)."""
    return all(hasattr(module, name) for name in (*_RESNET_PARTS, "avgpool", "fc"))


def _is_basic_block(module: Any) -> bool:
    """Whether ``module`` looks like torchvision's ``BasicBlock`` (by its parts' names)."""
    parts = ("conv1", "bn1", "relu", "conv2", "bn2", "downsample")
    return all(hasattr(module, name) for name in parts) and not hasattr(module, "conv3")


def _resnet_modules(module: Any, nn: Any) -> list[Any]:
    """torchvision's ResNet in the order its ``forward`` runs: the stem, every block, the
    pooling and the classifier (left out when it was replaced by ``nn.Identity``)."""
    stages = [getattr(module, name) for name in _RESNET_PARTS]
    modules = [*stages[:4], *(block for stage in stages[4:] for block in stage), module.avgpool]
    return modules + ([] if isinstance(module.fc, nn.Identity) else [module.fc])


def _block_layer(mod: Any, nn: Any, i: int, dtype: np.dtype) -> Layer:
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        if _same_pair(mod.output_size) != 1:
            raise _refuse(i, mod, f"output_size={mod.output_size} (only 1: global pooling)")
        return GlobalAvgPool2D(dtype=dtype)
    if isinstance(mod, _residual_class(nn)):  # what to_torch made of a cnnlab block
        body = [_layer_for(m, nn, i, dtype) for m in mod.body]
        shortcut = [_layer_for(m, nn, i, dtype) for m in _sequence(mod.shortcut)]
        return Residual(body, shortcut or None, mod.relu, dtype=dtype)
    if not isinstance(mod.relu, nn.ReLU):
        raise _refuse(i, mod, f"a block whose activation is {type(mod.relu).__name__}")
    body = [_layer_for(m, nn, i, dtype) for m in (mod.conv1, mod.bn1, mod.relu, mod.conv2, mod.bn2)]
    downsample = list(mod.downsample) if mod.downsample is not None else []
    if len(downsample) not in (0, 2):
        raise _refuse(i, mod, "a downsample other than a conv and a batch norm")
    shortcut = [_layer_for(m, nn, i, dtype) for m in downsample] or None
    return Residual(body, shortcut, dtype=dtype)


def _sequence(module: Any) -> list[Any]:
    """The modules of a shortcut: those of an ``nn.Sequential``, none for ``nn.Identity``."""
    return list(module) if hasattr(module, "__iter__") else []


def _block_parts(mod: Any) -> list[Any]:
    """A block's modules in the order of cnnlab's ``Residual.sublayers()``."""
    if hasattr(mod, "body"):
        return [*mod.body, *_sequence(mod.shortcut)]
    return [mod.conv1, mod.bn1, mod.relu, mod.conv2, mod.bn2, *_sequence(mod.downsample)]
