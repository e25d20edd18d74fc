"""A DenseNet as a backbone: multi-scale feature maps for detection and segmentation.

The taps are timm's (``feature_info`` of its DenseNet): the stem's BatchNorm ``norm0``
(stride 2), the output of dense blocks 1 to 3 *before* their transitions (strides 4, 8,
16) and the final BatchNorm ``norm5`` (stride 32). Their names are the module names, so
torchvision's feature extraction takes them as they are::

    from torchvision.models.feature_extraction import create_feature_extractor
    taps = [tap.module for tap in feature_taps(model)]
    extractor = create_feature_extractor(model, return_nodes=taps)  # same maps as below
    maps = extract_features(model, x)  # {"features.norm0": (N, 64, H/2, W/2), ...}

What each map holds, exactly (torchvision's module tree decides it):

- ``features.norm0``: the stem's BatchNorm output *after* the ReLU, because ``relu0``
  rectifies it in place (as in timm, whose ``norm0`` is a BatchNorm fused with its ReLU).
  An extractor asked for ``norm0`` alone skips ``relu0`` and returns it before the ReLU.
- ``features.denseblockN``: the block's concatenation [x_0, ..., x_L], not normalised.
- ``features.norm5``: the final BatchNorm output *before* the ReLU (what
  ``model.forward_features`` returns; timm's ``norm5`` includes the ReLU).

A CIFAR DenseNet has no ``norm0``: its first tap is the stem convolution ``conv0`` at
stride 1. Strides are read from the modules as they are, so an edited stem (say
``model.features.pool0 = nn.Identity()``) reports its new strides.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from densenet_edu.inputs import _step, check_images
from densenet_edu.layers import DenseBlock

__all__ = ["FeatureTap", "extract_features", "feature_taps"]


@dataclass(frozen=True)
class FeatureTap:
    """One multi-scale output: timm's ``feature_info`` entry (``module``, ``num_chs``,
    ``reduction``)."""

    module: str  # the module name, also torchvision's node name: "features.denseblock1"
    num_chs: int
    reduction: int  # input side / map side


def _channels(module: nn.Module) -> int:
    if isinstance(module, DenseBlock):
        return module.out_channels
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return module.num_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    raise TypeError(f"no channel count known for a {type(module).__name__}")


def _stride(module: nn.Module) -> int:
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    stride = 1
    for leaf in leaves if not isinstance(module, DenseBlock) else []:
        try:
            step = _step(leaf)
        except LookupError:
            continue  # an unknown module: assume it keeps the size
        stride *= step.stride if step is not None else 1
    return stride


def feature_taps(model: nn.Module) -> list[FeatureTap]:
    """timm's taps of ``model``: stem BatchNorm (or conv), blocks 1..n-1, norm5.

    Args:
        model: a DenseNet (``model.features`` in torchvision's layout).
    """
    children = list(model.features.named_children())
    blocks = [name for name, m in children if isinstance(m, DenseBlock)]
    stem = "norm0" if "norm0" in dict(children) else "conv0"
    wanted = {stem, *blocks[:-1], "norm5"}
    taps, reduction = [], 1
    for name, module in children:
        reduction *= _stride(module)
        if name in wanted:
            taps.append(FeatureTap(f"features.{name}", _channels(module), reduction))
    return taps


def extract_features(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The maps at :func:`feature_taps`, by module name, after checking ``x`` as ``model``
    does; equal to what torchvision's ``create_feature_extractor`` returns for those taps.

    Shapes (ImageNet stem, input (N, 3, H, W)): ``features.norm0`` (N, k0, H/2, W/2),
    ``features.denseblock1..3`` (N, C_b, H/4 .. H/16, ...), ``features.norm5``
    (N, num_features, H/32, W/32), sides rounded as the layers round them.
    """
    check_images(x, model.features, type(model).__name__, model.training)
    wanted = {tap.module for tap in feature_taps(model)}
    maps = {}
    for name, module in model.features.named_children():
        x = module(x)
        if f"features.{name}" in wanted:
            maps[f"features.{name}"] = x
        if len(maps) == len(wanted):
            break
    return maps
