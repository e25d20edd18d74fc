"""A fast, inference-only DenseNet: folded BatchNorms and one preallocated buffer per block.

:func:`optimize_for_inference` turns a trained DenseNet (``densenet_edu`` or torchvision)
into a :class:`FastDenseNet` that computes the same function in eval mode with less work:

1. **BatchNorm folding.** In eval mode a BatchNorm is a fixed per-channel affine map
   ``y = gamma * (x - mean) / sqrt(var + eps) + beta``. When it *follows* a convolution
   (``conv0 -> norm0``, and ``conv1 -> norm2`` in a bottleneck layer) it can be merged
   into that convolution::

       w' = w * gamma / sqrt(var + eps)          (scales each output channel's filter)
       b' = beta - gamma * mean / sqrt(var + eps)

   so one pass over the feature map disappears. A BatchNorm that *precedes* a convolution
   with a ReLU in between (``norm1``, a transition's ``norm``) cannot be folded whole, but
   when that convolution is 1x1 its scale and shift can: ``relu(s * x + t)`` is
   ``s * clamp(x, lo, hi) + t``, and only the clamp stays (:mod:`densenet_edu.preactivation`).
   ``norm5`` and the ``norm1`` of a DenseNet without bottlenecks (before a 3x3 convolution,
   whose zero padding the fold would break) stay a precomputed per-channel scale and shift.
2. **A preallocated block buffer.** Eq. 2 of the paper, ``x_l = H_l([x_0, ..., x_{l-1}])``,
   is usually written with ``torch.cat``, which copies every earlier feature map again for
   every layer: quadratic in depth. Here each block allocates one tensor of its final width;
   layer l reads the first ``c_l`` channels (a view, no copy) and writes its ``k`` new maps
   right after them. Each feature map is written once: linear in depth (Pleiss et al.,
   2017, use the same idea to save memory in training).
3. **Pool before the transition's 1x1 convolution.** A 1x1 convolution and a 2x2 average
   pool are both linear and act on different axes (channels vs pixels), so they commute:
   pooling first runs the convolution on a quarter of the pixels.
4. **channels_last** by default: a 1x1 convolution is then one matrix product over the
   pixels (:class:`~densenet_edu.matmul_conv.MatmulConv1x1`); other convolutions call
   oneDNN with prepacked weights (:class:`~densenet_edu.onednn.PackedConv2d`); and a
   bottleneck block runs as one flat loop planned once per input shape
   (:mod:`densenet_edu.block_plan`): each layer's two convolutions as oneDNN primitives
   set up once and called through oneDNN's C API where its wheel is installed
   (:mod:`densenet_edu.onednn_primitives`; ``pip install onednn-cpu-gomp``, Linux
   x86-64), otherwise ATen calls with its small 3x3 convolutions as matrix products.

The fast model is for inference only: it has no BatchNorm statistics to update and no
dropout. It may still sit in a container that is switched to training mode
(``nn.Sequential(fast, head).train()``): in train mode it computes exactly what it computes
in eval mode (the source model's eval-mode function), updates no statistics, and its
weights stay frozen (``requires_grad=False``); gradients still flow through it to its input.
It checks its input as the eager model does (``densenet_edu.inputs.check_images``), traces
with ``torch.fx`` and exports with ``torch.export`` / :func:`densenet_edu.export_onnx`;
``torch.jit.script`` is refused with the routes that work.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu import fast_reading as reading
from densenet_edu.batch_chunks import run_in_chunks, segments
from densenet_edu.block_plan import BlockPlans
from densenet_edu.errors import NotScriptableError, check_feature_maps
from densenet_edu.inputs import check_images
from densenet_edu.matmul_conv import MatmulConv1x1, is_pointwise
from densenet_edu.onednn import PackedConv2d, traced
from densenet_edu.preactivation import (
    ScaleShiftReLU,
    pool_keeps_constants,
    preactivation_before,
)

__all__ = ["FastDenseBlock", "FastDenseNet", "fold_batchnorm", "optimize_for_inference"]


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``norm(conv(x))`` with ``norm`` in eval mode.

    ``w' = w * gamma / sqrt(var + eps)``, ``b' = beta + (b - mean) * gamma / sqrt(var + eps)``
    (``b = 0`` for the bias-free convolutions of DenseNet). Computed in float64, then
    cast back, so folding adds no rounding error of its own.

    Shapes: ``conv`` maps (N, C_in, H, W) -> (N, C_out, H', W'); ``norm`` has C_out channels.
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(norm, nn.BatchNorm2d):
        raise TypeError(
            "fold_batchnorm expects an nn.Conv2d followed by an nn.BatchNorm2d, got "
            f"{type(conv).__name__} and {type(norm).__name__}"
        )
    if norm.num_features != conv.out_channels:
        raise ValueError(
            f"the BatchNorm has {norm.num_features} channels but the convolution outputs "
            f"{conv.out_channels}"
        )
    scale, shift = reading.bn_scale_shift(norm)
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        folded.weight.copy_(weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_(bias * scale + shift)
    return folded


class _FastDenseLayer(nn.Module):
    """One dense layer H_l, eval only: pre-activation, conv1 (+ folded norm2 + ReLU), conv2.

    With a bottleneck, norm1 + ReLU fold into the 1x1 conv1 and leave a clamp
    (:mod:`densenet_edu.preactivation`); conv1 runs as one matrix product
    (:class:`~densenet_edu.matmul_conv.MatmulConv1x1`) and conv2 through oneDNN with
    prepacked weights (:class:`~densenet_edu.onednn.PackedConv2d`). Without a bottleneck
    (a 3x3 conv1 sees padding, so the fold would be wrong at the border) norm1 + ReLU
    stay a scale-shift-ReLU pass.

    Shapes: reads (N, c_l, H, W), returns its k new maps (N, k, H, W).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.in_channels = layer.norm1.num_features
        self.conv2: nn.Module | None = None
        if hasattr(layer, "norm2"):
            reading.fused_activation(layer.norm2, "a dense layer's norm2")
            conv1 = fold_batchnorm(layer.conv1, layer.norm2)
            self.preactivation, conv1 = preactivation_before(layer.norm1, conv1)
            self.conv1 = _conv(conv1, relu=True)
            self.conv2 = PackedConv2d(layer.conv2)
            self.growth_rate = layer.conv2.out_channels
        else:  # plain DenseNet (no bottleneck): BN-ReLU-3x3 conv only
            self.preactivation = ScaleShiftReLU(layer.norm1)
            self.conv1 = PackedConv2d(layer.conv1)
            self.growth_rate = layer.conv1.out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.preactivation(x))  # conv1 applies the ReLU of norm2 itself
        if self.conv2 is not None:
            out = self.conv2(out)
        return out


def _conv(conv: nn.Conv2d, relu: bool = False) -> nn.Conv2d:
    """The fastest exact CPU route for ``conv``: a matrix product for 1x1, else oneDNN."""
    return MatmulConv1x1(conv, relu) if is_pointwise(conv) else PackedConv2d(conv, relu)


def _block_buffer(x: Tensor, channels: int, channels_last: bool) -> Tensor:
    """An uninitialised (N, channels, H, W) tensor like ``x``: a dense block's output buffer."""
    n, _, h, w = x.shape
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(
        (n, channels, h, w), dtype=x.dtype, device=x.device, memory_format=memory_format
    )


def _write_maps(buffer: Tensor, maps: Tensor, start: int) -> Tensor:
    """Write ``maps`` into ``buffer``'s channels from ``start`` on; return the buffer."""
    buffer[:, start : start + maps.shape[1]].copy_(maps)
    return buffer


# torch.fx records a call of each as one node: a proxy has no shape to allocate a buffer
# with, and returning the buffer from every write makes the data flow explicit.
torch.fx.wrap("_block_buffer")
torch.fx.wrap("_write_maps")


class FastDenseBlock(nn.Module):
    """An eval-only dense block writing into one preallocated buffer (Eq. 2 without ``torch.cat``).

    The block allocates a tensor of its final width once; layer l reads the first
    ``c_l`` channels (a view, no copy) and writes its k new maps right after them, so
    every feature map is written once: linear in depth, where concatenating in every
    layer copies quadratically many bytes. Each layer's BatchNorm after ``conv1`` is
    folded into it (:func:`fold_batchnorm`); the one before it folds into a 1x1 ``conv1``
    too, leaving a clamp. Such bottleneck blocks, in NHWC on the CPU without autograd,
    run as a :class:`~densenet_edu.block_plan.BlockPlan`: the same computation, one loop.

    Args:
        block: a dense block of ``densenet_edu`` (:class:`densenet_edu.DenseBlock`) or
            torchvision; it is copied, not modified, and its BatchNorm running
            statistics are used.
        channels_last: allocate the buffer in NHWC order (``FastDenseNet`` does this
            and converts its weights to match).

    Shapes: (N, c_0, H, W) -> (N, c_0 + L * k, H, W).
    """

    def __init__(self, block: nn.Module, channels_last: bool = False) -> None:
        super().__init__()
        if not isinstance(block, nn.Module) or not reading.is_dense_block(block):
            raise TypeError(
                "FastDenseBlock expects a dense block (a module whose children are dense "
                f"layers with norm1 and conv1), got {type(block).__name__}"
            )
        self.channels_last = channels_last
        self.layers = nn.ModuleList(_FastDenseLayer(layer) for layer in reading.dense_layers(block))
        self.in_channels = self.layers[0].in_channels
        self.out_channels = self.in_channels + sum(layer.growth_rate for layer in self.layers)
        self._plans = BlockPlans(self.layers, enabled=channels_last)

    def forward(self, x: Tensor) -> Tensor:
        check_feature_maps([x], self.in_channels, type(self).__name__)  # the eager block's
        if self._autograd_records(x):  # Eq. 2 as written: backward needs every input intact
            for layer in self.layers:
                x = torch.cat([x, layer(x)], dim=1)
            return x
        plan = self._plans.get(x)
        if plan is not None:  # the same computation as below, as one flat loop
            return plan(x)
        buffer = _write_maps(_block_buffer(x, self.out_channels, self.channels_last), x, 0)
        end = self.in_channels
        for layer in self.layers:
            # buffer[:, :end] is a view: layer l reads every earlier map without a copy.
            buffer = _write_maps(buffer, layer(buffer[:, :end]), end)
            end += layer.growth_rate
        return buffer

    def _autograd_records(self, x: Tensor) -> bool:
        """Does a gradient flow to ``x`` or to a weight? Then nothing may be written in place."""
        if isinstance(x, torch.fx.Proxy) or not torch.is_grad_enabled():
            return False
        return x.requires_grad or any(p.requires_grad for p in self.parameters())

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        self._plans.clear()  # plans hold views of the parameters, which .to() replaces
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._plans.clear()  # so does load_state_dict(..., assign=True)
        super()._load_from_state_dict(*args, **kwargs)


class _FastTransition(nn.Module):
    """BN-ReLU, then the 2x2 average pool *before* the 1x1 conv (they commute; 4x fewer pixels).

    norm + ReLU fold into the 1x1 convolution through the pool (the pool is linear and
    keeps a constant channel constant), leaving a clamp before the pool.

    Shapes: (N, C, H, W) -> (N, floor(theta * C), H // 2, W // 2).
    """

    def __init__(self, transition: nn.Module) -> None:
        super().__init__()
        self.pool = copy.deepcopy(transition.pool)
        if pool_keeps_constants(self.pool):
            self.preactivation, conv = preactivation_before(transition.norm, transition.conv)
        else:
            self.preactivation, conv = ScaleShiftReLU(transition.norm), transition.conv
        self.conv = _conv(conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(self.preactivation(x)))


class FastDenseNet(nn.Module):
    """An inference-only DenseNet built by :func:`optimize_for_inference`.

    Shapes: (N, C_in, H, W) -> (N, num_classes) (or whatever the source's classifier
    returns), the same function as the source model in eval mode (float32 relative error
    around 1e-6).
    """

    def __init__(self, model: nn.Module, channels_last: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(*_fast_stages(model.features, channels_last))
        self.classifier = copy.deepcopy(model.classifier).eval()
        self.channels_last = channels_last
        for p in self.parameters():
            p.requires_grad_(False)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        # What the input checks read (first conv: channels, dtype, device; then every
        # size-changing layer): kept as a plain attribute, not a registered submodule,
        # so the state_dict has no duplicate; the conv is shared, so .to() moves it too.
        self.__dict__["_geometry"] = nn.Sequential(*_geometry(self.features))
        # The same stages grouped for running a large batch in chunks (plain attribute too).
        self.__dict__["_segments"] = segments(
            list(self.features), lambda stage: isinstance(stage, FastDenseBlock)
        )
        super().train(False)

    @property
    def in_channels(self) -> int:
        """Channels of the input images (the first convolution's)."""
        return reading.first_conv(self).in_channels

    def forward(self, x: Tensor) -> Tensor:
        # The eager model's checks and messages (rank, channels, size, dtype, device), once
        # per call; skipped while torch.fx / torch.jit.trace trace.
        check_images(x, self._geometry, type(self).__name__, training=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if traced(x):  # a graph sees the stages once, on the whole batch
            out = self.features(x)  # norm5 + ReLU are the last stage
        else:  # a large batch runs in chunks that stay in the CPU's cache
            out = run_in_chunks(self._segments, x)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.classifier(out)

    def train(self, mode: bool = True) -> FastDenseNet:
        """Set the mode flag (so containers can switch it); the computation never changes.

        In train mode the model still computes its source's *eval-mode* function: it has
        no BatchNorm statistics to update, its submodules (a custom head's dropout too)
        stay in eval mode, and its weights are frozen. To train, train the source model
        and call :func:`optimize_for_inference` again.
        """
        self.training = bool(mode)  # the flag only: every submodule stays in eval mode
        return self

    def __prepare_scriptable__(self) -> NoReturn:
        # torch.jit.script calls this first: refuse with the routes that work.
        raise NotScriptableError(type(self).__name__)


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> FastDenseNet:
    """Return an eval-only copy of a DenseNet that computes the same outputs, faster.

    Args:
        model: a :class:`densenet_edu.DenseNet`, a ``torchvision.models.DenseNet`` or
            timm's ``densenet121`` (any depth, ImageNet or CIFAR stem, with or without
            bottlenecks, any ``classifier`` module applied to the pooled features, such
            as ``nn.Identity()`` for a backbone). It is not modified; its BatchNorm
            running statistics are used, whatever its mode.
        channels_last: store weights and activations in NHWC order (faster with oneDNN
            on CPU and with tensor cores on GPU).

    Returns:
        A :class:`FastDenseNet`, on the model's device and dtype, already in eval mode.

    Raises:
        TypeError: if ``model`` is not a DenseNet this function can convert exactly; the
            message says which part it could not convert.
    """
    reading.check_densenet(model)
    return FastDenseNet(model, channels_last=channels_last)


def _fast_stages(features: nn.Sequential, channels_last: bool) -> list[nn.Module]:
    """The fast equivalent of each stage of a DenseNet's ``features``, in order."""
    stages: list[nn.Module] = []
    children = list(features.named_children())
    i = 0
    while i < len(children):
        name, module = children[i]
        following = children[i + 1][1] if i + 1 < len(children) else None
        if isinstance(module, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            # The stem: conv0 + norm0 folded, and the ReLU after them fused in (relu0, or
            # the ReLU inside timm's norm0, a BatchNorm with its activation).
            relu = reading.fused_activation(following, f"features.{children[i + 1][0]}")
            after = children[i + 2][1] if i + 2 < len(children) else None
            separate_relu = not relu and isinstance(after, nn.ReLU)
            stages.append(PackedConv2d(fold_batchnorm(module, following), relu or separate_relu))
            i += 3 if separate_relu else 2
            continue
        if reading.is_dense_block(module):
            stages.append(FastDenseBlock(module, channels_last))
        elif reading.is_transition(module):
            stages.append(_FastTransition(module))
        elif isinstance(module, nn.BatchNorm2d):  # norm5: BN-ReLU before pooling
            stages.append(ScaleShiftReLU(module))
        elif isinstance(module, nn.Conv2d):  # the CIFAR stem: one convolution, no norm
            stages.append(PackedConv2d(module))
        elif isinstance(module, (nn.ReLU, nn.MaxPool2d, nn.Identity)):
            stages.append(copy.deepcopy(module))
        else:
            raise TypeError(
                f"optimize_for_inference does not know how to convert features.{name} "
                f"({type(module).__name__}) exactly"
            )
        i += 1
    if not isinstance(stages[-1], ScaleShiftReLU):
        raise TypeError("expected the DenseNet's features to end with a BatchNorm (norm5)")
    return stages


def _geometry(features: nn.Sequential) -> Iterator[nn.Module]:
    """The first convolution, then every layer that changes the spatial size, in order."""
    for stage in features:
        if isinstance(stage, (nn.Conv2d, nn.MaxPool2d)):
            yield stage
        elif isinstance(stage, _FastTransition):
            yield stage.pool
