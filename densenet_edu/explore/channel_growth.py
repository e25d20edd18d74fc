"""Explorer (a): the input width of every layer of a dense block, sliders k0, k and L."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from densenet_edu.analysis import count_parameters
from densenet_edu.explore.sliders import BLUE, GREY, ORANGE, Control, base_layout, grid_figure
from densenet_edu.layers import DenseBlock

__all__ = ["channel_growth_explorer"]


def channel_growth_explorer(
    k0_values: Sequence[int] = (16, 24, 64, 128, 256),
    growth_rates: Sequence[int] = (6, 12, 24, 32, 48),
    max_layers: int = 24,
    initial: tuple[int, int, int] = (64, 32, 6),
) -> go.Figure:
    """Input width of every layer of one dense block, with sliders for k0, k and L.

    Layer l reads k0 + k(l - 1) channels (Section 3, "Growth rate"); the block returns
    k0 + kL. Each bar is split into the block input (k0) and the maps of the earlier
    layers. The title gives the block's output width and the parameters of
    ``DenseBlock(L, k0, k)`` (with bottlenecks, bn_size 4), counted by the package.
    """
    blocks = {
        (k0, k): _count_block(max_layers, k0, k)
        for k0, k in itertools.product(k0_values, growth_rates)
    }

    def state(k0: int, k: int, num_layers: int) -> dict[str, Any]:
        return _growth_state(k0, k, num_layers, *blocks[k0, k])

    controls = [
        Control("k₀ (block input) = ", k0_values, initial[0]),
        Control("k (growth rate) = ", growth_rates, initial[1]),
        Control("L (layers in the block) = ", range(1, max_layers + 1), initial[2]),
    ]
    return grid_figure(_growth_figure(max_layers), "channel-growth", controls, state)


def _count_block(max_layers: int, k0: int, k: int) -> tuple[list[int], list[int]]:
    """Widths every layer of ``DenseBlock(max_layers, k0, k)`` reads (and the block's output
    width last), and the parameters of its first 1, 2, ... layers, counted on ``meta``.

    A block of L layers is the first L layers of this one: same widths, same weights.
    """
    with torch.device("meta"):
        block = DenseBlock(max_layers, k0, k)
    widths = [layer.in_channels for layer in block.values()] + [block.out_channels]
    params = np.cumsum([count_parameters(m) for m in block.values()]).tolist()
    return widths, params


def _growth_state(
    k0: int, k: int, num_layers: int, layer_widths: list[int], block_params: list[int]
) -> dict[str, Any]:
    """The bars, hover text, title and axes for a block of ``num_layers`` layers."""
    widths = layer_widths[:num_layers]
    out = layer_widths[num_layers]  # what layer L + 1 would read: the block output
    params = block_params[num_layers - 1]
    x = list(range(1, num_layers + 1))
    return {
        "traces": [0, 1, 2],
        "data": {
            "y": [[k0] * num_layers, [w - k0 for w in widths], [out]],
            "customdata": [None, widths, [[num_layers, params]]],
            "x": [x, x, [num_layers + 1.5]],
            "text": [None, None, [out]],
        },
        "layout": {
            "title.text": (
                f"k₀ = {k0}, k = {k}, L = {num_layers}: the block outputs {out} channels"
                f"<br>DenseBlock({num_layers}, {k0}, {k}) has {params:,} parameters"
            ),
            "yaxis.range": [0, 1.12 * layer_widths[-1]],
            "xaxis.tickvals": [*x, num_layers + 1.5],
            "xaxis.ticktext": [*map(str, x), "out"],
        },
    }


def _growth_figure(max_layers: int) -> go.Figure:
    """The three stacked bar traces (block input, earlier layers, block output) and axes."""
    fig = go.Figure(
        [
            go.Bar(name="block input (k₀)", marker_color=GREY,
                   hovertemplate="%{y} from the block input<extra></extra>"),
            go.Bar(name="earlier layers (k each)", marker_color=BLUE,
                   hovertemplate="layer %{x} reads %{customdata} channels:"
                   "<br>%{y} from earlier layers<extra></extra>"),
            go.Bar(name="block output (k₀ + kL)", marker_color=ORANGE, width=1,
                   textposition="outside", cliponaxis=False,
                   hovertemplate="a block of %{customdata[0]} layers outputs %{y} channels"
                   "<br>and has %{customdata[1]:,} parameters<extra></extra>"),
        ]
    )  # fmt: skip
    base_layout(fig, height=700)
    fig.update_layout(
        barmode="stack",
        bargap=0.15,
        hovermode="x",
        legend_traceorder="normal",
        margin=dict(t=120),
        xaxis=dict(title="dense layer ℓ of the block", range=[0.4, max_layers + 2.2]),
        yaxis_title="input channels m = k₀ + k(ℓ − 1)",
    )
    return fig
