"""fold_preactivation: conv(relu(norm(x))) == conv'(clamp(x)) for a 1x1 convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densenet_edu.matmul_conv import is_pointwise
from densenet_edu.preactivation import PreActivationClamp, fold_preactivation


def batchnorm(gamma: list[float], beta: list[float]) -> nn.BatchNorm2d:
    """An eval-mode BatchNorm with the given affine parameters and non-trivial statistics."""
    c = len(gamma)
    norm = nn.BatchNorm2d(c).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor(gamma))
        norm.bias.copy_(torch.tensor(beta))
        norm.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
        norm.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return norm


def reference(norm: nn.BatchNorm2d, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return conv(torch.relu(norm(x)))


@torch.no_grad()
def test_folded_layer_equals_batchnorm_relu_convolution():
    norm = batchnorm([0.7, 1.3, 0.2, 2.0], [0.1, -0.4, 0.5, -1.0])
    conv = nn.Conv2d(4, 6, 1, bias=False)
    clamp, folded = fold_preactivation(norm, conv)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(folded(clamp(x)), reference(norm, conv, x))


@torch.no_grad()
def test_negative_scales_clamp_from_above():
    norm = batchnorm([-0.8, 1.0, -1.5], [0.3, 0.2, -0.6])
    conv = nn.Conv2d(3, 2, 1)
    clamp, folded = fold_preactivation(norm, conv)
    assert torch.isinf(clamp.lo[0, 0]) and torch.isfinite(clamp.hi[0, 0])
    assert torch.isfinite(clamp.lo[0, 1]) and torch.isinf(clamp.hi[0, 1])
    x = torch.randn(3, 3, 4, 4) * 3
    torch.testing.assert_close(folded(clamp(x)), reference(norm, conv, x))


@torch.no_grad()
def test_a_zero_scale_channel_becomes_the_constant_relu_of_its_shift():
    norm = batchnorm([0.0, 0.0, 1.0], [0.7, -0.7, 0.0])
    conv = nn.Conv2d(3, 4, 1, bias=False)
    clamp, folded = fold_preactivation(norm, conv)
    assert (folded.weight[:, :2] == 0).all()
    x = torch.randn(2, 3, 3, 3)
    torch.testing.assert_close(folded(clamp(x)), reference(norm, conv, x))


@torch.no_grad()
def test_a_threshold_beyond_float32_gives_a_constant_not_an_infinity():
    norm = batchnorm([1.0, 1.0], [-1.0, 0.5])
    norm.running_var.fill_(1e37)  # scale ~ 3e-19: the first channel opens only above ~3e18
    norm.weight.fill_(1.0)
    norm.bias.copy_(torch.tensor([-1e30, 0.5]))
    conv = nn.Conv2d(2, 3, 1)
    clamp, folded = fold_preactivation(norm, conv)
    x = torch.randn(1, 2, 4, 4)
    out = folded(clamp(x))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference(norm, conv, x))


@torch.no_grad()
def test_the_fold_passes_through_a_two_by_two_average_pool():
    norm = batchnorm([0.9, -1.1, 0.4], [0.2, 0.1, -0.3])
    conv = nn.Conv2d(3, 5, 1, bias=False)
    pool = nn.AvgPool2d(2, 2)
    clamp, folded = fold_preactivation(norm, conv)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(folded(pool(clamp(x))), conv(pool(torch.relu(norm(x)))))


@torch.no_grad()
def test_the_clamp_of_a_buffer_view_is_dense_and_channels_last():
    clamp = PreActivationClamp(torch.zeros(3), torch.full((3,), float("inf")))
    buffer = torch.randn(1, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    out = clamp(buffer[:, :3])
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, torch.relu(buffer[:, :3]))


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 4, 3, padding=1),  # padding: the border sees zeros, not relu(shift)
        nn.Conv2d(4, 4, 1, stride=2),
        nn.Conv2d(4, 4, 1, groups=2),
    ],
    ids=["3x3", "strided", "grouped"],
)
def test_only_a_plain_one_by_one_convolution_is_folded(conv):
    assert not is_pointwise(conv)
    with pytest.raises(ValueError, match="1x1 convolution"):
        fold_preactivation(batchnorm([1.0] * 4, [0.0] * 4), conv)


def test_a_batchnorm_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="3 channels but the convolution reads 4"):
        fold_preactivation(batchnorm([1.0] * 3, [0.0] * 3), nn.Conv2d(4, 2, 1))
