"""optimize_for_inference: the same function as the source DenseNet in eval mode, faster."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import densenet_edu as de
from densenet_edu.fast import (
    FastDenseBlock,
    FastDenseNet,
    fold_batchnorm,
    optimize_for_inference,
)


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (so folding matters)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


# --- BatchNorm folding ------------------------------------------------------------


def test_folded_convolution_equals_convolution_then_eval_batchnorm():
    conv = nn.Conv2d(5, 7, 3, padding=1, bias=False)
    norm = randomize_batchnorm(nn.BatchNorm2d(7, eps=1e-3))
    x = torch.randn(2, 5, 9, 9)
    with torch.no_grad():
        expected = norm(conv(x))
        actual = fold_batchnorm(conv, norm)(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_folding_keeps_an_existing_convolution_bias():
    conv = nn.Conv2d(3, 4, 1, bias=True)
    norm = randomize_batchnorm(nn.BatchNorm2d(4))
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(conv, norm)(x), norm(conv(x)))


def test_folded_weights_follow_the_formula_per_output_channel():
    conv = nn.Conv2d(2, 3, 1, bias=False)
    norm = randomize_batchnorm(nn.BatchNorm2d(3))
    folded = fold_batchnorm(conv, norm)
    for c in range(3):
        std = (norm.running_var[c] + norm.eps).sqrt()
        w = conv.weight[c] * norm.weight[c] / std
        b = norm.bias[c] - norm.weight[c] * norm.running_mean[c] / std
        torch.testing.assert_close(folded.weight[c], w.detach())
        torch.testing.assert_close(folded.bias[c], b.detach())


def test_folding_rejects_a_batchnorm_of_the_wrong_width():
    with pytest.raises(ValueError, match="channels"):
        fold_batchnorm(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))


def test_folding_rejects_modules_that_are_not_conv_and_batchnorm():
    with pytest.raises(TypeError, match="Conv2d"):
        fold_batchnorm(nn.Linear(3, 4), nn.BatchNorm2d(4))


# --- the preallocated block buffer -------------------------------------------------


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bottleneck", [True, False])
def test_buffer_block_output_equals_the_concatenating_block(channels_last, bottleneck):
    block = randomize_batchnorm(de.DenseBlock(4, 10, growth_rate=6, bottleneck=bottleneck))
    x = torch.randn(3, 10, 8, 8)
    fast = FastDenseBlock(block, channels_last=channels_last)
    if channels_last:
        fast.to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = block(x)
        actual = fast(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    assert actual.shape == (3, 10 + 4 * 6, 8, 8)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 12, 8, 8), "FastDenseBlock was built for 10 input channels, got 12"),
        ((1, 8, 8, 8), "FastDenseBlock was built for 10 input channels, got 8"),
        ((10, 8, 8), "expects a 4-D tensor.*add a batch dimension"),
    ],
)
def test_a_fast_block_names_a_wrong_input_as_the_eager_block_does(shape, message):
    fast = FastDenseBlock(randomize_batchnorm(de.DenseBlock(4, 10, growth_rate=6)), True)
    with torch.no_grad(), pytest.raises(de.InputShapeError, match=message):
        fast(torch.randn(shape))


def test_fast_dense_block_is_exported_from_the_package():
    assert de.FastDenseBlock is FastDenseBlock


def test_fast_dense_block_rejects_something_that_is_not_a_dense_block():
    with pytest.raises(TypeError, match="dense block"):
        FastDenseBlock(nn.Sequential(nn.Conv2d(3, 4, 1)))


# --- whole models -----------------------------------------------------------------


@pytest.fixture(scope="module")
def twins121() -> tuple[nn.Module, nn.Module]:
    """torchvision's DenseNet-121 with random weights and statistics, and ours with its weights."""
    torch.manual_seed(0)
    theirs = randomize_batchnorm(torchvision.models.densenet121())
    ours = de.load_torchvision_weights(de.densenet121(), theirs).eval()
    return theirs, ours


@pytest.mark.parametrize(
    ("batch", "channels_last"),
    [(1, True), (3, True), (2, False)],
    ids=["1-nhwc", "3-nhwc", "2-nchw"],
)
def test_fast_densenet121_matches_the_model(twins121, batch, channels_last):
    _, model = twins121
    x = torch.randn(batch, 3, 40, 40)
    fast = optimize_for_inference(model, channels_last=channels_last)
    with torch.no_grad():
        assert relative_error(fast(x), model(x)) < 1e-4


def test_fast_model_from_torchvision_matches_torchvision(twins121):
    theirs, _ = twins121
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert relative_error(optimize_for_inference(theirs)(x), theirs(x)) < 1e-4


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize(
    "kwargs",
    [dict(depth=40, growth_rate=12), dict(depth=22, growth_rate=12, bottleneck=False)],
    ids=["BC-40", "plain-22"],
)
def test_fast_cifar_densenet_matches_the_model(batch, kwargs):
    model = randomize_batchnorm(de.densenet_cifar(**kwargs))
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(optimize_for_inference(model)(x), model(x)) < 1e-4


def test_negative_and_zero_batchnorm_scales_are_converted_exactly():
    # Trained networks have some negative (and pruned, zero) gammas; the pre-activation
    # fold clamps those channels from above, or makes them constants.
    model = randomize_batchnorm(de.densenet_cifar(depth=40, growth_rate=12))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                sign = torch.randint(0, 3, (m.num_features,), generator=g).float() - 1
                m.weight.mul_(sign)  # each gamma negative, zero or positive
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(optimize_for_inference(model)(x), model(x)) < 1e-4


def test_source_model_is_left_unchanged():
    model = randomize_batchnorm(de.densenet_cifar(depth=22))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)


def test_fast_model_works_under_torch_compile_fullgraph():
    model = randomize_batchnorm(de.densenet_cifar(depth=22, growth_rate=6))
    fast = optimize_for_inference(model)
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(compiled(x), model(x)) < 1e-4


# --- inference only, and bad input ------------------------------------------------


@pytest.mark.parametrize("bottleneck", [True, False])
def test_gradients_flow_through_the_fast_model_to_its_input(bottleneck):
    model = randomize_batchnorm(de.densenet_cifar(depth=22, bottleneck=bottleneck))
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    fast(x).square().sum().backward()
    x_eager = x.detach().clone().requires_grad_()
    model(x_eager).square().sum().backward()
    torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-4, atol=1e-5)


def test_fast_model_is_in_eval_mode_without_trainable_parameters():
    fast = optimize_for_inference(de.densenet_cifar(depth=22))
    assert isinstance(fast, FastDenseNet) and not fast.training
    assert not any(p.requires_grad for p in fast.parameters())


def test_a_container_holding_the_fast_model_can_switch_to_training():
    fast = optimize_for_inference(randomize_batchnorm(de.densenet_cifar(depth=22)))
    container = nn.Sequential(fast)
    container.train()
    assert fast.training
    container.eval()
    assert not fast.training


def test_train_mode_computes_the_same_eval_mode_function():
    model = randomize_batchnorm(de.densenet_cifar(depth=22))
    model.classifier = nn.Sequential(nn.Dropout(0.5), model.classifier)  # a custom head
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = fast(x)
        fast.train()
        torch.testing.assert_close(fast(x), expected, rtol=0, atol=0)
    assert not any(p.requires_grad for p in fast.parameters())


class _NoDenseBlocks(nn.Module):
    """Has DenseNet's attribute names but no dense block."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.classifier = nn.Linear(8, 2)


@pytest.mark.parametrize(
    "not_a_densenet",
    [nn.Linear(3, 4), nn.Sequential(nn.Conv2d(3, 8, 3)), "densenet121", _NoDenseBlocks()],
    ids=["linear", "sequential", "string", "features-without-dense-blocks"],
)
def test_something_that_is_not_a_densenet_is_rejected(not_a_densenet):
    with pytest.raises(TypeError, match="DenseNet"):
        optimize_for_inference(not_a_densenet)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (torch.randn(3, 32, 32), de.InputShapeError, r"4-D tensor .* x\.unsqueeze\(0\)"),
        (torch.randn(1, 1, 32, 32), de.InputShapeError, "expects 3 input channels, got 1"),
        (torch.randn(1, 3, 32, 32).double(), TypeError, r"torch\.float64 input .* x\.float\(\)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, r"torch\.uint8 .* 255"),
        ([1.0, 2.0], TypeError, "expects a torch.Tensor"),
    ],
    ids=["3-D", "1 channel", "float64", "uint8", "list"],
)
def test_fast_model_checks_its_input_like_the_eager_model(bad, error, message):
    model = de.densenet_cifar(depth=22)
    fast = optimize_for_inference(model)
    with pytest.raises(error, match=message) as from_fast:
        fast(bad)
    with pytest.raises(error) as from_eager:
        model(bad)
    assert str(from_fast.value) == str(from_eager.value).replace("DenseNet", "FastDenseNet")


def test_fast_model_names_the_smallest_input_it_can_take():
    fast = optimize_for_inference(de.densenet121())
    with pytest.raises(de.InputShapeError, match="at least 29x29 pixels"):
        fast(torch.randn(1, 3, 28, 28))
    assert fast(torch.randn(1, 3, 29, 29)).shape == (1, 1000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device (CUDA)")
def test_fast_model_names_the_device_mismatch():
    fast = optimize_for_inference(de.densenet_cifar(depth=22))
    with pytest.raises(RuntimeError, match=r"x = x\.to\('cpu'\)"):
        fast(torch.randn(1, 3, 32, 32, device="cuda"))


# --- other heads, timm, and the tools -----------------------------------------------


@pytest.mark.parametrize("head", ["identity", "sequential"])
def test_a_custom_head_is_converted_exactly(head):
    model = randomize_batchnorm(de.densenet_cifar(depth=22, growth_rate=12))
    width = model.classifier.in_features
    model.classifier = (
        nn.Identity()
        if head == "identity"
        else nn.Sequential(nn.Linear(width, 20), nn.ReLU(), nn.Linear(20, 4))
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(optimize_for_inference(model)(x), model(x)) < 1e-4


def test_a_model_without_a_classifier_is_refused_naming_it():
    model = de.densenet_cifar(depth=22)
    del model.classifier
    with pytest.raises(TypeError, match="`classifier` module .* nn.Identity"):
        optimize_for_inference(model)


def test_timm_densenet121_is_converted_exactly():
    timm = pytest.importorskip("timm", reason="timm not installed")
    model = randomize_batchnorm(timm.create_model("densenet121", pretrained=False))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # norm0 is a BatchNorm with its ReLU inside: the ReLU must stay
        assert relative_error(optimize_for_inference(model)(x), model(x)) < 1e-4


def test_a_batchnorm_with_another_activation_is_refused():
    timm = pytest.importorskip("timm", reason="timm not installed")
    model = timm.create_model("densenet121", pretrained=False, act_layer="silu")
    with pytest.raises(TypeError, match="exactly: it applies SiLU"):
        optimize_for_inference(model)


def test_fast_model_traces_with_torch_fx_to_the_same_function():
    fast = optimize_for_inference(randomize_batchnorm(de.densenet_cifar(depth=22)))
    traced = torch.fx.symbolic_trace(fast)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the graph's 3x3 convolutions sum in another order than the plan's
        torch.testing.assert_close(traced(x), fast(x), rtol=1e-5, atol=1e-5)


def test_torchvision_feature_extraction_works_on_the_fast_model():
    from torchvision.models.feature_extraction import create_feature_extractor

    fast = optimize_for_inference(de.densenet_cifar(depth=22))
    extractor = create_feature_extractor(fast, {"features.1": "block1"})
    block1 = fast.features[1]  # after the CIFAR stem's conv0
    shape = extractor(torch.randn(2, 3, 32, 32))["block1"].shape
    assert shape == (2, block1.out_channels, 32, 32)
    assert not fast.training


def test_torch_jit_script_is_refused_naming_export_and_compile():
    fast = optimize_for_inference(de.densenet_cifar(depth=22))
    with pytest.raises(de.errors.NotScriptableError, match=r"torch\.export.*torch\.compile"):
        torch.jit.script(fast)
