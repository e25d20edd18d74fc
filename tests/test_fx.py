"""torch.fx and torchvision's feature extraction work on the models, as on torchvision's."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import densenet_edu as de
from densenet_edu.architectures import TABLE


def small(name: str, **changes) -> de.DenseNet:
    """The architecture's growth rate and stem with two layers per block (fast to trace)."""
    return de.DenseNet(TABLE[name].config.replace(block_config=(2, 2, 2, 2), **changes))


def test_symbolic_trace_of_densenet121_computes_the_same_logits():
    model = de.densenet121().eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("name", TABLE)
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_every_model_traces_with_node_names_that_follow_the_module_tree(name, memory_efficient):
    model = small(name, memory_efficient=memory_efficient).eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert not model.training  # the call puts the model back in the mode it found it in
    modules = {n for n, m in model.named_modules() if not list(m.children())}
    for nodes in (train_nodes, eval_nodes):
        assert modules <= set(nodes)  # every leaf module is a node under its own name
        assert "features.denseblock2.denselayer2.cat" in nodes  # the layer's concatenation
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x))


def test_a_traced_memory_efficient_model_gives_the_same_training_outputs():
    model = small("densenet121", memory_efficient=True).train()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(traced(x), model(x))  # same weights; statistics updated twice


@pytest.mark.parametrize("name", TABLE)
def test_feature_taps_have_timms_strides_and_the_maps_shapes(name):
    model = small(name).eval()
    taps = de.feature_taps(model)
    assert [t.module for t in taps] == [
        "features.norm0", "features.denseblock1", "features.denseblock2",
        "features.denseblock3", "features.norm5",
    ]  # fmt: skip
    assert [t.reduction for t in taps] == [2, 4, 8, 16, 32]
    side = 224
    with torch.no_grad():
        maps = de.extract_features(model, torch.randn(1, 3, side, side))
    for tap in taps:
        assert maps[tap.module].shape == (
            1,
            tap.num_chs,
            side // tap.reduction,
            side // tap.reduction,
        )
    assert taps[-1].num_chs == model.num_features


def test_extract_features_equals_torchvisions_feature_extractor():
    model = small("densenet121").eval()
    taps = [t.module for t in de.feature_taps(model)]
    extractor = create_feature_extractor(model, return_nodes=taps)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ours, theirs = de.extract_features(model, x), extractor(x)
    assert list(ours) == list(theirs) == taps
    for key in taps:
        torch.testing.assert_close(ours[key], theirs[key], msg=key)
    assert (ours["features.norm0"] >= 0).all()  # rectified in place by relu0, as in timm
    torch.testing.assert_close(ours["features.norm5"], model.forward_features(x))


def test_cifar_model_taps_its_stem_convolution_at_stride_1():
    model = de.densenet_cifar(16, 4)
    assert [(t.module, t.reduction) for t in de.feature_taps(model)] == [
        ("features.conv0", 1), ("features.denseblock1", 1), ("features.denseblock2", 2),
        ("features.norm5", 4),
    ]  # fmt: skip


def test_taps_follow_an_edited_stem():
    model = small("densenet121")
    model.features.pool0 = torch.nn.Identity()
    assert [t.reduction for t in de.feature_taps(model)] == [2, 2, 4, 8, 16]
