"""torchvision's ResNet-18, the reference cnnlab's ResNet-18 is compared with.

PyPI's torchvision wheels are built against PyTorch's CUDA build; beside the CPU build the tests
use, their compiled operators (non-maximum suppression and friends, which no classifier needs)
do not load, and ``import torchvision`` then fails while registering shape functions for them.
Declaring the two operators it registers at import lets the pure-Python models import.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

_KEPT: list[Any] = []


def torchvision() -> Any:
    """The ``torchvision`` package (its models; its compiled operators may be missing)."""
    torch = pytest.importorskip("torch")
    try:
        import torchvision
    except RuntimeError:  # "operator torchvision::nms does not exist"
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEPT.append(library)  # the declarations live as long as the library object
        import torchvision
    return torchvision


def resnet18(seed: int, statistics: bool = True) -> Any:
    """A randomly initialised ``torchvision.models.resnet18`` in evaluation mode, float32.

    With ``statistics`` its batch norms get random scales, shifts and running statistics
    (fresh ones are the identity, which would hide a mix-up of those arrays).
    """
    import torch

    torch.manual_seed(seed)
    model = torchvision().models.resnet18(weights=None)
    rng = np.random.default_rng(seed)
    if statistics:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    for tensor, low, high in (
                        (module.weight, 0.5, 1.5),
                        (module.bias, -0.2, 0.2),
                        (module.running_mean, -0.2, 0.2),
                        (module.running_var, 0.5, 2.0),
                    ):
                        values = rng.uniform(low, high, tensor.shape).astype(np.float32)
                        tensor.copy_(torch.from_numpy(values))
    return model.eval()
