"""memory_efficient=True recomputes concat + BN + ReLU + conv1 and changes nothing else."""

from __future__ import annotations

import copy

import pytest
import torch

import densenet_edu as de
from densenet_edu.measure import saved_tensor_bytes


def twins(device, **kwargs):
    plain = de.densenet_cifar(**kwargs).to(device)
    efficient = copy.deepcopy(plain)
    for module in efficient.modules():
        if isinstance(module, de.DenseLayer):
            module.memory_efficient = True
    return plain, efficient


@pytest.mark.parametrize("bottleneck", [True, False])
def test_outputs_gradients_and_running_stats_match_the_plain_path(device, bottleneck):
    plain, efficient = twins(device, depth=40, growth_rate=6, bottleneck=bottleneck)
    x = torch.randn(8, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (8,), device=device)
    outs = []
    for model in (plain, efficient):
        model.train()
        out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0])
    grads = {n: p.grad for n, p in plain.named_parameters()}
    for n, p in efficient.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    # Recomputation in backward must not update BatchNorm's statistics a second time.
    buffers = dict(plain.named_buffers())
    for n, b in efficient.named_buffers():
        torch.testing.assert_close(b, buffers[n], msg=n)


def test_factory_flag_reaches_every_dense_layer():
    model = de.densenet121(memory_efficient=True)
    layers = [m for m in model.modules() if isinstance(m, de.DenseLayer)]
    assert len(layers) == 58 and all(m.memory_efficient for m in layers)


def test_checkpointing_stores_fewer_bytes_for_backward():
    plain, efficient = twins("cpu", depth=40, growth_rate=6)
    x = torch.randn(4, 3, 32, 32)
    assert saved_tensor_bytes(efficient, x) < 0.7 * saved_tensor_bytes(plain, x)


def test_memory_efficient_layer_keeps_its_inputs_and_bottleneck_not_the_concatenation():
    n, k, hw = 2, 4, 5 * 5
    layer = de.DenseLayer(10, k, memory_efficient=True)
    x = [torch.randn(n, 6, 5, 5, requires_grad=True), torch.randn(n, 4, 5, 5, requires_grad=True)]
    # The checkpoint keeps its inputs (the earlier maps, 10 channels, held anyway by the
    # block) and recomputes concat + norm1 + ReLU + conv1; norm2 keeps the 4k-channel
    # bottleneck output (shared with the in-place ReLU and conv2) and its mean/inv std.
    expected = (n * 10 * hw + 2 * n * 4 * k * hw + 2 * 4 * k) * 4
    assert saved_tensor_bytes(layer, x) == expected


def test_memory_efficient_model_runs_without_grad():
    _, efficient = twins("cpu", depth=40, growth_rate=6)
    with torch.no_grad():
        assert efficient.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
