"""A DenseNet as a list of stages (stem, blocks, transitions, head), read from its modules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from densenet_edu.layers import DenseBlock, Transition

if TYPE_CHECKING:
    from densenet_edu.model import DenseNet

__all__ = ["Stage", "network_stages"]


@dataclass
class Stage:
    """One stage of a DenseNet as `draw_densenet` draws it (all numbers read from modules)."""

    kind: str  # "stem", "block", "transition", "head" or "classifier"
    name: str
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    details: list[str] = field(default_factory=list)
    num_layers: int = 0


def network_stages(model: DenseNet, input_size: int | None = None) -> list[Stage]:
    """The stages of `model` in order, read from ``model.features`` and ``model.classifier``.

    `input_size` is the side of the square input image (default: 224 for the ImageNet
    stem, 32 for the CIFAR stem, following ``model.config.stem``).
    """
    if input_size is None:
        input_size = (
            224 if getattr(model, "config", {}).get("stem", "imagenet") == "imagenet" else 32
        )
    reader = _StageReader(model.in_channels, input_size)
    for module in model.features.children():
        reader.read(module)
    return reader.finish(model.classifier)


class _StageReader:
    """Walks ``model.features`` once, following channels and map size, and groups modules
    into stages: the modules before the first dense block are the stem, those after the
    last one the head."""

    def __init__(self, in_channels: int, input_size: int) -> None:
        self.stages: list[Stage] = []
        self.stem: list[nn.Module] = []
        self.head: list[nn.Module] = []
        self.channels, self.size = in_channels, input_size
        self.stem_in = (in_channels, input_size)
        self.blocks = self.transitions = 0

    def read(self, module: nn.Module) -> None:
        """Take the next child of ``model.features``."""
        if isinstance(module, DenseBlock):
            self._close_stem()
            self._block(module)
        elif isinstance(module, Transition):
            self._transition(module)
        elif self.blocks == 0:
            self.stem.append(module)
            self.size = _out_size(module, self.size)
        else:
            self.head.append(module)

    def _close_stem(self) -> None:
        """The modules read so far become the stem stage, up to its last convolution's width."""
        if not self.stem:
            return
        out_channels = [m.out_channels for m in self.stem if isinstance(m, nn.Conv2d)][-1]
        in_channels, in_size = self.stem_in
        steps = _compact(_describe(m) for m in self.stem)
        self.stages.append(
            Stage("stem", "stem", in_channels, out_channels, in_size, self.size, steps)
        )
        self.stem = []
        self.channels = out_channels

    def _block(self, block: DenseBlock) -> None:
        self.blocks += 1
        self.stages.append(
            Stage(
                "block",
                f"dense block {self.blocks}",
                block.in_channels,
                block.out_channels,
                self.size,
                self.size,
                [f"{block.num_layers} layers", f"k = {block.growth_rate}"],
                num_layers=block.num_layers,
            )
        )
        self.channels = block.out_channels

    def _transition(self, transition: Transition) -> None:
        self.transitions += 1
        size_in = self.size
        for m in transition.children():
            self.size = _out_size(m, self.size)
        steps = _compact(_describe(m) for m in transition.children())
        self.stages.append(
            Stage(
                "transition",
                f"transition {self.transitions}",
                transition.in_channels,
                transition.out_channels,
                size_in,
                self.size,
                [*steps, f"θ = {transition.compression:g}"],
            )
        )
        self.channels = transition.out_channels

    def finish(self, classifier: nn.Linear) -> list[Stage]:
        """Add the head and the classifier; the stages in order."""
        # The head: what follows the last block in `features` (norm5), then forward()'s
        # ReLU and global average pooling, which are function calls, not modules.
        head_lines = _compact([*(_describe(m) for m in self.head), "ReLU"]) + ["global avg pool"]
        channels, size = self.channels, self.size
        self.stages.append(Stage("head", "pooling", channels, channels, size, 1, head_lines))
        self.stages.append(
            Stage(
                "classifier",
                "classifier",
                classifier.in_features,
                classifier.out_features,
                1,
                1,
                ["linear"],
            )
        )
        return self.stages


def _pair(value: int | tuple[int, ...]) -> int:
    """The first entry of a kernel size, stride or padding (the book's maps are square)."""
    return value[0] if isinstance(value, tuple) else int(value)


def _out_size(module: nn.Module, size: int) -> int:
    """Spatial size after a convolution or pooling module (square maps); unchanged otherwise."""
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride)
        padding = _pair(module.padding)
        dilation = _pair(getattr(module, "dilation", 1))
        return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return size


def _describe(module: nn.Module) -> str:
    """A module as the schematic names it: '3×3 conv', '2×2 avg pool, stride 2', 'BN', ..."""
    if isinstance(module, nn.Conv2d):
        k, s = module.kernel_size, _pair(module.stride)
        return f"{k[0]}×{k[1]} conv" + (f", stride {s}" if s != 1 else "")
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        kind = "max" if isinstance(module, nn.MaxPool2d) else "avg"
        return f"{k}×{k} {kind} pool" + (f", stride {s}" if s != 1 else "")
    if isinstance(module, nn.BatchNorm2d):
        return "BN"
    if isinstance(module, nn.ReLU):
        return "ReLU"
    return type(module).__name__


def _compact(steps: Iterator[str] | list[str]) -> list[str]:
    """'BN' + 'ReLU' become 'BN-ReLU', prefixed to the conv they precede (alone before a pool)."""
    lines: list[str] = []
    prefix = ""
    for step in steps:
        if step in ("BN", "ReLU"):
            prefix = f"{prefix}-{step}" if prefix else step
            continue
        if prefix and "pool" in step:  # BN-ReLU after a conv, before a pool
            lines.append(prefix)
            prefix = ""
        lines.append(f"{prefix}-{step}" if prefix else step)
        prefix = ""
    if prefix:
        lines.append(prefix)
    return lines
