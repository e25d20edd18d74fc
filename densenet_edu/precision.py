"""Reduced precision, measured honestly: speed *and* agreement with float32, never one alone.

The ``precision`` section of :mod:`densenet_edu.bench` runs DenseNet-121 (the benchmark's
random, BatchNorm-calibrated weights) on a fixed batch of natural images, scikit-image's
sample photographs at two crops each (:func:`natural_images`), in:

- float32: torchvision eager (the reference), the fast model, ONNX Runtime;
- bfloat16: the fast model with weights and activations in bfloat16 (oneDNN's bf16
  kernels on CPUs with AVX512-BF16 or AMX; slow emulation elsewhere);
- int8: the ONNX file quantised by ONNX Runtime (static, QDQ, per-channel int8 weights,
  uint8 activations), calibrated on *other* crops of the same photographs.

For each it reports the time and the agreement with float32 (:func:`agreement`): the
maximum relative error of the logits, and how often the top-1 class, and the top-5 set,
are the same as float32's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.contenders import Skipped, _numpy_input, _require, onnx_file, relative_error
from densenet_edu.fast import optimize_for_inference

__all__ = ["PHOTOS", "agreement", "natural_images", "precision_contenders"]

#: scikit-image sample photographs shipped with the package (no download needed).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet normalisation
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def natural_images(size: int = 224, crops: tuple[str, ...] = ("center", "top-left")) -> Tensor:
    """The :data:`PHOTOS` as a normalised batch (len(PHOTOS) * len(crops), 3, size, size).

    Each crop is a square of 80% of the photo's shorter side at that position
    (``center``, ``top-left`` or ``bottom-right``: different pixels even for a square
    photo), resized with antialiasing, normalised with ImageNet's statistics.
    Needs scikit-image (the book's requirements).
    """
    import skimage.data

    batch = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        photo = photo[0] if isinstance(photo, tuple) else photo  # a stereo pair: the left
        image = torch.from_numpy(np.ascontiguousarray(photo[..., :3])).permute(2, 0, 1)
        for crop in crops:
            batch.append(_square(image, crop, size))
    x = torch.stack(batch).float() / 255
    return (x - _MEAN) / _STD


def _square(image: Tensor, crop: str, size: int) -> Tensor:
    _, h, w = image.shape
    side = int(0.8 * min(h, w))
    top, left = {
        "center": ((h - side) // 2, (w - side) // 2),
        "top-left": (0, 0),
        "bottom-right": (h - side, w - side),
    }[crop]
    square = image[None, :, top : top + side, left : left + side].float()
    return F.interpolate(square, (size, size), mode="bilinear", antialias=True)[0].round()


def agreement(logits: Any, reference: Tensor) -> dict[str, float]:
    """How well ``logits`` (N, classes) agree with float32 ``reference`` logits.

    ``rel_error``: max |logits - reference| / max |reference|. ``top1``: the fraction of
    images whose best class is the same. ``top5``: the fraction whose five best classes
    are the same set.
    """
    if not isinstance(logits, Tensor):
        logits = torch.as_tensor(np.asarray(logits[0] if isinstance(logits, list) else logits))
    logits, reference = logits.float().cpu(), reference.float().cpu()
    top5 = logits.topk(5, dim=1).indices.sort(dim=1).values
    top5_ref = reference.topk(5, dim=1).indices.sort(dim=1).values
    return {
        "rel_error": relative_error(logits, reference),
        "top1": (logits.argmax(1) == reference.argmax(1)).float().mean().item(),
        "top5": (top5 == top5_ref).all(dim=1).float().mean().item(),
    }


def _bf16_runner(ours: nn.Module) -> Callable[[Tensor], Tensor]:
    fast = optimize_for_inference(ours).to(torch.bfloat16)
    return lambda x: fast(x.to(torch.bfloat16)).float()


def _int8_runner(onnx_path: Path, calibration: Tensor) -> Callable[[Tensor], Any]:
    _require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from densenet_edu.deploy import onnxruntime_session

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": x[None].numpy()} for x in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    int8_path = onnx_path.with_name(onnx_path.stem + "_int8.onnx")
    quantize_static(
        str(onnx_path),
        str(int8_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    session = onnxruntime_session(int8_path, spinning=False)  # as the float32 contender
    return _numpy_input(lambda x: session.run(None, {"images": x})[0])


def precision_contenders(
    theirs: nn.Module, ours: nn.Module, folder: Path, image_size: int
) -> tuple[dict[str, Callable[[Tensor], Any]], dict[str, str]]:
    """``{name: run(x)}`` for the float32, bfloat16 and int8 variants; ``{name: reason}``
    for those that cannot run here."""
    fast = optimize_for_inference(ours)
    runners: dict[str, Callable[[Tensor], Any]] = {
        "torchvision eager float32": lambda x: theirs(x),
        "densenet_edu fast float32": lambda x: fast(x),
        "densenet_edu fast bfloat16": _bf16_runner(ours),
    }
    skipped: dict[str, str] = {}
    try:
        _require("onnxruntime")
        path = onnx_file(ours, folder, image_size)
        from densenet_edu.contenders import onnxruntime_runner

        runners["onnxruntime float32"] = onnxruntime_runner(lambda: path)
        calibration = natural_images(image_size, crops=("bottom-right",))
        runners["onnxruntime int8 (static, QDQ)"] = _int8_runner(path, calibration)
    except Skipped as reason:
        for name in ("onnxruntime float32", "onnxruntime int8 (static, QDQ)"):
            skipped[name] = str(reason)
            print(f"skipped {name}: {reason}")
    return runners, skipped
