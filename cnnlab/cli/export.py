"""``cnnlab export``: write a trained model as ONNX, a torch.export program or TorchScript for
use outside cnnlab."""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path
from typing import Any

from cnnlab.cli._common import Formatter, add_model_argument, chosen_model, load_model
from cnnlab.engine.errors import CnnlabError, install_hint
from cnnlab.engine.fileio import atomic_write_bytes
from cnnlab.engine.sequential import Sequential

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2", "torchscript": ".pt"}

DESCRIPTION = f"""\
Export a model for use outside cnnlab.

  onnx         an ONNX graph (opset 17), checked with onnx.checker; input "input"
               (N, C, H, W) float32 as the model takes it (digits: (N, 1, 28, 28) in [0, 1];
               pictures: (pixel/255 - mean) / std per channel, with mean and std in the
               metadata), output "logits" (N, K), or "probabilities" with --probabilities.
               Needs: {install_hint("onnx")}
  torch-export an ExportedProgram (torch.export of cnnlab.export.pytorch.to_torch, any batch
               size), for torch.export.load(PATH).module(); PyTorch's successor to
               TorchScript. Needs: {install_hint("torch")}
  torchscript  a TorchScript module (torch.jit.trace of the same), for torch.jit.load in
               Python or C++ (PyTorch 2.13 marks TorchScript deprecated). Needs: the same

MODEL is a model file or a run folder holding model.npz. The file is written atomically:
a failed export leaves no partial file behind.

example:
  cnnlab export runs/20250101-120000 --format onnx -o digits.onnx
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a model as ONNX, a torch.export program or TorchScript",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    add_model_argument(p)
    p.add_argument(
        "--format",
        dest="fmt",
        choices=sorted(FORMATS),
        default="onnx",
        help="what to write",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        default=None,
        help="where to write (default: beside the model file, e.g. model.onnx)",
    )
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="end the graph in a softmax, so it outputs class probabilities",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = chosen_model(args.model, args.runs_dir)
    model = load_model(source)
    output = Path(args.output) if args.output else source.with_suffix(FORMATS[args.fmt])
    if output.resolve() == source.resolve():
        raise CnnlabError(f"{output}: refusing to overwrite the model file; choose another -o")
    if args.fmt == "onnx":
        from cnnlab.export.onnx import export_onnx

        export_onnx(model, output, probabilities=args.probabilities)
    elif args.fmt == "torch-export":
        export_program(model, output, probabilities=args.probabilities)
    else:
        export_torchscript(model, output, probabilities=args.probabilities)
    size_kib = output.stat().st_size / 1024
    print(f"wrote {output} ({args.fmt}, {size_kib:,.1f} KiB) from {source}")
    return 0


def _torch_module(model: Sequential, probabilities: bool) -> tuple[Any, Any, Any]:
    """``to_torch(model)`` in evaluation mode (a softmax appended for ``probabilities``), torch,
    and an example input of two pictures."""
    from cnnlab.engine.layers import Softmax
    from cnnlab.export.pytorch import to_torch

    if not model.input_shape:
        raise CnnlabError("export: the model has no input_shape; rebuild it with one")
    module = to_torch(model).eval()  # raises with the install hint when torch is missing
    import torch

    if probabilities and not isinstance(model.layers[-1], Softmax):
        module.append(torch.nn.Softmax(dim=1))
    example = torch.zeros((2, *model.input_shape), dtype=getattr(torch, str(model.dtype)))
    return module, torch, example


MAX_BATCH = 65536  # the largest batch an exported program accepts


def export_program(model: Sequential, path: Path, probabilities: bool = False) -> None:
    """``torch.export`` ``to_torch(model)`` in evaluation mode, its batch size left free, and
    save the program to ``path`` atomically."""
    module, torch, example = _torch_module(model, probabilities)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def export_torchscript(model: Sequential, path: Path, probabilities: bool = False) -> None:
    """Trace ``to_torch(model)`` in evaluation mode and save it to ``path`` atomically."""
    module, torch, example = _torch_module(model, probabilities)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # PyTorch marks TorchScript deprecated in favour of torch.export; it still loads fine.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, example)
        torch.jit.save(traced, buffer)
    atomic_write_bytes(path, buffer.getvalue())
