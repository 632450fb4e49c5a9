"""One training iteration on one image, recorded as the article's four steps.

1. forward pass: the prediction vector before;
2. loss: how far it is from the one-hot target;
3. backward pass: dL/dW for every layer (its norm) and a few single weights;
4. weight update: plain SGD, ``w_new = w_old − η·dL/dW``, done by ``cnnlab.SGD`` itself;

then the prediction vector after. Every number is read from the engine's own arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.engine import validate
from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.layers import Softmax
from cnnlab.engine.losses import CrossEntropyLoss, MSELoss
from cnnlab.engine.optim import SGD
from cnnlab.engine.sequential import Sequential
from cnnlab.explain.maps import inference_with_gradients, predict_one


@dataclass
class WeightChange:
    """One weight through the update: the entry of its layer with the largest |dL/dW|."""

    name: str  # e.g. "0.Conv2D.W[3, 0, 2, 1]"
    layer: int
    param: str
    index: tuple[int, ...]
    w_old: float
    grad: float
    w_new: float  # read back from the model after the optimizer's step


@dataclass
class StepResult:
    """Everything one training iteration did."""

    label: int
    lr: float
    loss_name: str
    before: np.ndarray  # (K,) class probabilities before the step
    loss: float
    grad_norms: list[tuple[str, float]]  # (parameter name, ‖dL/dθ‖) in layer order
    weights: list[WeightChange]
    after: np.ndarray  # (K,) class probabilities after the step
    loss_after: float


def training_step(
    model: Sequential, x: np.ndarray, label: int, lr: float = 0.1, loss: str = "cross-entropy"
) -> StepResult:
    """Run one SGD iteration of ``model`` on one input ``x`` ``(1, C, H, W)`` with class ``label``.

    Dropout is off and batch norm uses its running statistics, as in evaluation, so the step is
    deterministic and the before/after predictions are the ones ``predict`` would give.
    ``loss`` is ``"cross-entropy"`` (on logits) or ``"mse"`` (the article's ½Σ(target − output)²
    on the model's outputs: probabilities when it ends with a Softmax layer). The model's weights
    are updated in place.
    """
    k = model.output_shape()[-1] if model.input_shape else None
    if not isinstance(label, int | np.integer) or label < 0 or (k is not None and label >= k):
        raise CnnlabError(f"label must be a class index in [0, {(k or 10) - 1}], got {label!r}")
    validate.choice("step", "loss", loss, ("cross-entropy", "mse"))
    if loss == "cross-entropy":
        if isinstance(model.layers[-1], Softmax):
            raise CnnlabError(
                "this model ends with a Softmax layer, so its outputs are probabilities; "
                "cross-entropy needs logits: use --loss mse"
            )
        loss_fn: CrossEntropyLoss | MSELoss = CrossEntropyLoss()
    else:
        loss_fn = MSELoss()
    x = np.asarray(x, dtype=model.dtype)
    y = np.array([label])
    before = predict_one(model, x)
    with inference_with_gradients(model):
        outputs = model.forward(x)  # 1. forward pass
        loss_value = loss_fn.forward(outputs, y)  # 2. loss
        model.backward(loss_fn.backward(), input_grad=False)  # 3. backward pass
    grad_norms = [
        (name, float(np.linalg.norm(np.asarray(grad, dtype=np.float64))))
        for name, _, grad in model.named_parameters()
    ]
    picks = []
    for i, layer in enumerate(model.layers):
        if "W" not in layer.params:
            continue
        grad = np.asarray(layer.grads["W"])
        index = tuple(int(v) for v in np.unravel_index(int(np.abs(grad).argmax()), grad.shape))
        picks.append((i, index, float(layer.params["W"][index]), float(grad[index])))
    SGD(model.parameters(), lr).step()  # 4. weight update
    weights = [
        WeightChange(
            name=f"{i}.{type(model.layers[i]).__name__}.W[{', '.join(map(str, index))}]",
            layer=i,
            param="W",
            index=index,
            w_old=w_old,
            grad=g,
            w_new=float(model.layers[i].params["W"][index]),
        )
        for i, index, w_old, g in picks
    ]
    after = predict_one(model, x)
    with inference_with_gradients(model):
        loss_after = loss_fn.forward(model.forward(x), y)
    return StepResult(
        label=int(label),
        lr=float(lr),
        loss_name=loss,
        before=before,
        loss=loss_value,
        grad_norms=grad_norms,
        weights=weights,
        after=after,
        loss_after=loss_after,
    )
