"""Run a dense block as a flat loop of tensor operations, planned once per input shape.

A bottleneck layer of :class:`~densenet_edu.fast.FastDenseBlock` does four things: clamp
what it reads (the folded ``norm1`` + ReLU), a 1x1 convolution with ReLU (``conv1`` with
``norm2`` folded in), a 3x3 convolution (``conv2``), and a write into the block buffer.
At batch 1 the last two blocks of DenseNet-121 do that on 14 x 14 and 7 x 7 maps, where
the arithmetic takes 100-300 us per layer and what surrounds it costs as much again:
module calls, the same eligibility checks per convolution, views and reshapes built
again for every layer, and PyTorch's wrapper around oneDNN building the 3x3
convolution's descriptors anew on each call (about 50 us at 7 x 7). A :class:`BlockPlan`
does all of that once per input shape and then runs, per layer, five ATen calls writing
into tensors it allocated for the call::

    clamp(buffer[:, :c_l], lo, hi)  -> z          (N*H*W, c_l)   the folded norm1 + ReLU
    addmm(b1, z, W1^T)              -> y          (N*H*W, 4k)    conv1, norm2 folded in
    relu(y) into a zero-padded map  -> y_pad      (N, H+2, W+2, 4k)
    3x3 windows of y_pad            -> columns    (N*H*W, 9*4k)  "im2col": one copy
    columns @ W2^T                  -> buffer[:, c_l : c_l + k]  conv2, written in place

The last step writes the layer's k new maps straight into their channels of the block
buffer: ``mm`` with an ``out=`` view whose rows are the buffer's pixels. On large maps
(more than :data:`IM2COL_MAX_PIXELS` pixels per call) oneDNN's 3x3 convolution is
faster than the column matrix product, and the plan calls it (through
:class:`~densenet_edu.onednn.PackedConv2d`, prepacked) and copies its output into place.
Measured per layer and on the whole model: ``benchmarks/README.md``.

Where oneDNN's C API can be called (:mod:`densenet_edu.onednn_primitives`: the
``onednn-cpu-gomp`` wheel on Linux x86-64), the plan runs both convolutions of each layer
as oneDNN primitives it set up once, the ReLU fused into the first, so a layer is::

    clamp(buffer[:, :c_l], lo, hi)  -> z          the folded norm1 + ReLU (ATen)
    conv1 primitive: relu(W1 z + b1) -> y          1x1, NHWC, weights prepacked
    conv2 primitive: W2 * y          -> new        3x3, NHWC, weights prepacked
    copy new into buffer[:, c_l : c_l + k]

Each primitive call skips the setup PyTorch's path repeats per call (50-150 us per layer at
batch 1). Such a plan owns its scratch tensors (the primitives are bound to them), so its
calls take turns (a lock), and it holds its own reordered copy of the weights: it is built
again when a weight is edited in place (its version counter moves) or replaced, and when
``torch.set_num_threads`` changed the thread count it was built for.

Otherwise every call allocates its own buffer and scratch tensors, so the block's output
is never overwritten by a later call and two threads may share the model. What the plan
keeps is only what depends on the weights and the shape: views of the parameters in the
layout each call needs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from densenet_edu import onednn_primitives
from densenet_edu.matmul_conv import MatmulConv1x1
from densenet_edu.onednn import PackedConv2d, direct_call_allowed, tensor_version
from densenet_edu.preactivation import PreActivationClamp

__all__ = ["IM2COL_MAX_PIXELS", "BlockPlan", "BlockPlans", "plannable"]

# Plans kept per dense block: one per input shape seen (batch chunks make a few shapes).
_MAX_SHAPES = 4

#: Up to this many pixels per call (N * H * W) a 3x3 convolution runs as one column
#: matrix product; above it, through oneDNN. Measured for 128 -> 32 channels at batch 1:
#: 7 x 7 (49 pixels) 49 vs 110 us, 14 x 14 (196) 129 vs 168 us, 28 x 28 (784) 537 vs
#: 416 us, 56 x 56 (3136) 2.53 vs 1.46 ms.
IM2COL_MAX_PIXELS = 256


def _is_plain_3x3(conv: nn.Module) -> bool:
    """A bias-free 3x3 convolution, stride 1, zero padding 1, one group: a DenseNet conv2."""
    return (
        isinstance(conv, PackedConv2d)
        and not conv.relu
        and conv.bias is None
        and conv.padding_mode == "zeros"
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.padding) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
    )


def plannable(layers: Sequence[nn.Module]) -> bool:
    """Can a :class:`BlockPlan` run these fast dense layers?

    Yes for bottleneck layers (DenseNet-B, -BC) whose ``norm1`` folded into ``conv1``
    (a clamp before a 1x1 convolution with bias and ReLU) and whose ``conv2`` is a
    DenseNet 3x3 convolution, all of one width. Plain layers (a 3x3 ``conv1``) are not.
    """
    if not layers:
        return False
    for layer in layers:
        conv1, conv2 = layer.conv1, getattr(layer, "conv2", None)
        if not (
            isinstance(layer.preactivation, PreActivationClamp)
            and isinstance(conv1, MatmulConv1x1)
            and conv1.relu
            and conv1.bias is not None
            and _is_plain_3x3(conv2)
        ):
            return False
    widths = {(layer.conv1.out_channels, layer.growth_rate) for layer in layers}
    return len(widths) == 1


class BlockPlan:
    """A dense block's forward for one input shape (N, C_in, H, W), NHWC, without autograd.

    Args:
        layers: the block's fast dense layers (:func:`plannable` must hold).
        shape: the input shape the plan is for; C_in is the first layer's input width.

    Calling it with a tensor of that shape returns a new (N, C_out, H, W) channels_last
    tensor, the same as the block's module path (up to float rounding: the 3x3
    convolution may sum in another order).
    """

    def __init__(self, layers: Sequence[nn.Module], shape: torch.Size):
        n, _, h, w = shape
        self.shape = tuple(shape)
        self.in_channels = layers[0].in_channels
        self.out_channels = self.in_channels + sum(layer.growth_rate for layer in layers)
        self.pixels = n * h * w
        self.growth_rate = layers[0].growth_rate
        self.bottleneck = layers[0].conv1.out_channels  # 4k in the paper
        self.max_reads = max(layer.in_channels for layer in layers)
        # The column product reads conv2's weights in place, which needs them channels_last
        # (as FastDenseNet stores them); a copy would miss later in-place edits.
        self.im2col = self.pixels <= IM2COL_MAX_PIXELS and all(
            layer.conv2.weight.is_contiguous(memory_format=torch.channels_last) for layer in layers
        )
        self.primitives = _PrimitiveLayers.build(layers, shape)
        # ATen's route, where the primitives cannot run.
        self.steps = [self._step(layer) for layer in layers] if self.primitives is None else []

    def stale(self) -> bool:
        """Must the plan be built again? Only one holding oneDNN's copies of the weights."""
        return self.primitives is not None and self.primitives.stale()

    def _step(self, layer: nn.Module) -> tuple:
        conv1, conv2 = layer.conv1, layer.conv2
        # Views of the parameters (no copies: in-place edits such as load_state_dict
        # are seen). conv1's weight (4k, c_l, 1, 1) is W1; addmm reads its transpose.
        weight1_t = conv1.weight.view(conv1.out_channels, -1).t()
        if self.im2col:
            # conv2's channels_last weight is (k, 3, 3, 4k) in memory: the rows of W2,
            # in the column order of the 3x3 windows, (dy, dx, channel).
            conv2_arg = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.out_channels, -1).t()
        else:
            conv2_arg = conv2
        lo, hi = layer.preactivation.lo.view(-1), layer.preactivation.hi.view(-1)
        return layer.in_channels, lo, hi, conv1.bias, weight1_t, conv2_arg

    def __call__(self, x: Tensor) -> Tensor:
        n, _, h, w = self.shape
        pixels, k, width = self.pixels, self.growth_rate, self.bottleneck
        like = {"dtype": x.dtype, "device": x.device}
        buffer = torch.empty(
            (n, self.out_channels, h, w), memory_format=torch.channels_last, **like
        )
        buffer[:, : self.in_channels].copy_(x)
        rows = buffer.permute(0, 2, 3, 1).view(pixels, self.out_channels)  # pixels x channels
        new_maps = rows[:, self.in_channels :].split(k, dim=1)  # each layer's k columns
        if self.primitives is not None:
            self.primitives(rows, new_maps)
            return buffer
        clamped = torch.empty(pixels * self.max_reads, **like)
        bottleneck = torch.empty((pixels, width), **like)
        if self.im2col:
            padded = torch.zeros((n, h + 2, w + 2, width), **like)  # the border stays 0
            inside = padded[:, 1 : h + 1, 1 : w + 1]
            s = padded.stride()
            windows = padded.as_strided((n, h, w, 3, 3, width), (s[0], s[1], s[2], s[1], s[2], 1))
            columns = torch.empty((pixels, 9 * width), **like)
            columns_6d = columns.view(n, h, w, 3, 3, width)
        else:
            bottleneck_nchw = bottleneck.view(n, h, w, width).permute(0, 3, 1, 2)
        for (reads, lo, hi, bias1, weight1_t, conv2), out in zip(self.steps, new_maps, strict=True):
            z = clamped[: pixels * reads].view(pixels, reads)
            torch.clamp(rows[:, :reads], lo, hi, out=z)
            torch.addmm(bias1, z, weight1_t, out=bottleneck)
            if self.im2col:
                torch.clamp_min(bottleneck.view(n, h, w, width), 0, out=inside)  # the ReLU
                columns_6d.copy_(windows)
                torch.mm(columns, conv2, out=out)
            else:
                bottleneck.relu_()
                out.view(n, h, w, k).copy_(conv2(bottleneck_nchw).permute(0, 2, 3, 1))
        return buffer


class _PrimitiveLayers:
    """Each layer's two convolutions as oneDNN primitives bound to scratch tensors owned
    here (see the module docstring); :meth:`build` returns None where they cannot run."""

    def __init__(self, layers: Sequence[nn.Module], shape: torch.Size) -> None:
        n, _, h, w = shape
        pixels, width, k = n * h * w, layers[0].conv1.out_channels, layers[0].growth_rate
        self.parameters = [p for layer in layers for p in _plan_parameters(layer)]
        self.version = _versions(self.parameters)
        # oneDNN splits a primitive's work for the thread count it was built under.
        self.threads = torch.get_num_threads()
        self.lock = threading.Lock()
        clamped = torch.empty(pixels * max(layer.in_channels for layer in layers))
        bottleneck = _nhwc((n, width, h, w))
        self.new = _nhwc((n, k, h, w))
        self.new_rows = self.new.permute(0, 2, 3, 1).view(pixels, k)
        self.steps = []
        for layer in layers:
            reads = layer.in_channels
            z = clamped[: pixels * reads].view(n, h, w, reads)
            conv1 = onednn_primitives.Convolution(
                z.permute(0, 3, 1, 2), layer.conv1.weight, layer.conv1.bias, bottleneck, 0, True
            )
            conv2 = onednn_primitives.Convolution(bottleneck, layer.conv2.weight, None, self.new, 1)
            lo, hi = layer.preactivation.lo.view(-1), layer.preactivation.hi.view(-1)
            self.steps.append((reads, lo, hi, z.view(pixels, reads), conv1, conv2))
        self.implementations = {c.implementation for step in self.steps for c in step[-2:]}

    @classmethod
    def build(cls, layers: Sequence[nn.Module], shape: torch.Size) -> _PrimitiveLayers | None:
        if not onednn_primitives.available():  # (BlockPlans builds plans for float32 CPU)
            return None
        primitives = cls(layers, shape)
        # oneDNN's reference kernels are far slower than ATen's operators.
        if any(name.startswith("ref") for name in primitives.implementations):
            return None
        return primitives

    def stale(self) -> bool:
        return torch.get_num_threads() != self.threads or _versions(self.parameters) != self.version

    def __call__(self, rows: Tensor, new_maps: Sequence[Tensor]) -> None:
        with self.lock:  # the primitives share this object's scratch tensors
            for (reads, lo, hi, z, conv1, conv2), out in zip(self.steps, new_maps, strict=True):
                torch.clamp(rows[:, :reads], lo, hi, out=z)
                conv1()
                conv2()
                out.copy_(self.new_rows)


def _plan_parameters(layer: nn.Module) -> tuple[Tensor, ...]:
    """The tensors a primitive plan copied (weights) or bound (bias) when it was built."""
    return layer.conv1.weight, layer.conv1.bias, layer.conv2.weight


def _versions(tensors: Sequence[Tensor]) -> tuple[tuple[int, int], ...]:
    return tuple(tensor_version(t) for t in tensors)


def _nhwc(shape: tuple[int, int, int, int]) -> Tensor:
    return torch.empty(shape, memory_format=torch.channels_last)


class BlockPlans:
    """A dense block's plans, one per input shape seen (a few at most): a cache, not state.

    ``get(x)`` returns the plan for ``x`` (whose shape the block has checked), or ``None``
    where the block's module path must run: layers a plan cannot run (:func:`plannable`),
    a channels-first buffer, and whatever ``F.conv2d`` must see (autograd, another device
    or dtype, a graph being traced, compiled or exported;
    :func:`~densenet_edu.onednn.direct_call_allowed`).
    """

    def __init__(self, layers: nn.ModuleList, enabled: bool = True):
        self.layers = layers
        self.enabled = enabled and plannable(layers)
        self.plans: dict[torch.Size, BlockPlan] = {}

    def get(self, x: Tensor) -> BlockPlan | None:
        if not self.enabled or not direct_call_allowed(x, self.layers[0].conv1.weight):
            return None
        plan = self.plans.get(x.shape)
        if plan is None or plan.stale():
            if len(self.plans) >= _MAX_SHAPES:
                self.plans.clear()
            plan = self.plans[x.shape] = BlockPlan(self.layers, x.shape)
        return plan

    def clear(self) -> None:
        self.plans.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Views of the parameters: never copied or pickled; a copy builds its own.
        return {**self.__dict__, "plans": {}}
