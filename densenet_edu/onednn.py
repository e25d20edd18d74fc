"""A convolution that calls oneDNN directly on the CPU: prepacked weights and a fused ReLU.

``F.conv2d`` on a CPU hands the weight to oneDNN in PyTorch's plain layout on *every*
call, and oneDNN reorders it into the blocked layout its kernels read (for a 3x3
convolution with 128 input channels, 32 output channels: a 147 KB copy per call; 120 of
them per DenseNet-121 image). :class:`PackedConv2d` does that reorder once per input
shape (``torch.ops.mkldnn._reorder_convolution_weight``, the call inductor's ``freezing``
makes) and runs ``torch.ops.mkldnn._convolution_pointwise``, which can also apply the
ReLU that follows the convolution as a oneDNN *post-op*, in the same pass over the
output. Measured on DenseNet-121's fast model: see ``benchmarks/README.md``.

The direct path runs only where it is exact and needed: on the CPU, float32, without
autograd (the oneDNN op has no backward), outside ``torch.fx`` / ``torch.jit.trace`` /
``torch.compile`` / ``torch.export`` (which see the plain ``F.conv2d`` + ReLU, so graphs,
ONNX export and inductor work as before). Everywhere else it is an ordinary ``nn.Conv2d``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PackedConv2d", "direct_call_allowed", "tensor_version", "traced"]

# Packed weights kept per module: one per input shape seen, a few shapes at most.
_MAX_SHAPES = 4


def direct_call_allowed(x: Tensor, weight: Tensor) -> bool:
    """May a convolution of ``x`` skip ``F.conv2d`` for a CPU kernel (same result, no graph
    or autograd needed)? Checked on every call, cheapest test first."""
    if isinstance(x, torch.fx.Proxy):
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.dim() != 4:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return not traced(x)


def traced(x: Tensor) -> bool:
    """Is ``x`` seen by torch.fx, torch.jit or torch.compile rather than computed?"""
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    return torch.compiler.is_compiling()


def tensor_version(t: Tensor) -> tuple[int, int]:
    """(address, version counter): changes when ``t`` is replaced or written in place
    (``load_state_dict``, ``copy_``), so a copy made from it, such as packed weights, is
    known to be stale. Tensors made under ``torch.inference_mode`` have no counter; they
    cannot be written outside it."""
    return t.data_ptr(), 0 if t.is_inference() else t._version


# Decided once: the build's oneDNN support does not change while the process runs.
_MKLDNN = torch.backends.mkldnn.is_available()


class PackedConv2d(nn.Conv2d):
    """``relu(conv(x))`` (or ``conv(x)``) with the weight reordered once for oneDNN.

    Built from an existing convolution (copied, not shared). Same parameters and
    ``state_dict`` as ``nn.Conv2d``; the packed copies are a cache, not state: they are
    rebuilt when the weight changes (``.to()``, ``load_state_dict``) and are not saved.
    The cache costs one extra copy of the weights per input shape.

    Shapes: (N, C_in, H, W) -> (N, C_out, H', W'), as ``nn.Conv2d``.
    """

    def __init__(self, conv: nn.Conv2d, relu: bool = False) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.relu = relu
        self._packable = (
            _MKLDNN and self.padding_mode == "zeros" and not isinstance(self.padding, str)
        )
        self._packed: dict[tuple[Any, ...], Tensor] = {}
        # Padding, stride and dilation as the lists the oneDNN ops take, built once.
        self._geometry = (list(self.padding), list(self.stride), list(self.dilation))

    def forward(self, x: Tensor) -> Tensor:
        if self._packable and direct_call_allowed(x, self.weight):
            padding, stride, dilation = self._geometry
            return torch.ops.mkldnn._convolution_pointwise(
                x,
                self._packed_weight(x),
                self.bias,
                padding,
                stride,
                dilation,
                self.groups,
                "relu" if self.relu else "none",
                [],
                "",
            )
        out = super().forward(x)
        return F.relu(out, inplace=True) if self.relu else out

    def _packed_weight(self, x: Tensor) -> Tensor:
        key = (x.shape, *tensor_version(self.weight))  # edited weights are repacked
        packed = self._packed.get(key)
        if packed is None:
            if len(self._packed) >= _MAX_SHAPES:
                self._packed.clear()
            padding, stride, dilation = self._geometry
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight.detach(), padding, stride, dilation, self.groups, list(x.shape)
            )
            self._packed[key] = packed
        return packed

    def __getstate__(self) -> dict[str, Any]:
        # The packed copies are opaque oneDNN tensors: a cache, never copied or pickled.
        state = self.__dict__.copy()
        state["_packed"] = {}
        return state

    def extra_repr(self) -> str:
        return super().extra_repr() + (", fused ReLU" if self.relu else "")
