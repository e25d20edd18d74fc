"""The shared fixtures of conftest.py can fail: a check that passes everything proves nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def test_the_same_training_step_passes_for_twins(assert_same_training_step):
    a = small_net()
    a(torch.randn(2, 3, 5, 5))  # materialise the lazy layer
    assert_same_training_step(
        a, copy.deepcopy(a), torch.randn(4, 3, 5, 5), torch.tensor([0, 1, 1, 0])
    )


@pytest.mark.parametrize("differ", ["weight", "running statistics"])
def test_the_same_training_step_catches_a_difference(assert_same_training_step, differ):
    a = small_net()
    a(torch.randn(2, 3, 5, 5))
    b = copy.deepcopy(a)
    with torch.no_grad():
        if differ == "weight":
            b[3].weight[0, 0] += 1e-2  # changes the outputs and the gradients
        else:
            b[1].momentum = 0.5  # same outputs in train mode, other running statistics
    with pytest.raises(AssertionError):
        assert_same_training_step(a, b, torch.randn(4, 3, 5, 5), torch.tensor([0, 1, 1, 0]))


def test_the_fake_cifar10_writes_torchvisions_files(tmp_path, fake_cifar10):
    root = fake_cifar10(tmp_path, per_batch=3)
    names = sorted(p.name for p in (root / "cifar-10-batches-py").iterdir())
    assert names == ["batches.meta", *[f"data_batch_{i}" for i in range(1, 6)], "test_batch"]
