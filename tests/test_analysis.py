"""analysis: channel schedule, parameter and multiply-add counts, shape traces."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import densenet_edu as de


def test_schedule_layer_inputs_follow_k0_plus_k_times_l_minus_1():
    s = de.channel_schedule(growth_rate=12, block_config=(3, 2), num_init_features=24)
    assert [(x.block, x.layer, x.in_channels) for x in s.layers] == [
        (1, 1, 24), (1, 2, 36), (1, 3, 48), (2, 1, 30), (2, 2, 42)
    ]  # fmt: skip
    assert [(b.in_channels, b.out_channels) for b in s.blocks] == [(24, 60), (30, 54)]
    assert [(t.in_channels, t.out_channels) for t in s.transitions] == [(60, 30)]
    assert s.final_channels == 54


def test_schedule_of_densenet121_matches_table_1():
    s = de.channel_schedule("densenet121")
    assert [(b.in_channels, b.out_channels) for b in s.blocks] == [
        (64, 256), (128, 512), (256, 1024), (512, 1024)
    ]  # fmt: skip
    assert len(s.layers) == 58


@pytest.mark.parametrize("name", ["densenet121", "densenet161"])
def test_schedule_matches_real_tensor_shapes(name):
    with torch.device("meta"):
        model = getattr(de, name)()
    seen = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: seen.append(sum(t.shape[1] for t in args[0])))
        for m in model.modules()
        if isinstance(m, de.DenseLayer)
    ]
    model(torch.empty(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert seen == [x.in_channels for x in de.channel_schedule(model).layers]


def test_schedule_uses_compression_and_model_config():
    model = de.densenet_cifar(100, 12)
    s = de.channel_schedule(model)
    assert s.blocks[0].in_channels == 24 and s.transitions[0].out_channels == (24 + 16 * 12) // 2


def test_schedule_rows_are_one_per_layer():
    rows = de.channel_schedule("densenet121").rows()
    assert len(rows) == 58 and set(rows[0]) == {"block", "layer", "in_channels", "out_channels"}


def test_schedule_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'densenet100'"):
        de.channel_schedule("densenet100")


def test_count_parameters_counts_trainable_weights():
    conv = torch.nn.Conv2d(4, 8, 3, bias=False)
    bn = torch.nn.BatchNorm2d(8)
    assert de.count_parameters(torch.nn.Sequential(conv, bn)) == 4 * 8 * 9 + 2 * 8
    bn.weight.requires_grad_(False)
    assert de.count_parameters(torch.nn.Sequential(conv, bn), trainable_only=True) == 4 * 8 * 9 + 8


@pytest.mark.parametrize("factory", [de.densenet121, lambda: de.densenet_cifar(40, 12)])
def test_macs_equal_half_of_torchs_flop_counter(factory):
    model = factory().eval()
    shape = (1, 3, 64, 64)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(shape))
    assert de.count_macs(model, shape) == counter.get_total_flops() // 2


def test_densenet121_costs_2_834_g_mult_adds_as_torchvision_publishes():
    with torch.device("meta"):
        model = de.densenet121()
    assert de.count_macs(model) / 1e9 == pytest.approx(2.834, abs=0.0005)


def test_layer_table_rows_sum_to_the_totals():
    with torch.device("meta"):
        model = de.densenet121()
    rows = de.layer_table(model, depth=2)
    assert sum(r.params for r in rows) == de.count_parameters(model)
    assert sum(r.macs for r in rows) == de.count_macs(model)
    assert [r.name for r in rows][:4] == [
        "features.conv0", "features.norm0", "features.relu0", "features.pool0"
    ]  # fmt: skip
    assert rows[-1].name == "classifier" and rows[-1].kind == "Linear"


def test_layer_table_restores_training_mode():
    model = de.densenet_cifar(40, 12).train()
    de.layer_table(model, (1, 3, 32, 32))
    assert model.training


def test_schedule_of_a_config_equals_the_schedule_of_its_model():
    config = de.DenseNetConfig(growth_rate=12, block_config=(3, 2), num_init_features=24)
    assert de.channel_schedule(config) == de.channel_schedule(de.DenseNet(config))


def test_schedule_of_an_unknown_architecture_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="unknown architecture 'densenet100'; choose from densenet121"
    ):
        de.channel_schedule("densenet100")


def test_analysis_no_longer_re_exports_the_feature_reuse_module():
    import densenet_edu.analysis as analysis

    assert not hasattr(analysis, "feature_reuse") and not hasattr(analysis, "plot_feature_reuse")
