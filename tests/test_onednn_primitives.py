"""onednn_primitives.Convolution: a oneDNN convolution set up once; the same function as conv2d."""

from __future__ import annotations

import contextlib
import gc

import pytest
import torch
import torch.nn.functional as F

from densenet_edu import onednn_primitives as op

MISSING = op.unavailable_reason()
needs_onednn = pytest.mark.skipif(bool(MISSING), reason=MISSING or "")


def nhwc(*shape: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last)


def reference(src, weight, bias, padding, relu):
    out = F.conv2d(src, weight, bias, padding=padding)
    return F.relu(out) if relu else out


@needs_onednn
@pytest.mark.parametrize(
    ("channels", "side", "kernel", "relu"),
    [(96, 14, 1, True), (64, 7, 3, False), (40, 28, 3, True)],
)
def test_a_convolution_computes_what_f_conv2d_computes(channels, side, kernel, relu):
    padding = kernel // 2
    src, weight = nhwc(2, channels, side, side), torch.randn(32, channels, kernel, kernel)
    bias = torch.randn(32) if relu else None
    dst = nhwc(2, 32, side, side)
    conv = op.Convolution(src, weight, bias, dst, padding, relu)
    conv()
    torch.testing.assert_close(
        dst, reference(src, weight, bias, padding, relu), rtol=1e-4, atol=1e-4
    )
    assert not conv.implementation.startswith("ref")


@needs_onednn
def test_each_call_reads_what_its_input_holds_then():
    src, weight, dst = nhwc(1, 16, 7, 7), torch.randn(8, 16, 3, 3), nhwc(1, 8, 7, 7)
    conv = op.Convolution(src, weight, None, dst, 1)
    conv()
    src.copy_(nhwc(1, 16, 7, 7, seed=3))
    conv()
    torch.testing.assert_close(dst, F.conv2d(src, weight, padding=1), rtol=1e-4, atol=1e-4)


@needs_onednn
def test_the_weight_is_copied_once_and_the_bias_is_read_in_place():
    src, weight, bias, dst = (
        nhwc(1, 16, 7, 7),
        torch.randn(8, 16, 1, 1),
        torch.randn(8),
        nhwc(1, 8, 7, 7),
    )
    conv = op.Convolution(src, weight, bias, dst, 0)
    expected_weight = weight.clone()
    weight.zero_()  # not seen: the primitive holds its own reordered copy
    bias.add_(1.0)  # seen: bound, not copied
    conv()
    torch.testing.assert_close(dst, F.conv2d(src, expected_weight, bias), rtol=1e-4, atol=1e-4)


@needs_onednn
def test_a_strided_output_falls_back_to_the_reference_kernel_and_says_so():
    wide = nhwc(1, 64, 7, 7)
    conv = op.Convolution(nhwc(1, 16, 7, 7), torch.randn(32, 16, 3, 3), None, wide[:, :32], 1)
    assert conv.implementation.startswith("ref")


@needs_onednn
def test_mismatched_shapes_raise_an_error_that_names_the_convolution():
    with pytest.raises(op.OneDNNError, match=r"convolution \(1, 16, 7, 7\) x \(8, 16, 3, 3\)"):
        op.Convolution(nhwc(1, 16, 7, 7), torch.randn(8, 16, 3, 3), None, nhwc(1, 8, 9, 9), 1)


@needs_onednn
def test_non_float32_tensors_are_rejected_before_reaching_onednn():
    with pytest.raises(ValueError, match="src must be a float32 CPU tensor"):
        op.Convolution(
            nhwc(1, 16, 7, 7).double(), torch.randn(8, 16, 1, 1), None, nhwc(1, 8, 7, 7), 0
        )


@needs_onednn
def test_a_collected_convolution_releases_its_onednn_objects():
    conv = op.Convolution(nhwc(1, 16, 7, 7), torch.randn(8, 16, 1, 1), None, nhwc(1, 8, 7, 7), 0)
    owned = conv._owned
    assert owned.handles and all(handle.value for _, handle in owned.handles)
    assert owned.finalizer.alive
    del conv
    gc.collect()
    assert not owned.finalizer.alive  # it ran: each handle went to its dnnl_*_destroy


def test_the_environment_switch_turns_the_primitives_off(monkeypatch):
    monkeypatch.setenv(op.ENV_SWITCH, "0")
    assert not op.available()
    assert op.ENV_SWITCH in op.unavailable_reason()


@contextlib.contextmanager
def loaded_with(monkeypatch, name, replacement):
    """The library looked for again with ``op.<name>`` replaced; the real state restored after."""
    monkeypatch.setattr(op, name, replacement)
    op._load.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        op._load.cache_clear()


def test_without_the_wheel_the_reason_says_what_to_install(monkeypatch):
    with loaded_with(monkeypatch, "library_path", lambda: None):
        reason = op.unavailable_reason()
    if reason.startswith("the onednn-cpu-gomp wheel exists") or "OpenMP" in reason:
        pytest.skip(f"not reached on this system: {reason}")
    assert "pip install onednn-cpu-gomp" in reason
    with loaded_with(monkeypatch, "library_path", lambda: None):
        with pytest.raises(op.OneDNNError, match="pip install onednn-cpu-gomp"):
            op.Convolution(nhwc(1, 4, 3, 3), torch.randn(4, 4, 1, 1), None, nhwc(1, 4, 3, 3), 0)


def test_a_second_openmp_runtime_in_the_process_is_refused(monkeypatch):
    if op.library_path() is None or "wheel exists" in op._load()[1]:
        pytest.skip(f"not reached on this system: {op.unavailable_reason()}")
    maps = [
        "7f00 r-xp 0 0:0 1 /opt/torch/lib/libgomp.so.1",
        "7f10 r-xp 0 0:0 2 /usr/lib/libgomp.so.1",
    ]
    with loaded_with(monkeypatch, "_mapped_files", lambda: maps):
        reason = op.unavailable_reason()
    assert reason.startswith("two OpenMP runtimes are loaded")
    assert op.available() == (not op.unavailable_reason())
