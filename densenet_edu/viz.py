"""Schematics of a dense block and of a whole DenseNet, drawn from the modules themselves.

The paper's Figure 1 (a dense block) and Figure 2 (a DenseNet of several blocks) are the
clearest mental model of the architecture. These functions draw both for *any* block or
model of the package: every label (channel counts, layer counts, growth rate, compression,
kernel sizes, feature-map sizes) is read from the modules, never typed in, so a schematic
cannot drift from the code it shows.

- `draw_dense_block`: the feature maps x_0, ..., x_L as lines, each layer H_l as a box
  with the width k0 + k(l - 1) it reads, and a dot for every connection: the maps a layer
  taps are concatenated into its input.
- `draw_densenet`: stem, dense blocks (drawn with heights proportional to their
  channel counts, so their growth and the transitions' compression show), transitions,
  pooling and classifier, with the feature-map size of every stage.

matplotlib only; both return the `Axes` they drew on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from densenet_edu.layers import DenseBlock, DenseLayer, Transition

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from densenet_edu.model import DenseNet

__all__ = ["draw_dense_block", "draw_densenet", "network_stages"]

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _sub(n: int) -> str:
    return str(n).translate(_SUBSCRIPTS)


def _pair(value: int | tuple[int, ...]) -> int:
    """The first entry of a kernel size, stride or padding (the book's maps are square)."""
    return value[0] if isinstance(value, tuple) else int(value)


def _conv_steps(layer: nn.Module) -> list[str]:
    """'1×1 conv → 128'-style lines for every convolution of `layer`, in order."""
    steps = []
    for conv in layer.modules():
        if isinstance(conv, nn.Conv2d):
            k = conv.kernel_size
            steps.append(f"{k[0]}×{k[1]} conv → {conv.out_channels}")
    return steps


def _new_maps(layer: DenseLayer) -> int:
    """The number of maps a dense layer adds: the output width of its last convolution."""
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _figure_axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=size)
    return ax


def draw_dense_block(block: DenseBlock, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Draw `block` as the paper's Figure 1 does: every layer reads every earlier map.

    Row j is feature map x_j (x_0 is the block input, x_l the k maps layer l adds), a
    line from where it is made to the block's output. Layer l is a box: its vertical line
    taps rows 0 .. l-1 (one dot per connection, l of them), and those maps are
    concatenated into its input of k0 + k(l - 1) channels. At the right, the block
    concatenates x_0 .. x_L into its output. Connection artists carry the gid
    ``"connection"`` (into a layer) or ``"output"`` (into the block output).

    Raises ValueError if a layer's ``in_channels`` is not the sum of the widths of the
    maps before it (the block would fail in ``forward`` too).
    """
    from matplotlib.patches import FancyBboxPatch

    layers = list(block.values())
    num_layers = len(layers)
    widths = [block.in_channels] + [_new_maps(layer) for layer in layers]
    for i, layer in enumerate(layers, start=1):
        if layer.in_channels != sum(widths[:i]):
            raise ValueError(
                f"denselayer{i} reads {layer.in_channels} channels, but x_0 .. x_{i - 1} "
                f"hold {sum(widths[:i])}"
            )
    out_channels = sum(widths)

    ax = _figure_axes(ax, (1.75 * (num_layers + 2.5), 0.85 * (num_layers + 2.5)))
    import matplotlib as mpl

    colors = mpl.colormaps["viridis"](
        [0.85 * j / max(num_layers, 1) for j in range(num_layers + 1)]
    )
    dx, dy = 2.0, 1.0  # column spacing (layers), row spacing (feature maps)
    x_out = (num_layers + 1) * dx  # the column of the block's output concatenation
    dot = dict(marker="o", ms=7, zorder=4, ls="none")
    fontsize = 9

    # The feature-map rows: x_0 from the block input, x_l from layer l's box.
    for j, width in enumerate(widths):
        y = -j * dy
        start = j * dx if j else -0.6 * dx
        ax.plot([start, x_out], [y, y], color=colors[j], lw=2.5, zorder=1, solid_capstyle="butt")
        # x_0's label above its line; the others below theirs, clear of the boxes.
        ax.text(
            start + (0.05 * dx if j else 0),
            y + (-0.08 if j else 0.08) * dy,
            f"{'block input ' if j == 0 else ''}x{_sub(j)}: {width} ch",
            fontsize=fontsize,
            va="top" if j else "bottom",
            ha="left",
        )

    # The layers: a tap line through rows 0 .. l-1, then the box H_l.
    for i, layer in enumerate(layers, start=1):
        x = i * dx
        box_top = -(i - 1) * dy - 0.22 * dy
        box_height = 0.56 * dy
        ax.plot([x, x], [0, box_top], color="0.25", lw=1.2, zorder=2)
        for j in range(i):
            (tap,) = ax.plot([x], [-j * dy], color=colors[j], mec="black", **dot)
            tap.set_gid("connection")
        box = FancyBboxPatch(
            (x - 0.42 * dx, box_top - box_height),
            0.84 * dx,
            box_height,
            boxstyle="round,pad=0.02",
            fc="white",
            ec="0.2",
            lw=1.2,
            zorder=3,
        )
        box.set_gid("layer")
        ax.add_patch(box)
        ax.text(
            x,
            box_top - box_height / 2,
            f"H{_sub(i)}: {layer.in_channels} ch in\n" + "\n".join(_conv_steps(layer)),
            ha="center",
            va="center",
            fontsize=fontsize - 1,
            zorder=5,
        )
        # the box's output: x_i starts below it
        ax.plot([x, x], [box_top - box_height, -i * dy], color=colors[i], lw=2.5, zorder=1)

    # The block output: concatenate every row.
    ax.plot([x_out, x_out], [0, -num_layers * dy], color="0.25", lw=4, zorder=2)
    for j in range(num_layers + 1):
        (tap,) = ax.plot([x_out], [-j * dy], color=colors[j], mec="black", **dot)
        tap.set_gid("output")
    ax.annotate(
        "",
        xy=(x_out + 0.55 * dx, -num_layers * dy / 2),
        xytext=(x_out, -num_layers * dy / 2),
        arrowprops=dict(arrowstyle="-|>", lw=2, color="0.25"),
    )
    ax.text(
        x_out + 0.6 * dx,
        -num_layers * dy / 2,
        f"concatenate\n[x₀, …, x{_sub(num_layers)}]:\n{out_channels} ch out",
        ha="left",
        va="center",
        fontsize=fontsize,
    )

    connections = num_layers * (num_layers + 1) // 2
    if title is None:
        title = (
            f"Dense block: {num_layers} layers, k₀ = {block.in_channels}, "
            f"k = {block.growth_rate}, {connections} connections (●) into the layers\n"
            "each layer concatenates the maps it taps and adds k new ones"
        )
    ax.set_title(title, fontsize=fontsize + 2)
    ax.set_xlim(-0.7 * dx, x_out + 1.7 * dx)
    ax.set_ylim(-(num_layers + 0.35) * dy, 0.55 * dy)
    ax.axis("off")
    return ax


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


def network_stages(model: DenseNet, input_size: int | None = None) -> list[Stage]:
    """The stages of `model` in order, read from ``model.features`` and ``model.classifier``.

    `input_size` is the side of the square input image (default: 224 for the ImageNet
    stem, 32 for the CIFAR stem, following ``model.config["stem"]``).
    """
    if input_size is None:
        input_size = (
            224 if getattr(model, "config", {}).get("stem", "imagenet") == "imagenet" else 32
        )
    stages: list[Stage] = []
    stem: list[nn.Module] = []
    channels, size = model.in_channels, input_size
    stem_in = (channels, size)
    head: list[nn.Module] = []
    blocks = transitions = 0
    for module in model.features.children():
        if isinstance(module, DenseBlock):
            if stem:
                out_channels = [m.out_channels for m in stem if isinstance(m, nn.Conv2d)][-1]
                stages.append(
                    Stage(
                        "stem",
                        "stem",
                        stem_in[0],
                        out_channels,
                        stem_in[1],
                        size,
                        _compact(_describe(m) for m in stem),
                    )
                )
                stem = []
                channels = out_channels
            blocks += 1
            stages.append(
                Stage(
                    "block",
                    f"dense block {blocks}",
                    module.in_channels,
                    module.out_channels,
                    size,
                    size,
                    [f"{module.num_layers} layers", f"k = {module.growth_rate}"],
                    num_layers=module.num_layers,
                )
            )
            channels = module.out_channels
        elif isinstance(module, Transition):
            transitions += 1
            size_in = size
            for m in module.children():
                size = _out_size(m, size)
            stages.append(
                Stage(
                    "transition",
                    f"transition {transitions}",
                    module.in_channels,
                    module.out_channels,
                    size_in,
                    size,
                    [
                        *_compact(_describe(m) for m in module.children()),
                        f"θ = {module.compression:g}",
                    ],
                )
            )
            channels = module.out_channels
        elif blocks == 0:
            stem.append(module)
            size = _out_size(module, size)
        else:
            head.append(module)
    # The head: what follows the last block in `features` (norm5), then forward()'s
    # ReLU and global average pooling, which are function calls, not modules.
    head_lines = _compact([*(_describe(m) for m in head), "ReLU"]) + ["global avg pool"]
    stages.append(Stage("head", "pooling", channels, channels, size, 1, head_lines))
    classifier = model.classifier
    stages.append(
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
    return stages


def draw_densenet(model: DenseNet, ax: Axes | None = None, input_size: int | None = None) -> Axes:
    """Draw `model` as the paper's Figure 2 does, with every number read from its modules.

    Stem, dense blocks, transitions, pooling and classifier from left to right. The
    height of a dense block or transition at its left and right edge is proportional to
    its input and output channels, so a block widens by k per layer (one thin line per
    layer inside it) and a transition narrows by its compression. Below each stage: what
    it computes, its channels and its feature-map size for an `input_size` x `input_size`
    image (see `network_stages`). Stage patches carry the stage's kind as gid
    (``"stem"``, ``"block"``, ``"transition"``, ``"head"``, ``"classifier"``).
    """
    from matplotlib.patches import Polygon

    stages = network_stages(model, input_size)
    in_size = stages[0].in_size
    max_channels = max(max(s.in_channels, s.out_channels) for s in stages[:-1])
    max_layers = max((s.num_layers for s in stages if s.kind == "block"), default=1)

    def height(channels: int) -> float:
        return 0.35 + 2.4 * channels / max_channels

    def width(stage: Stage) -> float:
        if stage.kind == "block":
            return 1.3 + 1.4 * stage.num_layers / max_layers
        return {"stem": 1.6, "transition": 1.45, "head": 1.5, "classifier": 1.35}[stage.kind]

    colors = {
        "stem": "#c6dbef",
        "block": "#fdd0a2",
        "transition": "#c7e9c0",
        "head": "#dadaeb",
        "classifier": "#dadaeb",
    }
    gap, lead = 0.4, 1.0  # arrow length; room for the input's label
    total = lead + sum(width(s) + gap for s in stages) + gap + 0.8
    ax = _figure_axes(ax, (0.72 * total, 4.0))
    fontsize = 8
    top = height(max_channels) / 2

    def arrow(x: float) -> None:
        ax.annotate(
            "",
            xy=(x + gap, 0),
            xytext=(x, 0),
            arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.2),
        )

    ax.text(
        lead - 0.1,
        0,
        f"input\n{model.in_channels}×{in_size}×{in_size}",
        ha="right",
        va="center",
        fontsize=fontsize,
    )
    x = lead
    for stage in stages:
        arrow(x)
        x += gap
        w = width(stage)
        if stage.kind in ("block", "transition"):
            left, right = height(stage.in_channels), height(stage.out_channels)
        elif stage.kind == "stem":
            left = right = height(stage.out_channels)
        else:
            left = right = 0.8
        patch = Polygon(
            [(x, -left / 2), (x + w, -right / 2), (x + w, right / 2), (x, left / 2)],
            closed=True,
            fc=colors[stage.kind],
            ec="0.25",
            lw=1,
        )
        patch.set_gid(stage.kind)
        ax.add_patch(patch)
        center = x + w / 2
        ax.text(
            center,
            top + 0.12,
            stage.name,
            ha="center",
            va="bottom",
            fontsize=fontsize + 0.5,
            weight="bold",
        )
        below = []
        if stage.kind == "block":
            for i in range(1, stage.num_layers):  # one thin line between dense layers
                xi = x + w * i / stage.num_layers
                hi = left + (right - left) * i / stage.num_layers
                ax.plot([xi, xi], [-hi / 2, hi / 2], color="0.55", lw=0.5)
            ax.text(
                center,
                0,
                "\n".join(stage.details),
                ha="center",
                va="center",
                fontsize=fontsize,
                bbox=dict(boxstyle="round,pad=0.15", fc=colors["block"], ec="none"),
            )
        else:
            below += stage.details
        below.append(
            f"{stage.in_channels} → {stage.out_channels} ch"
            if stage.in_channels != stage.out_channels
            else f"{stage.out_channels} ch"
        )
        if stage.kind != "classifier":
            below.append(
                f"{stage.in_size}×{stage.in_size} → {stage.out_size}×{stage.out_size}"
                if stage.in_size != stage.out_size
                else f"{stage.out_size}×{stage.out_size}"
            )
        ax.text(center, -top - 0.12, "\n".join(below), ha="center", va="top", fontsize=fontsize)
        x += w
    arrow(x)
    ax.text(
        x + gap + 0.05,
        0,
        f"{stages[-1].out_channels}\nscores",
        ha="left",
        va="center",
        fontsize=fontsize,
    )
    ax.set_xlim(0, total)
    ax.set_ylim(-top - 1.6, top + 0.5)
    ax.axis("off")
    return ax
