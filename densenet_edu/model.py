"""DenseNet assembled from its blocks, and factories for the paper's models.

ImageNet models (Table 1 of the paper): a 7x7 stride-2 stem convolution and a 3x3
max pool, four dense blocks separated by three transitions, a final BatchNorm,
global average pooling and a linear classifier. CIFAR/SVHN models (Section 3,
"Implementation Details"): a 3x3 stem convolution, three equal dense blocks.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NoReturn

import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.architectures import ARCHITECTURES, TABLE
from densenet_edu.config import DenseNetConfig, DropoutPlacement
from densenet_edu.errors import NotScriptableError
from densenet_edu.inputs import check_images, min_input_size, spatial_steps
from densenet_edu.layers import DenseBlock, DenseLayer, Transition
from densenet_edu.validation import check_flag, check_positive_int, cifar_layers_per_block
from densenet_edu.weights import load_torchvision_weights, resolve_weights

__all__ = [
    "ARCHITECTURES",
    "DenseNet",
    "cifar_layers_per_block",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet264",
    "densenet_cifar",
]


class DenseNet(nn.Module):
    """DenseNet (Huang et al., CVPR 2017), weight-compatible with torchvision.

    Build it from a :class:`~densenet_edu.config.DenseNetConfig` (``DenseNet(config)``) or
    from the same settings as keyword arguments (``DenseNet(growth_rate=12, ...)``, the
    defaults are DenseNet-121's); keywords given with a config override its fields.
    ``model.config`` is the configuration it was built from.

    Settings (the fields of ``DenseNetConfig``):
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

    The forward pass is timm's split, ``forward_head(forward_features(x))``. Inputs are
    checked against the modules as they are at call time (see :mod:`densenet_edu.inputs`).

    Shapes:
        input: (N, in_channels, H, W) with H, W >= ``min_input_size``.
        output: (N, num_classes) logits.
    """

    def __init__(
        self, config: DenseNetConfig | Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__()
        self.config = config = _make_config(config, args, kwargs)
        k0 = config.num_init_features  # the stem's width, the first block's input
        if config.stem == "imagenet":
            stem_layers = [
                ("conv0", nn.Conv2d(config.in_channels, k0, 7, 2, 3, bias=False)),
                ("norm0", nn.BatchNorm2d(k0)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        else:
            stem_layers = [("conv0", nn.Conv2d(config.in_channels, k0, 3, 1, 1, bias=False))]
        self.features = nn.Sequential(OrderedDict(stem_layers))

        channels = k0
        for i, num_layers in enumerate(config.block_config):
            block = DenseBlock(
                num_layers,
                channels,
                config.growth_rate,
                bn_size=config.bn_size,
                drop_rate=config.drop_rate,
                bottleneck=config.bottleneck,
                memory_efficient=config.memory_efficient,
                dropout_placement=config.dropout_placement,
            )
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_channels
            if i != len(config.block_config) - 1:
                # Only the paper's placement drops out after a transition's conv.
                paper = config.dropout_placement == "paper"
                transition_drop = config.drop_rate if paper else 0.0
                transition = Transition(channels, config.compression, drop_rate=transition_drop)
                self.features.add_module(f"transition{i + 1}", transition)
                channels = transition.out_channels
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.num_features = channels
        self.classifier = nn.Linear(channels, config.num_classes)
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

    @property
    def in_channels(self) -> int:
        """Channels the first convolution reads now (a swapped stem changes it)."""
        conv = next(m for m in self.features.modules() if isinstance(m, nn.Conv2d))
        return conv.in_channels

    @property
    def min_input_size(self) -> int:
        """The smallest side the stem and transitions, as they are now, keep >= 1 pixel."""
        steps = spatial_steps(self.features)
        if steps is None:
            raise ValueError("min_input_size: features holds a module of unknown geometry")
        return min_input_size(steps)

    def forward(self, x: Tensor) -> Tensor:
        features = self.forward_features(x)  # (N, num_features, H/32, W/32), before ReLU
        return self.forward_head(features)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem, dense blocks, transitions and norm5: (N, C, H', W'), H' = H/32 for ImageNet.

        This is torchvision's ``model.features(x)`` (after checking ``x``): the final
        BatchNorm's output *before* the ReLU. timm's ``forward_features`` returns it after
        the ReLU (its norm5 is a BatchNorm fused with a ReLU); here the ReLU belongs to
        :meth:`forward_head`, so the state_dict stays torchvision's.
        """
        check_images(x, self.features, type(self).__name__, self.training)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """ReLU, global average pooling and the classifier (Table 1's last rows).

        Args:
            x: the output of :meth:`forward_features`, (N, C, H', W').
            pre_logits: return the pooled (N, C) features instead of the (N, num_classes)
                logits, as timm does.
        """
        out = F.relu(x)  # not in place: the caller's features stay as they were
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = out.flatten(1)
        return out if pre_logits else self.classifier(out)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch memory-efficient dense layers on or off (timm's name for it).

        Every dense layer then recomputes concat + BN + ReLU + conv1 in the backward
        pass (Pleiss et al., 2017); ``model.config.memory_efficient`` follows.
        """
        enable = check_flag("enable", enable)
        for module in self.modules():
            if isinstance(module, DenseLayer):
                module.memory_efficient = enable
        self.config = self.config.replace(memory_efficient=enable)

    def __prepare_scriptable__(self) -> NoReturn:
        # torch.jit.script calls this first: refuse with the routes that work.
        raise NotScriptableError(type(self).__name__)


def _make_config(
    config: DenseNetConfig | Mapping[str, Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> DenseNetConfig:
    """The DenseNetConfig of ``DenseNet(...)``: a config, a mapping, or the settings, also in
    the old positional order (growth_rate, block_config, num_init_features, ...)."""
    if isinstance(config, DenseNetConfig) and not args:
        return config.replace(**kwargs) if kwargs else config
    if isinstance(config, Mapping) and not args:
        return DenseNetConfig.from_dict({**config, **kwargs})
    names = [f.name for f in dataclasses.fields(DenseNetConfig)]
    positional = [] if config is None and not args else [config, *args]
    if len(positional) > len(names):
        raise TypeError(f"DenseNet takes at most {len(names)} settings, got {len(positional)}")
    given = dict(zip(names, positional, strict=False))  # fewer values than names is fine
    both = sorted(set(given) & set(kwargs))
    if both:
        raise TypeError(f"DenseNet got {both} both by position and by keyword")
    return DenseNetConfig(**given, **kwargs)


def _build(arch: str, weights: Any, progress: bool, **kwargs: Any) -> DenseNet:
    # Check the settings, then find the weights, then build: a bad weights= argument
    # fails at once instead of after building hundreds of layers.
    config = TABLE[arch].config.replace(**kwargs)
    state_dict = None if weights is None else resolve_weights(arch, weights, progress=progress)
    model = DenseNet(config)
    if state_dict is not None:
        load_torchvision_weights(model, state_dict)
    return model


def densenet121(
    weights: str | os.PathLike | Any | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-121: k=32, blocks (6, 12, 24, 16); 7,978,856 parameters.

    Args:
        weights: ``None`` (random init), ``"IMAGENET1K_V1"`` or ``"DEFAULT"`` (torchvision's
            release, downloaded to the torch hub cache, see
            :data:`densenet_edu.architectures.TABLE`), torchvision's
            ``DenseNet121_Weights.IMAGENET1K_V1``, or the path of a ``.pth`` file. Checked
            (and downloaded) before the model is built.
        progress: show a progress bar while downloading.
        **kwargs: any other :class:`DenseNet` argument (e.g. ``memory_efficient=True``).
    """
    return _build("densenet121", weights, progress, **kwargs)


def densenet161(
    weights: str | os.PathLike | Any | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-161: k=48, blocks (6, 12, 36, 24), stem 96. Arguments as in densenet121."""
    return _build("densenet161", weights, progress, **kwargs)


def densenet169(
    weights: str | os.PathLike | Any | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-169: k=32, blocks (6, 12, 32, 32). Arguments as in densenet121."""
    return _build("densenet169", weights, progress, **kwargs)


def densenet201(
    weights: str | os.PathLike | Any | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-201: k=32, blocks (6, 12, 48, 32). Arguments as in densenet121."""
    return _build("densenet201", weights, progress, **kwargs)


def densenet264(
    weights: str | os.PathLike | Any | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-264: k=32, blocks (6, 12, 64, 48) (Table 1). No official weights exist;
    ``weights`` may be the path of a file you trained yourself."""
    return _build("densenet264", weights, progress, **kwargs)


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
    growth_rate = check_positive_int("growth_rate", growth_rate)
    config = DenseNetConfig(compression=compression, bottleneck=bottleneck)  # checks both
    is_bc = config.bottleneck and config.compression < 1
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
