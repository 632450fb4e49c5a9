"""The array-module seam: NumPy on "cpu", CuPy only when "cuda" is asked for."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import CnnlabError
from cnnlab.engine import backend

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def test_cpu_is_numpy() -> None:
    assert backend.array_module("cpu") is np


def test_unknown_device() -> None:
    with pytest.raises(CnnlabError, match=r"unknown device 'tpu'.*cpu, cuda"):
        backend.array_module("tpu")


def test_cuda_without_cupy_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    with pytest.raises(CnnlabError, match="pip install") as err:
        backend.array_module("cuda")
    assert "cupy" in str(err.value).lower()
    with pytest.raises(CnnlabError, match="pip install"):
        cl.build("lenet5").to("cuda")


def test_helpers_on_numpy_arrays() -> None:
    a = np.arange(3.0)
    assert backend.xp_of(a) is np and backend.xp_of(np.float32(1)) is np
    assert backend.device_of(a) == "cpu"
    assert backend.to_device(a, "cpu") is a
    assert backend.to_numpy(a) is a
    model = cl.build("lenet5")
    assert model.to("cpu") is model


def test_engine_never_imports_cupy() -> None:
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import cnnlab as cl
        model = cl.build("default")
        x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
        loss_fn = cl.CrossEntropyLoss()
        opt = cl.Adam(model.parameters())
        loss_fn.forward(model.forward(x), np.array([0, 1, 2, 3]))
        model.backward(loss_fn.backward())
        opt.step()
        model.predict_proba(x)
        cl.fit(model, loss_fn, opt, x, np.array([0, 1, 2, 3]), batch_size=2)
        from cnnlab.engine import backend
        assert backend.array_module("cpu") is np
        optional = ("cupy", "matplotlib", "PIL", "torch", "fastapi", "onnx")
        print(sorted(name for name in optional if name in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    # The engine needs NumPy alone: neither CuPy nor any of the lab's optional packages.
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy and a GPU")
def test_cuda_forward_backward_matches_cpu() -> None:  # pragma: no cover - GPU machines only
    cp = backend.array_module("cuda")
    cpu = cl.build("lenet5", seed=0, dtype=np.float64)
    gpu = cl.build("lenet5", seed=0, dtype=np.float64).to("cuda")
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    y = np.array([0, 1, 2, 3])
    loss_fn = cl.CrossEntropyLoss()
    loss_cpu = loss_fn.forward(cpu.forward(x), y)
    cpu.backward(loss_fn.backward())
    loss_gpu = loss_fn.forward(gpu.forward(cp.asarray(x)), cp.asarray(y))
    gpu.backward(loss_fn.backward())
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-10)
    for (_, a), (_, b) in zip(cpu.parameters(), gpu.parameters(), strict=True):
        np.testing.assert_allclose(backend.to_numpy(b), a, rtol=1e-8, atol=1e-12)
