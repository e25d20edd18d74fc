"""Tensor helpers of the checkers: tolerant comparison, readable differences, test inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["as_tensor", "close", "difference", "leaves", "random_inputs", "randomise", "shape"]


def shape(t: Tensor) -> str:
    """``(2, 76, 8, 8)``: a shape as the messages print it."""
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def close(actual: Any, expected: Tensor) -> bool:
    """Whether ``actual`` is a tensor equal to ``expected`` up to float32 rounding."""
    if not isinstance(actual, Tensor) or actual.shape != expected.shape:
        return False
    if actual.dtype != expected.dtype:
        actual = actual.to(expected.dtype)
    scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    tol = 1e-5 + 1e-4 * scale
    return bool(torch.allclose(actual.detach(), expected.detach(), rtol=1e-4, atol=tol))


def difference(actual: Tensor, expected: Tensor) -> str:
    """Where two same-shaped tensors differ most, and by how much."""
    diff = (actual.detach().float() - expected.detach().float()).abs()
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    return (
        f"the largest difference is {diff.max().item():.4g} at index {index} "
        f"(expected {expected[index].item():.4f}, got {actual[index].item():.4f})"
    )


def as_tensor(value: Any) -> Tensor | None:
    """A tensor, or a list/tuple of maps concatenated on the channel axis, as a detached copy."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
        try:
            return torch.cat([v.detach() for v in value], dim=1)
        except RuntimeError:
            return None
    return None


def randomise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics.

    With the default (weight 1, bias 0, mean 0, var 1) a BatchNorm in eval mode is the
    identity, and a missing BatchNorm would go unnoticed.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
    return module


def random_inputs(shapes: Sequence[tuple[int, ...]], generator: torch.Generator) -> list[Tensor]:
    return [torch.randn(s, generator=generator) for s in shapes]


def leaves(tensors: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Leaves that collect gradients, and non-leaf copies to feed in (so that an in-place
    change by the learner is detected by value instead of failing inside autograd)."""
    grads = [t.clone().requires_grad_(True) for t in tensors]
    return grads, [leaf * 1.0 for leaf in grads]
