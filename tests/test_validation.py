"""One message per mistake, whichever class or factory the setting was given to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densenet_edu as de
from densenet_edu import DenseNetConfig

# Each door a setting can come in by, as a function of (name, value).
DOORS = {
    "DenseNetConfig": lambda name, value: DenseNetConfig(**{name: value}),
    "DenseNet": lambda name, value: de.DenseNet(**{name: value}),
    "densenet121": lambda name, value: de.densenet121(**{name: value}),
}
LAYER_DOORS = {
    "DenseLayer": lambda name, value: de.DenseLayer(
        **{"in_channels": 8, "growth_rate": 4, name: value}
    ),
    "DenseBlock": lambda name, value: de.DenseBlock(
        **{"num_layers": 2, "in_channels": 8, "growth_rate": 4, name: value}
    ),
}

MISTAKES = [
    ("growth_rate", 0, "growth_rate must be a positive integer, got 0"),
    ("growth_rate", 2.5, "growth_rate must be a positive integer, got 2.5"),
    ("growth_rate", "32", "growth_rate must be a positive integer, got '32'"),
    ("bn_size", True, "bn_size must be a positive integer, got True"),
    ("drop_rate", 1.0, r"drop_rate must be a probability in \[0, 1\), got 1.0"),
    ("bottleneck", "no", "bottleneck must be True or False, got 'no'"),
    ("bottleneck", 0, "bottleneck must be True or False, got 0"),
    ("memory_efficient", "yes", "memory_efficient must be True or False, got 'yes'"),
    ("dropout_placement", "after", "dropout_placement must be 'torchvision'"),
]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("name, value, message", MISTAKES + [
    ("block_config", (6, 0), "block_config must be a non-empty sequence of positive"),
    ("compression", 0, r"compression \(theta\) must be in \(0, 1\]"),
    ("num_classes", -1, "num_classes must be a positive integer, got -1"),
    ("stem", "resnet", "stem must be 'imagenet' or 'cifar', got 'resnet'"),
])  # fmt: skip
def test_a_model_setting_gets_the_same_message_at_every_door(door, name, value, message):
    with pytest.raises(ValueError, match=message):
        DOORS[door](name, value)


@pytest.mark.parametrize("door", LAYER_DOORS)
@pytest.mark.parametrize("name, value, message", MISTAKES)
def test_a_layer_setting_gets_the_same_message(door, name, value, message):
    with pytest.raises(ValueError, match=message):
        LAYER_DOORS[door](name, value)


def test_transition_and_cifar_factory_share_the_compression_message():
    message = r"compression \(theta\) must be in \(0, 1\]"
    with pytest.raises(ValueError, match=message):
        de.Transition(8, compression=1.5)
    with pytest.raises(ValueError, match=message):
        de.densenet_cifar(40, 12, compression=1.5)


def test_cifar_factory_refuses_a_non_bool_bottleneck():
    with pytest.raises(ValueError, match="bottleneck must be True or False, got 'no'"):
        de.densenet_cifar(40, 12, bottleneck="no")


@pytest.mark.parametrize("value", [np.int64(8), np.int32(8), torch.tensor(8)])
def test_integral_numbers_of_other_types_are_accepted_as_ints(value):
    model = de.DenseNet(growth_rate=value, block_config=(1,), num_init_features=value)
    assert model.config.growth_rate == 8 and type(model.config.growth_rate) is int
    layer = de.DenseLayer(value, value)
    assert layer.in_channels == 8 and type(layer.growth_rate) is int


def test_numpy_layer_counts_and_bools_are_accepted():
    config = DenseNetConfig(block_config=np.array([1, 2]), bottleneck=np.bool_(False))
    assert config.block_config == (1, 2) and config.bottleneck is False


def test_bottleneck_no_does_not_build_bottlenecks_silently():
    # 'no' is truthy: before one check per setting, it built DenseNet-B.
    with pytest.raises(ValueError, match="must be True or False"):
        de.DenseNet(bottleneck="no", block_config=(1,))
