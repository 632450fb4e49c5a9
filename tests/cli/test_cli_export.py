"""Tests for ``cnnlab export``: ONNX and TorchScript files that compute what the model does."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.engine.errors import install_hint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model() -> cnnlab.Sequential:
    model = cnnlab.build("lenet5", seed=2)
    model.meta["class_names"] = list("0123456789")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-zero biases, so a dropped bias would show
        if "b" in layer.params:
            layer.params["b"][...] = rng.normal(0, 0.1, layer.params["b"].shape)
    return model.eval()


@pytest.fixture
def run_folder(model: cnnlab.Sequential, tmp_path: Path) -> Path:
    folder = tmp_path / "runs" / "20250101-000000"
    model.save(folder / "model.npz")
    return folder


def digits(n: int = 16) -> np.ndarray:
    return np.random.default_rng(9).random((n, 1, 28, 28), dtype=np.float32)


def run_onnx(path: Path, x: np.ndarray) -> tuple[str, np.ndarray]:
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = runtime.run(None, {"input": x})
    return runtime.get_outputs()[0].name, out


def test_onnx_from_run_folder_goes_beside_the_model(
    model: cnnlab.Sequential, run_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["export", str(run_folder)]) == 0
    written = run_folder / "model.onnx"
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"wrote {written} (onnx, ")
    onnx.checker.check_model(onnx.load(str(written)), full_check=True)
    x = digits()
    name, out = run_onnx(written, x)
    assert name == "logits"
    assert np.abs(out - model.forward(x)).max() <= 1e-5


def test_onnx_with_output_and_probabilities(
    model: cnnlab.Sequential, run_folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "digits.onnx"
    args = ["export", str(run_folder / "model.npz"), "--format", "onnx", "-o", str(target)]
    assert main([*args, "--probabilities"]) == 0
    x = digits()
    name, out = run_onnx(target, x)
    assert name == "probabilities"
    assert np.abs(out - model.predict_proba(x)).max() <= 1e-5


@pytest.mark.slow
def test_torchscript_loads_and_matches(
    model: cnnlab.Sequential, run_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch = pytest.importorskip("torch")
    target = tmp_path / "digits.pt"
    assert main(["export", str(run_folder), "--format", "torchscript", "-o", str(target)]) == 0
    assert f"wrote {target} (torchscript, " in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(target))
    x = digits(5)
    with torch.no_grad():
        out = loaded(torch.from_numpy(x)).numpy()
    assert out.shape == (5, 10)
    assert np.abs(out - model.forward(x)).max() <= 1e-5


def test_an_exported_program_loads_and_gives_probabilities(
    model: cnnlab.Sequential, run_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch = pytest.importorskip("torch")
    target = tmp_path / "digits.pt2"
    args = ["export", str(run_folder), "--format", "torch-export", "-o", str(target)]
    assert main([*args, "--probabilities"]) == 0
    assert f"wrote {target} (torch-export, " in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.export.load, unlike torch.jit.load, is current
        loaded = torch.export.load(str(target)).module()
    x = digits(5)
    with torch.no_grad():
        out = loaded(torch.from_numpy(x)).numpy()
    assert out.shape == (5, 10)
    assert np.abs(out - model.predict_proba(x)).max() <= 1e-5


def test_unknown_format_is_refused(run_folder: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", str(run_folder), "--format", "tflite"])
    assert info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    assert sorted(p.name for p in run_folder.iterdir()) == ["model.npz"]


def test_missing_model_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(tmp_path / "nope.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab export: error:") and "no such file" in err
    assert err.count("\n") == 1


def test_refuses_to_overwrite_the_model(run_folder: Path, capsys: pytest.CaptureFixture) -> None:
    source = run_folder / "model.npz"
    before = source.read_bytes()
    assert main(["export", str(source), "-o", str(source)]) == 2
    assert "refusing to overwrite the model file" in capsys.readouterr().err
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    ("fmt", "package", "extra"),
    [
        ("onnx", "onnx", "onnx"),
        ("torch-export", "torch", "torch"),
        ("torchscript", "torch", "torch"),
    ],
)
def test_missing_package_says_how_to_install(
    run_folder: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    package: str,
    extra: str,
) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    assert main(["export", str(run_folder), "--format", fmt]) == 2
    assert install_hint(extra) in capsys.readouterr().err
    assert sorted(p.name for p in run_folder.iterdir()) == ["model.npz"]


def test_failed_write_leaves_no_partial_file(
    run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.onnx"

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("cnnlab.engine.fileio.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        main(["export", str(run_folder), "-o", str(target)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
