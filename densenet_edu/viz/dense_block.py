"""The paper's Figure 1 for any dense block: every layer reads every earlier map."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from densenet_edu.layers import DenseBlock, DenseLayer
from densenet_edu.viz.common import figure_axes, subscript

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes

__all__ = ["draw_dense_block"]

DX, DY = 2.0, 1.0  # column spacing (layers), row spacing (feature maps)
FONTSIZE = 9
_DOT = dict(marker="o", ms=7, zorder=4, ls="none")  # one connection


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
    import matplotlib as mpl

    layers = list(block.values())
    num_layers = len(layers)
    widths = _map_widths(block, layers)
    ax = figure_axes(ax, (1.75 * (num_layers + 2.5), 0.85 * (num_layers + 2.5)))
    colors = mpl.colormaps["viridis"](
        [0.85 * j / max(num_layers, 1) for j in range(num_layers + 1)]
    )
    x_out = (num_layers + 1) * DX  # the column of the block's output concatenation
    _draw_maps(ax, widths, colors, x_out)
    for i, layer in enumerate(layers, start=1):
        _draw_layer(ax, i, layer, colors)
    _draw_output(ax, num_layers, sum(widths), colors, x_out)
    if title is None:
        connections = num_layers * (num_layers + 1) // 2
        title = (
            f"Dense block: {num_layers} layers, k₀ = {block.in_channels}, "
            f"k = {block.growth_rate}, {connections} connections (●) into the layers\n"
            "each layer concatenates the maps it taps and adds k new ones"
        )
    ax.set_title(title, fontsize=FONTSIZE + 2)
    ax.set_xlim(-0.7 * DX, x_out + 1.7 * DX)
    ax.set_ylim(-(num_layers + 0.35) * DY, 0.55 * DY)
    ax.axis("off")
    return ax


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


def _map_widths(block: DenseBlock, layers: list[DenseLayer]) -> list[int]:
    """Channels of x_0 (the block input), x_1, ..., x_L, checked against what layers read."""
    widths = [block.in_channels] + [_new_maps(layer) for layer in layers]
    for i, layer in enumerate(layers, start=1):
        if layer.in_channels != sum(widths[:i]):
            raise ValueError(
                f"denselayer{i} reads {layer.in_channels} channels, but x_0 .. x_{i - 1} "
                f"hold {sum(widths[:i])}"
            )
    return widths


def _draw_maps(ax: Axes, widths: list[int], colors: np.ndarray, x_out: float) -> None:
    """The feature-map rows: x_0 from the block input, x_l from layer l's box, each labelled
    with its width."""
    for j, width in enumerate(widths):
        y = -j * DY
        start = j * DX if j else -0.6 * DX
        ax.plot([start, x_out], [y, y], color=colors[j], lw=2.5, zorder=1, solid_capstyle="butt")
        # x_0's label above its line; the others below theirs, clear of the boxes.
        ax.text(
            start + (0.05 * DX if j else 0),
            y + (-0.08 if j else 0.08) * DY,
            f"{'block input ' if j == 0 else ''}x{subscript(j)}: {width} ch",
            fontsize=FONTSIZE,
            va="top" if j else "bottom",
            ha="left",
        )


def _draw_layer(ax: Axes, i: int, layer: DenseLayer, colors: np.ndarray) -> None:
    """Layer i: a tap line through rows 0 .. i-1 (a dot per connection), then the box H_i
    with its input width and convolutions, then its new maps x_i leaving the box."""
    from matplotlib.patches import FancyBboxPatch

    x = i * DX
    box_top = -(i - 1) * DY - 0.22 * DY
    box_height = 0.56 * DY
    ax.plot([x, x], [0, box_top], color="0.25", lw=1.2, zorder=2)
    for j in range(i):
        (tap,) = ax.plot([x], [-j * DY], color=colors[j], mec="black", **_DOT)
        tap.set_gid("connection")
    box = FancyBboxPatch(
        (x - 0.42 * DX, box_top - box_height),
        0.84 * DX,
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
        f"H{subscript(i)}: {layer.in_channels} ch in\n" + "\n".join(_conv_steps(layer)),
        ha="center",
        va="center",
        fontsize=FONTSIZE - 1,
        zorder=5,
    )
    # the box's output: x_i starts below it
    ax.plot([x, x], [box_top - box_height, -i * DY], color=colors[i], lw=2.5, zorder=1)


def _draw_output(
    ax: Axes, num_layers: int, out_channels: int, colors: np.ndarray, x_out: float
) -> None:
    """The block output: a bar tapping every row, and an arrow to its concatenated width."""
    ax.plot([x_out, x_out], [0, -num_layers * DY], color="0.25", lw=4, zorder=2)
    for j in range(num_layers + 1):
        (tap,) = ax.plot([x_out], [-j * DY], color=colors[j], mec="black", **_DOT)
        tap.set_gid("output")
    ax.annotate(
        "",
        xy=(x_out + 0.55 * DX, -num_layers * DY / 2),
        xytext=(x_out, -num_layers * DY / 2),
        arrowprops=dict(arrowstyle="-|>", lw=2, color="0.25"),
    )
    ax.text(
        x_out + 0.6 * DX,
        -num_layers * DY / 2,
        f"concatenate\n[x₀, …, x{subscript(num_layers)}]:\n{out_channels} ch out",
        ha="left",
        va="center",
        fontsize=FONTSIZE,
    )
