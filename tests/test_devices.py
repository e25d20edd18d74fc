"""Devices, dtypes and compilers: autocast, channels_last, torch.compile and torch.export."""

from __future__ import annotations

import copy

import pytest
import torch

import densenet_edu as de


def small_model(device, **kwargs):
    return de.densenet_cifar(16, 8, **kwargs).to(device).eval()


def test_runs_on_every_available_device(device):
    model = small_model(device)
    assert model(torch.randn(2, 3, 32, 32, device=device)).device.type == device.type


def test_channels_last_gives_the_same_outputs(device):
    model = small_model(device)
    x = torch.randn(2, 3, 32, 32, device=device)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_stays_close_to_float32(device, dtype):
    if device.type == "cpu" and dtype == torch.float16:
        pytest.skip("float16 autocast is meant for GPUs; bfloat16 covers the CPU")
    model = small_model(device)
    x = torch.randn(2, 3, 32, 32, device=device)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast(device.type, dtype=dtype):
            out = model(x)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


def test_training_step_under_autocast_produces_finite_gradients(device):
    model = small_model(device).train()
    x = torch.randn(4, 3, 32, 32, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_half_precision_weights_run(device):
    if device.type == "cpu":
        pytest.skip("half-precision convolutions are slow or missing on CPU; covered on GPU")
    model = small_model(device).half()
    assert model(torch.randn(1, 3, 32, 32, device=device).half()).dtype == torch.float16


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_torch_compile_fullgraph_matches_eager(device, memory_efficient):
    model = small_model(device, memory_efficient=memory_efficient).train()
    # Inductor needs a C++ toolchain and minutes on a small CPU; aot_eager still proves
    # full-graph capture and the compiled autograd graph. The GPU check uses inductor.
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    eager = copy.deepcopy(model)
    x = torch.randn(2, 3, 32, 32, device=device)
    out = compiled(x)
    expected = eager(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    out.sum().backward()
    expected.sum().backward()
    grads = dict(eager.named_parameters())
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n].grad, rtol=1e-3, atol=1e-4, msg=n)
    buffers = dict(eager.named_buffers())
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, buffers[n], msg=n)


def test_torch_export_matches_eager():
    model = small_model("cpu")
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
