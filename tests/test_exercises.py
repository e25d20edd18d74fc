"""The self-checking exercises: the reference passes, and each typical mistake is named.

The "learner" implementations below are written here from the paper's description, not
copied from densenet_edu; each wrong one differs from a correct one by a single mistake.
"""

from __future__ import annotations

import math

import nbformat
import pytest
import torch
from torch import nn

from densenet_edu import DenseBlock, DenseLayer, DenseNet, Transition, densenet121
from densenet_edu.exercises import (
    CheckResult,
    check_channel_count,
    check_dense_block,
    check_dense_layer,
    check_densenet121,
    check_transition,
)

from book_build import ROOT, built_page, toc_files

# ----------------------------------------------------------------------------- helpers


def _phrases(phrase: str | tuple[str, ...]) -> tuple[str, ...]:
    return (phrase,) if isinstance(phrase, str) else phrase


def assert_fails_with(result: CheckResult, mistake: str, *phrases: str) -> None:
    assert not result, f"expected a failure, got: {result}"
    assert result.mistake == mistake, str(result)
    for phrase in phrases:
        assert phrase.lower() in result.message.lower(), str(result)


# ----------------------------------------------------------------------------- results


def test_a_passing_result_is_truthy_and_says_passed():
    result = check_channel_count(lambda k0, k, n: k0 + k * (n - 1))
    assert result and result.passed and result.mistake is None
    assert str(result).startswith("check_channel_count: passed")
    assert repr(result) == str(result)


def test_a_failing_result_is_falsy_and_carries_its_diagnosis():
    result = check_channel_count(lambda k0, k, n: k0 + k * n)
    assert not result
    assert "not yet right" in str(result) and result.message in str(result)


def test_html_repr_is_a_coloured_box_with_the_escaped_message():
    passed = check_channel_count(lambda k0, k, n: k0 + k * (n - 1))._repr_html_()
    failed = CheckResult("check_x", False, "expected <76> channels", "wrong_shape")._repr_html_()
    assert 'class="densenet-edu-check densenet-edu-check-pass"' in passed
    assert "densenet-edu-check-fail" in failed
    assert "expected &lt;76&gt; channels" in failed and "<76>" not in failed


def test_raise_if_failed_raises_assertion_error_with_the_message():
    result = check_channel_count(lambda k0, k, n: k * (n - 1))
    with pytest.raises(AssertionError, match="block's input"):
        result.raise_if_failed()


def test_raise_if_failed_returns_the_result_on_a_pass():
    result = check_channel_count(lambda k0, k, n: k0 + k * (n - 1))
    assert result.raise_if_failed() is result


def test_a_checker_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_transition(Transition)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- channel count


def test_the_papers_channel_formulas_pass():
    assert check_channel_count(lambda k0, k, n: k0 + k * (n - 1), lambda k0, k, n: k0 + k * n)


@pytest.mark.parametrize(
    "formula, mistake, phrase",
    [
        (lambda k0, k, n: k0 + k * n, "off_by_one", "own k output maps"),
        (lambda k0, k, n: k * (n - 1), "missing_k0", "left out the block's input"),
        (lambda k0, k, n: k0 + k * (n - 1) + (n == 5), "wrong_value", "returned"),
    ],
    ids=["counts-own-output", "forgets-k0", "wrong-in-one-case"],
)
def test_layer_channel_mistakes_are_named(formula, mistake, phrase):
    assert_fails_with(check_channel_count(formula), mistake, phrase)


def test_the_first_layer_case_is_reported_with_its_arithmetic():
    result = check_channel_count(lambda k0, k, n: k0 + k * n)
    assert "layer_in_channels(64, 32, 1) returned 96" in result.message
    assert "64 + 32*(1 - 1) = 64" in result.message


@pytest.mark.parametrize(
    "formula, mistake, phrase",
    [
        (lambda k0, k, n: k0 + k * (n - 1), "missing_last_layer", "last layer's own k maps"),
        (lambda k0, k, n: k * n, "missing_block_input", "left out the block's input"),
        (lambda k0, k, n: k, "only_last_layer", "only the last layer's output"),
    ],
    ids=["misses-last-layer", "misses-input", "only-last"],
)
def test_block_channel_mistakes_are_named(formula, mistake, phrase):
    result = check_channel_count(lambda k0, k, n: k0 + k * (n - 1), formula)
    assert_fails_with(result, mistake, phrase)


def test_a_float_channel_count_is_rejected_with_a_hint():
    result = check_channel_count(lambda k0, k, n: k0 + k * (n - 1) / 1)
    assert_fails_with(result, "wrong_type", "returned 64.0", "//")


# ----------------------------------------------------------------------------- learner errors


class RaisingLayer(nn.Module):
    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__()
        raise ValueError("my layer is broken")


def test_a_learner_error_is_shown_with_the_learners_own_line():
    result = check_dense_layer(RaisingLayer)
    assert_fails_with(result, "raised", "ValueError", "my layer is broken")
    assert "test_exercises.py" in result.details
    assert 'raise ValueError("my layer is broken")' in result.details
    assert 'exercises.py"' not in result.details.replace("test_exercises.py", "")


def test_an_open_todo_is_reported_as_not_implemented():
    class Todo(nn.Module):
        def __init__(self, *args):
            super().__init__()
            raise NotImplementedError

    assert_fails_with(check_dense_layer(Todo), "not_implemented", "TODO")


def test_passing_an_instance_instead_of_the_class_is_explained():
    result = check_dense_layer(DenseLayer(8, 4))
    assert_fails_with(result, "wrong_argument", "class itself")


# ----------------------------------------------------------------------------- dense layer


class Layer(nn.Module):
    """A correct bottleneck layer: concat -> BN-ReLU-1x1 conv -> BN-ReLU-3x3 conv."""

    conv_bias = False

    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=self.conv_bias)
        self.norm2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=self.conv_bias)

    def join(self, features):
        return torch.cat(features, dim=1)

    def forward(self, features):
        x = self.join(features)
        x = self.conv1(torch.relu(self.norm1(x)))
        return self.conv2(torch.relu(self.norm2(x)))


class AddingLayer(Layer):
    def join(self, features):
        return sum(features)


class ReversedLayer(Layer):
    def join(self, features):
        return torch.cat(features[::-1], dim=1)


class LastFeatureNormLayer(Layer):
    def forward(self, features):
        x = torch.relu(self.norm1(features[-1]))
        return self.conv2(torch.relu(self.norm2(self.conv1(x))))


class NoReluLayer(Layer):
    def forward(self, features):
        x = self.conv1(self.norm1(self.join(features)))
        return self.conv2(torch.relu(self.norm2(x)))


class UnusedNormLayer(Layer):
    def forward(self, features):
        x = self.join(features)
        h = self.norm1(x)  # noqa: F841 - the mistake: h is never used
        x = self.conv1(torch.relu(x))
        return self.conv2(torch.relu(self.norm2(x)))


class BiasLayer(Layer):
    conv_bias = True


class RenamedLayer(Layer):
    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__(in_channels, growth_rate, bn_size)
        self.bn1 = self.norm1
        del self.norm1

    def forward(self, features):
        x = self.conv1(torch.relu(self.bn1(self.join(features))))
        return self.conv2(torch.relu(self.norm2(x)))


class ConcatReturningLayer(Layer):
    def forward(self, features):
        return torch.cat([self.join(features), super().forward(features)], dim=1)


class PostActivationLayer(Layer):
    """Conv -> BN -> ReLU (ResNet's original order) instead of BN -> ReLU -> conv."""

    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__(in_channels, growth_rate, bn_size)
        self.norm1 = nn.BatchNorm2d(bn_size * growth_rate)
        self.norm2 = nn.BatchNorm2d(growth_rate)


class DetachingLayer(Layer):
    def join(self, features):
        return torch.cat(features, dim=1).detach()


class InPlaceLayer(Layer):
    def join(self, features):
        features[0].relu_()
        return torch.cat(features, dim=1)


class BatchAxisConcatLayer(Layer):
    def join(self, features):
        return torch.cat(features, dim=0)


class ReluBeforeNormLayer(Layer):
    def forward(self, features):
        x = self.conv1(self.norm1(torch.relu(self.join(features))))
        return self.conv2(torch.relu(self.norm2(x)))


class TensorForwardLayer(Layer):
    """forward written for one tensor: norm1 receives the list itself."""

    def forward(self, x):
        x = self.conv1(torch.relu(self.norm1(x)))
        return self.conv2(torch.relu(self.norm2(x)))


class DoubleNormLayer(Layer):
    def forward(self, features):
        self.norm1(self.join(features))
        return super().forward(features)


class ExtraReluLayer(Layer):
    def forward(self, features):
        return torch.relu(super().forward(features))


class FirstFeatureNormLayer(Layer):
    def forward(self, features):
        x = torch.relu(self.norm1(features[0]))
        return self.conv2(torch.relu(self.norm2(self.conv1(x))))


class NoNorm2Layer(Layer):
    def forward(self, features):
        x = self.conv1(torch.relu(self.norm1(self.join(features))))
        return self.conv2(torch.relu(x))


class NoRelu2Layer(Layer):
    def forward(self, features):
        x = self.conv1(torch.relu(self.norm1(self.join(features))))
        return self.conv2(self.norm2(x))


class Norm2UnusedLayer(Layer):
    def forward(self, features):
        x = self.conv1(torch.relu(self.norm1(self.join(features))))
        self.norm2(x)
        return self.conv2(x)


class NoPaddingLayer(Layer):
    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__(in_channels, growth_rate, bn_size)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, bias=False)


class Conv1Kernel3Layer(Layer):
    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__(in_channels, growth_rate, bn_size)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 3, padding=1, bias=False)


class _DoubleGradient(torch.autograd.Function):
    """The identity forward, twice the gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


class WrongGradientLayer(Layer):
    def join(self, features):
        return _DoubleGradient.apply(torch.cat(features, dim=1))


class DetachedWeightLayer(Layer):
    def forward(self, features):
        x = self.conv1(torch.relu(self.norm1(self.join(features))))
        return nn.functional.conv2d(
            torch.relu(self.norm2(x)), self.conv2.weight.detach(), padding=1
        )


class SpatialConcatLayer(Layer):
    def join(self, features):
        return torch.cat(features, dim=2)


class ForwardTodoLayer(Layer):
    def forward(self, features):
        raise NotImplementedError("write the forward pass")


class NotAModuleLayer:
    def __init__(self, in_channels, growth_rate, bn_size=4):
        pass


def test_the_reference_dense_layer_passes():
    assert check_dense_layer(DenseLayer)


def test_a_correct_learner_layer_passes():
    assert check_dense_layer(Layer)


@pytest.mark.parametrize(
    "cls, mistake, phrase",
    [
        (AddingLayer, "added_instead_of_concat", "added the feature maps instead of concatenat"),
        (ReversedLayer, "wrong_concat_order", "reverse order"),
        (LastFeatureNormLayer, "bn_on_last_feature", "you normalised only the last feature map"),
        (NoReluLayer, "missing_relu", "no ReLU between norm1 and conv1"),
        (UnusedNormLayer, "bn_output_unused", "output is never used"),
        (BiasLayer, "bias_on_conv", "bias=False"),
        (RenamedLayer, "wrong_key_names", "'bn1' -> 'norm1'"),
        (ConcatReturningLayer, "returned_concat", "returns only its"),
        (PostActivationLayer, "wrong_shape", "BN comes *before* the convolution"),
        (DetachingLayer, "no_gradient", "receives no gradient"),
        (InPlaceLayer, "modified_input", "in place"),
        (DoubleNormLayer, "wrong_running_stats", "exactly once"),
        (BatchAxisConcatLayer, "concat_wrong_dim", ("dimension 0", "torch.cat(features, dim=1)")),
        (ReluBeforeNormLayer, "relu_before_bn", ("ReLU before norm1", "BN -> ReLU -> conv")),
        (TensorForwardLayer, "list_not_concatenated", ("*list* of feature maps", "torch.cat")),
        (ExtraReluLayer, "extra_relu", "ReLU after conv2"),
        (FirstFeatureNormLayer, "bn_on_first_feature", "only the first feature map"),
        (NoNorm2Layer, "not_used", "norm2 is never used"),
        (NoRelu2Layer, "missing_relu", "no ReLU between norm2 and conv2"),
        (Norm2UnusedLayer, "bn_output_unused", "conv2 reads conv1's output directly"),
        (NoPaddingLayer, "wrong_shape", "padding=1"),
        (Conv1Kernel3Layer, "wrong_shape", "kernel_size=1"),
        (WrongGradientLayer, "wrong_gradient", "gradient with respect to the input feature map"),
        (DetachedWeightLayer, "no_gradient", "parameter conv2.weight receives no gradient"),
        (SpatialConcatLayer, "concat_wrong_dim", ("dimension 2", "a spatial axis")),
        (ForwardTodoLayer, "not_implemented", "TODO"),
        (NotAModuleLayer, "not_a_module", "subclass of nn.Module"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_dense_layer_mistakes_are_named(cls, mistake, phrase):
    assert_fails_with(check_dense_layer(cls), mistake, *_phrases(phrase))


def test_norm1_on_the_last_feature_quotes_both_channel_counts():
    message = check_dense_layer(LastFeatureNormLayer).message
    assert "concatenated input (15 channels)" in message and "(3 channels)" in message


# ----------------------------------------------------------------------------- dense block


class Block(nn.ModuleDict):
    """A correct dense block built from densenet_edu's DenseLayer."""

    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__()
        for i in range(num_layers):
            width = self.layer_width(in_channels, growth_rate, i)
            self.add_module(f"denselayer{i + 1}", DenseLayer(width, growth_rate, bn_size))

    @staticmethod
    def layer_width(k0, k, i):
        return k0 + k * i

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return self.join(features)

    def join(self, features):
        return torch.cat(features, dim=1)


class RunningConcatBlock(Block):
    """x = cat([x, layer(x)]) is the same computation, written differently: it must pass."""

    def forward(self, x):
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class AddingBlock(Block):
    def forward(self, x):
        for layer in self.values():
            x = x + layer(x)
        return x


class ReversedInputBlock(Block):
    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features[::-1]))
        return torch.cat(features, dim=1)


class ChainBlock(Block):
    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features[-1]))
        return torch.cat(features, dim=1)


class OffByOneBlock(Block):
    @staticmethod
    def layer_width(k0, k, i):
        return k0 + k * (i + 1)


class NewFeaturesOnlyBlock(Block):
    def join(self, features):
        return torch.cat(features[1:], dim=1)


class LastOnlyBlock(Block):
    def join(self, features):
        return features[-1]


class ShortcutOutputBlock(Block):
    """Adds the block input x_0 to every new feature map, like a ResNet shortcut."""

    def join(self, features):
        x0 = features[0]
        return torch.cat([x0] + [f + x0 for f in features[1:]], dim=1)


class ShortcutLayerBlock(Block):
    """Adds x_0 to each layer's output before the next layer reads it."""

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features) + x)
        return torch.cat(features, dim=1)


class BatchAxisBlock(Block):
    def join(self, features):
        return torch.cat(features, dim=0)


class ListBlock(nn.Module):
    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
            for i in range(num_layers)
        )

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


class AllK0Block(Block):
    @staticmethod
    def layer_width(k0, k, i):
        return k0


class ShortBlock(Block):
    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__(num_layers - 1, in_channels, growth_rate, bn_size)


class MissingLastBlock(Block):
    def join(self, features):
        return torch.cat(features[:-1], dim=1)


class ReversedOutputBlock(Block):
    def join(self, features):
        return torch.cat(features[::-1], dim=1)


class OnlyInputBlock(Block):
    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features[:1]))
        return torch.cat(features, dim=1)


class SkipsLastLayerBlock(Block):
    def forward(self, x):
        features = [x]
        for layer in list(self.values())[:-1]:
            features.append(layer(features))
        return torch.cat(features, dim=1)


class ReluLayer(DenseLayer):
    def forward(self, features):
        return torch.relu(super().forward(features))


class WrongLayerBlock(nn.ModuleDict):
    """Wired correctly, but its layers end with an extra ReLU."""

    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__()
        for i in range(num_layers):
            layer = ReluLayer(in_channels + i * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{i + 1}", layer)

    forward = Block.forward
    join = Block.join


class InPlaceBlock(Block):
    def forward(self, x):
        x.relu_()
        return super().forward(x)


def test_the_reference_dense_block_passes():
    assert check_dense_block(DenseBlock)


def test_a_block_that_concatenates_as_it_goes_passes():
    assert check_dense_block(RunningConcatBlock)


@pytest.mark.parametrize(
    "cls, mistake, phrase",
    [
        (AddingBlock, "added_instead_of_concat", "added the features instead of concatenating"),
        (ReversedInputBlock, "wrong_concat_order", "reverse order"),
        (ChainBlock, "chain_not_dense", "only the previous layer's output"),
        (OffByOneBlock, "off_by_one", "k0 + k*l"),
        (NewFeaturesOnlyBlock, "missing_block_input", "left out the block's input"),
        (LastOnlyBlock, "only_last_layer", "only the last layer's output"),
        (ListBlock, "wrong_key_names", "'layers.0' -> 'denselayer1'"),
        (ShortcutOutputBlock, "adds_block_input", "added the block's input x_0"),
        (ShortcutLayerBlock, "adds_block_input", "denselayer2 received x_0 added"),
        (BatchAxisBlock, "concat_wrong_dim", ("dimension 0", "dim=1")),
        (AllK0Block, "wrong_layer_width", "every layer is built for k0 channels"),
        (ShortBlock, "wrong_num_layers", "has 2 dense layers"),
        (MissingLastBlock, "missing_last_layer", "left out the last layer's output"),
        (ReversedOutputBlock, "wrong_concat_order", "returns the feature maps in reverse order"),
        (OnlyInputBlock, "only_block_input", "denselayer2 received only the block's input"),
        (SkipsLastLayerBlock, "not_used", "denselayer3 is never called"),
        (
            WrongLayerBlock,
            "layer_differs",
            ("denselayer1 got the right input", "check_dense_layer"),
        ),
        (InPlaceBlock, "modified_input", "in place"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_dense_block_mistakes_are_named(cls, mistake, phrase):
    assert_fails_with(check_dense_block(cls), mistake, *_phrases(phrase))


def test_a_wrong_block_width_is_reported_with_the_arithmetic():
    message = check_dense_block(NewFeaturesOnlyBlock).message
    assert "returns 12 channels" in message
    assert "k0=64, k=4 and 3 layers must return 64 + 3*4 = 76" in message


# ----------------------------------------------------------------------------- transition


class Trans(nn.Module):
    """A correct transition: BN -> ReLU -> 1x1 conv to floor(theta*m) -> 2x2 avg pool."""

    def __init__(self, in_channels, compression=0.5):
        super().__init__()
        out = self.out_channels(in_channels, compression)
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)

    @staticmethod
    def out_channels(m, theta):
        # Rounded first: 0.29 * 100 is 28.999999999999996 in floating point.
        return math.floor(round(theta * m, 9))

    def forward(self, x):
        return self.pool(self.conv(torch.relu(self.norm(x))))


class PoolThenConvTrans(Trans):
    """Pooling before the 1x1 conv gives the same result (both are linear): it must pass."""

    def forward(self, x):
        return self.conv(self.pool(torch.relu(self.norm(x))))


class MaxPoolTrans(Trans):
    def __init__(self, in_channels, compression=0.5):
        super().__init__(in_channels, compression)
        self.pool = nn.MaxPool2d(2, stride=2)


class CeilTrans(Trans):
    @staticmethod
    def out_channels(m, theta):
        return math.ceil(theta * m)


class RoundTrans(Trans):
    @staticmethod
    def out_channels(m, theta):
        return round(theta * m)


class FloatFloorTrans(Trans):
    @staticmethod
    def out_channels(m, theta):
        return math.floor(theta * m)


class IntTrans(Trans):
    @staticmethod
    def out_channels(m, theta):
        return int(theta * m)


class ReluBeforeNormTrans(Trans):
    def forward(self, x):
        return self.pool(self.conv(self.norm(torch.relu(x))))


class EvalDropoutTrans(Trans):
    """Dropout with F.dropout's default training=True: still on after .eval()."""

    def forward(self, x):
        out = super().forward(x)
        return nn.functional.dropout(out, p=0.5) if not self.training else out


class HalvingTrans(Trans):
    @staticmethod
    def out_channels(m, theta):
        return m // 2


class NoReluTrans(Trans):
    def forward(self, x):
        return self.pool(self.conv(self.norm(x)))


class NoPoolTrans(Trans):
    def forward(self, x):
        return self.conv(torch.relu(self.norm(x)))


class CeilModeTrans(Trans):
    def __init__(self, in_channels, compression=0.5):
        super().__init__(in_channels, compression)
        self.pool = nn.AvgPool2d(2, stride=2, ceil_mode=True)


class BiasTrans(Trans):
    def __init__(self, in_channels, compression=0.5):
        super().__init__(in_channels, compression)
        self.conv = nn.Conv2d(in_channels, self.out_channels(in_channels, compression), 1)


class RenamedTrans(Trans):
    def __init__(self, in_channels, compression=0.5):
        super().__init__(in_channels, compression)
        self.bn = self.norm
        del self.norm

    def forward(self, x):
        return self.pool(self.conv(torch.relu(self.bn(x))))


class StrideOneTrans(Trans):
    def __init__(self, in_channels, compression=0.5):
        super().__init__(in_channels, compression)
        self.pool = nn.AvgPool2d(2, stride=1)


class UnusedNormTrans(Trans):
    def forward(self, x):
        self.norm(x)
        return self.pool(self.conv(torch.relu(x)))


class NoNormTrans(Trans):
    def forward(self, x):
        return self.pool(self.conv(torch.relu(x)))


class KeepAllTrans(Trans):
    @staticmethod
    def out_channels(m, theta):
        return m


class ThirdTrans(Trans):
    @staticmethod
    def out_channels(m, theta):
        return max(1, m // 3)


class FlatTrans(Trans):
    def forward(self, x):
        return super().forward(x).flatten(1)


class Kernel3Trans(Trans):
    def __init__(self, in_channels, compression=0.5):
        super().__init__(in_channels, compression)
        out = self.out_channels(in_channels, compression)
        self.conv = nn.Conv2d(in_channels, out, 3, padding=1, bias=False)


class DetachingTrans(Trans):
    def forward(self, x):
        return super().forward(x.detach())


def test_the_reference_transition_passes():
    assert check_transition(Transition)


def test_a_transition_that_pools_before_its_1x1_conv_passes():
    assert check_transition(PoolThenConvTrans)


@pytest.mark.parametrize(
    "cls, mistake, phrase",
    [
        (MaxPoolTrans, "max_pool", "max pooling"),
        (CeilTrans, "compression_ceil", "rounded up"),
        (RoundTrans, "compression_round", "nearest integer"),
        (HalvingTrans, "ignores_theta", "ignores the compression factor"),
        (NoReluTrans, "missing_relu", "no ReLU between norm and conv"),
        (NoPoolTrans, "no_pooling", "halve"),
        (CeilModeTrans, "ceil_mode", "ceil_mode=True"),
        (BiasTrans, "bias_on_conv", "bias=False"),
        (RenamedTrans, "wrong_key_names", "'bn' -> 'norm'"),
        (FloatFloorTrans, "compression_float_error", ("28.999999999999996", "round(theta * m, 9)")),
        (IntTrans, "compression_float_error", ("int()", "gives 28")),
        (ReluBeforeNormTrans, "relu_before_bn", ("ReLU before norm", "BN -> ReLU")),
        (EvalDropoutTrans, "dropout_in_eval", ("eval mode", "training=self.training")),
        (StrideOneTrans, "pool_stride", "stride 1 (9x9 -> 8x8)"),
        (UnusedNormTrans, "missing_bn", "norm's output is never used"),
        (NoNormTrans, "not_used", "norm is never used"),
        (KeepAllTrans, "no_compression", "keeps all m channels"),
        (ThirdTrans, "wrong_compression", "floor(0.5*15) = floor(7.5) = 7"),
        (FlatTrans, "wrong_shape", "4-D tensor"),
        (Kernel3Trans, "wrong_shape", "1x1 (kernel_size=1)"),
        (DetachingTrans, "no_gradient", "the transition's input receives no gradient"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_transition_mistakes_are_named(cls, mistake, phrase):
    assert_fails_with(check_transition(cls), mistake, *_phrases(phrase))


def test_the_float_error_case_is_checked_and_the_advice_matches_the_chapter():
    message = check_transition(FloatFloorTrans).message
    assert "in_channels=100 and compression=0.29 your transition outputs 28 channels" in message
    assert "= 29" in message
    # The advice for rounding mistakes is the chapter's recipe, not a bare floor or int().
    for cls in (CeilTrans, RoundTrans):
        advice = check_transition(cls).message
        assert "math.floor(round(theta * m, 9))" in advice
        assert "math.floor or int()" not in advice


def test_rounding_up_is_shown_on_an_odd_channel_count():
    message = check_transition(CeilTrans).message
    assert "in_channels=15" in message and "outputs 8 channels" in message
    assert "floor(0.5*15) = floor(7.5) = 7" in message


# ----------------------------------------------------------------------------- DenseNet-121


class NoFinalReluDenseNet(DenseNet):
    def forward(self, x):
        out = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(out.flatten(1))


class EvalDropoutDenseNet(DenseNet):
    """Dropout before the classifier with F.dropout's default training=True."""

    def forward(self, x):
        out = nn.functional.adaptive_avg_pool2d(torch.relu(self.features(x)), 1).flatten(1)
        return self.classifier(nn.functional.dropout(out, p=0.2))


def _stem_pool_without_padding() -> nn.Module:
    model = densenet121()
    model.features.pool0 = nn.MaxPool2d(3, stride=2)
    return model


def _with_max_pool_in_transition2() -> nn.Module:
    model = densenet121()
    model.features.transition2.pool = nn.MaxPool2d(2, stride=2)
    return model


def _without_stem_pool() -> nn.Module:
    model = densenet121()
    model.features.pool0 = nn.Identity()
    return model


class SoftmaxDenseNet(DenseNet):
    def forward(self, x):
        return super().forward(x).softmax(1)


class GlobalMaxPoolDenseNet(DenseNet):
    def forward(self, x):
        out = nn.functional.adaptive_max_pool2d(torch.relu(self.features(x)), 1)
        return self.classifier(out.flatten(1))


def _stem_avg_pool() -> nn.Module:
    model = densenet121()
    model.features.pool0 = nn.AvgPool2d(3, stride=2, padding=1)
    return model


def _conv0_with_bias() -> nn.Module:
    model = densenet121()
    model.features.conv0 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
    return model


def test_the_reference_densenet121_passes_and_a_passed_model_is_left_unchanged():
    model = densenet121()
    before = model.features.conv0.weight.clone()
    assert check_densenet121(model)
    assert torch.equal(model.features.conv0.weight, before)


@pytest.mark.parametrize(
    "factory, mistake, phrase",
    [
        (_with_max_pool_in_transition2, "max_pool", "transition2 uses max pooling"),
        (_without_stem_pool, "stem_missing_pool", "no max pool"),
        (lambda: NoFinalReluDenseNet(), "missing_final_relu", "no ReLU between norm5"),
        (lambda: DenseNet(block_config=(6, 12, 23, 16)), "wrong_num_layers", "denseblock3"),
        (lambda: DenseNet(growth_rate=24), "wrong_shape", "growth rate is k = 32"),
        (lambda: EvalDropoutDenseNet(), "dropout_in_eval", ("eval mode", "training=self.training")),
        (_stem_pool_without_padding, "stem_pool_padding", ("no padding", "padding=1")),
        (_stem_avg_pool, "stem_avg_pool", "*max* pool"),
        (lambda: SoftmaxDenseNet(), "softmax", "raw logits"),
        (lambda: GlobalMaxPoolDenseNet(), "global_max_pool", "global *average* pooling"),
        (_conv0_with_bias, "bias_on_conv", "features.conv0 has a bias"),
        (lambda: densenet121(num_classes=10), "wrong_shape", "to 1000 classes"),
        (lambda: DenseNet(compression=0.6), "wrong_shape", "compresses m channels"),
        (5, "wrong_argument", "got int"),
    ],
    ids=[
        "max-pool-transition",
        "no-stem-pool",
        "no-final-relu",
        "23-layers",
        "k24",
        "dropout-in-eval",
        "stem-pool-no-padding",
        "stem-avg-pool",
        "softmax",
        "global-max-pool",
        "conv0-bias",
        "10-classes",
        "compression-0.6",
        "not-a-model",
    ],
)
def test_densenet121_mistakes_name_the_first_stage_that_differs(factory, mistake, phrase):
    assert_fails_with(check_densenet121(factory), mistake, *_phrases(phrase))


# ----------------------------------------------------------------------------- practice notebooks

PRACTICE_NOTEBOOKS = sorted((ROOT / "chapters").glob("practice_*.ipynb"))


def _cells(path):
    return nbformat.read(path, as_version=4).cells


@pytest.mark.parametrize("path", PRACTICE_NOTEBOOKS, ids=lambda p: p.stem)
def test_practice_skeleton_and_its_check_are_shown_but_not_executed(path):
    skipped = [c for c in _cells(path) if "skip-execution" in c.metadata.get("tags", [])]
    assert any("raise NotImplementedError" in c.source for c in skipped)
    assert any("check_" in c.source for c in skipped)


@pytest.mark.parametrize("path", PRACTICE_NOTEBOOKS, ids=lambda p: p.stem)
def test_practice_solution_is_executed_and_checked_inside_a_dropdown_solution(path):
    cells = _cells(path)
    starts = [i for i, c in enumerate(cells) if "{solution-start}" in c.source]
    ends = [i for i, c in enumerate(cells) if "{solution-end}" in c.source]
    assert len(starts) == len(ends) == 1 and starts[0] < ends[0]
    assert ":class: dropdown" in cells[starts[0]].source
    inside = cells[starts[0] + 1 : ends[0]]
    code = "\n".join(c.source for c in inside if c.cell_type == "code")
    assert ".raise_if_failed()" in code
    assert all("skip-execution" not in c.metadata.get("tags", []) for c in inside)


@pytest.mark.book
@pytest.mark.parametrize(
    "page", [p for p in toc_files() if "/practice_" in p] or ["(no practice page in _toc.yml)"]
)
def test_built_practice_page_hides_a_passing_solution_in_a_dropdown(page):
    if page.startswith("("):
        pytest.skip(page)
    html = built_page(page).read_text()
    assert 'class="solution dropdown' in html
    assert "densenet-edu-check-pass" in html  # the checker ran on the worked solution
    assert "densenet-edu-check-fail" not in html.split("Your turn")[-1]
