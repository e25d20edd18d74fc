"""densenet_edu.measure: one definition of "saved for backward", the timer, peak memory.

Expected byte counts are derived by hand from what each operation's derivative needs:
a linear layer y = x W^T + b needs x for W's gradient, a ReLU needs its output (the
mask), a BatchNorm its input and the batch's per-channel mean and inverse std.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import densenet_edu as de
from densenet_edu import measure

F32 = 4  # bytes per float32 value


class SaveThese(torch.autograd.Function):
    """Saves whatever tensors it is given (to test the counter on known saves)."""

    @staticmethod
    def forward(ctx, x, *to_save):
        ctx.save_for_backward(*to_save)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return (grad, *[None] * len(ctx.saved_tensors))


def saved_by(*to_save, exclude=()):
    x = torch.zeros(1, requires_grad=True)
    with measure.SavedTensorCounter(exclude=exclude) as counter:
        out = SaveThese.apply(x, *to_save)
    del out
    return counter


# --- the definition, on hand-countable saves -------------------------------------------


def test_linear_then_relu_saves_the_input_and_the_relu_output_not_the_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    x = torch.randn(2, 4)
    # Linear keeps x (2 x 4) for the weight's gradient and W (a parameter: not counted);
    # ReLU keeps its output (2 x 3).
    assert measure.saved_tensor_bytes(model, x) == (2 * 4 + 2 * 3) * F32


def test_a_storage_saved_twice_and_through_views_counts_once():
    a = torch.randn(5, 6)
    counter = saved_by(a, a, a[1:], a.t())
    assert counter.nbytes == 5 * 6 * F32 and counter.num_storages == 1


def test_views_share_their_storages_key_and_hold_all_of_it():
    a = torch.randn(4, 5)
    assert measure.storage_key(a[1:].t()) == measure.storage_key(a)
    assert measure.storage_key(a.clone()) != measure.storage_key(a)
    assert measure.held_bytes(a[0, :1]) == 4 * 5 * F32


def test_distinct_storages_add_up():
    counter = saved_by(torch.randn(3), torch.randn(2, 2))
    assert counter.nbytes == (3 + 4) * F32 and counter.num_storages == 2


def test_a_saved_view_counts_the_whole_storage_it_keeps_alive():
    big = torch.randn(100)
    assert saved_by(big[:10]).nbytes == 100 * F32


def test_parameters_buffers_and_views_of_them_are_not_counted():
    layer = nn.BatchNorm1d(7)
    own = torch.randn(3)
    counter = saved_by(
        layer.weight, layer.weight.view(7, 1), layer.running_mean, own, exclude=layer
    )
    assert counter.nbytes == 3 * F32


def test_sparse_tensors_without_a_storage_count_their_logical_size():
    sparse = torch.eye(4).to_sparse()
    assert saved_by(sparse).nbytes == 4 * 4 * F32


def test_meta_tensors_count_once_per_tensor_although_their_address_is_zero():
    a, b = torch.empty(2, 3, device="meta"), torch.empty(5, device="meta")
    assert saved_by(a, b, a).nbytes == (2 * 3 + 5) * F32


def test_counter_stops_counting_when_the_context_ends():
    x = torch.randn(3, requires_grad=True)
    with measure.SavedTensorCounter() as counter:
        torch.relu(x)
    torch.relu(torch.randn(50, requires_grad=True))  # outside: not counted
    assert counter.nbytes == 3 * F32


def test_dense_layer_saves_concat_normalised_copy_and_bottleneck_activations():
    n, c, k, hw = 2, 10, 4, 5 * 5
    layer = de.DenseLayer(c, k)  # bottleneck width 4k
    x = [torch.randn(n, 6, 5, 5), torch.randn(n, 4, 5, 5)]
    # norm1 keeps the concatenation; the in-place ReLU and conv1 keep the normalised copy
    # (one storage); norm1 keeps mean and inverse std per channel; the same for norm2
    # on the 4k-channel bottleneck output.
    expected = (2 * n * c * hw + 2 * c + 2 * n * 4 * k * hw + 2 * 4 * k) * F32
    assert measure.saved_tensor_bytes(layer, x) == expected


def test_saved_tensor_bytes_leaves_mode_and_running_statistics_as_they_were():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure.saved_tensor_bytes(model, torch.randn(4, 2) + 5)
    assert not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)


def test_memory_efficient_saves_fewer_bytes_for_backward():
    x = torch.randn(2, 3, 32, 32)
    plain = de.densenet_cifar(depth=22, growth_rate=6)
    efficient = de.densenet_cifar(depth=22, growth_rate=6, memory_efficient=True)
    assert measure.saved_tensor_bytes(efficient, x) < measure.saved_tensor_bytes(plain, x)


# --- what is measured ------------------------------------------------------------------


def test_calibrated_batchnorm_statistics_are_the_batch_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    x = torch.randn(8, 3, 5, 5)
    measure.calibrate_batchnorm(model, x)
    with torch.no_grad():
        y = model[0](x)
    torch.testing.assert_close(model[1].running_mean, y.mean(dim=(0, 2, 3)))
    assert not model.training and model[1].momentum == 0.1


def test_train_step_updates_the_weights_and_returns_the_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    before = model[1].weight.detach().clone()
    expected_loss = nn.functional.cross_entropy(model(x), y)
    loss = measure.make_train_step(model, x, y)()
    torch.testing.assert_close(loss, expected_loss.detach())
    assert not torch.equal(model[1].weight, before)


# --- time -------------------------------------------------------------------------------


def test_interleaved_timing_alternates_rotates_and_skips_warmup():
    calls: list[str] = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = measure.time_interleaved(contenders, repeats=2, warmup=1)
    # 1 warm-up round + 2 timed rounds; each round starts one contender later.
    assert calls == list("abc" + "bca" + "cab")
    assert {name: len(t) for name, t in times.items()} == {"a": 2, "b": 2, "c": 2}


def test_settling_calls_run_untimed_right_before_each_timed_call():
    calls: list[str] = []

    def contender(name):
        def call():
            calls.append(name)

        return call

    contenders = {name: contender(name) for name in "ab"}
    times = measure.time_interleaved(contenders, repeats=2, warmup=1, settle=1)
    # Warm-up round: once each; timed rounds: each contender twice in a row (settle, timed).
    assert calls == list("ab" + "bbaa" + "aabb")
    assert {name: len(t) for name, t in times.items()} == {"a": 2, "b": 2}


def test_timing_rejects_a_negative_settle():
    with pytest.raises(ValueError, match="settle"):
        measure.time_interleaved({"a": lambda: None}, repeats=1, warmup=0, settle=-1)


def test_medians_are_the_middle_values_not_the_means():
    assert measure.medians({"a": [1.0, 9.0, 2.0], "b": [4.0, 2.0]}) == {"a": 2.0, "b": 3.0}


def test_round_ratios_pair_each_round_with_the_baselines_call_of_that_round():
    # Medians 30 and 30 (ratio 1.0), yet round by round one was 5x faster, then 5x slower.
    lower, median, upper = measure.round_ratio_quartiles([10, 20, 30, 40, 50], [50, 40, 30, 20, 10])
    assert (lower, median, upper) == (0.5, 1.0, 2.0)  # ratios 0.2, 0.5, 1, 2, 5


def test_a_steady_ratio_under_changing_load_has_no_spread():
    quartiles = measure.round_ratio_quartiles([11, 44, 22, 55, 33], [10, 40, 20, 50, 30])
    assert quartiles == pytest.approx((1.1, 1.1, 1.1))


@pytest.mark.parametrize("times, baseline", [([1.0, 2.0], [1.0]), ([1.0], [1.0])])
def test_round_ratios_need_two_or_more_paired_rounds(times, baseline):
    with pytest.raises(ValueError, match="same number of rounds"):
        measure.round_ratio_quartiles(times, baseline)


def test_timing_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        measure.time_interleaved({"a": lambda: None}, repeats=0, warmup=0)


# --- peak memory -------------------------------------------------------------------------


def test_peak_memory_growth_sees_a_short_lived_allocation_on_the_cpu():
    size = 256 * 2**20  # touched, so resident

    def allocate_and_free():
        block = torch.ones(size // F32)
        time.sleep(0.05)  # long enough for the 1 ms sampler
        del block

    assert measure.peak_memory_growth(allocate_and_free) > size // 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_peak_memory_growth_on_cuda_is_the_allocators_peak_above_the_start():
    size = 64 * 2**20
    kept = torch.ones(1024, device="cuda")  # allocated before: not growth

    def allocate_and_free():
        block = torch.ones(size // F32, device="cuda")
        del block

    growth = measure.peak_memory_growth(allocate_and_free, "cuda")
    assert size <= growth < size + 2**20 and kept.numel() == 1024


def test_saved_bytes_are_the_same_on_every_device(device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).to(device)
    assert measure.saved_tensor_bytes(model, torch.randn(2, 4, device=device)) == 14 * F32


def test_matmul_peak_is_two_n_cubed_flops_over_the_faster_librarys_median_time(monkeypatch):
    def fake_timer(contenders, repeats, warmup, device, desc=""):
        medians = iter([0.5, 0.25, 1.0])  # one per library, the second the fastest
        return {name: [m, m / 2, 4.0] for name, m in zip(contenders, medians, strict=False)}

    monkeypatch.setattr(measure, "time_interleaved", fake_timer)
    fastest = 0.25 if len(measure.gemm_calls(n=8)) > 1 else 0.5
    assert measure.matmul_peak_gflops(n=64) == pytest.approx(2 * 64**3 / fastest / 1e9)


def test_every_gemm_call_computes_the_same_square_product():
    torch.manual_seed(0)
    calls = measure.gemm_calls(n=64)
    assert "torch.mm" in calls
    if torch.backends.mkldnn.is_available():
        assert "oneDNN" in calls
    expected = calls["torch.mm"]()
    for call in calls.values():
        torch.testing.assert_close(call(), expected, rtol=1e-4, atol=1e-4)
