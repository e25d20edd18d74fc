"""DenseNetConfig: one frozen description of a DenseNet, read by models, checkpoints and runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from densenet_edu import DenseNetConfig


def test_defaults_are_densenet121s():
    config = DenseNetConfig()
    assert (config.growth_rate, config.block_config, config.num_init_features) == (
        32, (6, 12, 24, 16), 64
    )  # fmt: skip


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DenseNetConfig().growth_rate = 12  # type: ignore[misc]


def test_replace_returns_a_changed_copy():
    config = DenseNetConfig()
    changed = config.replace(num_classes=10)
    assert changed.num_classes == 10 and config.num_classes == 1000


def test_dict_round_trip_through_json_gives_an_equal_config():
    config = DenseNetConfig(growth_rate=12, block_config=(16, 16, 16), stem="cifar")
    assert DenseNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unknown_keys_are_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown DenseNet setting\(s\) \['depth'\]; known"):
        DenseNetConfig.from_dict({"depth": 100})


def test_values_come_back_in_canonical_types():
    config = DenseNetConfig(
        growth_rate=np.int64(12), block_config=[2, 2], drop_rate=np.float32(0.5)
    )
    assert type(config.growth_rate) is int and config.block_config == (2, 2)
    assert type(config.drop_rate) is float
    assert config == DenseNetConfig(growth_rate=12, block_config=(2, 2), drop_rate=0.5)
    assert hash(config) == hash(DenseNetConfig(growth_rate=12, block_config=(2, 2), drop_rate=0.5))


def test_key_access_and_unpacking_work_as_for_the_old_dict():
    config = DenseNetConfig(growth_rate=12)
    assert config["growth_rate"] == 12 and config.get("missing", 3) == 3
    assert {**config} == config.to_dict() | {"block_config": config.block_config}
    with pytest.raises(KeyError):
        config["depth"]
