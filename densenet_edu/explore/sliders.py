"""Sliders that work without a kernel: every state of a figure is computed up front.

Plotly's own slider steps can change a figure for *one* control. A figure with several
independent controls (k0, k and L, say) stores every combination in
``layout.meta["densenet_edu_grid"]``; :data:`~densenet_edu.explore.display.GRID_JS` then
picks the state matching all sliders whenever one of them moves. Also the look the
explorers share (colours, font, margins).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from densenet_edu.explore.display import EXPLORER_KEY, GRID_KEY

__all__ = ["BLUE", "FONT", "GREY", "ORANGE", "RED", "grid_state"]

BLUE, ORANGE, GREY, RED = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728"
FONT = dict(family="Helvetica, Arial, sans-serif", size=13)


@dataclass(frozen=True)
class Control:
    """One slider of a grid figure: its values and the one shown first."""

    name: str  # shown before the value, e.g. "k = "
    values: Sequence[Any]
    initial: Any
    label: Callable[[Any], str] = str


def grid_figure(
    fig: go.Figure,
    name: str,
    controls: Sequence[Control],
    state: Callable[..., dict[str, Any]],
) -> go.Figure:
    """Add one slider per control and the state of every combination of their values.

    ``state(*values)`` returns ``{"traces": [i, ...], "data": {attr: [one value per
    trace]}, "layout": {"dotted.path": value}}``, the arguments of ``Plotly.update``.
    """
    for control in controls:
        if control.initial not in control.values:
            raise ValueError(f"{control.name}{control.initial} is not one of {control.values}")
    states = [state(*combo) for combo in itertools.product(*(c.values for c in controls))]
    fig.update_layout(
        sliders=sliders(fig, [c.name for c in controls], [
            [dict(method="skip", label=c.label(v)) for v in c.values] for c in controls
        ], [list(c.values).index(c.initial) for c in controls]),
        meta={
            EXPLORER_KEY: name,
            GRID_KEY: {"shape": [len(c.values) for c in controls], "states": states},
        },
    )  # fmt: skip
    apply_state(fig, state(*(c.initial for c in controls)))
    return fig


def sliders(
    fig: go.Figure, names: Sequence[str], steps: Sequence[list[dict]], active: Sequence[int]
) -> list[dict[str, Any]]:
    """Sliders stacked below the plot, 80 px apart; sets the bottom margin to fit them."""
    bottom = 90 + 80 * len(names)
    fig.update_layout(margin=dict(b=bottom))
    plot_height = fig.layout.height - fig.layout.margin.t - bottom
    return [
        dict(
            active=index,
            currentvalue=dict(prefix=name, font=dict(size=13)),
            steps=slider_steps,
            x=0.05,
            len=0.9,
            y=-(75 + 80 * i) / plot_height,  # paper coordinates: fractions of the plot
            yanchor="top",
            pad=dict(t=0, b=0),
            font=dict(size=11),
        )
        for i, (name, slider_steps, index) in enumerate(zip(names, steps, active, strict=True))
    ]


def apply_state(fig: go.Figure, state: dict[str, Any]) -> None:
    """Python's ``Plotly.update``: set the figure to one precomputed state."""
    for attribute, values in state["data"].items():
        for trace, value in zip(state["traces"], values, strict=True):
            fig.data[trace][attribute] = value
    for path, value in state["layout"].items():
        fig.layout[path] = value


def grid_state(fig: go.Figure, *values: Any) -> dict[str, Any]:
    """The precomputed state a figure with several sliders shows for ``values``.

    Example: ``grid_state(channel_growth_explorer(), 64, 32, 6)`` is what the figure
    shows for k0 = 64, k = 32 and 6 layers.
    """
    grid = fig.layout.meta[GRID_KEY]
    if len(values) != len(grid["shape"]):
        raise ValueError(f"the figure has {len(grid['shape'])} sliders, got {len(values)} values")
    index = 0
    for slider, size, value in zip(fig.layout.sliders, grid["shape"], values, strict=True):
        labels = [step.label for step in slider.steps]
        if str(value) not in labels:
            raise ValueError(f"{value} is not a position of the slider {labels}")
        index = index * size + labels.index(str(value))
    return grid["states"][index]


def base_layout(fig: go.Figure, height: int) -> None:
    """The look every explorer shares: template, font, title and legend placement."""
    fig.update_layout(
        template="plotly_white",
        font=FONT,
        height=height,
        title=dict(x=0.02, xanchor="left", font=dict(size=15)),
        legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
        hoverlabel=dict(font_size=13),
        margin=dict(t=100, l=70, r=30),
    )
