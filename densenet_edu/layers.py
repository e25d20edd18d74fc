"""The building blocks of DenseNet: a dense layer, a dense block and a transition.

Paper: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017 (arXiv:1608.06993). Section numbers below refer to it.

Module and parameter names follow torchvision's ``densenet.py`` exactly
(``norm1``, ``relu1``, ``conv1``, ``norm2``, ..., ``denselayer1``, ...), so a
torchvision ``state_dict`` loads into these modules unchanged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from densenet_edu.config import DropoutPlacement
from densenet_edu.errors import NotScriptableError, check_feature_maps
from densenet_edu.validation import (
    DROPOUT_PLACEMENTS,
    check_compression,
    check_dropout_placement,
    check_flag,
    check_positive_int,
    check_probability,
)

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
#:
#: (``DropoutPlacement`` is defined in :mod:`densenet_edu.config`, ``DROPOUT_PLACEMENTS`` in
#: :mod:`densenet_edu.validation`; both are importable from here too.)


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
        in_channels = check_positive_int("in_channels", in_channels)
        growth_rate = check_positive_int("growth_rate", growth_rate)
        bn_size = check_positive_int("bn_size", bn_size)
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.bottleneck = check_flag("bottleneck", bottleneck)
        self.drop_rate = check_probability("drop_rate", drop_rate)
        self.dropout_placement = check_dropout_placement(dropout_placement)
        self.memory_efficient = check_flag("memory_efficient", memory_efficient)

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

    def concat_norm_conv(self, *features: Tensor, replay: Replay | None = None) -> Tensor:
        """concat -> BN -> ReLU -> conv1: the part that reads every earlier feature map.

        ``replay`` is the flag of one checkpointed call (see ``forward``), raised while
        the backward pass recomputes this function.
        """
        x = torch.cat(features, dim=1)
        if replay is not None and replay.active and self.norm1.training:
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
        if isinstance(features, (Tensor, torch.fx.Proxy)):
            features = [features]
        if check_inputs:
            check_feature_maps(features, self.in_channels, type(self).__name__)
        if self.memory_efficient and _needs_checkpoint(features):
            out = self.checkpointed_concat_norm_conv(features)
            if self.bottleneck:
                out = self.conv2(self.relu2(self.norm2(self.dropout_after_bottleneck(out))))
        else:
            out = self.composite_function(features)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out

    def checkpointed_concat_norm_conv(self, features: Sequence[Tensor]) -> Tensor:
        """``concat_norm_conv`` under ``torch.utils.checkpoint``: only the inputs are kept.

        The recomputation flag belongs to this call, not to the module, so one model
        trained from several threads updates BatchNorm's statistics once per call.
        """
        if torch.compiler.is_compiling():
            # The compiler's own rematerialisation replays no buffer updates, and
            # dynamo does not accept a context_fn.
            return checkpoint(self.concat_norm_conv, *features, use_reentrant=False)
        replay = Replay()
        return checkpoint(
            functools.partial(self.concat_norm_conv, replay=replay),
            *features,
            use_reentrant=False,
            context_fn=replay.contexts,
        )

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, growth_rate={self.growth_rate}"

    def __prepare_scriptable__(self) -> NoReturn:
        raise NotScriptableError(type(self).__name__)


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
        num_layers = check_positive_int("num_layers", num_layers)
        in_channels = check_positive_int("in_channels", in_channels)
        growth_rate = check_positive_int("growth_rate", growth_rate)
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

    def __prepare_scriptable__(self) -> NoReturn:
        raise NotScriptableError(type(self).__name__)


def compressed_channels(in_channels: int, compression: float) -> int:
    """floor(theta * m): the output width of a transition (Section 3, "Compression").

    Rounded to 9 decimals first, so that e.g. 0.29 * 100 (28.999999999999996 in
    floating point) gives 29 as the paper's arithmetic intends.
    """
    compression = check_compression(compression)
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
        in_channels = check_positive_int("in_channels", in_channels)
        drop_rate = check_probability("drop_rate", drop_rate)
        compression = check_compression(compression)
        out_channels = compressed_channels(in_channels, compression)
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.compression = compression
        self.drop_rate = drop_rate
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

    def __prepare_scriptable__(self) -> NoReturn:
        raise NotScriptableError(type(self).__name__)


class Replay:
    """The recomputation flag of one checkpointed call: raised while backward replays it.

    ``checkpoint`` enters the second context of :meth:`contexts` around the recomputation
    only, so ``active`` is True exactly then, for this call and no other.
    """

    def __init__(self) -> None:
        self.active = False

    @contextmanager
    def replaying(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def contexts(self) -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
        """``context_fn`` of ``checkpoint``: (around the forward, around the recomputation)."""
        return nullcontext(), self.replaying()


def _needs_checkpoint(features: Sequence[Tensor]) -> bool:
    """Checkpoint only when there is a backward pass to save memory for.

    Under ``torch.fx`` tracing the inputs are proxies: the traced graph records the plain
    computation (same values; a graph has no recomputation).
    """
    if any(isinstance(t, torch.fx.Proxy) for t in features):
        return False
    return torch.is_grad_enabled() and any(t.requires_grad for t in features)
