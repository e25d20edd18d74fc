"""The building blocks: shapes, channel arithmetic and structure (paper, Section 3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densenet_edu import DenseBlock, DenseLayer, Transition, compressed_channels


def test_bottleneck_layer_is_bn_relu_1x1_then_bn_relu_3x3():
    layer = DenseLayer(in_channels=64, growth_rate=32, bn_size=4)
    assert [name for name, _ in layer.named_children()] == [
        "norm1", "relu1", "conv1", "norm2", "relu2", "conv2"
    ]  # fmt: skip
    assert layer.conv1.kernel_size == (1, 1) and layer.conv1.out_channels == 4 * 32
    assert layer.conv2.kernel_size == (3, 3) and layer.conv2.out_channels == 32
    assert layer.conv1.bias is None and layer.conv2.bias is None


def test_plain_layer_is_bn_relu_3x3_only():
    layer = DenseLayer(in_channels=24, growth_rate=12, bottleneck=False)
    assert [name for name, _ in layer.named_children()] == ["norm1", "relu1", "conv1"]
    assert layer.conv1.kernel_size == (3, 3) and layer.conv1.out_channels == 12


@pytest.mark.parametrize("bottleneck", [True, False])
def test_layer_returns_only_the_k_new_feature_maps(bottleneck):
    layer = DenseLayer(in_channels=20, growth_rate=6, bottleneck=bottleneck)
    out = layer(torch.randn(2, 20, 9, 9))
    assert out.shape == (2, 6, 9, 9)


def test_layer_accepts_the_list_of_earlier_features_and_concatenates_it():
    layer = DenseLayer(in_channels=10, growth_rate=4).eval()
    parts = [torch.randn(1, 6, 5, 5), torch.randn(1, 4, 5, 5)]
    torch.testing.assert_close(layer(parts), layer(torch.cat(parts, 1)))


@pytest.mark.parametrize("k0, k, layers", [(64, 32, 6), (16, 12, 3), (3, 1, 1)])
def test_block_outputs_k0_plus_k_times_layers_channels(k0, k, layers):
    block = DenseBlock(num_layers=layers, in_channels=k0, growth_rate=k)
    assert block(torch.randn(2, k0, 8, 8)).shape == (2, k0 + k * layers, 8, 8)
    assert block.out_channels == k0 + k * layers


def test_block_layer_l_sees_k0_plus_k_times_l_minus_1_channels():
    block = DenseBlock(num_layers=5, in_channels=16, growth_rate=12)
    widths = [layer.norm1.num_features for layer in block.values()]
    assert widths == [16 + 12 * (layer - 1) for layer in range(1, 6)]


def test_block_output_starts_with_its_input_unchanged():
    block = DenseBlock(num_layers=3, in_channels=5, growth_rate=2).eval()
    x = torch.randn(1, 5, 6, 6)
    torch.testing.assert_close(block(x)[:, :5], x)


def test_block_appends_each_layer_output_in_order():
    block = DenseBlock(num_layers=3, in_channels=4, growth_rate=2).eval()
    x = torch.randn(1, 4, 6, 6)
    out = block(x)
    x1 = block.denselayer1(x)
    x2 = block.denselayer2([x, x1])
    x3 = block.denselayer3([x, x1, x2])
    torch.testing.assert_close(out, torch.cat([x, x1, x2, x3], 1))


def test_transition_compresses_channels_and_halves_resolution():
    t = Transition(in_channels=256, compression=0.5)
    assert t(torch.randn(2, 256, 56, 56)).shape == (2, 128, 28, 28)
    assert isinstance(t.pool, nn.AvgPool2d)
    assert [name for name, _ in t.named_children()] == ["norm", "relu", "conv", "pool"]


@pytest.mark.parametrize(
    "m, theta, expected",
    [(256, 0.5, 128), (255, 0.5, 127), (100, 0.29, 29), (10, 1.0, 10), (7, 0.1, 1)],
)
def test_compression_is_floor_theta_m(m, theta, expected):
    assert compressed_channels(m, theta) == expected
    assert Transition(m, theta).conv.out_channels == expected


def test_transition_without_compression_keeps_every_channel():
    assert Transition(in_channels=48, compression=1.0)(torch.randn(1, 48, 4, 4)).shape[1] == 48


def test_dropout_changes_training_outputs_only():
    layer = DenseLayer(8, 4, drop_rate=0.5)
    x = torch.randn(4, 8, 5, 5)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert (layer(x) == 0).float().mean() > 0.3


def _zero_fraction_entering(module: nn.Module, run) -> float:
    """Fraction of exact zeros in the input of ``module`` while ``run()`` executes."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        run()
    finally:
        handle.remove()
    return (seen[0] == 0).float().mean().item()


@pytest.mark.parametrize("placement, expected", [("torchvision", False), ("paper", True)])
def test_only_the_papers_placement_drops_out_the_bottleneck_output(placement, expected):
    torch.manual_seed(0)
    layer = DenseLayer(8, 4, drop_rate=0.5, dropout_placement=placement).train()
    x = torch.randn(4, 8, 5, 5)
    # conv1's output is not rectified, so exact zeros entering norm2 come from dropout.
    zeros = _zero_fraction_entering(layer.norm2, lambda: layer(x))
    assert (0.3 < zeros < 0.7) if expected else zeros == 0


@pytest.mark.parametrize("placement", ["torchvision", "paper"])
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_both_placements_drop_out_the_new_maps(placement, memory_efficient):
    torch.manual_seed(0)
    layer = DenseLayer(
        8, 4, drop_rate=0.5, dropout_placement=placement, memory_efficient=memory_efficient
    ).train()
    x = torch.randn(4, 8, 5, 5, requires_grad=True)
    assert 0.3 < (layer(x) == 0).float().mean() < 0.7


def test_memory_efficient_layer_drops_out_the_bottleneck_output_with_the_papers_placement():
    torch.manual_seed(0)
    layer = DenseLayer(8, 4, drop_rate=0.5, dropout_placement="paper", memory_efficient=True)
    x = torch.randn(4, 8, 5, 5, requires_grad=True)
    zeros = _zero_fraction_entering(layer.norm2, lambda: layer(x).sum().backward())
    assert 0.3 < zeros < 0.7


def test_transition_with_drop_rate_drops_out_after_the_conv_before_the_pool():
    torch.manual_seed(0)
    t = Transition(16, 0.5, drop_rate=0.5).train()
    x = torch.randn(4, 16, 6, 6)
    assert 0.3 < _zero_fraction_entering(t.pool, lambda: t(x)) < 0.7
    t.eval()
    assert _zero_fraction_entering(t.pool, lambda: t(x)) == 0
    assert [name for name, _ in t.named_children()] == ["norm", "relu", "conv", "pool"]


def test_transition_without_drop_rate_is_bn_relu_conv_pool_in_order():
    t = Transition(16, 0.5).train()
    x = torch.randn(4, 16, 6, 6)
    torch.testing.assert_close(t(x), t.pool(t.conv(t.relu(t.norm(x.clone())))))


def test_unknown_dropout_placement_is_rejected_naming_the_choices():
    with pytest.raises(ValueError, match="dropout_placement must be 'torchvision'.*'paper'"):
        DenseLayer(8, 4, dropout_placement="everywhere")
