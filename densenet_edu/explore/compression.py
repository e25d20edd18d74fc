"""Explorer (c): the width through the whole DenseNet-121 layout as theta varies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import nn

from densenet_edu.analysis import count_macs, count_parameters
from densenet_edu.explore.display import EXPLORER_KEY
from densenet_edu.explore.sliders import BLUE, GREY, RED, apply_state, base_layout, sliders
from densenet_edu.layers import DenseLayer, Transition
from densenet_edu.model import DenseNet, densenet121

__all__ = ["compression_explorer", "layer_input_widths"]


def layer_input_widths(model: nn.Module) -> list[int]:
    """Channels that every dense layer of ``model`` reads, in order, from its modules."""
    return [m.conv1.in_channels for m in model.modules() if isinstance(m, DenseLayer)]


def compression_explorer(
    thetas: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    initial: float = 0.5,
) -> go.Figure:
    """The width through the whole DenseNet-121 layout as the compression theta varies.

    Top: the channels every dense layer reads (Section 3, "Compression": a transition
    keeps floor(theta m) of m maps). Bottom: parameters and multiply-adds (224x224) of
    each model relative to DenseNet-121. The paper's DenseNet-121 (theta = 0.5), built by
    ``densenet121()``, is marked in both panels. One slider: theta.
    """
    if initial not in thetas:
        raise ValueError(f"initial theta {initial} is not one of {list(thetas)}")
    costs = _Costs.count(thetas)
    fig = _compression_figure(costs)
    steps = []
    for theta in thetas:
        data, layout = costs.state(theta)
        steps.append(dict(method="update", label=f"{theta:.2f}", args=[data, layout, [0, 4]]))
    _compression_layout(fig, costs)
    fig.update_layout(
        sliders=sliders(fig, ["compression θ = "], [steps], [list(thetas).index(initial)])
    )
    _compression_axes(fig, costs)
    data, layout = costs.state(initial)
    apply_state(fig, {"traces": [0, 4], "data": data, "layout": layout})
    return fig


@dataclass(frozen=True)
class _Costs:
    """DenseNet-121 and the same layout with each theta, counted on ``meta``: what every
    state of the figure shows. Dicts are keyed by theta."""

    thetas: tuple[float, ...]
    ref_widths: list[int]  # the channels each dense layer of DenseNet-121 reads
    ref_params: int
    ref_macs: int
    theta_121: float
    block_config: tuple[int, ...]
    widths: dict[float, list[int]]
    params: dict[float, int]
    macs: dict[float, int]
    transitions: dict[float, list[int]]  # the maps each transition keeps
    classifier: dict[float, int]  # the features the classifier reads

    @classmethod
    def count(cls, thetas: Sequence[float]) -> _Costs:
        with torch.device("meta"):
            reference = densenet121()
            models = {theta: DenseNet(compression=theta) for theta in thetas}
        return cls(
            thetas=tuple(thetas),
            ref_widths=layer_input_widths(reference),
            ref_params=count_parameters(reference),
            ref_macs=count_macs(reference),
            theta_121=reference.config.compression,
            block_config=tuple(reference.config.block_config),
            widths={theta: layer_input_widths(m) for theta, m in models.items()},
            params={theta: count_parameters(m) for theta, m in models.items()},
            macs={theta: count_macs(m) for theta, m in models.items()},
            transitions={
                theta: [t.conv.out_channels for t in m.modules() if isinstance(t, Transition)]
                for theta, m in models.items()
            },
            classifier={theta: m.classifier.in_features for theta, m in models.items()},
        )

    @property
    def layers(self) -> list[int]:
        """The dense layers, numbered 1, 2, ... through the network: the top panel's x."""
        return list(range(1, len(self.ref_widths) + 1))

    def relative(self, theta: float) -> tuple[float, float]:
        """Parameters and multiply-adds with ``theta``, in % of DenseNet-121's."""
        return 100 * self.params[theta] / self.ref_params, 100 * self.macs[theta] / self.ref_macs

    def state(self, theta: float) -> tuple[dict[str, Any], dict[str, Any]]:
        """The traces' data (the chosen widths, the chosen point) and title for ``theta``."""
        title = (
            f"θ = {theta:.2f}: the transitions keep {', '.join(map(str, self.transitions[theta]))} "
            f"maps, the classifier reads {self.classifier[theta]:,}<br>"
            f"{self.params[theta] / 1e6:.2f} M parameters, "
            f"{self.macs[theta] / 1e9:.2f} G multiply-adds "
            f"(DenseNet-121: {self.ref_params / 1e6:.2f} M, {self.ref_macs / 1e9:.2f} G)"
        )
        data = {
            "y": [self.widths[theta], list(self.relative(theta))],
            "x": [self.layers, [theta, theta]],
        }
        return data, {"title.text": title}


def _compression_figure(costs: _Costs) -> go.Figure:
    """Top panel: the chosen widths and DenseNet-121's; bottom: relative costs along theta,
    the chosen point (trace 4) and DenseNet-121's star."""
    x, theta_121 = costs.layers, costs.theta_121
    rel_params, rel_macs = zip(*(costs.relative(t) for t in costs.thetas), strict=True)
    fig = make_subplots(rows=2, cols=1, row_heights=[0.6, 0.4], vertical_spacing=0.17)
    traces = [
        go.Scatter(x=x, mode="lines+markers", name="the chosen θ", line_color=BLUE,
                   marker_size=4, hovertemplate="layer %{x} reads %{y} channels<extra></extra>"),
        go.Scatter(x=x, y=costs.ref_widths, mode="lines", name=f"DenseNet-121 (θ = {theta_121})",
                   line=dict(color=RED, dash="dash", width=1.5),
                   hovertemplate="layer %{x} reads %{y} channels<extra>DenseNet-121</extra>"),
        go.Scatter(x=list(costs.thetas), y=list(rel_params), mode="lines", name="parameters",
                   line_color=GREY, hovertemplate="θ = %{x}: %{y:.0f}%<extra>parameters</extra>"),
        go.Scatter(x=list(costs.thetas), y=list(rel_macs), mode="lines",
                   name="multiply-adds (224x224)", line=dict(color=GREY, dash="dot"),
                   hovertemplate="θ = %{x}: %{y:.0f}%<extra>multiply-adds</extra>"),
        go.Scatter(mode="markers", marker=dict(size=11, color=BLUE), showlegend=False,
                   hovertemplate="%{y:.0f}%<extra>the chosen θ</extra>"),
        go.Scatter(x=[theta_121] * 2, y=[100.0, 100.0], mode="markers", name="DenseNet-121",
                   marker=dict(symbol="star", size=15, color=RED), showlegend=False,
                   hovertemplate="DenseNet-121 (θ = %{x})<extra></extra>"),
    ]  # fmt: skip
    for i, trace in enumerate(traces):
        fig.add_trace(trace, row=1 if i < 2 else 2, col=1)
    return fig


def _compression_layout(fig: go.Figure, costs: _Costs) -> None:
    """The look, and the block boundaries of the top panel: dotted lines and "block b"."""
    starts = np.cumsum([0, *costs.block_config]).tolist()
    shapes = [
        dict(type="line", xref="x", yref="y domain", x0=s + 0.5, x1=s + 0.5, y0=0, y1=1,
             line=dict(color=GREY, dash="dot", width=1))
        for s in starts[1:-1]
    ]  # fmt: skip
    annotations = [
        dict(text=f"block {b + 1}", x=(starts[b] + starts[b + 1]) / 2 + 0.5, y=0.99, xref="x",
             yref="y domain", yanchor="top", showarrow=False, font=dict(color=GREY))
        for b in range(len(starts) - 1)
    ]  # fmt: skip
    base_layout(fig, height=760)
    fig.update_layout(
        shapes=shapes,
        annotations=annotations,
        margin=dict(t=130),
        title=dict(y=0.975),
        legend=dict(y=1.03),
        meta={EXPLORER_KEY: "compression"},
    )


def _compression_axes(fig: go.Figure, costs: _Costs) -> None:
    """Axis titles; the top panel keeps one scale for every theta."""
    fig.update_xaxes(title_text="dense layer, counted through the network", row=1, col=1)
    widest = max(max(w) for w in costs.widths.values())
    fig.update_yaxes(title_text="input channels", range=[0, 1.08 * widest], row=1, col=1)
    fig.update_xaxes(title_text="compression θ", row=2, col=1)
    fig.update_yaxes(title_text="cost, % of DenseNet-121", ticksuffix="%", row=2, col=1)
