"""memory_efficient=True recomputes concat + BN + ReLU + conv1 and changes nothing else."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

import densenet_edu as de
from densenet_edu.measure import saved_tensor_bytes


def twins(device, **kwargs):
    plain = de.densenet_cifar(**kwargs).to(device)
    efficient = copy.deepcopy(plain)
    for module in efficient.modules():
        if isinstance(module, de.DenseLayer):
            module.memory_efficient = True
    return plain, efficient


@pytest.mark.parametrize("bottleneck", [True, False])
def test_outputs_gradients_and_running_stats_match_the_plain_path(
    device, bottleneck, assert_same_training_step
):
    # The buffers' check also proves that recomputation in backward does not update
    # BatchNorm's running statistics a second time.
    plain, efficient = twins(device, depth=40, growth_rate=6, bottleneck=bottleneck)
    x = torch.randn(8, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (8,), device=device)
    assert_same_training_step(plain, efficient, x, y, grads=(1e-4, 1e-6))


def test_factory_flag_reaches_every_dense_layer():
    model = de.densenet121(memory_efficient=True)
    layers = [m for m in model.modules() if isinstance(m, de.DenseLayer)]
    assert len(layers) == 58 and all(m.memory_efficient for m in layers)


def test_checkpointing_stores_fewer_bytes_for_backward():
    plain, efficient = twins("cpu", depth=40, growth_rate=6)
    x = torch.randn(4, 3, 32, 32)
    assert saved_tensor_bytes(efficient, x) < 0.7 * saved_tensor_bytes(plain, x)


def test_memory_efficient_layer_keeps_its_inputs_and_bottleneck_not_the_concatenation():
    n, k, hw = 2, 4, 5 * 5
    layer = de.DenseLayer(10, k, memory_efficient=True)
    x = [torch.randn(n, 6, 5, 5, requires_grad=True), torch.randn(n, 4, 5, 5, requires_grad=True)]
    # The checkpoint keeps its inputs (the earlier maps, 10 channels, held anyway by the
    # block) and recomputes concat + norm1 + ReLU + conv1; norm2 keeps the 4k-channel
    # bottleneck output (shared with the in-place ReLU and conv2) and its mean/inv std.
    expected = (n * 10 * hw + 2 * n * 4 * k * hw + 2 * 4 * k) * 4
    assert saved_tensor_bytes(layer, x) == expected


def test_memory_efficient_model_runs_without_grad():
    _, efficient = twins("cpu", depth=40, growth_rate=6)
    with torch.no_grad():
        assert efficient.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_a_forward_in_another_thread_during_recomputation_updates_statistics_once():
    # The recomputation flag belongs to one checkpointed call: while thread A's backward
    # replays layer.concat_norm_conv, thread B's forward through the same layer must still
    # update BatchNorm's running statistics (once), and A's replay must not.
    torch.manual_seed(0)
    layer = de.DenseLayer(8, 4, memory_efficient=True).train()
    twin = copy.deepcopy(layer)
    twin.memory_efficient = False
    x_a, x_b = torch.randn(4, 8, 5, 5), torch.randn(4, 8, 5, 5)
    replaying, b_done = threading.Event(), threading.Event()
    in_backward = threading.Event()

    def pause_in_replay(module, args):
        if in_backward.is_set() and threading.current_thread() is threading.main_thread():
            replaying.set()
            assert b_done.wait(timeout=30), "thread B did not finish"

    def thread_b():
        assert replaying.wait(timeout=30), "thread A never replayed"
        layer(x_b.clone().requires_grad_()).sum()  # a forward, in training mode
        b_done.set()

    # relu1 runs inside the replayed function (conv1 itself is not rerun: checkpoint stops
    # once it has the tensors backward needs).
    handle = layer.relu1.register_forward_pre_hook(pause_in_replay)
    other = threading.Thread(target=thread_b)
    other.start()
    out = layer(x_a.clone().requires_grad_())
    in_backward.set()
    out.sum().backward()
    other.join(timeout=30)
    handle.remove()
    assert b_done.is_set()
    for x in (x_a, x_b):  # the plain twin: one update per forward, in the same order
        twin(x)
    torch.testing.assert_close(layer.norm1.running_mean, twin.norm1.running_mean)
    torch.testing.assert_close(layer.norm1.running_var, twin.norm1.running_var)
    assert layer.norm1.num_batches_tracked.item() == 2
