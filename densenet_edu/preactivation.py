"""Fold a pre-activation BatchNorm into the 1x1 convolution after its ReLU: a clamp remains.

Every dense layer starts with BN-ReLU-conv (Sec. 3, "composite function"): in eval mode
``conv(relu(s * x + t))`` with a fixed per-channel scale ``s`` and shift ``t``. The ReLU
sits between the affine map and the convolution, so the map cannot simply be folded into
the weights (as a BatchNorm *after* a convolution can, :func:`densenet_edu.fast.fold_batchnorm`).
But a ReLU of an affine map is an affine map of a clamp. For one channel with ``s > 0``::

    relu(s * x + t) = s * max(x, -t / s) + t

(above the threshold ``-t / s`` both sides are ``s * x + t``; below it both are 0). With
``s < 0`` the clamp is from above, ``min(x, -t / s)``, and the same formula holds. So::

    relu(s * x + t) = s * clamp(x, lo, hi) + t

with ``lo = -t / s`` (``s > 0``) or ``hi = -t / s`` (``s < 0``), the other bound infinite.
A 1x1 convolution ``W`` (no padding, so every output pixel sees exactly one input pixel)
then absorbs the rest::

    W @ (s * z + t) + b = (W * s) @ z + (b + W @ t)

One pass over the feature maps remains, the clamp, where BatchNorm + ReLU took two. A
channel with ``s == 0`` (or whose threshold is beyond float32's range) is the constant
``relu(t)``: its weights become zero and the constant moves into the bias.

The same holds through a 2x2 average pool between the clamp and the convolution (a
transition): the pool is linear and maps a constant channel to itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu import fast_reading as reading
from densenet_edu.matmul_conv import is_pointwise

__all__ = [
    "PreActivationClamp",
    "ScaleShiftReLU",
    "fold_preactivation",
    "pool_keeps_constants",
    "preactivation_before",
]


class PreActivationClamp(nn.Module):
    """``clamp(x, lo, hi)`` per channel: what is left of BatchNorm + ReLU once folded.

    Shapes: (N, C, H, W) -> (N, C, H, W); ``lo``, ``hi``: (1, C, 1, 1). The output is a
    new, dense tensor in ``x``'s memory format even when ``x`` is a view of a wider buffer.
    """

    def __init__(self, lo: Tensor, hi: Tensor) -> None:
        super().__init__()
        self.register_buffer("lo", lo.view(1, -1, 1, 1))
        self.register_buffer("hi", hi.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x, self.lo, self.hi)

    def extra_repr(self) -> str:
        return f"{self.lo.shape[1]} channels"


def fold_preactivation(
    norm: nn.BatchNorm2d, conv: nn.Conv2d
) -> tuple[PreActivationClamp, nn.Conv2d]:
    """``conv(relu(norm(x)))`` as ``conv2(clamp(x))``, ``norm`` in eval mode, ``conv`` 1x1.

    Returns the clamp and a new 1x1 convolution (with bias) holding ``W * s`` and
    ``b + W @ t``; computed in float64, then cast to ``conv``'s dtype.

    Shapes: ``norm`` has C channels, ``conv`` maps (N, C, H, W) -> (N, C_out, H, W).
    """
    if not is_pointwise(conv):
        raise ValueError(f"fold_preactivation needs a 1x1 convolution without padding, got {conv}")
    if norm.num_features != conv.in_channels:
        raise ValueError(
            f"the BatchNorm has {norm.num_features} channels but the convolution reads "
            f"{conv.in_channels}"
        )
    scale, shift = reading.bn_scale_shift(norm)
    largest = torch.finfo(conv.weight.dtype).max
    threshold = -shift / torch.where(scale == 0, torch.ones_like(scale), scale)
    # s == 0, or a threshold beyond the dtype's range: the ReLU never opens for any
    # representable input, and the channel is the constant relu(t).
    constant = (scale == 0) | ((scale > 0) & (threshold > largest))
    constant |= (scale < 0) & (threshold < -largest)
    inf = torch.full_like(scale, float("inf"))
    zero = torch.zeros_like(scale)
    lo = torch.where(constant, zero, torch.where(scale > 0, threshold, -inf))
    hi = torch.where(constant, zero, torch.where(scale < 0, threshold, inf))
    scale = torch.where(constant, zero, scale)
    shift = torch.where(constant, torch.relu(shift), shift)

    weight = conv.weight.detach().double().flatten(1)  # (C_out, C)
    bias = conv.bias.detach().double() if conv.bias is not None else weight.new_zeros(len(weight))
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, 1, bias=True,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip
    with torch.no_grad():
        folded.weight.copy_((weight * scale).view_as(folded.weight))
        folded.bias.copy_(bias + weight @ shift)
    dtype = conv.weight.dtype
    return PreActivationClamp(lo.to(dtype), hi.to(dtype)), folded


class ScaleShiftReLU(nn.Module):
    """``relu(x * scale + shift)`` per channel: an eval-mode BatchNorm followed by a ReLU.

    Shapes: (N, C, H, W) -> (N, C, H, W); ``scale``, ``shift``: (1, C, 1, 1).
    """

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.check_activation(norm)
        scale, shift = reading.bn_scale_shift(norm)
        dtype = norm.running_mean.dtype
        # Shaped (1, C, 1, 1) to broadcast over (N, C, H, W) in any memory format.
        self.register_buffer("scale", scale.to(dtype).view(1, -1, 1, 1))
        self.register_buffer("shift", shift.to(dtype).view(1, -1, 1, 1))

    @staticmethod
    def check_activation(norm: nn.BatchNorm2d) -> None:
        """Refuse a BatchNorm that applies an activation other than ReLU (timm's BatchNormAct2d)."""
        act = getattr(norm, "act", None)
        if act is not None and not isinstance(act, nn.ReLU):
            raise TypeError(
                f"optimize_for_inference cannot convert a BatchNorm exactly: it applies "
                f"{type(act).__name__}, and the fast model assumes ReLU"
            )

    def forward(self, x: Tensor) -> Tensor:
        # addcmul is one vectorised pass that also reads a strided view of the block
        # buffer efficiently (F.batch_norm was slower on such views in our measurements).
        return F.relu_(torch.addcmul(self.shift, x, self.scale))


def preactivation_before(norm: nn.BatchNorm2d, conv: nn.Conv2d) -> tuple[nn.Module, nn.Conv2d]:
    """``norm`` + ReLU before ``conv``: folded into ``conv`` when it is 1x1 (a clamp is left),
    else a scale-shift-ReLU pass and ``conv`` unchanged. Returns (pre-activation, conv)."""
    if is_pointwise(conv):
        ScaleShiftReLU.check_activation(norm)
        return fold_preactivation(norm, conv)
    return ScaleShiftReLU(norm), conv


def pool_keeps_constants(pool: nn.Module) -> bool:
    """Does ``pool`` map a constant map to the same constant (so a shift passes through)?"""
    if isinstance(pool, nn.AvgPool2d):
        return pool.padding in (0, (0, 0)) or not pool.count_include_pad
    return False
