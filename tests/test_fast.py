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


def test_fast_model_is_in_eval_mode_without_trainable_parameters():
    fast = optimize_for_inference(de.densenet_cifar(depth=22))
    assert isinstance(fast, FastDenseNet) and not fast.training
    assert not any(p.requires_grad for p in fast.parameters())


def test_switching_the_fast_model_to_training_raises():
    fast = optimize_for_inference(de.densenet_cifar(depth=22))
    with pytest.raises(RuntimeError, match="inference-only"):
        fast.train()
    fast.eval()  # still allowed


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
    "bad", [torch.randn(3, 32, 32), torch.randn(1, 1, 32, 32)], ids=["3-D", "1 channel"]
)
def test_fast_model_rejects_badly_shaped_input(bad):
    fast = optimize_for_inference(de.densenet_cifar(depth=22))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fast(bad)
