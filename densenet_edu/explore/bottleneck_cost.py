"""Explorer (b): parameters of a dense layer with and without the 1x1 bottleneck."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from densenet_edu.analysis import channel_schedule, count_parameters
from densenet_edu.explore.sliders import BLUE, GREY, ORANGE, Control, base_layout, grid_figure
from densenet_edu.layers import DenseBlock

__all__ = ["bottleneck_cost_explorer"]


def bottleneck_cost_explorer(
    growth_rates: Sequence[int] = (12, 24, 32, 48),
    k0_values: Sequence[int] = (16, 64, 128, 256, 512),
    max_layers: int = 32,
    initial: tuple[int, int] = (32, 64),
) -> go.Figure:
    """Parameters of a dense layer with and without the 1x1 bottleneck, along a block.

    Left: parameters of layer l (it reads k0 + k(l - 1) channels) for the plain layer
    (BN-ReLU-3x3 conv) and DenseNet-B's (BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3 conv), as
    ``count_parameters`` counts them. Right: the whole block's parameters as its depth
    grows. Sliders: k and k0. A layer's multiply-adds per output pixel are its
    convolution weights, so they follow the same curves (chapter 4).
    """

    def state(k: int, k0: int) -> dict[str, Any]:
        return _bottleneck_state(k, k0, max_layers)

    controls = [
        Control("k (growth rate) = ", growth_rates, initial[0]),
        Control("k₀ (block input) = ", k0_values, initial[1]),
    ]
    return grid_figure(_bottleneck_figure(max_layers), "bottleneck-cost", controls, state)


def _layer_parameters(num_layers: int, k0: int, k: int, bottleneck: bool) -> list[int]:
    """Parameters of each layer of ``DenseBlock(num_layers, k0, k)``, counted on ``meta``."""
    with torch.device("meta"):
        block = DenseBlock(num_layers, k0, k, bottleneck=bottleneck)
    return [count_parameters(layer) for layer in block.values()]


def _break_even(plain: list[int], with_b: list[int], widths: list[int]) -> tuple[str, float]:
    """Where the bottleneck layer becomes the smaller one: a sentence, and the x of the line
    between the layers where the plain layer is smaller and those where it is not."""
    num_layers = len(plain)
    cheaper = [ell for ell, (b, p) in enumerate(zip(with_b, plain, strict=True), 1) if b < p]
    if not cheaper:
        return f"the plain layer is smaller in all {num_layers} layers", num_layers + 0.5
    if cheaper[0] == 1:
        return "the bottleneck layer is smaller from layer 1 on", 0.5
    first = cheaper[0]
    verdict = (
        f"the bottleneck layer is smaller from layer {first} on "
        f"(it reads {widths[first - 1]} channels)"
    )
    return verdict, first - 0.5


def _bottleneck_state(k: int, k0: int, max_layers: int) -> dict[str, Any]:
    """Both panels' curves, hover text, title and break-even line for one (k, k0)."""
    schedule = channel_schedule(growth_rate=k, block_config=(max_layers,), num_init_features=k0)
    widths = [layer.in_channels for layer in schedule.layers]
    plain = _layer_parameters(max_layers, k0, k, bottleneck=False)
    with_b = _layer_parameters(max_layers, k0, k, bottleneck=True)
    total_plain, total_b = np.cumsum(plain).tolist(), np.cumsum(with_b).tolist()
    verdict, break_even = _break_even(plain, with_b, widths)
    whole = (
        f"a {max_layers}-layer block: {total_b[-1] / 1e6:.2f} M with, "
        f"{total_plain[-1] / 1e6:.2f} M without bottlenecks"
    )
    hover_layer = [f"layer {ell} reads {m} channels" for ell, m in enumerate(widths, 1)]
    hover_block = [
        f"a block of {ell} layers: bottleneck / plain = {b / p:.2f}"
        for ell, (b, p) in enumerate(zip(total_b, total_plain, strict=True), 1)
    ]
    return {
        "traces": [0, 1, 2, 3],
        "data": {
            "y": [plain, with_b, total_plain, total_b],
            "text": [hover_layer, hover_layer, hover_block, hover_block],
        },
        "layout": {
            "title.text": f"k = {k}, k₀ = {k0}: {verdict};<br>{whole}",
            "shapes[0].x1": break_even,
            "shapes[1].x0": break_even,
            "shapes[1].x1": break_even,
        },
    }


def _bottleneck_figure(max_layers: int) -> go.Figure:
    """Two panels (one layer, the whole block), a plain and a bottleneck curve in each, and
    the shaded region where the plain layer is smaller, ending at a dashed break-even line."""
    layers = list(range(1, max_layers + 1))
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("one dense layer: parameters", "the whole block of L layers: parameters"),
    )
    for col, prefix in ((1, ""), (2, "block, ")):
        for name, color in (("plain: 3x3 conv", ORANGE), ("bottleneck: 1x1 (4k), 3x3", BLUE)):
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    name=prefix + name,
                    mode="lines+markers",
                    line_color=color,
                    marker_size=5,
                    showlegend=col == 1,
                    hovertemplate="%{text}<br>%{y:,} parameters<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
    base_layout(fig, height=580)
    fig.update_layout(
        legend=dict(y=1.1),
        title=dict(y=0.97),
        margin=dict(t=140),
        shapes=[
            # the layers where the plain layer is smaller, and the break-even line
            dict(type="rect", xref="x", yref="y domain", x0=0.3, y0=0, y1=1, line_width=0,
                 fillcolor=ORANGE, opacity=0.1),
            dict(type="line", xref="x", yref="y domain", y0=0, y1=1,
                 line=dict(color=GREY, dash="dash", width=1)),
        ],
    )  # fmt: skip
    fig.update_xaxes(title_text="layer ℓ of the block", row=1, col=1)
    fig.update_xaxes(title_text="number of layers L", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", separatethousands=True)
    return fig
