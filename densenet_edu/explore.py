"""Explorable figures: plotly figures whose sliders work in a static page, without a kernel.

Every number a figure shows is computed here with ``densenet_edu`` itself (the channel
schedule, ``count_parameters`` and ``count_macs`` of modules on the ``meta`` device,
``feature_reuse``), over a small grid of settings, when the figure is made. Moving a
slider only picks one of these precomputed states, so the figure needs no Python
behind it: it works in the built book, in Jupyter and in Colab alike.

Plotly's own slider steps can change a figure for *one* control. A figure with several
independent controls (k0, k and L, say) stores every combination in
``layout.meta["densenet_edu_grid"]`` and gets a few lines of JavaScript (:data:`GRID_JS`)
that pick the state matching all sliders whenever one of them moves.

>>> from densenet_edu.explore import channel_growth_explorer, show
>>> show(channel_growth_explorer())  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.offline import get_plotlyjs_version
from plotly.subplots import make_subplots
from torch import nn

from densenet_edu.analysis import channel_schedule, count_macs, count_parameters
from densenet_edu.layers import DenseBlock, DenseLayer, Transition
from densenet_edu.model import DenseNet, densenet121
from densenet_edu.reuse import feature_reuse

__all__ = [
    "GRID_JS",
    "LOADER_JS",
    "PAGE_HAS_PLOTLY_ENV",
    "bottleneck_cost_explorer",
    "channel_growth_explorer",
    "compression_explorer",
    "feature_reuse_explorer",
    "grid_state",
    "layer_input_widths",
    "show",
    "to_html",
]

#: ``layout.meta`` key naming the figure (the browser test finds figures by it).
EXPLORER_KEY = "densenet_edu_explorer"
#: ``layout.meta`` key of the precomputed grid of a figure with several sliders.
GRID_KEY = "densenet_edu_grid"

#: The only JavaScript of these figures, run once after plotly has drawn a figure that has
#: several sliders. Each slider step has ``method: "skip"``, so moving a slider changes
#: nothing by itself; this listener then reads the position of *every* slider, turns them
#: into one index of the grid (row-major, like ``itertools.product``) and applies the
#: precomputed state with ``Plotly.update``. plotly replaces ``{plot_id}`` with the id
#: of the figure's div.
GRID_JS = """\
var gd = document.getElementById('{plot_id}');
var grid = gd.layout.meta.densenet_edu_grid;
gd.on('plotly_sliderchange', function () {
  var index = 0;
  grid.shape.forEach(function (size, i) { index = index * size + gd.layout.sliders[i].active; });
  var state = grid.states[index];
  Plotly.update(gd, state.data, state.layout, state.traces);
});"""

_div_numbers = itertools.count(1)

#: Set (by the book's Sphinx extension) when the page itself provides plotly.js.
PAGE_HAS_PLOTLY_ENV = "DENSENET_EDU_PAGE_HAS_PLOTLY"

#: Outside the book: load plotly.js once per page (Jupyter) or output frame (Colab), then
#: draw. Front ends that insert output HTML with ``innerHTML`` (JupyterLab) run an external
#: script asynchronously, so the figure must wait for its ``load`` event.
LOADER_JS = """
(function () {
  function draw() { {draw} }
  if (window.Plotly) { draw(); return; }
  var script = document.querySelector('script[src="{src}"]');
  if (!script) {
    window.PlotlyConfig = {MathJaxConfig: 'local'};
    script = document.createElement('script');
    script.src = '{src}';
    document.head.appendChild(script);
  }
  script.addEventListener('load', draw);
})();
"""
_SCRIPT_OPEN = re.compile(r"<script\b[^>]*>")  # plotly 5 adds type="text/javascript"

BLUE, ORANGE, GREY, RED = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728"
FONT = dict(family="Helvetica, Arial, sans-serif", size=13)


# --- displaying a figure ---------------------------------------------------------------


def to_html(fig: go.Figure, plotly_src: str | None = None) -> str:
    """The figure as an HTML snippet: a div, its data and, when needed, :data:`GRID_JS`.

    In the book (the Sphinx extension ``_ext/plotly_assets.py`` sets
    :data:`PAGE_HAS_PLOTLY_ENV` and puts the plotly.js of the installed plotly package in
    the page's head) the snippet uses that plotly.js and loads nothing. Elsewhere (Jupyter,
    Colab) it loads plotly.js from ``plotly_src``, by default plotly's CDN copy of the
    version this plotly package bundles, and draws the figure once it has loaded.
    """
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    name = meta.get(EXPLORER_KEY, "figure")
    html = fig.to_html(
        full_html=False,
        div_id=f"explore-{name}-{next(_div_numbers)}",  # stable from build to build
        include_plotlyjs=False,
        post_script=GRID_JS if GRID_KEY in meta else None,
        # No mode bar: it would cover the titles, and the figures need no zoom.
        config={"displayModeBar": False, "responsive": True},
    )
    if plotly_src is None and os.environ.get(PAGE_HAS_PLOTLY_ENV):
        return html
    if plotly_src is None:
        plotly_src = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    # plotly writes one inline script (its JSON escapes "</"); run it once plotly.js is there.
    start = _SCRIPT_OPEN.search(html).end()
    end = html.index("</script>", start)
    loader = LOADER_JS.replace("{src}", plotly_src).replace("{draw}", html[start:end])
    return html[:start] + loader + html[end:]


class _Shown:
    """What :func:`show` displays: HTML for browsers, a one-line summary for text."""

    def __init__(self, fig: go.Figure) -> None:
        self.fig = fig

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        title = self.fig.layout.title.text or "an interactive plotly figure"
        return {"text/html": to_html(self.fig), "text/plain": f"<figure: {title}>"}


def show(fig: go.Figure) -> None:
    """Display an explorable figure in the book, in Jupyter or in Colab.

    A plain ``fig.show()`` would pick a renderer per front end, and some of them
    (JupyterLab's plotly mimetype) do not run :data:`GRID_JS`; one HTML output works
    everywhere a browser runs the notebook's output.
    """
    from IPython.display import display

    display(_Shown(fig))


# --- figures with several sliders --------------------------------------------------------


@dataclass(frozen=True)
class _Control:
    name: str  # shown before the value, e.g. "k = "
    values: Sequence[Any]
    initial: Any
    label: Callable[[Any], str] = str


def _grid_figure(
    fig: go.Figure,
    name: str,
    controls: Sequence[_Control],
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
        sliders=_sliders(fig, [c.name for c in controls], [
            [dict(method="skip", label=c.label(v)) for v in c.values] for c in controls
        ], [list(c.values).index(c.initial) for c in controls]),
        meta={
            EXPLORER_KEY: name,
            GRID_KEY: {"shape": [len(c.values) for c in controls], "states": states},
        },
    )  # fmt: skip
    _apply(fig, state(*(c.initial for c in controls)))
    return fig


def _sliders(
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


def _apply(fig: go.Figure, state: dict[str, Any]) -> None:
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


def _base_layout(fig: go.Figure, height: int) -> None:
    fig.update_layout(
        template="plotly_white",
        font=FONT,
        height=height,
        title=dict(x=0.02, xanchor="left", font=dict(size=15)),
        legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
        hoverlabel=dict(font_size=13),
        margin=dict(t=100, l=70, r=30),
    )


# --- (a) channel growth ------------------------------------------------------------------


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
    layer_widths: dict[tuple[int, int], list[int]] = {}
    block_params: dict[tuple[int, int], list[int]] = {}
    for k0, k in itertools.product(k0_values, growth_rates):
        with torch.device("meta"):
            block = DenseBlock(max_layers, k0, k)
        # A block of L layers is the first L layers of this one: same widths, same weights.
        layer_widths[k0, k] = [layer.in_channels for layer in block.values()] + [block.out_channels]
        block_params[k0, k] = np.cumsum([count_parameters(m) for m in block.values()]).tolist()

    def state(k0: int, k: int, num_layers: int) -> dict[str, Any]:
        widths = layer_widths[k0, k][:num_layers]
        out = layer_widths[k0, k][num_layers]  # what layer L + 1 would read: the block output
        params = block_params[k0, k][num_layers - 1]
        x = layers[:num_layers]
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
                "yaxis.range": [0, 1.12 * layer_widths[k0, k][-1]],
                "xaxis.tickvals": [*x, num_layers + 1.5],
                "xaxis.ticktext": [*map(str, x), "out"],
            },
        }

    layers = list(range(1, max_layers + 1))
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
    _base_layout(fig, height=700)
    fig.update_layout(
        barmode="stack",
        bargap=0.15,
        hovermode="x",
        legend_traceorder="normal",
        margin=dict(t=120),
        xaxis=dict(title="dense layer ℓ of the block", range=[0.4, max_layers + 2.2]),
        yaxis_title="input channels m = k₀ + k(ℓ − 1)",
    )
    controls = [
        _Control("k₀ (block input) = ", k0_values, initial[0]),
        _Control("k (growth rate) = ", growth_rates, initial[1]),
        _Control("L (layers in the block) = ", range(1, max_layers + 1), initial[2]),
    ]
    return _grid_figure(fig, "channel-growth", controls, state)


# --- (b) the bottleneck ------------------------------------------------------------------


def _layer_parameters(num_layers: int, k0: int, k: int, bottleneck: bool) -> list[int]:
    """Parameters of each layer of ``DenseBlock(num_layers, k0, k)``, counted on ``meta``."""
    with torch.device("meta"):
        block = DenseBlock(num_layers, k0, k, bottleneck=bottleneck)
    return [count_parameters(layer) for layer in block.values()]


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
    layers = list(range(1, max_layers + 1))

    def state(k: int, k0: int) -> dict[str, Any]:
        schedule = channel_schedule(growth_rate=k, block_config=(max_layers,), num_init_features=k0)
        widths = [layer.in_channels for layer in schedule.layers]
        plain = _layer_parameters(max_layers, k0, k, bottleneck=False)
        with_b = _layer_parameters(max_layers, k0, k, bottleneck=True)
        total_plain, total_b = np.cumsum(plain).tolist(), np.cumsum(with_b).tolist()
        cheaper = [ell for ell, b, p in zip(layers, with_b, plain, strict=True) if b < p]
        if not cheaper:
            verdict = f"the plain layer is smaller in all {max_layers} layers"
            break_even = max_layers + 0.5
        elif cheaper[0] == 1:
            verdict = "the bottleneck layer is smaller from layer 1 on"
            break_even = 0.5
        else:
            first = cheaper[0]
            verdict = (
                f"the bottleneck layer is smaller from layer {first} on "
                f"(it reads {widths[first - 1]} channels)"
            )
            break_even = first - 0.5
        whole = (
            f"a {max_layers}-layer block: {total_b[-1] / 1e6:.2f} M with, "
            f"{total_plain[-1] / 1e6:.2f} M without bottlenecks"
        )
        hover_layer = [f"layer {ell} reads {m} channels" for ell, m in enumerate(widths, 1)]
        hover_block = [
            f"a block of {ell} layers: bottleneck / plain = {b / p:.2f}"
            for ell, b, p in zip(layers, total_b, total_plain, strict=True)
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
    _base_layout(fig, height=580)
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
    controls = [
        _Control("k (growth rate) = ", growth_rates, initial[0]),
        _Control("k₀ (block input) = ", k0_values, initial[1]),
    ]
    return _grid_figure(fig, "bottleneck-cost", controls, state)


# --- (c) compression ---------------------------------------------------------------------


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
    with torch.device("meta"):
        reference = densenet121()
        models = {theta: DenseNet(compression=theta) for theta in thetas}
    ref_widths = layer_input_widths(reference)
    ref_params, ref_macs = count_parameters(reference), count_macs(reference)
    theta_121 = reference.config["compression"]
    widths = {theta: layer_input_widths(m) for theta, m in models.items()}
    params = {theta: count_parameters(m) for theta, m in models.items()}
    macs = {theta: count_macs(m) for theta, m in models.items()}
    transitions = {
        theta: [t.conv.out_channels for t in m.modules() if isinstance(t, Transition)]
        for theta, m in models.items()
    }
    classifier = {theta: m.classifier.in_features for theta, m in models.items()}
    x = list(range(1, len(ref_widths) + 1))
    rel_params = [100 * params[t] / ref_params for t in thetas]
    rel_macs = [100 * macs[t] / ref_macs for t in thetas]

    fig = make_subplots(rows=2, cols=1, row_heights=[0.6, 0.4], vertical_spacing=0.17)
    traces = [
        go.Scatter(x=x, mode="lines+markers", name="the chosen θ", line_color=BLUE,
                   marker_size=4, hovertemplate="layer %{x} reads %{y} channels<extra></extra>"),
        go.Scatter(x=x, y=ref_widths, mode="lines", name=f"DenseNet-121 (θ = {theta_121})",
                   line=dict(color=RED, dash="dash", width=1.5),
                   hovertemplate="layer %{x} reads %{y} channels<extra>DenseNet-121</extra>"),
        go.Scatter(x=list(thetas), y=rel_params, mode="lines", name="parameters",
                   line_color=GREY, hovertemplate="θ = %{x}: %{y:.0f}%<extra>parameters</extra>"),
        go.Scatter(x=list(thetas), y=rel_macs, mode="lines", name="multiply-adds (224x224)",
                   line=dict(color=GREY, dash="dot"),
                   hovertemplate="θ = %{x}: %{y:.0f}%<extra>multiply-adds</extra>"),
        go.Scatter(mode="markers", marker=dict(size=11, color=BLUE), showlegend=False,
                   hovertemplate="%{y:.0f}%<extra>the chosen θ</extra>"),
        go.Scatter(x=[theta_121] * 2, y=[100.0, 100.0], mode="markers", name="DenseNet-121",
                   marker=dict(symbol="star", size=15, color=RED), showlegend=False,
                   hovertemplate="DenseNet-121 (θ = %{x})<extra></extra>"),
    ]  # fmt: skip
    for i, trace in enumerate(traces):
        fig.add_trace(trace, row=1 if i < 2 else 2, col=1)

    starts = np.cumsum([0, *reference.config["block_config"]]).tolist()
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

    def state(theta: float) -> tuple[dict[str, Any], dict[str, Any]]:
        title = (
            f"θ = {theta:.2f}: the transitions keep {', '.join(map(str, transitions[theta]))} "
            f"maps, the classifier reads {classifier[theta]:,}<br>"
            f"{params[theta] / 1e6:.2f} M parameters, {macs[theta] / 1e9:.2f} G multiply-adds "
            f"(DenseNet-121: {ref_params / 1e6:.2f} M, {ref_macs / 1e9:.2f} G)"
        )
        data = {
            "y": [widths[theta], [100 * params[theta] / ref_params, 100 * macs[theta] / ref_macs]],
            "x": [x, [theta, theta]],
        }
        return data, {"title.text": title}

    steps = []
    for theta in thetas:
        data, layout = state(theta)
        steps.append(dict(method="update", label=f"{theta:.2f}", args=[data, layout, [0, 4]]))
    _base_layout(fig, height=760)
    fig.update_layout(
        shapes=shapes,
        annotations=annotations,
        margin=dict(t=130),
        title=dict(y=0.975),
        legend=dict(y=1.03),
        meta={EXPLORER_KEY: "compression"},
    )
    fig.update_layout(
        sliders=_sliders(fig, ["compression θ = "], [steps], [list(thetas).index(initial)])
    )
    fig.update_xaxes(title_text="dense layer, counted through the network", row=1, col=1)
    widest = max(max(w) for w in widths.values())  # one scale for every theta
    fig.update_yaxes(title_text="input channels", range=[0, 1.08 * widest], row=1, col=1)
    fig.update_xaxes(title_text="compression θ", row=2, col=1)
    fig.update_yaxes(title_text="cost, % of DenseNet-121", ticksuffix="%", row=2, col=1)
    data, layout = state(initial)
    _apply(fig, {"traces": [0, 4], "data": data, "layout": layout})
    return fig


# --- (d) feature reuse -------------------------------------------------------------------


def _scaled(matrix: np.ndarray, normalize: str | None) -> np.ndarray:
    if normalize == "column":
        return matrix / np.nanmax(matrix, axis=0, keepdims=True)
    if normalize == "block":
        return matrix / np.nanmax(matrix)
    return matrix


def _nan_to_none(a: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in a]


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

    def matrices_of(obj: nn.Module | Sequence[np.ndarray]) -> list[np.ndarray]:
        if isinstance(obj, nn.Module):
            return feature_reuse(obj)
        return [np.asarray(m, dtype=float) for m in obj]

    sets = {"trained": matrices_of(model_or_matrices)}
    if untrained is not None:
        sets["untrained"] = matrices_of(untrained)
    trained = sets["trained"]
    n = len(trained)
    last = [f"T{b + 1}" for b in range(n - 1)] + ["C"]
    fig = make_subplots(
        rows=1,
        cols=n,
        horizontal_spacing=0.06,
        subplot_titles=[f"dense block {b + 1}" for b in range(n)],
    )
    for b, matrix in enumerate(trained):
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

    scales = {
        "column": "each column / its largest entry",
        "block": "each block / its largest entry",
        None: "raw mean |weight|",
    }
    buttons = []
    for set_name, matrices in sets.items():
        for normalize, description in scales.items():
            z = [_nan_to_none(_scaled(m, normalize)) for m in matrices]
            raw = [_nan_to_none(m) for m in matrices]
            largest = max(float(np.nanmax(m)) for m in matrices)
            title = f"Feature reuse, {set_name} model: colour = {description}"
            buttons.append(
                dict(
                    method="update",
                    label=f"{set_name}, {description}",
                    args=[
                        {"z": z, "customdata": raw},
                        {
                            "title.text": title,
                            "coloraxis.cmax": 1 if normalize else largest,
                        },
                    ],
                )
            )
    _base_layout(fig, height=500)
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
    first = buttons[0]["args"]
    for b, trace in enumerate(fig.data):
        trace.z = first[0]["z"][b]
        trace.customdata = first[0]["customdata"][b]
    fig.update_layout(title_text=first[1]["title.text"], coloraxis_cmax=1)
    return fig
