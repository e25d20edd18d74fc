"""Explorer (d): the paper's Figure 5 as heat maps, with a dropdown for the colour scale."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import nn

from densenet_edu.explore.display import EXPLORER_KEY
from densenet_edu.explore.sliders import base_layout
from densenet_edu.reuse import feature_reuse

__all__ = ["feature_reuse_explorer"]

#: The dropdown's colour scales: ``normalize`` (as in ``plot_feature_reuse``) and its label.
SCALES = {
    "column": "each column / its largest entry",
    "block": "each block / its largest entry",
    None: "raw mean |weight|",
}


def feature_reuse_explorer(
    model_or_matrices: nn.Module | Sequence[np.ndarray],
    untrained: nn.Module | Sequence[np.ndarray] | None = None,
) -> go.Figure:
    """The paper's Figure 5 as heat maps whose cells name source, target and weight.

    Args:
        model_or_matrices: a trained ``densenet_edu.DenseNet``, or the list
            :func:`~densenet_edu.reuse.feature_reuse` returned for it.
        untrained: optionally the same for the model before training; the dropdown then
            offers its heat maps too.

    Row s is the source (0 = the block's input), column l the target layer; the last
    column is the transition (T1, T2, ...) or the classifier (C). Hovering a cell shows the
    mean absolute weight; the dropdown scales colours per target column (as chapter 10
    does), per block (as the paper does) or not at all.
    """
    sets = {"trained": _matrices_of(model_or_matrices)}
    if untrained is not None:
        sets["untrained"] = _matrices_of(untrained)
    fig = _heatmaps(sets["trained"])
    buttons = [
        _scale_button(name, matrices, normalize)
        for name, matrices in sets.items()
        for normalize in SCALES
    ]
    _reuse_layout(fig, buttons)
    first = buttons[0]["args"]  # the figure starts as the dropdown's first entry
    for b, trace in enumerate(fig.data):
        trace.z = first[0]["z"][b]
        trace.customdata = first[0]["customdata"][b]
    fig.update_layout(title_text=first[1]["title.text"], coloraxis_cmax=1)
    return fig


def _matrices_of(obj: nn.Module | Sequence[np.ndarray]) -> list[np.ndarray]:
    """:func:`~densenet_edu.reuse.feature_reuse` of a model, or the matrices as float arrays."""
    if isinstance(obj, nn.Module):
        return feature_reuse(obj)
    return [np.asarray(m, dtype=float) for m in obj]


def _scaled(matrix: np.ndarray, normalize: str | None) -> np.ndarray:
    if normalize == "column":
        return matrix / np.nanmax(matrix, axis=0, keepdims=True)
    if normalize == "block":
        return matrix / np.nanmax(matrix)
    return matrix


def _nan_to_none(a: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in a]


def _heatmaps(matrices: Sequence[np.ndarray]) -> go.Figure:
    """One panel per dense block sharing one colour axis; sources down, targets across (the
    last target is T1, T2, ... or C). The values come from the dropdown's buttons."""
    n = len(matrices)
    last = [f"T{b + 1}" for b in range(n - 1)] + ["C"]
    fig = make_subplots(
        rows=1,
        cols=n,
        horizontal_spacing=0.06,
        subplot_titles=[f"dense block {b + 1}" for b in range(n)],
    )
    for b, matrix in enumerate(matrices):
        size = matrix.shape[0]
        targets = [str(j + 1) for j in range(size - 1)] + [last[b]]
        sources = [str(s) for s in range(size)]
        fig.add_trace(
            go.Heatmap(
                x=targets,
                y=sources,
                colorscale="Viridis",
                zmin=0,
                coloraxis="coloraxis",
                hoverongaps=False,
                hovertemplate=(
                    "source s = %{y}<br>target = %{x}<br>mean |weight| = %{customdata:.4f}"
                    "<br>colour = %{z:.2f}<extra></extra>"
                ),
                xgap=1,
                ygap=1,
            ),
            row=1,
            col=b + 1,
        )
        fig.update_xaxes(title_text="target layer ℓ", type="category", row=1, col=b + 1)
        fig.update_yaxes(type="category", autorange="reversed", row=1, col=b + 1)
    fig.update_yaxes(title_text="source layer s", row=1, col=1)
    return fig


def _scale_button(
    set_name: str, matrices: Sequence[np.ndarray], normalize: str | None
) -> dict[str, Any]:
    """The dropdown entry that shows one model's matrices with one colour scale: the
    colours (z), the raw values for hovering (customdata), the title and the colour range."""
    description = SCALES[normalize]
    z = [_nan_to_none(_scaled(m, normalize)) for m in matrices]
    raw = [_nan_to_none(m) for m in matrices]
    largest = max(float(np.nanmax(m)) for m in matrices)
    title = f"Feature reuse, {set_name} model: colour = {description}"
    return dict(
        method="update",
        label=f"{set_name}, {description}",
        args=[
            {"z": z, "customdata": raw},
            {"title.text": title, "coloraxis.cmax": 1 if normalize else largest},
        ],
    )


def _reuse_layout(fig: go.Figure, buttons: list[dict[str, Any]]) -> None:
    """The look, the shared colour axis and the dropdown above the panels."""
    base_layout(fig, height=500)
    fig.update_layout(
        coloraxis=dict(colorscale="Viridis", cmin=0, colorbar=dict(title="colour", len=0.8)),
        updatemenus=[
            dict(
                buttons=buttons,
                active=0,
                direction="down",
                x=0,
                xanchor="left",
                y=1.16,
                yanchor="bottom",
                showactive=True,
            )
        ],
        title=dict(y=0.97),
        margin=dict(t=140, b=60),
        meta={EXPLORER_KEY: "feature-reuse"},
    )
