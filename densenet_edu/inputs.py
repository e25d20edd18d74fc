"""Checking an image batch against a DenseNet as it is now, before torch fails deep inside.

The checks read the model's modules at call time, not values fixed at construction: swap
the stem for a 1-channel convolution, or drop the max pool, and the expected channels and
the smallest input follow (as torchvision users expect when they edit a model).

How a DenseNet changes the spatial size is a list of :class:`Step`\\ s, one per convolution
or pooling layer in the order they run (dense blocks keep the size: every 3x3 convolution
in them is padded). The smallest input is the smallest side that every step keeps at
least 1 pixel wide: 29 for the ImageNet stem and three transitions (torchvision documents
the same ``min_size``), 4 for the CIFAR stem.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from densenet_edu.errors import InputShapeError
from densenet_edu.layers import DenseBlock

__all__ = ["Step", "check_images", "final_size", "min_input_size", "spatial_steps"]

# Leaf modules that keep the spatial size (normalisation, activations, dropout, ...).
_SIZE_KEEPING = (
    nn.Identity,
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.dropout._DropoutNd,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
)


@dataclass(frozen=True)
class Step:
    """One size-changing layer: a convolution or a (max or average) pool, per side."""

    kernel: int
    stride: int
    padding: int
    dilation: int = 1
    ceil_mode: bool = False

    def __call__(self, size: int) -> int:
        span = size + 2 * self.padding - self.dilation * (self.kernel - 1) - 1
        if not self.ceil_mode:
            return span // self.stride + 1
        out = math.ceil(span / self.stride) + 1
        # PyTorch's rule: the last window must start inside the input or left padding.
        return out - 1 if (out - 1) * self.stride >= size + self.padding else out


def _first(value: int | tuple[int, ...]) -> int:
    return value if isinstance(value, int) else value[0]


def _step(module: nn.Module) -> Step | None:
    """The module's step; None if it keeps the size. Raises LookupError if unknown."""
    if getattr(module, "keeps_spatial_size", False):
        return None
    if isinstance(module, nn.Conv2d):
        if module.padding == "same" or module.kernel_size == module.stride == (1, 1):
            return None
        padding = 0 if module.padding == "valid" else _first(module.padding)
        return Step(
            _first(module.kernel_size), _first(module.stride), padding, _first(module.dilation)
        )
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel = _first(module.kernel_size)
        stride = _first(module.stride) if module.stride else kernel
        dilation = _first(module.dilation) if isinstance(module, nn.MaxPool2d) else 1
        return Step(kernel, stride, _first(module.padding), dilation, module.ceil_mode)
    if isinstance(module, _SIZE_KEEPING):
        return None
    raise LookupError(type(module).__name__)


def _leaves(module: nn.Module) -> Iterator[nn.Module]:
    for child in module.children():
        if isinstance(child, DenseBlock) or getattr(child, "keeps_spatial_size", False):
            continue  # padded convolutions only: the size is kept
        if next(child.children(), None) is None:
            yield child
        else:
            yield from _leaves(child)


def spatial_steps(features: nn.Module) -> list[Step] | None:
    """The size-changing steps of ``features`` in order; None if a module is unknown.

    Containers are assumed to run their children in order (true of ``nn.Sequential``,
    transitions and the stem); an unknown leaf (say a custom stem) makes the geometry
    unknown, and then no size is checked: torch reports what goes wrong. A module (leaf
    or container) with ``keeps_spatial_size = True`` declares that it keeps the size.
    """
    steps = []
    try:
        for leaf in _leaves(features):
            step = _step(leaf)
            if step is not None:
                steps.append(step)
    except LookupError:
        return None
    return steps


def final_size(steps: list[Step], size: int) -> int:
    """The side of the last feature map for an input side ``size`` (< 1: too small)."""
    for step in steps:
        size = step(size)
        if size < 1:
            return size
    return size


def min_input_size(steps: list[Step]) -> int:
    """The smallest side that every step keeps at least 1 pixel wide."""
    size = 1
    while final_size(steps, size) < 1:
        size += 1
    return size


def _first_conv(features: nn.Module) -> nn.Conv2d | None:
    return next((m for m in features.modules() if isinstance(m, nn.Conv2d)), None)


def check_images(x: Tensor, features: nn.Module, where: str, training: bool) -> None:
    """Check an image batch for ``features`` (a DenseNet's stem, blocks and norm5).

    Rank, channels (the first convolution's), dtype and device (its weight's), the
    smallest size, and in training mode a batch whose last map is one value per channel.
    Skipped while tracing: ``torch.fx`` proxies have no values to check, and
    ``torch.jit.trace`` would record the checks as constants (with a warning each).
    """
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing():
        return
    if not isinstance(x, Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise InputShapeError(
            f"{where} expects a 4-D tensor (batch, channels, height, width), "
            f"got shape {tuple(x.shape)}{hint}"
        )
    conv = _first_conv(features)
    if conv is not None:
        if x.shape[1] != conv.in_channels:
            raise InputShapeError(
                f"{where} expects {conv.in_channels} input channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        _check_dtype_and_device(x, conv.weight, where)
    steps = spatial_steps(features)
    if steps is not None:
        _check_size(x, steps, where, training)


# The tensor method that converts to each floating dtype, for the fix a message suggests.
_TO_DTYPE = {
    torch.float32: "float()",
    torch.float64: "double()",
    torch.float16: "half()",
    torch.bfloat16: "bfloat16()",
}


def _check_dtype_and_device(x: Tensor, weight: Tensor, where: str) -> None:
    if x.device != weight.device:
        raise RuntimeError(
            f"the input is on {x.device} but {where} is on {weight.device}: move one to the "
            f"other, x = x.to('{weight.device}') or model.to('{x.device}')"
        )
    if x.dtype == weight.dtype or x.is_floating_point() and _autocast(x.device):
        return
    to_model = f"x.{_TO_DTYPE.get(weight.dtype, f'to({weight.dtype})')}"
    if x.is_floating_point():
        to_input = f"model.{_TO_DTYPE.get(x.dtype, f'to({x.dtype})')}"
        fix = f"convert the input with {to_model}, or the model with {to_input}"
    else:
        fix = (
            f"convert the input with {to_model} (images stored as 0-255 integers also "
            "need dividing by 255 and the normalisation used in training)"
        )
    raise TypeError(f"{where} got a {x.dtype} input but its weights are {weight.dtype}: {fix}")


def _autocast(device: torch.device) -> bool:
    """Is autocast on for this device (it casts inputs and weights to one dtype itself)?"""
    try:
        return torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type without autocast, such as meta
        return False


def _check_size(x: Tensor, steps: list[Step], where: str, training: bool) -> None:
    height, width = final_size(steps, x.shape[2]), final_size(steps, x.shape[3])
    if height < 1 or width < 1:
        size = min_input_size(steps)
        raise InputShapeError(
            f"input is {x.shape[2]}x{x.shape[3]}, but this {where} downsamples it so much "
            f"that it needs at least {size}x{size} pixels"
        )
    if training and not torch.compiler.is_compiling() and x.shape[0] * height * width == 1:
        raise InputShapeError(
            f"in training mode BatchNorm needs more than one value per channel, but a batch "
            f"of 1 image of {x.shape[2]}x{x.shape[3]} pixels ends as a 1x1 map in {where}: "
            "use a batch of at least 2 images, a larger image, or model.eval() for inference"
        )
