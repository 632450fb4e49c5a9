"""One training iteration on one image, recorded as the article's four steps.

1. forward pass: the prediction vector before;
2. loss: how far it is from the one-hot target;
3. backward pass: dL/dW for every layer (its norm) and a few single weights;
4. weight update: plain SGD, ``w_new = w_old − η·dL/dW``, done by ``cnnlab.SGD`` itself;

then the prediction vector after. Every number is read from the engine's own arrays.

One picture is not the lesson: a step is judged by what it does to pictures it did not see. With
a ``probe`` (a fixed set of other test pictures, ``probe_set``) the result also holds the
model's accuracy on them before and after, and ``lesson`` says in words whether the step was a
small one, as training takes, or overshot: the loss on the picture rose, or the other pictures
got worse, because η was too large.
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
from cnnlab.runs.recipes import RECIPES


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


PROBE_SIZE = 200  # other test pictures a step is judged on
PROBE_SEED = 0  # which ones: the same for every step of a data set
DEFAULT_STEP_LR = RECIPES["default"].lr  # η for a model whose run records none
SURE = 0.9  # a model this sure of another class than the label is contradicted by it


def probe_set(
    x: np.ndarray, y: np.ndarray, n: int = PROBE_SIZE, seed: int = PROBE_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pictures of ``x`` ``(N, C, H, W)`` and their labels ``y`` ``(N,)``, chosen by
    ``seed`` (all of them when there are fewer), in their order in the set."""
    validate.integer("probe", "n", n, 1)
    if len(x) != len(y):
        raise CnnlabError(f"probe: {len(x)} pictures but {len(y)} labels")
    pick = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[pick], np.asarray(y)[pick]


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
    probe_size: int = 0  # other pictures the step was judged on (0: none)
    probe_before: float | None = None  # the model's accuracy on them before the step
    probe_after: float | None = None  # ... and after

    @property
    def overshot(self) -> bool:
        """True when the step made things worse: the loss on the picture rose, or the model
        got fewer of the probe pictures right."""
        worse = self.probe_before is not None and self.probe_after < self.probe_before
        return self.loss_after > self.loss or bool(worse)

    def lesson(self) -> str:
        """What the step teaches, in plain words: a small step, or an overshoot and why."""
        loss = f"{self.loss:.4g} → {self.loss_after:.4g}"
        others = f"{self.probe_size} other test pictures"
        accuracy = (
            f"{100 * self.probe_before:.1f} % → {100 * self.probe_after:.1f} %"
            if self.probe_before is not None
            else ""
        )
        if self.loss_after > self.loss:
            return (
                f"Overshoot: η = {self.lr:g} is too large. The step followed the slope of the loss "
                f"at the old weights so far that it jumped past the low ground it pointed to: "
                f"the loss on this picture rose ({loss}). A smaller η descends."
            )
        read = int(np.argmax(self.before))
        if self.overshot and read != self.label and self.before[read] >= SURE:
            return (
                f"Overshoot: this picture's label is not what the model reads (it was "
                f"{self.before[read]:.0%} sure of another class), so the loss ({self.loss:.4g}) "
                f"and its gradient are large and η = {self.lr:g} took a long step: the loss fell "
                f"({loss}), but the model now gets fewer of the {others} right ({accuracy}). "
                "Learnt alone, a label that contradicts a confident model pulls every weight "
                "far; in training it is one picture of a batch, outvoted by the others. A smaller "
                "η, or the label the picture shows, takes a small step."
            )
        if self.overshot:
            return (
                f"Overshoot: η = {self.lr:g} is too large. The loss on this picture fell ({loss}), "
                f"but the step pulled every weight towards this one picture and the model now "
                f"gets fewer of the {others} right ({accuracy}). Training takes many small steps, "
                "each on a "
                "batch of pictures, so that no one picture pulls the weights far."
            )
        judged = f", and the {others} are read at least as well ({accuracy})" if accuracy else ""
        if self.loss_after == self.loss:
            return (
                f"No change (η = {self.lr:g}): the loss on this picture stayed at {self.loss:.4g}"
                f"{judged}. The model already gives the label (nearly) all its probability, so "
                "the gradient, and the step, are (nearly) zero: try another label."
            )
        return (
            f"A step that helped (η = {self.lr:g}): the loss on this picture fell ({loss})"
            f"{judged}. Training is many such steps over every picture."
        )


def training_step(
    model: Sequential,
    x: np.ndarray,
    label: int,
    lr: float = DEFAULT_STEP_LR,
    loss: str = "cross-entropy",
    probe: tuple[np.ndarray, np.ndarray] | None = None,
) -> StepResult:
    """Run one SGD iteration of ``model`` on one input ``x`` ``(1, C, H, W)`` with class ``label``.

    ``probe`` is ``(x, y)``, other inputs ``(P, C, H, W)`` and their classes ``(P,)`` (as
    ``probe_set`` picks them): the model's accuracy on them is measured before and after.

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
    probe_before = probe_after = None
    if probe is not None:
        probe_x = np.asarray(probe[0], dtype=model.dtype)
        probe_y = np.asarray(probe[1])
        if len(probe_x) == 0 or len(probe_x) != len(probe_y):
            raise CnnlabError(
                f"step: the probe needs pictures and one label each, got {len(probe_x)} "
                f"pictures and {len(probe_y)} labels"
            )
        probe_before = float((model.predict(probe_x) == probe_y).mean())
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
    if probe is not None:
        probe_after = float((model.predict(probe_x) == probe_y).mean())
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
        probe_size=0 if probe is None else len(probe_y),
        probe_before=probe_before,
        probe_after=probe_after,
    )
