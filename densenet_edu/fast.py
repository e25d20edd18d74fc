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
   with a ReLU in between (``norm1``, a transition's ``norm``, ``norm5``) cannot be folded;
   it stays, as a precomputed per-channel scale and shift.
2. **A preallocated block buffer.** Eq. 2 of the paper, ``x_l = H_l([x_0, ..., x_{l-1}])``,
   is usually written with ``torch.cat``, which copies every earlier feature map again for
   every layer: quadratic in depth. Here each block allocates one tensor of its final width;
   layer l reads the first ``c_l`` channels (a view, no copy) and writes its ``k`` new maps
   right after them. Each feature map is written once: linear in depth (Pleiss et al.,
   2017, use the same idea to save memory in training).
3. **Pool before the transition's 1x1 convolution.** A 1x1 convolution and a 2x2 average
   pool are both linear and act on different axes (channels vs pixels), so they commute:
   pooling first runs the convolution on a quarter of the pixels.
4. **channels_last** memory format by default, which oneDNN's CPU convolutions prefer.

The fast model is for inference only: it has no BatchNorm statistics to update and no
dropout, so ``.train()`` raises :class:`RuntimeError`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    scale, shift = _bn_scale_shift(norm)
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


class _ScaleShiftReLU(nn.Module):
    """``relu(x * scale + shift)`` per channel: an eval-mode BatchNorm followed by a ReLU.

    Shapes: (N, C, H, W) -> (N, C, H, W); ``scale``, ``shift``: (1, C, 1, 1).
    """

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        scale, shift = _bn_scale_shift(norm)
        dtype = norm.running_mean.dtype
        # Shaped (1, C, 1, 1) to broadcast over (N, C, H, W) in any memory format.
        self.register_buffer("scale", scale.to(dtype).view(1, -1, 1, 1))
        self.register_buffer("shift", shift.to(dtype).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        # addcmul is one vectorised pass that also reads a strided view of the block
        # buffer efficiently (F.batch_norm was slower on such views in our measurements).
        return F.relu_(torch.addcmul(self.shift, x, self.scale))


class _FastDenseLayer(nn.Module):
    """One dense layer H_l, eval only: scale-shift-ReLU, conv1 (+ folded norm2), ReLU, conv2.

    Shapes: reads (N, c_l, H, W), returns its k new maps (N, k, H, W).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.norm_relu1 = _ScaleShiftReLU(layer.norm1)
        self.in_channels = layer.norm1.num_features
        if hasattr(layer, "norm2"):
            self.conv1 = fold_batchnorm(layer.conv1, layer.norm2)
            self.conv2: nn.Conv2d | None = copy.deepcopy(layer.conv2)
            self.growth_rate = layer.conv2.out_channels
        else:  # plain DenseNet (no bottleneck): BN-ReLU-3x3 conv only
            self.conv1 = copy.deepcopy(layer.conv1)
            self.conv2 = None
            self.growth_rate = layer.conv1.out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.norm_relu1(x))
        if self.conv2 is not None:
            out = self.conv2(F.relu_(out))
        return out


class FastDenseBlock(nn.Module):
    """An eval-only dense block writing into one preallocated buffer (Eq. 2 without ``torch.cat``).

    The block allocates a tensor of its final width once; layer l reads the first
    ``c_l`` channels (a view, no copy) and writes its k new maps right after them, so
    every feature map is written once: linear in depth, where concatenating in every
    layer copies quadratically many bytes. Each layer's BatchNorm after ``conv1`` is
    folded into it (:func:`fold_batchnorm`), the one before it is a fixed scale and shift.

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
        if not isinstance(block, nn.Module) or not _is_dense_block(block):
            raise TypeError(
                "FastDenseBlock expects a dense block (a module whose children are dense "
                f"layers with norm1 and conv1), got {type(block).__name__}"
            )
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.layers = nn.ModuleList(_FastDenseLayer(layer) for layer in _dense_layers(block))
        self.in_channels = self.layers[0].in_channels
        self.out_channels = self.in_channels + sum(layer.growth_rate for layer in self.layers)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        buffer = torch.empty(
            (n, self.out_channels, h, w),
            dtype=x.dtype,
            device=x.device,
            memory_format=self.memory_format,
        )
        buffer[:, : self.in_channels].copy_(x)
        end = self.in_channels
        for layer in self.layers:
            # buffer[:, :end] is a view: layer l reads every earlier map without a copy.
            new = layer(buffer[:, :end])
            buffer[:, end : end + layer.growth_rate].copy_(new)
            end += layer.growth_rate
        return buffer


class _FastTransition(nn.Module):
    """BN-ReLU, then the 2x2 average pool *before* the 1x1 conv (they commute; 4x fewer pixels).

    Shapes: (N, C, H, W) -> (N, floor(theta * C), H // 2, W // 2).
    """

    def __init__(self, transition: nn.Module) -> None:
        super().__init__()
        self.norm_relu = _ScaleShiftReLU(transition.norm)
        self.conv = copy.deepcopy(transition.conv)
        self.pool = copy.deepcopy(transition.pool)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(self.norm_relu(x)))


class FastDenseNet(nn.Module):
    """An inference-only DenseNet built by :func:`optimize_for_inference`.

    Shapes: (N, C_in, H, W) -> (N, num_classes), the same function as the source model
    in eval mode (float32 relative error around 1e-6).
    """

    def __init__(self, model: nn.Module, channels_last: bool = True) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        children = list(model.features.named_children())
        i = 0
        while i < len(children):
            name, module = children[i]
            following = children[i + 1][1] if i + 1 < len(children) else None
            if isinstance(module, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
                stages.append(fold_batchnorm(module, following))
                i += 2
                continue
            if _is_dense_block(module):
                stages.append(FastDenseBlock(module, channels_last))
            elif _is_transition(module):
                stages.append(_FastTransition(module))
            elif isinstance(module, nn.BatchNorm2d):  # norm5: BN-ReLU before pooling
                stages.append(_ScaleShiftReLU(module))
            elif isinstance(module, (nn.Conv2d, nn.ReLU, nn.MaxPool2d)):
                stages.append(copy.deepcopy(module))
            else:
                raise TypeError(
                    f"optimize_for_inference does not know how to convert features.{name} "
                    f"({type(module).__name__})"
                )
            i += 1
        if not isinstance(stages[-1], _ScaleShiftReLU):
            raise TypeError("expected the DenseNet's features to end with a BatchNorm (norm5)")
        self.features = nn.Sequential(*stages)
        self.classifier = copy.deepcopy(model.classifier)
        self.in_channels = _first_conv(model).in_channels
        self.channels_last = channels_last
        for p in self.parameters():
            p.requires_grad_(False)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"FastDenseNet expects a tensor (N, {self.in_channels}, H, W), got {got}"
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # norm5 + ReLU are the last stage of self.features; then pool and classify.
        out = self.features(x)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.classifier(out)

    def train(self, mode: bool = True) -> FastDenseNet:
        """Only ``train(False)``/``eval()`` is allowed: the model has no BatchNorm left to train."""
        if mode:
            raise RuntimeError(
                "FastDenseNet is inference-only (its BatchNorms are folded into the "
                "convolutions); train the original model and call optimize_for_inference again"
            )
        return super().train(False)


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> FastDenseNet:
    """Return an eval-only copy of a DenseNet that computes the same outputs, faster.

    Args:
        model: a :class:`densenet_edu.DenseNet` or a ``torchvision.models.DenseNet``
            (any depth, ImageNet or CIFAR stem, with or without bottlenecks). It is not
            modified; its BatchNorm running statistics are used, whatever its mode.
        channels_last: store weights and activations in NHWC order (faster with oneDNN
            on CPU and with tensor cores on GPU).

    Returns:
        A :class:`FastDenseNet`, on the model's device and dtype, already in eval mode.
        ``.train()`` on it raises RuntimeError.

    Raises:
        TypeError: if ``model`` is not a DenseNet (needs ``.features`` with dense
            blocks and a linear ``.classifier``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize_for_inference expects a DenseNet model, got {type(model)}")
    features = getattr(model, "features", None)
    classifier = getattr(model, "classifier", None)
    if (
        not isinstance(features, nn.Sequential)
        or not isinstance(classifier, nn.Linear)
        or not any(_is_dense_block(m) for m in features.children())
    ):
        raise TypeError(
            "optimize_for_inference expects a DenseNet (densenet_edu or torchvision: a "
            "`features` nn.Sequential containing dense blocks and a linear `classifier`), "
            f"got {type(model).__name__}"
        )
    return FastDenseNet(model, channels_last=channels_last)


def _bn_scale_shift(norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` (float64). Needs running statistics."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    inv_std = torch.rsqrt(norm.running_var.detach().double() + norm.eps)
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(inv_std)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(inv_std)
    scale = gamma * inv_std
    return scale, beta - norm.running_mean.detach().double() * scale


def _dense_layers(block: nn.Module) -> Iterator[nn.Module]:
    return (m for m in block.children() if hasattr(m, "norm1") and hasattr(m, "conv1"))


def _is_dense_block(module: nn.Module) -> bool:
    children = list(module.children())
    return bool(children) and all(hasattr(m, "norm1") and hasattr(m, "conv1") for m in children)


def _is_transition(module: nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("norm", "conv", "pool"))


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))
