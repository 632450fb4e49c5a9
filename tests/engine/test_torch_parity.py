"""Parity with PyTorch (CPU, float64): every layer and loss, the optimizers, a whole LeNet-5."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import cnnlab as cl

torch = pytest.importorskip("torch")
F = torch.nn.functional
F64 = np.float64
RTOL = 1e-6

torch.set_num_threads(2)


def t(a: np.ndarray, grad: bool = False):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=grad)


def close(ours, theirs, what: str, rtol: float = RTOL) -> None:
    ours = np.asarray(ours, dtype=F64)
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    scale = max(np.abs(theirs).max(initial=0.0), 1e-12)
    err = np.abs(ours - theirs).max(initial=0.0) / scale
    assert err < rtol, f"{what}: relative error {err:.2e} against torch"


def run_both(layer, torch_fn, x: np.ndarray, rng: np.random.Generator, params=()):
    """Forward both, backward a random dL/dy; compare y, dx and the named parameter grads."""
    y = layer.forward(x)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g.copy())
    xt = t(x, grad=True)
    torch_params = {k: t(layer.params[k], grad=True) for k in params}
    yt = torch_fn(xt, **torch_params)
    yt.backward(t(g))
    close(y, yt, f"{layer!r} forward")
    close(dx, xt.grad, f"{layer!r} dx")
    for k, p in torch_params.items():
        close(layer.grads[k], p.grad, f"{layer!r} d{k}")


def conv_configs(count: int) -> list[tuple]:
    rng = np.random.default_rng(2024)
    out = []
    while len(out) < count:
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        if rng.random() < 0.5:
            kw = kh
        stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, 3))
        h = int(rng.integers(max(kh - 2 * pad, 1), 10))
        w = int(rng.integers(max(kw - 2 * pad, 1), 10))
        n, c_in, c_out = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
        out.append((n, c_in, c_out, (kh, kw), stride, pad, h, w))
    return out


@pytest.mark.parametrize("cfg", conv_configs(30), ids=lambda c: "-".join(map(str, c)))
def test_conv2d_parity(cfg) -> None:
    n, c_in, c_out, k, stride, pad, h, w = cfg
    rng = np.random.default_rng(zlib.crc32(repr(cfg).encode()))
    layer = cl.Conv2D(c_in, c_out, k, stride=stride, padding=pad, dtype=F64, rng=rng)
    layer.params["b"][...] = rng.standard_normal(c_out)
    x = rng.standard_normal((n, c_in, h, w))
    run_both(
        layer, lambda x, W, b: F.conv2d(x, W, b, stride=stride, padding=pad), x, rng, ("W", "b")
    )


def pool_configs(count: int) -> list[tuple]:
    rng = np.random.default_rng(7)
    out = []
    while len(out) < count:
        kh = int(rng.integers(1, 4))
        kw = kh if rng.random() < 0.6 else int(rng.integers(1, 4))
        stride = None if rng.random() < 0.3 else int(rng.integers(1, 4))
        h, w = int(rng.integers(kh, 10)), int(rng.integers(kw, 10))
        out.append((int(rng.integers(1, 4)), int(rng.integers(1, 4)), (kh, kw), stride, h, w))
    return out


@pytest.mark.parametrize("cfg", pool_configs(20), ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_parity(kind, cfg) -> None:
    n, c, k, stride, h, w = cfg
    rng = np.random.default_rng(zlib.crc32(repr((kind, cfg)).encode()))
    cls, fn = (cl.MaxPool2D, F.max_pool2d) if kind == "max" else (cl.AvgPool2D, F.avg_pool2d)
    layer = cls(k, stride=stride, dtype=F64)
    torch_stride = stride if stride is not None else k
    if stride is None and k[0] != k[1]:
        torch_stride = k[0]  # cnnlab: the default stride is the window height, one number
    # Small integers: many ties, which must break the same way (first index) in both.
    x = rng.integers(0, 4, (n, c, h, w)).astype(F64) if kind == "max" else rng.random((n, c, h, w))
    run_both(layer, lambda x: fn(x, k, stride=torch_stride), x, rng)


ELEMENTWISE = {
    "relu": (cl.ReLU, torch.relu),
    "sigmoid": (cl.Sigmoid, torch.sigmoid),
    "tanh": (cl.Tanh, torch.tanh),
    "flatten": (cl.Flatten, lambda x: x.flatten(1)),
}


@pytest.mark.parametrize(
    "ours,theirs,shape",
    [
        pytest.param(ours, theirs, shape, id=f"{name}-{len(shape)}d")
        for name, (ours, theirs) in ELEMENTWISE.items()
        for shape in [(3, 7), (2, 3, 4, 5)]
    ]
    + [pytest.param(cl.Softmax, lambda x: torch.softmax(x, dim=1), (3, 7), id="softmax-2d")],
)  # Softmax takes (N, K) only
def test_elementwise_parity(ours, theirs, shape, rng) -> None:
    run_both(ours(dtype=F64), theirs, rng.standard_normal(shape) * 3, rng)


@pytest.mark.parametrize("n,fin,fout", [(1, 1, 1), (4, 7, 3), (9, 20, 11)])
def test_dense_parity(n, fin, fout, rng) -> None:
    layer = cl.Dense(fin, fout, dtype=F64, rng=rng)
    layer.params["b"][...] = rng.standard_normal(fout)
    run_both(layer, lambda x, W, b: F.linear(x, W, b), rng.standard_normal((n, fin)), rng, "Wb")


def test_dropout_matches_torch_semantics(rng) -> None:
    # The masks differ (different generators); the rule is the same: y = x·mask/(1−p).
    layer = cl.Dropout(0.25, dtype=F64, rng=0)
    x = rng.standard_normal((50, 40))
    y = layer.forward(x)
    keep = y != 0
    torch.manual_seed(0)
    mask = t(keep.astype(F64))
    close(y, F.dropout(t(x) * mask, p=0.0) / 0.75, "dropout kept values")
    layer.training = False
    close(layer.forward(x), F.dropout(t(x), p=0.25, training=False), "dropout eval")


@pytest.mark.parametrize("momentum", [0.1, 0.5])
@pytest.mark.parametrize(
    "cls,tcls,shape",
    [
        (cl.BatchNorm2D, torch.nn.BatchNorm2d, (4, 3, 5, 6)),
        (cl.BatchNorm2D, torch.nn.BatchNorm2d, (1, 2, 3, 3)),
        (cl.BatchNorm1D, torch.nn.BatchNorm1d, (6, 5)),
        (cl.BatchNorm1D, torch.nn.BatchNorm1d, (2, 3)),
    ],
)
def test_batchnorm_parity(cls, tcls, shape, momentum, rng) -> None:
    c = shape[1]
    ours = cls(c, eps=1e-5, momentum=momentum, dtype=F64)
    ours.params["W"][...] = 1 + rng.random(c)
    ours.params["b"][...] = rng.standard_normal(c)
    theirs = tcls(c, eps=1e-5, momentum=momentum).double()
    with torch.no_grad():
        theirs.weight.copy_(t(ours.params["W"]))
        theirs.bias.copy_(t(ours.params["b"]))
    for mode in ("train", "train", "eval"):
        ours.training = theirs.training = mode == "train"
        x = rng.standard_normal(shape) * 2 + 0.5
        y = ours.forward(x)
        g = rng.standard_normal(y.shape)
        dx = ours.backward(g)
        xt = t(x, grad=True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(t(g))
        close(y, yt, f"{mode} forward")
        close(dx, xt.grad, f"{mode} dx")
        close(ours.grads["W"], theirs.weight.grad, f"{mode} dgamma")
        close(ours.grads["b"], theirs.bias.grad, f"{mode} dbeta")
        close(ours.buffers["running_mean"], theirs.running_mean, f"{mode} running_mean")
        close(ours.buffers["running_var"], theirs.running_var, f"{mode} running_var")


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("n,k", [(1, 2), (5, 10), (17, 3)])
def test_cross_entropy_parity(n, k, smoothing, rng) -> None:
    logits, labels = rng.standard_normal((n, k)) * 3, rng.integers(0, k, n)
    fn = cl.CrossEntropyLoss(label_smoothing=smoothing)
    loss = fn.forward(logits, labels)
    lt = t(logits, grad=True)
    ref = F.cross_entropy(lt, torch.tensor(labels), label_smoothing=smoothing)
    ref.backward()
    close(loss, ref, "loss")
    close(fn.backward(), lt.grad, "dlogits")


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_outlier_exposure_parity(weight, rng) -> None:
    logits, labels = rng.standard_normal((9, 5)) * 3, rng.integers(-1, 5, 9)
    labels[:2] = [-1, 0]  # both kinds present
    fn = cl.OutlierExposureLoss(cl.CrossEntropyLoss(label_smoothing=0.1), weight=weight)
    loss = fn.forward(logits, labels)
    lt = t(logits, grad=True)
    none = torch.tensor(labels == -1)
    inside = F.cross_entropy(lt[~none], torch.tensor(labels[labels >= 0]), label_smoothing=0.1)
    ref = inside + weight * -F.log_softmax(lt[none], dim=1).mean()
    ref.backward()
    close(loss, ref, "loss")
    close(fn.backward(), lt.grad, "dlogits")


@pytest.mark.parametrize("n,k", [(1, 10), (6, 4)])
def test_mse_parity(n, k, rng) -> None:
    outputs, labels = rng.random((n, k)), rng.integers(0, k, n)
    fn = cl.MSELoss()
    loss = fn.forward(outputs, labels)
    ot = t(outputs, grad=True)
    ref = 0.5 * ((ot - F.one_hot(torch.tensor(labels), k).double()) ** 2).sum() / n
    ref.backward()
    close(loss, ref, "loss")
    close(fn.backward(), ot.grad, "doutputs")


# -- optimizers -----------------------------------------------------------------------------------

OPTIMIZERS = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-3, "nesterov": True}),
    ("adam", {"lr": 1e-2}),
    ("adam", {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-2}),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=lambda v: str(v))
def test_optimizer_parity(name, kwargs, rng) -> None:
    shapes = [(3, 4), (5,), (2, 1, 3, 3)]
    ours_p = [(rng.standard_normal(s), np.zeros(s)) for s in shapes]
    theirs_p = [torch.nn.Parameter(t(p)) for p, _ in ours_p]
    ours = (cl.SGD if name == "sgd" else cl.Adam)(ours_p, **kwargs)
    theirs = (torch.optim.SGD if name == "sgd" else torch.optim.Adam)(theirs_p, **kwargs)
    for _ in range(12):
        for (_, g), tp in zip(ours_p, theirs_p, strict=True):
            g[...] = rng.standard_normal(g.shape)
            tp.grad = t(g)
        ours.step()
        theirs.step()
        ours.zero_grad()
    for i, ((p, _), tp) in enumerate(zip(ours_p, theirs_p, strict=True)):
        close(p, tp, f"param {i}", rtol=1e-12)


def torch_one_cycle_rates(max_lr: float, total: int, pct: float) -> list[float]:
    """The learning rate torch's OneCycleLR (cosine, no momentum cycling) sets at each step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, total_steps=total, pct_start=pct, anneal_strategy="cos",
        cycle_momentum=False, div_factor=25.0, final_div_factor=1e4,
    )  # fmt: skip
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_one_cycle_lr_endpoints_match_torch() -> None:
    total, max_lr = 100, 0.5
    ref = torch_one_cycle_rates(max_lr, total, 0.3)
    ours = cl.OneCycleLR(max_lr, total_steps=total, pct_start=0.3, div=25.0, final_div=1e4)
    assert ours(0) == pytest.approx(ref[0], rel=1e-12)
    assert ours(total - 1) == pytest.approx(ref[-1], rel=1e-12)
    assert max(ours(i) for i in range(total)) == pytest.approx(max(ref), rel=1e-12)
    np.testing.assert_allclose([ours(i) for i in range(total)], ref, rtol=0.06)


@pytest.mark.parametrize("total,pct", [(100, 0.3), (50, 0.25), (37, 0.4)])
def test_one_cycle_lr_matches_torch_at_every_step(total, pct) -> None:
    max_lr = 0.5
    ref = torch_one_cycle_rates(max_lr, total, pct)
    ours = cl.OneCycleLR(max_lr, total_steps=total, pct_start=pct)
    np.testing.assert_allclose([ours(i) for i in range(total)], ref, rtol=1e-9)


# -- a whole LeNet-5 ------------------------------------------------------------------------------


def torch_lenet5(model: cl.Sequential):
    """The lenet5 preset rebuilt in torch (float64) with the same weights."""
    nn = torch.nn
    mods = []
    for layer in model.layers:
        if isinstance(layer, cl.Conv2D):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          stride=layer.stride, padding=layer.padding)  # fmt: skip
        elif isinstance(layer, cl.MaxPool2D):
            m = nn.MaxPool2d(layer.kernel_size, stride=layer.stride)
        elif isinstance(layer, cl.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, cl.Flatten):
            m = nn.Flatten()
        elif isinstance(layer, cl.Dense):
            m = nn.Linear(layer.in_features, layer.out_features)
        else:
            raise AssertionError(f"unexpected layer {layer!r}")
        if layer.params:
            m = m.double()
            with torch.no_grad():
                m.weight.copy_(t(layer.params["W"]))
                m.bias.copy_(t(layer.params["b"]))
        mods.append(m)
    return nn.Sequential(*mods).double()


def torch_params_in_order(net) -> list:
    out = []
    for m in net:
        if hasattr(m, "weight"):
            out += [m.weight, m.bias]
    return out


@pytest.mark.parametrize(
    "opt_name,kwargs",
    [
        ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}),
        ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True}),
        ("adam", {"lr": 1e-3}),
        ("adam", {"lr": 1e-3, "weight_decay": 1e-4}),
    ],
    ids=["sgd-momentum", "sgd-nesterov", "adam", "adam-wd"],
)
@pytest.mark.slow
def test_lenet5_training_parity(opt_name, kwargs) -> None:
    model = cl.build("lenet5", seed=11, dtype=F64)
    rng = np.random.default_rng(99)
    for layer in model.layers:  # non-zero biases, so their path is exercised too
        if "b" in layer.params:
            layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape) * 0.05
    net = torch_lenet5(model)
    ours_opt = (cl.SGD if opt_name == "sgd" else cl.Adam)(model.parameters(), **kwargs)
    theirs_opt = (torch.optim.SGD if opt_name == "sgd" else torch.optim.Adam)(
        net.parameters(), **kwargs
    )
    loss_fn = cl.CrossEntropyLoss()
    for step in range(5):
        x = rng.random((6, 1, 28, 28))
        y = rng.integers(0, 10, 6)
        loss = loss_fn.forward(model.forward(x), y)
        model.backward(loss_fn.backward())
        ours_opt.step()
        ours_opt.zero_grad()
        theirs_opt.zero_grad()
        ref = F.cross_entropy(net(t(x)), torch.tensor(y))
        ref.backward()
        theirs_opt.step()
        close(loss, ref, f"loss at step {step}")
    for (name, p, _), tp in zip(model.named_parameters(), torch_params_in_order(net), strict=True):
        close(p, tp, f"{name} after 5 steps")


def test_lenet5_forward_and_input_gradient_parity(rng) -> None:
    model = cl.build("lenet5", seed=3, dtype=F64)
    net = torch_lenet5(model)
    x, y = rng.random((4, 1, 28, 28)), rng.integers(0, 10, 4)
    loss_fn = cl.CrossEntropyLoss()
    loss = loss_fn.forward(model.forward(x), y)
    dx = model.backward(loss_fn.backward())
    xt = t(x, grad=True)
    ref = F.cross_entropy(net(xt), torch.tensor(y))
    ref.backward()
    close(loss, ref, "loss")
    close(dx, xt.grad, "dx")
    for (name, _, g), tp in zip(model.named_parameters(), torch_params_in_order(net), strict=True):
        close(g, tp.grad, f"d{name}")
