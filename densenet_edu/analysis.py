"""Measuring a DenseNet: channel schedule, parameters, multiply-adds and shape traces.

Everything here is computed from a configuration or from a model, so the book can
quote numbers without typing them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from densenet_edu.architectures import architecture
from densenet_edu.config import DenseNetConfig
from densenet_edu.layers import compressed_channels

__all__ = [
    "BlockChannels",
    "ChannelSchedule",
    "LayerChannels",
    "ModuleStats",
    "TransitionChannels",
    "channel_schedule",
    "count_macs",
    "count_parameters",
    "layer_table",
    "trace_shapes",
]


@dataclass(frozen=True)
class LayerChannels:
    """Channels of dense layer ``layer`` (1-based) in block ``block`` (1-based)."""

    block: int
    layer: int
    in_channels: int  # k0 + k * (layer - 1)
    out_channels: int  # k


@dataclass(frozen=True)
class BlockChannels:
    block: int
    num_layers: int
    in_channels: int  # k0 of this block
    out_channels: int  # k0 + k * num_layers


@dataclass(frozen=True)
class TransitionChannels:
    index: int
    in_channels: int
    out_channels: int  # floor(theta * in_channels)


@dataclass(frozen=True)
class ChannelSchedule:
    """How the channel count evolves through a DenseNet (see :func:`channel_schedule`)."""

    growth_rate: int
    compression: float
    layers: list[LayerChannels] = field(default_factory=list)
    blocks: list[BlockChannels] = field(default_factory=list)
    transitions: list[TransitionChannels] = field(default_factory=list)

    @property
    def final_channels(self) -> int:
        """Channels entering the classifier (after the last block)."""
        return self.blocks[-1].out_channels

    def rows(self) -> list[dict[str, Any]]:
        """One row per layer, ready for ``pandas.DataFrame(schedule.rows())``."""
        return [vars(layer) for layer in self.layers]


def channel_schedule(
    model_or_arch: nn.Module | DenseNetConfig | str | None = None,
    *,
    growth_rate: int = 32,
    block_config: Sequence[int] = (6, 12, 24, 16),
    num_init_features: int = 64,
    compression: float = 0.5,
) -> ChannelSchedule:
    """Input channels of every dense layer, and in/out channels of every block and transition.

    Layer l of a block that starts with k0 channels sees k0 + k * (l - 1) channels
    (Section 3 "Growth rate"); a block of L layers outputs k0 + k * L; a transition
    outputs floor(theta * m).

    Args:
        model_or_arch: a DenseNet (its ``config`` is used), a ``DenseNetConfig``, an
            architecture name such as ``"densenet121"``, or None to use the keyword
            arguments.

    Example:
        >>> s = channel_schedule("densenet121")
        >>> s.blocks[0].out_channels, s.transitions[0].out_channels, s.final_channels
        (256, 128, 1024)
    """
    if isinstance(model_or_arch, str):
        model_or_arch = architecture(model_or_arch).config
    elif isinstance(model_or_arch, nn.Module):
        config = getattr(model_or_arch, "config", None)
        if not isinstance(config, DenseNetConfig):
            raise TypeError("channel_schedule needs a densenet_edu.DenseNet (it has a .config)")
        model_or_arch = config
    if isinstance(model_or_arch, DenseNetConfig):
        growth_rate = model_or_arch.growth_rate
        block_config = model_or_arch.block_config
        num_init_features = model_or_arch.num_init_features
        compression = model_or_arch.compression
    elif model_or_arch is not None:
        raise TypeError(
            f"expected a model, a DenseNetConfig, an architecture name or None, "
            f"got {model_or_arch!r}"
        )

    schedule = ChannelSchedule(growth_rate=growth_rate, compression=compression)
    channels = num_init_features
    for b, num_layers in enumerate(block_config, start=1):
        for layer in range(1, num_layers + 1):
            in_channels = channels + growth_rate * (layer - 1)
            schedule.layers.append(LayerChannels(b, layer, in_channels, growth_rate))
        out = channels + growth_rate * num_layers
        schedule.blocks.append(BlockChannels(b, num_layers, channels, out))
        channels = out
        if b < len(block_config):
            compressed = compressed_channels(channels, compression)
            schedule.transitions.append(TransitionChannels(b, channels, compressed))
            channels = compressed
    return schedule


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BatchNorm's running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class ModuleStats:
    """One row of :func:`layer_table`: a module's output shape, parameters and mult-adds."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one call, for the layers that do them (convolutions, linear)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def layer_table(
    model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224), depth: int = 2
) -> list[ModuleStats]:
    """Run ``model`` once and report every module ``depth`` levels down, in call order.

    With ``depth=2`` on a DenseNet the rows are ``features.conv0``, ..., ``features.denseblock1``,
    ``features.transition1``, ..., ``features.norm5`` and ``classifier``. Mult-adds count
    convolutions and linear layers (the convention of torchvision's GFLOPS figures) for
    the whole batch. Put the model on the ``meta`` device to trace large models for free.
    """
    device = next(model.parameters()).device
    macs: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def is_group(name: str, m: nn.Module) -> bool:
        level = name.count(".") + 1
        return level == depth or (level < depth and not list(m.children()))

    groups = {name: m for name, m in model.named_modules() if name and is_group(name, m)}

    def count(group: str):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            macs[group] = macs.get(group, 0) + _macs(module, output)

        return hook

    def record_shape(group: str):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            shapes[group] = tuple(output.shape)  # dict order = call order

        return hook

    handles = [m.register_forward_hook(record_shape(name)) for name, m in groups.items()]
    for name, m in model.named_modules():
        group = ".".join(name.split(".")[:depth])
        if name and not list(m.children()) and group in groups:
            handles.append(m.register_forward_hook(count(group)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return [
        ModuleStats(
            name,
            type(groups[name]).__name__,
            shape,
            count_parameters(groups[name]),
            macs.get(name, 0),
        )
        for name, shape in shapes.items()
    ]


def trace_shapes(
    model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)
) -> list[tuple[str, tuple[int, ...]]]:
    """(module name, output shape) of every DenseNet stage: stem, blocks, transitions, head."""
    return [(row.name, row.output_shape) for row in layer_table(model, input_shape, depth=2)]


def count_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Total multiply-adds of convolutions and linear layers for one forward pass."""
    return sum(row.macs for row in layer_table(model, input_shape, depth=1))
