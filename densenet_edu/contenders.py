"""The inference contenders of the benchmark: every way we know to run DenseNet-121 on a CPU.

Each builder takes the benchmark's shared models (torchvision's DenseNet-121 with random,
BatchNorm-calibrated weights, and ``densenet_edu``'s copy of it) and returns a function of
one input batch. The optional ones need packages of the ``bench`` extra
(``pip install "densenet-edu[bench]"``); when a package is missing the builder raises
:class:`Skipped` with the reason, and the benchmark prints it and carries on.

- **torchvision eager / channels_last** and **densenet_edu eager**: PyTorch as most people
  run it (oneDNN convolutions, one operator at a time).
- **densenet_edu fast**: :func:`densenet_edu.optimize_for_inference`.
- **torch.jit optimize_for_inference**: PyTorch's own graph-level inference pass on a
  scripted, frozen torchvision model (folds BatchNorm, converts to oneDNN layouts).
- **timm channels_last**: timm's ``densenet121`` (its BatchNorm fused with the ReLU).
- **onnxruntime**: the model exported by :func:`densenet_edu.export_onnx`, run by ONNX
  Runtime's CPU provider with every graph optimisation (conv+BN+ReLU fusion, NCHWc
  blocked layouts of its MLAS kernels).
- **openvino**: the same file compiled by OpenVINO for the CPU, f32 precision hint.
- **fast compiled** (``--compile`` only): ``torch.compile`` (inductor) of the fast model
  with ``torch._inductor.config.freezing`` on (weights become constants it can prepack).
"""

from __future__ import annotations

import copy
import importlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from densenet_edu.fast import optimize_for_inference

__all__ = ["Skipped", "build_contenders", "relative_error"]

Runner = Callable[[Tensor], Any]
_HINT = 'pip install "densenet-edu[bench]"'


class Skipped(Exception):
    """A contender cannot run here; the message says why (and what to install)."""


def _require(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise Skipped(f"{name} is not installed ({_HINT})") from err


def relative_error(actual: Any, expected: Tensor) -> float:
    """max |actual - expected| / max |expected| (actual may be a NumPy array or a list of one)."""
    if isinstance(actual, (list, tuple)):
        actual = actual[0]
    actual = torch.as_tensor(np.asarray(actual)) if not isinstance(actual, Tensor) else actual
    expected = expected.float().cpu()
    diff = (actual.float().cpu() - expected).abs().max()
    return (diff / expected.abs().max()).item()


def _numpy_input(fn: Callable[[np.ndarray], Any]) -> Runner:
    """Runners of other libraries take NumPy; the conversion is outside the timed call."""
    cache: dict[int, np.ndarray] = {}

    def run(x: Tensor) -> Any:
        key = id(x)
        if key not in cache:
            cache.clear()
            cache[key] = x.contiguous().cpu().numpy()
        return fn(cache[key])

    return run


def onnx_file(ours: nn.Module, folder: Path, image_size: int) -> Path:
    """``ours`` exported once per benchmark section (dynamic batch, checked below instead)."""
    from densenet_edu.deploy import export_onnx

    for name in ("onnx", "onnxscript"):
        _require(name)
    path = folder / f"densenet121_{image_size}.onnx"
    if not path.exists():
        export_onnx(ours, path, image_size=image_size, check=False)
    return path


def onnxruntime_runner(onnx_path: Callable[[], Path]) -> Runner:
    _require("onnxruntime")
    from densenet_edu.deploy import onnxruntime_session

    # Sleeping idle threads: spinning ones would slow the contender timed next.
    session = onnxruntime_session(onnx_path(), spinning=False)
    return _numpy_input(lambda x: session.run(None, {"images": x})[0])


def openvino_runner(onnx_path: Callable[[], Path]) -> Runner:
    ov = _require("openvino")
    core = ov.Core()
    compiled = core.compile_model(
        str(onnx_path()),
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
        },
    )
    request = compiled.create_infer_request()
    return _numpy_input(lambda x: request.infer([x])[0])


def timm_runner(theirs: nn.Module) -> Runner:
    timm = _require("timm")
    model = timm.create_model("densenet121", pretrained=False, num_classes=1000)
    try:
        model.load_state_dict(theirs.state_dict())  # same parameter names as torchvision
    except RuntimeError as err:
        raise Skipped("timm's densenet121 has another architecture than this model") from err
    model = model.to(next(theirs.parameters()).device).eval()
    model = model.to(memory_format=torch.channels_last)
    return lambda x: model(x.contiguous(memory_format=torch.channels_last))


def jit_runner(theirs: nn.Module) -> Runner:
    with warnings.catch_warnings():  # TorchScript is deprecated; it is measured anyway
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(copy.deepcopy(theirs).eval())
        model = torch.jit.optimize_for_inference(torch.jit.freeze(scripted))
    return lambda x: model(x)


def compiled_fast_runner(ours: nn.Module) -> Runner:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights as constants: folded, prepacked for oneDNN
    model = torch.compile(optimize_for_inference(ours), fullgraph=True)
    return lambda x: model(x)


def build_contenders(
    theirs: nn.Module,
    ours: nn.Module,
    folder: Path,
    image_size: int,
    compile: bool = False,
) -> tuple[dict[str, Runner], dict[str, str]]:
    """Every fp32 contender as ``{name: run(x)}``, and ``{name: reason}`` for the skipped ones."""
    theirs_cl = copy.deepcopy(theirs).to(memory_format=torch.channels_last)
    fast = optimize_for_inference(ours)
    onnx_path: dict[str, Path] = {}

    def exported() -> Path:
        if "path" not in onnx_path:
            onnx_path["path"] = onnx_file(ours, folder, image_size)
        return onnx_path["path"]

    builders: dict[str, Callable[[], Runner]] = {
        "torchvision eager": lambda: lambda x: theirs(x),
        "torchvision channels_last": lambda: (
            lambda x: theirs_cl(x.contiguous(memory_format=torch.channels_last))
        ),
        "densenet_edu eager": lambda: lambda x: ours(x),
        "densenet_edu fast": lambda: lambda x: fast(x),
        "torch.jit optimize_for_inference": lambda: jit_runner(theirs),
        "timm channels_last": lambda: timm_runner(theirs),
        "onnxruntime": lambda: onnxruntime_runner(exported),
        "openvino": lambda: openvino_runner(exported),
    }
    if compile:
        builders["densenet_edu fast compiled (inductor, freezing)"] = lambda: compiled_fast_runner(
            ours
        )
    runners: dict[str, Runner] = {}
    skipped: dict[str, str] = {}
    for name, build in builders.items():
        try:
            runners[name] = build()
        except Skipped as reason:
            skipped[name] = str(reason)
            print(f"skipped {name}: {reason}")
    return runners, skipped
