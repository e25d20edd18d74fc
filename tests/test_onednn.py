"""PackedConv2d: oneDNN with prepacked weights and a fused ReLU computes nn.Conv2d (+ ReLU)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from densenet_edu.onednn import PackedConv2d


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_packed_convolution_equals_the_convolution(relu, channels_last):
    conv = nn.Conv2d(8, 6, 3, padding=1, bias=True)
    packed = PackedConv2d(conv, relu=relu)
    x = torch.randn(2, 8, 9, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        packed = packed.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = torch.relu(conv(x)) if relu else conv(x)
        torch.testing.assert_close(packed(x), expected, rtol=1e-5, atol=1e-5)


def test_the_direct_path_is_taken_in_inference(monkeypatch):
    packed = PackedConv2d(nn.Conv2d(4, 4, 1))
    calls = []
    real = torch.ops.mkldnn._convolution_pointwise
    monkeypatch.setattr(
        torch.ops.mkldnn, "_convolution_pointwise", lambda *a: calls.append(1) or real(*a)
    )
    with torch.no_grad():
        packed(torch.randn(1, 4, 5, 5))
    assert calls, "the oneDNN op was not called"


def test_edited_weights_are_repacked():
    packed = PackedConv2d(nn.Conv2d(4, 4, 3, padding=1))
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        packed(x)  # packs the original weights
        packed.weight.mul_(2)
        expected = nn.functional.conv2d(x, packed.weight, packed.bias, padding=1)
        torch.testing.assert_close(packed(x), expected, rtol=1e-5, atol=1e-5)


def test_packing_works_for_weights_made_in_inference_mode():
    with torch.inference_mode():
        conv = nn.Conv2d(4, 4, 1)
        packed = PackedConv2d(conv, relu=True)
        x = torch.randn(1, 4, 5, 5)
        torch.testing.assert_close(packed(x), torch.relu(conv(x)), rtol=1e-5, atol=1e-5)


def test_gradients_flow_through_the_ordinary_path():
    conv = nn.Conv2d(3, 2, 3)
    packed = PackedConv2d(conv, relu=True)
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    packed(x).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    torch.relu(conv(x2)).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_a_copy_and_a_pickle_leave_the_packed_cache_behind():
    packed = PackedConv2d(nn.Conv2d(4, 4, 1))
    with torch.no_grad():
        packed(torch.randn(1, 4, 5, 5))
    assert packed._packed
    assert copy.deepcopy(packed)._packed == {}
