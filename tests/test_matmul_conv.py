"""MatmulConv1x1: a 1x1 convolution as one matrix product over the pixels of NHWC maps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densenet_edu.matmul_conv import MatmulConv1x1


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_matrix_product_equals_the_convolution(relu, bias, channels_last):
    conv = nn.Conv2d(12, 7, 1, bias=bias)
    x = torch.randn(3, 12, 5, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = torch.relu(conv(x)) if relu else conv(x)
        actual = MatmulConv1x1(conv, relu=relu)(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_a_view_of_a_wider_channels_last_buffer_is_read_correctly():
    conv = nn.Conv2d(5, 4, 1)
    buffer = torch.randn(2, 9, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(MatmulConv1x1(conv)(buffer[:, :5]), conv(buffer[:, :5]))


def test_the_direct_path_calls_addmm_and_returns_channels_last(monkeypatch):
    calls = []
    real = torch.addmm
    monkeypatch.setattr(torch, "addmm", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(1, 6, 3, 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = MatmulConv1x1(nn.Conv2d(6, 4, 1))(x)
    assert calls, "torch.addmm was not called"
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_gradients_flow_through_the_ordinary_path():
    conv = nn.Conv2d(3, 2, 1)
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    MatmulConv1x1(conv, relu=True)(x).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    torch.relu(conv(x2)).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


@pytest.mark.parametrize(
    ("conv", "message"),
    [
        (nn.Conv2d(4, 4, 3), "1x1 convolution with stride 1"),
        (nn.Conv2d(4, 4, 1, stride=2), "1x1 convolution with stride 1"),
        (nn.Conv2d(4, 4, 1, padding=1), "without padding"),
    ],
)
def test_other_convolutions_are_refused(conv, message):
    with pytest.raises(ValueError, match=message):
        MatmulConv1x1(conv)
