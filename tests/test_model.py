"""Assembled networks: factories, shapes through every stage, and clear errors on bad input."""

from __future__ import annotations

import pytest
import torch

import densenet_edu as de
from densenet_edu import DenseNetConfig, InputShapeError
from densenet_edu.architectures import TABLE

FACTORIES = {
    "densenet121": (de.densenet121, 1024),
    "densenet161": (de.densenet161, 2208),
    "densenet169": (de.densenet169, 1664),
    "densenet201": (de.densenet201, 1920),
    "densenet264": (de.densenet264, 2688),
}


def on_meta(factory, **kwargs):
    with torch.device("meta"):
        return factory(**kwargs)


@pytest.mark.parametrize("name", FACTORIES)
def test_factory_maps_an_imagenet_batch_to_1000_logits(name):
    factory, _ = FACTORIES[name]
    model = on_meta(factory)
    assert model(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 1000)


@pytest.mark.parametrize("name", FACTORIES)
def test_factory_final_width_matches_table_1_arithmetic(name):
    # Independent of the package: k0 + k*n per block, halved by each transition.
    factory, expected = FACTORIES[name]
    config = de.ARCHITECTURES[name]
    channels = config["num_init_features"]
    for i, n in enumerate(config["block_config"]):
        channels += config["growth_rate"] * n
        if i < 3:
            channels //= 2
    assert channels == expected
    assert on_meta(factory).classifier.in_features == expected


def test_densenet121_stage_shapes_at_224():
    model = on_meta(de.densenet121)
    shapes = dict(de.trace_shapes(model, (1, 3, 224, 224)))
    assert shapes["features.conv0"] == (1, 64, 112, 112)
    assert shapes["features.pool0"] == (1, 64, 56, 56)
    assert shapes["features.denseblock1"] == (1, 256, 56, 56)
    assert shapes["features.transition1"] == (1, 128, 28, 28)
    assert shapes["features.denseblock2"] == (1, 512, 28, 28)
    assert shapes["features.transition2"] == (1, 256, 14, 14)
    assert shapes["features.denseblock3"] == (1, 1024, 14, 14)
    assert shapes["features.transition3"] == (1, 512, 7, 7)
    assert shapes["features.denseblock4"] == (1, 1024, 7, 7)
    assert shapes["classifier"] == (1, 1000)


def test_num_classes_sets_the_classifier_width():
    model = de.densenet121(num_classes=7)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


@pytest.mark.parametrize(
    "depth, k, bottleneck, compression, per_block, stem",
    [
        (40, 12, False, 1.0, 12, 16),  # DenseNet (L=40, k=12)
        (100, 12, False, 1.0, 32, 16),  # DenseNet (L=100, k=12)
        (100, 12, True, 0.5, 16, 24),  # DenseNet-BC (L=100, k=12): stem 2k
        (250, 24, True, 0.5, 41, 48),  # DenseNet-BC (L=250, k=24)
        (190, 40, True, 0.5, 31, 80),  # DenseNet-BC (L=190, k=40)
    ],
)
def test_cifar_models_follow_section_3(depth, k, bottleneck, compression, per_block, stem):
    model = de.densenet_cifar(depth, k, bottleneck=bottleneck, compression=compression)
    assert model.config["block_config"] == (per_block,) * 3
    assert model.features.conv0.kernel_size == (3, 3)
    assert model.features.conv0.out_channels == stem
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert convs + 1 == depth  # L counts every conv plus the classifier


def test_cifar_model_maps_32x32_images_to_logits_at_8x8_resolution():
    model = de.densenet_cifar(40, 12, bottleneck=False, compression=1.0)
    shapes = dict(de.trace_shapes(model, (2, 3, 32, 32)))
    assert shapes["features.denseblock1"][2:] == (32, 32)
    assert shapes["features.denseblock3"][2:] == (8, 8)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth", [41, 99, 4, 12])
def test_cifar_rejects_depths_that_do_not_fit_the_formula(depth):
    with pytest.raises(ValueError, match=r"depth .* does not fit L ="):
        de.densenet_cifar(depth)


def test_cifar_depth_error_suggests_valid_depths():
    with pytest.raises(ValueError, match="nearest valid depths: 100, 106"):
        de.densenet_cifar(101)


def test_weight_init_is_he_normal_with_unit_batchnorm():
    model = de.densenet_cifar(40, 12, bottleneck=False, compression=1.0)
    conv = model.features.denseblock2.denselayer5.conv1
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
    assert torch.all(model.features.norm5.weight == 1) and torch.all(model.features.norm5.bias == 0)
    assert torch.all(model.classifier.bias == 0)


# --- bad input -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    return de.densenet121().eval()


def test_wrong_channel_count_names_expected_and_actual(small_model):
    with pytest.raises(InputShapeError, match="expects 3 input channels, got 1"):
        small_model(torch.randn(1, 1, 64, 64))


def test_3d_input_suggests_adding_a_batch_dimension(small_model):
    with pytest.raises(InputShapeError, match=r"4-D tensor.*unsqueeze\(0\)"):
        small_model(torch.randn(3, 64, 64))


def test_2d_input_is_rejected_with_its_shape(small_model):
    with pytest.raises(InputShapeError, match=r"got shape \(64, 64\)"):
        small_model(torch.randn(64, 64))


def test_too_small_image_gives_the_minimum_size(small_model):
    assert small_model.min_input_size == 29  # torchvision documents min_size (29, 29)
    with pytest.raises(InputShapeError, match="at least 29x29"):
        small_model(torch.randn(1, 3, 28, 28))
    assert small_model(torch.randn(1, 3, 29, 29)).shape == (1, 1000)


def test_cifar_minimum_size_is_4():
    model = de.densenet_cifar(40, 12, bottleneck=False, compression=1.0).eval()
    assert model.min_input_size == 4
    with pytest.raises(InputShapeError, match="at least 4x4"):
        model(torch.randn(1, 3, 3, 3))


def test_non_tensor_input_is_a_type_error(small_model):
    with pytest.raises(TypeError, match="expects a torch.Tensor"):
        small_model([[1.0]])


def test_block_called_with_wrong_width_names_both_widths():
    block = de.DenseBlock(num_layers=2, in_channels=64, growth_rate=32)
    with pytest.raises(InputShapeError, match="built for 64 input channels, got 32"):
        block(torch.randn(1, 32, 8, 8))


def test_layer_called_with_mismatched_feature_sizes_says_why():
    layer = de.DenseLayer(8, 4)
    with pytest.raises(InputShapeError, match="height/width must agree"):
        layer([torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(growth_rate=0), "growth_rate must be a positive integer"),
        (dict(growth_rate=2.5), "growth_rate must be a positive integer"),
        (dict(block_config=()), "block_config must be a non-empty sequence"),
        (dict(block_config=(6, 0, 3)), "block_config must be a non-empty sequence"),
        (dict(block_config=6), "block_config must be a non-empty sequence"),
        (dict(compression=0.0), r"compression \(theta\) must be in \(0, 1\]"),
        (dict(compression=1.5), r"compression \(theta\) must be in \(0, 1\]"),
        (dict(drop_rate=1.0), r"drop_rate must be a probability in \[0, 1\)"),
        (dict(drop_rate=-0.1), r"drop_rate must be a probability in \[0, 1\)"),
        (dict(num_classes=0), "num_classes must be a positive integer"),
        (dict(stem="resnet"), "stem must be 'imagenet' or 'cifar'"),
    ],
)
def test_invalid_configuration_is_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        de.DenseNet(**kwargs)


# --- dropout: the paper's placement (CIFAR) and torchvision's (ImageNet) ----------------------


def count_dropout_calls(monkeypatch, model, x) -> list[tuple[int, ...]]:
    """The shapes of the tensors F.dropout receives during one training-mode forward pass."""
    calls = []
    original = torch.nn.functional.dropout

    def counting(input, *args, **kwargs):
        calls.append(tuple(input.shape))
        return original(input, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "dropout", counting)
    model.train()(x)
    return calls


def test_papers_placement_drops_out_after_every_conv_but_the_stem(monkeypatch):
    # DenseNet-BC (L=16, k=4): 2 bottleneck layers per block, so 3 * 2 * 2 convs in the
    # blocks and 2 transition convs; the stem is the 1 conv without dropout (Section 4.2).
    model = de.densenet_cifar(16, 4, drop_rate=0.2)
    assert model.config["dropout_placement"] == "paper"
    calls = count_dropout_calls(monkeypatch, model, torch.randn(2, 3, 8, 8))
    assert len(calls) == 3 * 2 * 2 + 2
    bottleneck_width, k = 4 * 4, 4
    assert sum(c[1] == bottleneck_width for c in calls) == 6  # after each 1x1 bottleneck
    assert sum(c[1] == k for c in calls) == 6  # after each 3x3 conv
    transitions = [m for m in model.modules() if isinstance(m, de.Transition)]
    assert sorted(c[1] for c in calls if c[1] not in (bottleneck_width, k)) == sorted(
        t.out_channels for t in transitions
    )


def test_papers_placement_without_bottlenecks_drops_out_after_each_3x3_and_transition(
    monkeypatch,
):
    model = de.densenet_cifar(10, 4, bottleneck=False, compression=1, drop_rate=0.2)  # n = 2
    calls = count_dropout_calls(monkeypatch, model, torch.randn(2, 3, 8, 8))
    assert len(calls) == 3 * 2 + 2


def test_torchvision_placement_drops_out_once_per_dense_layer(monkeypatch):
    model = de.densenet_cifar(16, 4, drop_rate=0.2, dropout_placement="torchvision")
    calls = count_dropout_calls(monkeypatch, model, torch.randn(2, 3, 8, 8))
    assert calls == [(2, 4, 8, 8)] * 2 + [(2, 4, 4, 4)] * 2 + [(2, 4, 2, 2)] * 2


@pytest.mark.parametrize("name", FACTORIES)
def test_imagenet_factories_keep_torchvisions_dropout_placement(name):
    factory, _ = FACTORIES[name]
    model = on_meta(factory, drop_rate=0.2)
    assert model.config["dropout_placement"] == "torchvision"
    assert all(t.drop_rate == 0 for t in model.modules() if isinstance(t, de.Transition))


def test_dropout_placement_does_not_change_the_state_dict():
    torch.manual_seed(0)
    tv = de.densenet_cifar(16, 4, drop_rate=0.2, dropout_placement="torchvision")
    paper = de.densenet_cifar(16, 4, drop_rate=0.2, dropout_placement="paper")
    paper.load_state_dict(tv.state_dict())  # strict: same keys, same shapes
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(paper.eval()(x), tv.eval()(x))  # no dropout in eval mode


def test_unknown_dropout_placement_is_rejected():
    with pytest.raises(ValueError, match="dropout_placement must be"):
        de.densenet_cifar(16, 4, dropout_placement="after-pooling")


# --- one configuration ----------------------------------------------------------------------


def test_model_config_is_the_dataclass_it_was_built_from():
    config = DenseNetConfig(growth_rate=8, block_config=(2, 2), num_init_features=16)
    model = de.DenseNet(config)
    assert model.config is config
    assert model.features.denseblock1.denselayer1.conv2.out_channels == 8


def test_keyword_form_builds_the_same_model_as_the_config_form():
    settings = dict(growth_rate=8, block_config=(2, 2), num_init_features=16, stem="cifar")
    by_keywords, by_config = de.DenseNet(**settings), de.DenseNet(DenseNetConfig(**settings))
    assert by_keywords.config == by_config.config
    assert {k: v.shape for k, v in by_keywords.state_dict().items()} == {
        k: v.shape for k, v in by_config.state_dict().items()
    }


def test_keywords_given_with_a_config_override_its_fields():
    model = de.DenseNet(DenseNetConfig(block_config=(2, 2)), num_classes=7)
    assert model.config == DenseNetConfig(block_config=(2, 2), num_classes=7)
    assert model.classifier.out_features == 7


def test_the_old_positional_order_still_builds_the_model():
    model = de.DenseNet(8, (2, 2), 16)  # growth_rate, block_config, num_init_features
    assert model.config == DenseNetConfig(growth_rate=8, block_config=(2, 2), num_init_features=16)


@pytest.mark.parametrize("name", FACTORIES)
def test_factories_build_the_tables_configuration(name):
    factory, _ = FACTORIES[name]
    assert on_meta(factory).config == TABLE[name].config
    assert on_meta(factory, num_classes=7).config == TABLE[name].config.replace(num_classes=7)


def test_architectures_mapping_is_derived_from_the_table():
    for name, settings in de.ARCHITECTURES.items():
        assert TABLE[name].config == DenseNetConfig(**settings)


def test_old_dict_style_reads_of_model_config_still_work():
    config = de.densenet_cifar(16, 4).config
    assert config["block_config"] == config.block_config == (2, 2, 2)
    assert dict(**config)["growth_rate"] == 4


# --- every input a clear answer -------------------------------------------------------------


def test_uint8_input_names_both_dtypes_and_the_fix(small_model):
    message = r"torch.uint8 input but its weights are torch.float32: .*x\.float\(\)"
    with pytest.raises(TypeError, match=message):
        small_model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_float64_input_offers_converting_either_side(small_model):
    message = r"torch.float64 input .* x\.float\(\), or the model with model\.double\(\)"
    with pytest.raises(TypeError, match=message):
        small_model(torch.zeros(1, 3, 64, 64, dtype=torch.float64))


def test_input_on_another_device_names_both_devices(small_model):
    message = r"input is on meta but DenseNet is on cpu: .*x\.to\('cpu'\)"
    with pytest.raises(RuntimeError, match=message):
        small_model(torch.zeros(1, 3, 64, 64, device="meta"))


def test_autocast_inputs_of_the_autocast_dtype_are_accepted():
    model = de.densenet_cifar(16, 4).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert model(torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)).shape == (2, 10)


def test_batch_of_one_in_training_mode_that_ends_1x1_says_what_to_do():
    model = de.densenet121().train()
    message = r"batch of at least 2 images, a larger image, or model\.eval\(\)"
    with pytest.raises(InputShapeError, match=message):
        model(torch.randn(1, 3, 32, 32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)  # a batch of 2 is fine
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)  # and eval mode


def test_a_swapped_stem_convolution_sets_the_expected_channels():
    model = de.densenet121().eval()
    model.features.conv0 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 1000)
    with pytest.raises(InputShapeError, match="expects 1 input channels, got 3"):
        model(torch.randn(2, 3, 64, 64))


def test_removing_the_max_pool_lowers_the_minimum_size():
    model = de.densenet121().eval()
    model.features.pool0 = torch.nn.Identity()
    # Independently: conv0 (7x7, stride 2, padding 3) maps s to (s - 1) // 2 + 1, then three
    # 2x2 pools halve it: the smallest s reaching 1x1 needs (s - 1) // 2 + 1 >= 8.
    smallest = next(s for s in range(1, 64) if ((s - 1) // 2 + 1) // 8 >= 1)
    assert model.min_input_size == smallest == 15
    assert model(torch.randn(1, 3, 15, 15)).shape == (1, 1000)
    with pytest.raises(InputShapeError, match="at least 15x15"):
        model(torch.randn(1, 3, 14, 14))


# --- timm's split: forward_features / forward_head ------------------------------------------


def test_forward_is_head_of_features_and_features_are_torchvisions():
    model = de.densenet_cifar(16, 4).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(features, model.features(x))
        kept = features.clone()
        torch.testing.assert_close(model.forward_head(features), model(x))
    assert torch.equal(features, kept)  # the head does not rectify the caller's tensor


def test_pre_logits_are_the_pooled_rectified_features():
    model = de.densenet_cifar(16, 4).eval()
    features = torch.randn(2, model.num_features, 4, 4)
    pooled = model.forward_head(features, pre_logits=True)
    torch.testing.assert_close(pooled, features.clamp(min=0).mean(dim=(2, 3)))


def test_forward_features_checks_its_input():
    with pytest.raises(InputShapeError, match="at least 4x4"):
        de.densenet_cifar(16, 4).forward_features(torch.randn(1, 3, 3, 3))


def test_set_grad_checkpointing_switches_every_dense_layer_and_the_config():
    model = de.densenet_cifar(16, 4)
    model.set_grad_checkpointing()
    layers = [m for m in model.modules() if isinstance(m, de.DenseLayer)]
    assert layers and all(m.memory_efficient for m in layers)
    assert model.config.memory_efficient is True
    model.set_grad_checkpointing(False)
    assert not any(m.memory_efficient for m in layers) and model.config.memory_efficient is False


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torch_jit_script_is_refused_with_one_error_naming_export_and_compile():
    with pytest.raises(de.NotScriptableError) as info:
        torch.jit.script(de.densenet_cifar(16, 4))
    message = str(info.value)
    assert "torch.export.export" in message and "torch.compile" in message
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_torch_export_traces_through_the_checks():
    model = de.densenet_cifar(16, 4).eval()
    x = torch.randn(2, 3, 8, 8)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


class _Scale(torch.nn.Module):
    """A custom stem module: its geometry is unknown unless it declares it."""

    def forward(self, x):
        return 2 * x


def test_an_unknown_module_turns_the_size_check_off_until_it_declares_its_geometry():
    model = de.densenet121().eval()
    model.features.norm0 = _Scale()
    with pytest.raises(ValueError, match="unknown geometry"):
        _ = model.min_input_size
    model.features.norm0.keeps_spatial_size = True
    assert model.min_input_size == 29
