"""DenseNet assembled from its blocks, and factories for the paper's models.

ImageNet models (Table 1 of the paper): a 7x7 stride-2 stem convolution and a 3x3
max pool, four dense blocks separated by three transitions, a final BatchNorm,
global average pooling and a linear classifier. CIFAR/SVHN models (Section 3,
"Implementation Details"): a 3x3 stem convolution, three equal dense blocks.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.errors import InputShapeError
from densenet_edu.layers import (
    DenseBlock,
    DropoutPlacement,
    Transition,
    _check_compression,
    _check_drop_rate,
    _check_dropout_placement,
    _check_positive_int,
)

__all__ = [
    "ARCHITECTURES",
    "DenseNet",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet264",
    "densenet_cifar",
]

Stem = Literal["imagenet", "cifar"]

#: growth rate k, layers per block, stem width: Table 1 of the paper and torchvision.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "densenet121": dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    "densenet161": dict(growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96),
    "densenet169": dict(growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64),
    "densenet201": dict(growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64),
    "densenet264": dict(growth_rate=32, block_config=(6, 12, 64, 48), num_init_features=64),
}


class DenseNet(nn.Module):
    """DenseNet (Huang et al., CVPR 2017), weight-compatible with torchvision.

    Args:
        growth_rate: k, feature maps added by every dense layer.
        block_config: number of dense layers in each block.
        num_init_features: k0 of the first block, the stem's output width.
        bn_size: bottleneck width as a multiple of k (4 in the paper).
        drop_rate: dropout probability (0.2 in the paper without augmentation), applied
            where ``dropout_placement`` says.
        num_classes: outputs of the classifier.
        compression: theta, the fraction of channels a transition keeps (0.5 for -C/-BC).
        bottleneck: use 1x1 bottleneck convolutions (DenseNet-B).
        memory_efficient: checkpoint concat + BN + ReLU + 1x1 conv (Pleiss et al., 2017).
        in_channels: channels of the input image.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max pool; Table 1) or
            ``"cifar"`` (one 3x3 conv; Section 3 "Implementation Details").
        dropout_placement: ``"torchvision"`` (default: once per dense layer, after its
            3x3 conv, as torchvision does) or ``"paper"`` (after every conv except the
            stem: bottleneck 1x1, 3x3 and transition 1x1; Section 4.2 and the authors'
            code). No parameters either way: the ``state_dict`` keys do not change.

    Shapes:
        input: (N, in_channels, H, W) with H, W >= ``min_input_size``.
        output: (N, num_classes) logits.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        compression: float = 0.5,
        bottleneck: bool = True,
        memory_efficient: bool = False,
        in_channels: int = 3,
        stem: Stem = "imagenet",
        dropout_placement: DropoutPlacement = "torchvision",
    ) -> None:
        super().__init__()
        _check_config(growth_rate, block_config, num_init_features, bn_size, num_classes)
        _check_drop_rate(drop_rate)
        _check_dropout_placement(dropout_placement)
        _check_compression(compression)
        _check_positive_int("in_channels", in_channels)
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.config = dict(
            growth_rate=growth_rate,
            block_config=tuple(block_config),
            num_init_features=num_init_features,
            bn_size=bn_size,
            drop_rate=drop_rate,
            num_classes=num_classes,
            compression=compression,
            bottleneck=bottleneck,
            memory_efficient=memory_efficient,
            in_channels=in_channels,
            stem=stem,
            dropout_placement=dropout_placement,
        )
        self.in_channels = in_channels
        self.min_input_size = _min_input_size(stem, len(block_config) - 1)

        if stem == "imagenet":
            stem_layers = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        else:
            stem_layers = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, 3, 1, 1, bias=False))
            ]
        self.features = nn.Sequential(OrderedDict(stem_layers))

        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(
                num_layers,
                channels,
                growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                bottleneck=bottleneck,
                memory_efficient=memory_efficient,
                dropout_placement=dropout_placement,
            )
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_channels
            if i != len(block_config) - 1:
                # Only the paper's placement drops out after a transition's conv.
                transition_drop = drop_rate if dropout_placement == "paper" else 0.0
                transition = Transition(channels, compression, drop_rate=transition_drop)
                self.features.add_module(f"transition{i + 1}", transition)
                channels = transition.out_channels
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming normal) init for convolutions, as in the paper and torchvision."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = out.flatten(1)
        return self.classifier(out)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"DenseNet expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
            raise InputShapeError(
                "DenseNet expects a 4-D tensor (batch, channels, height, width), "
                f"got shape {tuple(x.shape)}{hint}"
            )
        if x.shape[1] != self.in_channels:
            raise InputShapeError(
                f"DenseNet expects {self.in_channels} input channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        size = self.min_input_size
        if x.shape[2] < size or x.shape[3] < size:
            raise InputShapeError(
                f"input is {x.shape[2]}x{x.shape[3]}, but this DenseNet downsamples it so much "
                f"that it needs at least {size}x{size} pixels"
            )


def _check_config(
    growth_rate: int,
    block_config: Sequence[int],
    num_init_features: int,
    bn_size: int,
    num_classes: int,
) -> None:
    _check_positive_int("growth_rate", growth_rate)
    _check_positive_int("num_init_features", num_init_features)
    _check_positive_int("bn_size", bn_size)
    _check_positive_int("num_classes", num_classes)
    if (
        isinstance(block_config, (str, bytes))
        or not isinstance(block_config, Sequence)
        or len(block_config) == 0
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in block_config)
    ):
        raise ValueError(
            "block_config must be a non-empty sequence of positive layer counts, "
            f"e.g. (6, 12, 24, 16); got {block_config!r}"
        )


def _min_input_size(stem: Stem, num_transitions: int) -> int:
    """The smallest square input whose feature map is still at least 1x1 after the last pool."""

    def out_size(size: int) -> int:
        if stem == "imagenet":
            size = (size + 2 * 3 - 7) // 2 + 1  # conv0: 7x7, stride 2, padding 3
            size = (size + 2 * 1 - 3) // 2 + 1  # pool0: 3x3 max, stride 2, padding 1
        for _ in range(num_transitions):
            size //= 2  # 2x2 average pool, stride 2
        return size

    size = 1
    while out_size(size) < 1:
        size += 1
    return size


def _build(arch: str, weights: str | os.PathLike | None, progress: bool, **kwargs: Any) -> DenseNet:
    model = DenseNet(**{**ARCHITECTURES[arch], **kwargs})
    if weights is not None:
        from densenet_edu.weights import load_torchvision_weights, resolve_weights

        load_torchvision_weights(model, resolve_weights(arch, weights, progress=progress))
    return model


def densenet121(
    weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-121: k=32, blocks (6, 12, 24, 16); 7,978,856 parameters.

    Args:
        weights: ``None`` (random init), ``"IMAGENET1K_V1"`` (torchvision's release,
            downloaded to the torch hub cache) or the path of a ``.pth`` file.
        progress: show a progress bar while downloading.
        **kwargs: any other :class:`DenseNet` argument (e.g. ``memory_efficient=True``).
    """
    return _build("densenet121", weights, progress, **kwargs)


def densenet161(
    weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-161: k=48, blocks (6, 12, 36, 24), stem 96. Arguments as in densenet121."""
    return _build("densenet161", weights, progress, **kwargs)


def densenet169(
    weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-169: k=32, blocks (6, 12, 32, 32). Arguments as in densenet121."""
    return _build("densenet169", weights, progress, **kwargs)


def densenet201(
    weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-201: k=32, blocks (6, 12, 48, 32). Arguments as in densenet121."""
    return _build("densenet201", weights, progress, **kwargs)


def densenet264(
    weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-264: k=32, blocks (6, 12, 64, 48) (Table 1). No official weights exist;
    ``weights`` may be the path of a file you trained yourself."""
    return _build("densenet264", weights, progress, **kwargs)


def cifar_layers_per_block(depth: int, bottleneck: bool) -> int:
    """Layers per dense block of a CIFAR DenseNet of total depth L.

    L counts weight layers: the stem conv, two transition convs, the classifier and
    3 blocks of n dense layers with 1 conv each (2 with a bottleneck):
    L = 3 * n * convs_per_layer + 4.
    """
    convs = 2 if bottleneck else 1
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an integer, got {depth!r}")
    n, remainder = divmod(depth - 4, 3 * convs)
    if remainder or n < 1:
        step = 3 * convs
        lower = max(4 + step, depth - (depth - 4) % step)
        kind = "DenseNet-BC/-B (2 convs per layer)" if bottleneck else "DenseNet (1 conv per layer)"
        raise ValueError(
            f"depth {depth} does not fit L = {step}n + 4 for {kind}; "
            f"nearest valid depths: {lower}, {lower + step} "
            f"(the paper uses {'100, 190, 250' if bottleneck else '40, 100'})"
        )
    return n


def densenet_cifar(
    depth: int = 100,
    growth_rate: int = 12,
    bottleneck: bool = True,
    compression: float = 0.5,
    num_classes: int = 10,
    drop_rate: float = 0.0,
    dropout_placement: DropoutPlacement = "paper",
    **kwargs: Any,
) -> DenseNet:
    """The paper's CIFAR/SVHN DenseNets (Section 3 "Implementation Details", Table 2).

    Three dense blocks of (depth - 4) / 3 layers (/ 6 with bottlenecks), a 3x3 stem
    conv with 16 output channels (2k for DenseNet-BC), for 32x32 inputs.

    Dropout (``drop_rate > 0``, the paper's setting for C10, C100 and SVHN without
    augmentation) follows the paper by default: after every convolution except the stem
    (``dropout_placement="paper"``; pass ``"torchvision"`` for once per dense layer).

    Examples: ``densenet_cifar(40, 12, bottleneck=False, compression=1)`` is
    "DenseNet (L=40, k=12)"; ``densenet_cifar(100, 12)`` is "DenseNet-BC (L=100, k=12)".
    """
    n = cifar_layers_per_block(depth, bottleneck)
    _check_positive_int("growth_rate", growth_rate)
    _check_compression(compression)
    is_bc = bottleneck and compression < 1
    return DenseNet(
        growth_rate=growth_rate,
        block_config=(n, n, n),
        num_init_features=2 * growth_rate if is_bc else 16,
        drop_rate=drop_rate,
        dropout_placement=dropout_placement,
        num_classes=num_classes,
        compression=compression,
        bottleneck=bottleneck,
        stem="cifar",
        **kwargs,
    )
