"""BlockPlan: a bottleneck dense block run as one flat loop, the same function as its modules."""

from __future__ import annotations

import copy
import io
import threading

import pytest
import torch
from torch import nn

import densenet_edu as de
from densenet_edu import onednn_primitives
from densenet_edu.block_plan import IM2COL_MAX_PIXELS, BlockPlan, plannable
from densenet_edu.fast import FastDenseBlock, optimize_for_inference

ONEDNN_MISSING = onednn_primitives.unavailable_reason()


@pytest.fixture(
    autouse=True,
    params=[
        "aten",
        pytest.param(
            "onednn", marks=pytest.mark.skipif(bool(ONEDNN_MISSING), reason=ONEDNN_MISSING)
        ),
    ],
)
def route(request, monkeypatch):
    """Every test runs on both routes a plan can take: ATen's operators, and oneDNN's
    primitives called directly (densenet_edu.onednn_primitives) where they can run."""
    monkeypatch.setenv(onednn_primitives.ENV_SWITCH, "1" if request.param == "onednn" else "0")
    return request.param


def randomize_batchnorm(module: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, of both signs (the fold matters)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) - 0.3)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return module.eval()


def dense_block(bottleneck: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(de.DenseBlock(5, 16, growth_rate=8, bottleneck=bottleneck), seed)


def fast_block(block: nn.Module) -> FastDenseBlock:
    """As FastDenseNet builds it: an NHWC buffer and channels_last weights."""
    return FastDenseBlock(block, channels_last=True).to(memory_format=torch.channels_last)


def images(batch: int, side: int, channels: int = 16) -> torch.Tensor:
    x = torch.randn(batch, channels, side, side, generator=torch.Generator().manual_seed(2))
    return x.contiguous(memory_format=torch.channels_last)


def module_path(fast: FastDenseBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's per-module forward, which the plan replaces."""
    fast._plans.enabled = False
    try:
        return fast(x)
    finally:
        fast._plans.enabled = True


@pytest.mark.parametrize(
    ("batch", "side"),
    [(1, 7), (2, 8), (1, 16), (4, 14)],  # 49, 128 and 256 pixels: column products; 784: oneDNN
)
def test_a_planned_block_computes_what_the_eager_block_computes(batch, side):
    block = dense_block()
    fast = fast_block(block)
    x = images(batch, side)
    with torch.no_grad():
        expected = block(x)
        actual = fast(x)
    assert list(fast._plans.plans) == [x.shape]  # the plan ran, not the module path
    assert actual.shape == expected.shape == (batch, 16 + 5 * 8, side, side)
    assert actual.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side", [7, 20])
def test_a_planned_block_computes_what_its_module_path_computes(side):
    fast = fast_block(dense_block())
    x = images(1, side)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), module_path(fast, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("route", ["aten"], indirect=True)
def test_small_maps_run_each_3x3_convolution_as_one_column_matrix_product(monkeypatch, route):
    fast = fast_block(dense_block())
    calls = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda *a, **k: calls.append(k.get("out")) or real_mm(*a, **k))
    x = images(1, 7)
    with torch.no_grad():
        out = fast(x)
    assert len(calls) == 5  # one per layer
    # each wrote its layer's 8 new maps straight into the block's output
    assert all(
        o is not None and o.untyped_storage().data_ptr() == out.untyped_storage().data_ptr()
        for o in calls
    )


@pytest.mark.parametrize("route", ["aten"], indirect=True)
def test_the_column_product_is_chosen_by_the_number_of_pixels(route):
    layers = fast_block(dense_block()).layers
    side = int(IM2COL_MAX_PIXELS**0.5)
    assert BlockPlan(layers, torch.Size([1, 16, side, side])).im2col
    assert not BlockPlan(layers, torch.Size([1, 16, side + 1, side + 1])).im2col
    assert not BlockPlan(layers, torch.Size([IM2COL_MAX_PIXELS + 1, 16, 1, 1])).im2col


@pytest.mark.parametrize("route", ["onednn"], indirect=True)
@pytest.mark.skipif(bool(ONEDNN_MISSING), reason=ONEDNN_MISSING)
@pytest.mark.parametrize(("batch", "side"), [(1, 7), (4, 14)])
def test_with_onednn_available_each_layer_runs_two_prepacked_primitives(batch, side, route):
    fast = fast_block(dense_block())
    x = images(batch, side)
    with torch.no_grad():
        actual = fast(x)
        expected = module_path(fast, x)
    primitives = fast._plans.plans[x.shape].primitives
    assert primitives is not None and len(primitives.steps) == 5
    assert not any(name.startswith("ref") for name in primitives.implementations)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_weights_edited_in_place_are_used_by_the_next_call():
    fast = fast_block(dense_block())
    x = images(1, 7)
    with torch.no_grad():
        fast(x)
        fast.layers[2].conv2.weight.mul_(-1.5)  # a copy held by oneDNN would now be stale
        fast.layers[4].conv1.bias.add_(0.25)
        torch.testing.assert_close(fast(x), module_path(fast, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("route", ["onednn"], indirect=True)
@pytest.mark.skipif(bool(ONEDNN_MISSING), reason=ONEDNN_MISSING)
def test_a_primitive_plan_is_rebuilt_for_a_new_thread_count(route):
    fast = fast_block(dense_block())
    x = images(1, 7)
    threads = torch.get_num_threads()
    with torch.no_grad():
        expected = fast(x)
        built = fast._plans.plans[x.shape]
        torch.set_num_threads(threads + 1)
        try:
            actual = fast(x)
        finally:
            torch.set_num_threads(threads)
    assert fast._plans.plans[x.shape] is not built
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_each_call_returns_a_new_tensor_that_later_calls_leave_alone():
    fast = fast_block(dense_block())
    first_input, second_input = images(1, 7), 2 * images(1, 7)
    with torch.no_grad():
        first = fast(first_input)
        kept = first.clone()
        second = fast(second_input)
    assert first.data_ptr() != second.data_ptr()
    torch.testing.assert_close(first, kept, rtol=0, atol=0)


def test_gradients_to_the_input_take_the_module_path():
    fast = fast_block(dense_block())
    x = images(1, 7).requires_grad_()
    fast(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert fast._plans.plans == {}


def assert_last_weight_gets_the_eager_gradient(fast: FastDenseBlock, block: nn.Module) -> None:
    """Backward through both blocks: no plan ran, and the last conv2 got the same gradient."""
    x = images(1, 7)
    fast(x).square().sum().backward()
    block(x).square().sum().backward()
    assert fast._plans.plans == {}
    torch.testing.assert_close(
        fast.layers[-1].conv2.weight.grad,
        block[list(block.keys())[-1]].conv2.weight.grad,
        rtol=1e-4,
        atol=1e-5,
    )


def test_gradients_to_the_weights_take_the_module_path():
    block = dense_block()
    fast = fast_block(block)  # a bare block: its parameters require gradients
    assert_last_weight_gets_the_eager_gradient(fast, block)


def test_a_gradient_to_one_later_weight_alone_takes_the_module_path():
    block = dense_block()
    fast = fast_block(block)
    fast.requires_grad_(False)
    fast.layers[-1].conv2.weight.requires_grad_(True)  # not the first layer's, not the input's
    assert_last_weight_gets_the_eager_gradient(fast, block)


@pytest.mark.parametrize("channels_last", [True, False])
def test_plain_blocks_and_channels_first_blocks_are_not_planned(channels_last):
    plain = FastDenseBlock(dense_block(bottleneck=False), channels_last=channels_last)
    assert not plannable(plain.layers)
    channels_first = FastDenseBlock(dense_block(), channels_last=False)
    for fast in (plain, channels_first):
        with torch.no_grad():
            fast(images(1, 7))
        assert fast._plans.plans == {}


def test_weights_loaded_in_place_are_used_by_the_next_call():
    fast, other = fast_block(dense_block(seed=0)), fast_block(dense_block(seed=5))
    x = images(1, 7)
    with torch.no_grad():
        fast(x)  # builds the plan
        fast.load_state_dict(other.state_dict())
        torch.testing.assert_close(fast(x), other(x), rtol=1e-5, atol=1e-5)


def test_moving_the_block_or_assigning_weights_drops_its_plans():
    fast, other = fast_block(dense_block(seed=0)), fast_block(dense_block(seed=5))
    x = images(1, 7)
    with torch.no_grad():
        fast(x)
        fast.to(torch.float32)  # replaces every parameter tensor, even when nothing changes
        assert fast._plans.plans == {}
        fast(x)
        fast.load_state_dict(other.state_dict(), assign=True)
        assert fast._plans.plans == {}
        torch.testing.assert_close(fast(x), other(x), rtol=1e-5, atol=1e-5)


def test_copies_and_pickles_start_without_plans():
    fast = fast_block(dense_block())
    x = images(1, 7)
    with torch.no_grad():
        expected = fast(x)
    copied = copy.deepcopy(fast)
    stream = io.BytesIO()
    torch.save(fast, stream)
    stream.seek(0)
    loaded = torch.load(stream, weights_only=False)
    for clone in (copied, loaded):
        assert clone._plans.plans == {}
        assert clone._plans.layers is clone.layers
        with torch.no_grad():
            torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)


def test_a_block_keeps_at_most_four_shapes():
    fast = fast_block(dense_block())
    with torch.no_grad():
        for side in range(4, 10):
            fast(images(1, side))
    assert 1 <= len(fast._plans.plans) <= 4


def test_two_threads_can_share_a_planned_model():
    torch.manual_seed(0)
    model = randomize_batchnorm(de.densenet_cifar(40, 12))
    fast = optimize_for_inference(model)
    inputs = [
        torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)
    ]
    with torch.no_grad():
        expected = [fast(x) for x in inputs]
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    def work(i: int) -> None:
        with torch.no_grad():
            for _ in range(20):
                results[i].append(fast(inputs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for out in results[i]:
            torch.testing.assert_close(out, expected[i], rtol=0, atol=0)


def test_the_whole_fast_densenet121_runs_its_blocks_as_plans():
    torch.manual_seed(0)
    model = randomize_batchnorm(de.densenet121())
    fast = optimize_for_inference(model)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, actual = model(x), fast(x)
    blocks = [s for s in fast.features if isinstance(s, FastDenseBlock)]
    assert len(blocks) == 4 and all(len(b._plans.plans) == 1 for b in blocks)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() < 1e-4
