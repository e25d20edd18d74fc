"""Deploy a DenseNet outside PyTorch: export it to ONNX and check the file computes the same.

>>> from densenet_edu import densenet121
>>> from densenet_edu.deploy import export_onnx
>>> export_onnx(densenet121(weights="IMAGENET1K_V1"), "densenet121.onnx")  # doctest: +SKIP

The file runs in ONNX Runtime (``onnxruntime.InferenceSession``), OpenVINO
(``openvino.Core().compile_model``) and most other inference engines. Exporting needs the
optional packages of the ``bench`` extra: ``pip install "densenet-edu[bench]"``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_OPSET", "OnnxCheckError", "export_onnx", "onnxruntime_session"]

#: The ONNX opset we export to. 18 is the opset torch's exporter (torch.export + the
#: onnxscript "torchlib" translation) is written for, so the graph needs no version
#: conversion pass; every operator DenseNet uses (Conv, Relu, Mul/Add, MaxPool,
#: AveragePool, Concat, ReduceMean/GlobalAveragePool, Gemm) has kept its meaning since
#: long before 18; and ONNX Runtime (>= 1.14) and OpenVINO (>= 2023.0) both run it.
#: A newer opset would add nothing DenseNet uses and shut out older runtimes.
DEFAULT_OPSET = 18

#: The largest relative error (max |a - b| / max |b|) the check accepts: float32
#: kernels of two libraries sum in different orders, which costs about 1e-6 on DenseNet.
TOLERANCE = 1e-4

_INSTALL_HINT = 'install the optional packages with: pip install "densenet-edu[bench]"'


class OnnxCheckError(RuntimeError):
    """The exported file, run in ONNX Runtime, does not compute what the model computes."""


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    check: bool = True,
    image_size: int | tuple[int, int] = 224,
) -> Path:
    """Export a DenseNet to an ONNX file and (``check=True``) verify it in ONNX Runtime.

    Args:
        model: a :class:`densenet_edu.DenseNet`, a torchvision DenseNet, or the
            :class:`densenet_edu.FastDenseNet` of :func:`~densenet_edu.optimize_for_inference`.
            It is exported in eval mode (BatchNorm uses its running statistics, no dropout)
            and left in the mode it was in.
        path: the ``.onnx`` file to write; its folder must exist.
        opset: ONNX opset version; see :data:`DEFAULT_OPSET` for why 18.
        dynamic_batch: make the batch dimension symbolic (``"batch"``), so the file accepts
            any batch size; height and width stay fixed at ``image_size``.
        check: run the file in ONNX Runtime on a batch of 3 random images (a size the
            export never saw) and compare with the model: relative error < 1e-4.
        image_size: the input's height and width (an int for a square image).

    Shapes: the file maps ``images`` (batch, C_in, H, W) float32 -> ``logits`` (batch, classes).

    Returns:
        The path written (weights inside the file: DenseNet-121 is 32 MB, far below ONNX's
        2 GB limit for a single file).

    Raises:
        TypeError: ``model`` is not a DenseNet.
        FileNotFoundError / IsADirectoryError: ``path``'s folder is missing / ``path`` is one.
        ImportError: onnx / onnxscript (or, with ``check=True``, onnxruntime) is missing.
        OnnxCheckError: ONNX Runtime's outputs differ from the model's.
    """
    _check_model(model)
    path = _check_path(path)
    _require("onnx", "onnxscript")
    if check:
        _require("onnxruntime", purpose="to check the exported file (or pass check=False)")
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    in_channels = _first_conv(model).in_channels
    param = next(model.parameters())
    # Batch 2, not 1: torch.export specialises a dimension of size 1 to a constant.
    example = torch.randn(2, in_channels, h, w, device=param.device, dtype=param.dtype)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's progress and deprecation notes
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                input_names=["images"],
                output_names=["logits"],
                external_data=False,
            )
        if check:
            batch = 3 if dynamic_batch else 2
            x = torch.randn(batch, in_channels, h, w, device=param.device, dtype=param.dtype)
            _compare_with_onnxruntime(model, path, x)
    finally:
        model.train(was_training)
    return path


def onnxruntime_session(
    path: str | os.PathLike, threads: int | None = None, spinning: bool = True
) -> object:
    """An ONNX Runtime session on the CPU with every graph optimisation switched on.

    ``threads`` intra-op threads (default: as many as torch uses), one inter-op thread
    (DenseNet is a chain: nothing runs in parallel between operators). ``spinning=False``
    lets the idle threads sleep instead of spinning for the next run: right for sharing
    the CPU with other work (PyTorch in the same process, a benchmark's other contenders),
    at no cost to ONNX Runtime's own time in our measurements (41 vs 42 ms at batch 1).
    """
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def _compare_with_onnxruntime(model: nn.Module, path: Path, x: Tensor) -> None:
    session = onnxruntime_session(path)
    expected = model(x).float().cpu()
    got = torch.from_numpy(session.run(None, {"images": x.float().cpu().numpy()})[0])
    error = ((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
    if got.shape != expected.shape or not error < TOLERANCE:
        raise OnnxCheckError(
            f"{path} computes something else than the model in ONNX Runtime: output "
            f"{tuple(got.shape)} vs {tuple(expected.shape)}, relative error {error:.1e} "
            f"(tolerance {TOLERANCE:.0e})"
        )


def _check_model(model: object) -> None:
    from densenet_edu.fast import FastDenseNet
    from densenet_edu.fast_reading import is_dense_block

    features = getattr(model, "features", None)
    is_densenet = isinstance(model, FastDenseNet) or (
        isinstance(model, nn.Module)
        and isinstance(features, nn.Sequential)
        and any(is_dense_block(m) for m in features.children())
    )
    if not is_densenet:
        raise TypeError(
            "export_onnx expects a DenseNet (densenet_edu, torchvision, or the FastDenseNet "
            f"of optimize_for_inference), got {type(model).__name__}"
        )


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"export_onnx needs a file path, {str(path)!r} is a folder")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist"
        )
    return path


def _require(*names: str, purpose: str = "to export to ONNX") -> ModuleType:
    """Import each of ``names`` (returning the last); ImportError naming the extra if missing."""
    module = None
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"{name} is needed {purpose}; {_INSTALL_HINT}") from err
    assert module is not None
    return module


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))
