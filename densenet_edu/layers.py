"""The building blocks of DenseNet: a dense layer, a dense block and a transition.

Paper: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017 (arXiv:1608.06993). Section numbers below refer to it.

Module and parameter names follow torchvision's ``densenet.py`` exactly
(``norm1``, ``relu1``, ``conv1``, ``norm2``, ..., ``denselayer1``, ...), so a
torchvision ``state_dict`` loads into these modules unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from densenet_edu.errors import check_feature_maps

__all__ = [
    "DROPOUT_PLACEMENTS",
    "DenseBlock",
    "DenseLayer",
    "DropoutPlacement",
    "Transition",
    "compressed_channels",
]

#: Where dropout goes when ``drop_rate > 0`` (dropout has no parameters, so the choice
#: never changes the ``state_dict``):
#:
#: - ``"torchvision"``: once per dense layer, on its k new maps (after the 3x3 conv);
#:   torchvision's placement and the default of the ImageNet models (densenet121, ...).
#: - ``"paper"``: after every convolution except the first (Section 4.2): the bottleneck
#:   1x1, the 3x3 and each transition's 1x1. The authors' Lua Torch code does exactly
#:   this (liuzhuang13/DenseNet, ``models/DenseConnectLayer.lua``:
#:   ``DenseConnectLayerStandard`` adds ``nn.Dropout(opt.dropRate)`` after both convs;
#:   ``models/densenet.lua``: ``addTransition`` adds one after the 1x1 conv, before the
#:   pooling). The default of ``densenet_cifar``.
DropoutPlacement = Literal["torchvision", "paper"]
DROPOUT_PLACEMENTS: tuple[str, ...] = ("torchvision", "paper")


class DenseLayer(nn.Module):
    """One composite function H_l of a dense block (Section 3, "Composite function").

    With ``bottleneck=True`` (DenseNet-B, Section 3 "Bottleneck layers")::

        concat -> BN -> ReLU -> 1x1 conv (bn_size * k) -> BN -> ReLU -> 3x3 conv (k)

    With ``bottleneck=False`` (plain DenseNet)::

        concat -> BN -> ReLU -> 3x3 conv (k)

    In both cases ``conv1`` is the convolution that reads the concatenated input,
    which keeps analysis code (e.g. the feature-reuse heat map) uniform.

    Args:
        in_channels: channels of the concatenated input, k0 + k * (l - 1) for layer l.
        growth_rate: k, the number of feature maps this layer adds.
        bn_size: bottleneck width as a multiple of k (the paper uses 4).
        drop_rate: dropout probability (0 disables it).
        bottleneck: use the 1x1 bottleneck (DenseNet-B) or not.
        memory_efficient: recompute concat + BN + ReLU + conv1 in the backward pass
            instead of storing it (Pleiss et al., 2017), trading compute for memory.
        dropout_placement: ``"torchvision"`` drops out the k new maps only; ``"paper"``
            also the bottleneck's 1x1 output (see :data:`DropoutPlacement`).

    Shapes:
        input: a tensor (N, in_channels, H, W) or a sequence of tensors
            [x_0, ..., x_{l-1}] whose channel counts add up to ``in_channels``.
        output: (N, growth_rate, H, W), only the *new* feature maps x_l.
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        bottleneck: bool = True,
        memory_efficient: bool = False,
        dropout_placement: DropoutPlacement = "torchvision",
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("growth_rate", growth_rate)
        _check_positive_int("bn_size", bn_size)
        _check_drop_rate(drop_rate)
        _check_dropout_placement(dropout_placement)
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.bottleneck = bottleneck
        self.drop_rate = float(drop_rate)
        self.dropout_placement = dropout_placement
        self.memory_efficient = memory_efficient
        self._recomputing = False

        width = bn_size * growth_rate if bottleneck else growth_rate
        kernel_size = 1 if bottleneck else 3
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        # No bias: the BatchNorm that follows (or the next layer's) has its own shift.
        self.conv1 = nn.Conv2d(
            in_channels, width, kernel_size, padding=kernel_size // 2, bias=False
        )
        if bottleneck:
            self.norm2 = nn.BatchNorm2d(width)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)

    def composite_function(self, features: Sequence[Tensor]) -> Tensor:
        """H_l on the list [x_0, ..., x_{l-1}], the plain way: what ``forward`` computes
        when ``memory_efficient`` is off, before the dropout on the new maps.

        DenseNet-B: concat -> BN -> ReLU -> 1x1 conv -> BN -> ReLU -> 3x3 conv (with the
        paper's dropout placement, dropout after the 1x1 conv too).
        Plain DenseNet: concat -> BN -> ReLU -> 3x3 conv.
        """
        x = torch.cat(list(features), dim=1)
        out = self.conv1(self.relu1(self.norm1(x)))
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(self.dropout_after_bottleneck(out))))
        return out

    def dropout_after_bottleneck(self, out: Tensor) -> Tensor:
        """Dropout on the 1x1 bottleneck's output: only with the paper's placement."""
        if self.dropout_placement == "paper" and self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out

    def concat_norm_conv(self, *features: Tensor) -> Tensor:
        """concat -> BN -> ReLU -> conv1: the part that reads every earlier feature map."""
        x = torch.cat(features, dim=1)
        if self._recomputing and self.norm1.training:
            # Recomputation in backward must not update the running statistics a
            # second time: normalise with batch statistics as before, but let the
            # update land in throwaway copies of the running buffers.
            norm = self.norm1
            x = F.batch_norm(
                x,
                norm.running_mean.clone(),
                norm.running_var.clone(),
                norm.weight,
                norm.bias,
                training=True,
                eps=norm.eps,
            )
        else:
            x = self.norm1(x)
        return self.conv1(self.relu1(x))

    def forward(self, features: Tensor | Sequence[Tensor], check_inputs: bool = True) -> Tensor:
        """``check_inputs=False`` skips the shape checks: a block that already checked its
        input and built the rest of ``features`` itself passes it, since checking every
        earlier map in every layer is quadratic in depth."""
        if isinstance(features, Tensor):
            features = [features]
        if check_inputs:
            check_feature_maps(features, self.in_channels, type(self).__name__)
        if self.memory_efficient and torch.is_grad_enabled() and _any_requires_grad(features):
            if torch.compiler.is_compiling():
                # The compiler's own rematerialisation replays no buffer updates, and
                # dynamo does not accept a context_fn.
                out = checkpoint(self.concat_norm_conv, *features, use_reentrant=False)
            else:
                out = checkpoint(
                    self.concat_norm_conv,
                    *features,
                    use_reentrant=False,
                    context_fn=lambda: (nullcontext(), self._recomputation()),
                )
            if self.bottleneck:
                out = self.conv2(self.relu2(self.norm2(self.dropout_after_bottleneck(out))))
        else:
            out = self.composite_function(features)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out

    @contextmanager
    def _recomputation(self) -> Iterator[None]:
        self._recomputing = True
        try:
            yield
        finally:
            self._recomputing = False

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, growth_rate={self.growth_rate}"


class DenseBlock(nn.ModuleDict):
    """A dense block (Section 3, "Dense connectivity", Eq. 2).

    Layer l receives the concatenation [x_0, x_1, ..., x_{l-1}] of the block input
    and every earlier layer's output, and adds ``growth_rate`` new maps::

        x_l = H_l([x_0, x_1, ..., x_{l-1}])

    Layer l (1-based) therefore sees k0 + k * (l - 1) channels, and the block returns
    the concatenation of all of them: k0 + k * num_layers channels.

    Shapes:
        input: (N, in_channels, H, W)
        output: (N, in_channels + num_layers * growth_rate, H, W)
    """

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        bottleneck: bool = True,
        memory_efficient: bool = False,
        dropout_placement: DropoutPlacement = "torchvision",
    ) -> None:
        super().__init__()
        _check_positive_int("num_layers", num_layers)
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.num_layers = num_layers
        self.out_channels = in_channels + num_layers * growth_rate
        for i in range(num_layers):
            layer = DenseLayer(
                in_channels + i * growth_rate,
                growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                bottleneck=bottleneck,
                memory_efficient=memory_efficient,
                dropout_placement=dropout_placement,
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: Tensor) -> Tensor:
        check_feature_maps([x], self.in_channels, type(self).__name__)
        features = [x]
        for layer in self.values():
            features.append(layer(features, check_inputs=False))
        return torch.cat(features, dim=1)


def compressed_channels(in_channels: int, compression: float) -> int:
    """floor(theta * m): the output width of a transition (Section 3, "Compression").

    Rounded to 9 decimals first, so that e.g. 0.29 * 100 (28.999999999999996 in
    floating point) gives 29 as the paper's arithmetic intends.
    """
    _check_compression(compression)
    return max(1, math.floor(round(compression * in_channels, 9)))


class Transition(nn.Sequential):
    """A transition layer between dense blocks (Section 3, "Pooling layers").

    BN -> ReLU -> 1x1 conv (floor(theta * m) maps) -> 2x2 average pool, stride 2.

    ``drop_rate > 0`` adds dropout after the conv, before the pool, as the authors' code
    does with the paper's placement (``DenseNet`` passes it only for ``"paper"``).

    Shapes:
        input: (N, in_channels, H, W)
        output: (N, floor(compression * in_channels), H // 2, W // 2)
    """

    def __init__(self, in_channels: int, compression: float = 0.5, drop_rate: float = 0.0) -> None:
        _check_positive_int("in_channels", in_channels)
        _check_drop_rate(drop_rate)
        out_channels = compressed_channels(in_channels, compression)
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.compression = compression
        self.drop_rate = float(drop_rate)
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        check_feature_maps([x], self.in_channels, type(self).__name__, min_size=2)
        out = self.conv(self.relu(self.norm(x)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.pool(out)


def _any_requires_grad(tensors: Sequence[Tensor]) -> bool:
    return any(t.requires_grad for t in tensors)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_drop_rate(drop_rate: object) -> None:
    if not isinstance(drop_rate, (int, float)) or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be a probability in [0, 1), got {drop_rate!r}")


def _check_dropout_placement(placement: object) -> None:
    if placement not in DROPOUT_PLACEMENTS:
        raise ValueError(
            f"dropout_placement must be 'torchvision' (once per dense layer) or 'paper' "
            f"(after every conv but the first, Section 4.2), got {placement!r}"
        )


def _check_compression(compression: object) -> None:
    if (
        isinstance(compression, bool)
        or not isinstance(compression, (int, float))
        or not 0.0 < compression <= 1.0
    ):
        raise ValueError(
            f"compression (theta) must be in (0, 1], got {compression!r}; "
            "the paper uses 0.5 for DenseNet-C/-BC and 1 for no compression"
        )
