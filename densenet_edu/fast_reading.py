"""What :func:`densenet_edu.fast.optimize_for_inference` reads from a model before converting it.

Duck-typed on purpose: torchvision's, timm's and densenet_edu's DenseNets name their parts
alike (``norm1``/``conv1`` in a dense layer, ``norm``/``conv``/``pool`` in a transition), so
one reader converts all three, and refuses what it cannot convert exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = [
    "bn_scale_shift",
    "check_densenet",
    "check_head",
    "dense_layers",
    "first_conv",
    "fused_activation",
    "is_dense_block",
    "is_transition",
]


def check_densenet(model: nn.Module) -> None:
    """Raise a TypeError naming what is missing unless ``model`` reads as a DenseNet."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize_for_inference expects a DenseNet model, got {type(model)}")
    name = type(model).__name__
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TypeError(
            "optimize_for_inference expects a DenseNet (densenet_edu, torchvision or timm: a "
            f"`features` nn.Sequential of stem, dense blocks and transitions); this {name} "
            "has no `features` nn.Sequential"
        )
    if not any(is_dense_block(m) for m in features.children()):
        raise TypeError(
            f"optimize_for_inference expects a DenseNet, but this {name}'s `features` "
            "holds no dense block (a module whose children all have norm1 and conv1)"
        )
    if not isinstance(getattr(model, "classifier", None), nn.Module):
        raise TypeError(
            f"optimize_for_inference expects a DenseNet with a `classifier` module (use "
            f"nn.Identity() for none); this {name} has none"
        )
    check_head(model)


def check_head(model: nn.Module) -> None:
    """The head must be ReLU (in norm5 or the forward), global average pool, classifier."""
    pool = getattr(model, "global_pool", None)  # timm's SelectAdaptivePool2d
    if pool is not None and getattr(pool, "pool_type", "avg") != "avg":
        raise TypeError(
            f"optimize_for_inference supports global average pooling only; this model's "
            f"global_pool is {pool.pool_type!r}"
        )


def fused_activation(norm: nn.BatchNorm2d, where: str) -> bool:
    """Does ``norm`` apply a ReLU itself (timm's BatchNormAct2d)? Refuse other activations."""
    act = getattr(norm, "act", None)
    if act is None or isinstance(act, nn.Identity):
        return False
    if isinstance(act, nn.ReLU) and isinstance(
        getattr(norm, "drop", None), (nn.Identity, type(None))
    ):
        return True
    raise TypeError(
        f"optimize_for_inference cannot convert {where} exactly: it applies "
        f"{type(act).__name__}, and the fast model assumes ReLU"
    )


def bn_scale_shift(norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` (float64). Needs running statistics."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    inv_std = torch.rsqrt(norm.running_var.detach().double() + norm.eps)
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(inv_std)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(inv_std)
    scale = gamma * inv_std
    return scale, beta - norm.running_mean.detach().double() * scale


def dense_layers(block: nn.Module) -> Iterator[nn.Module]:
    return (m for m in block.children() if hasattr(m, "norm1") and hasattr(m, "conv1"))


def is_dense_block(module: nn.Module) -> bool:
    children = list(module.children())
    return bool(children) and all(hasattr(m, "norm1") and hasattr(m, "conv1") for m in children)


def is_transition(module: nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("norm", "conv", "pool"))


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))
