"""Showing an explorable figure: one HTML snippet that works in the book, Jupyter and Colab.

A figure's sliders need no kernel (see :mod:`densenet_edu.explore`), but a figure with
several sliders needs :data:`GRID_JS`, and outside the book the page may not have
plotly.js yet; :func:`to_html` writes the snippet that handles both, :func:`show` displays it.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs_version

__all__ = [
    "EXPLORER_KEY",
    "GRID_JS",
    "GRID_KEY",
    "LOADER_JS",
    "PAGE_HAS_PLOTLY_ENV",
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

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> dict[str, str] | tuple[dict[str, str], dict[str, Any]]:
        """The figure's HTML, in the reader's language, with the book build's twins."""
        from ..figure_text import (
            TWIN_KEY,
            UNTRANSLATED_KEY,
            figure_language,
            plotly_english,
            translate_plotly,
            twin_languages,
        )

        language, twins = figure_language(), twin_languages()
        fig = translate_plotly(self.fig, language) if language else self.fig
        title = fig.layout.title.text or "an interactive plotly figure"
        bundle = {"text/html": to_html(fig), "text/plain": f"<figure: {title}>"}
        if language or not twins:
            return bundle
        metadata: dict[str, Any] = {TWIN_KEY: {}, UNTRANSLATED_KEY: {}}
        for other in twins:
            twin = translate_plotly(self.fig, other)
            metadata[TWIN_KEY][other] = to_html(twin)
            left = plotly_english(twin)
            if left:
                metadata[UNTRANSLATED_KEY][other] = left
        return bundle, {"text/html": metadata}


def show(fig: go.Figure) -> None:
    """Display an explorable figure in the book, in Jupyter or in Colab.

    A plain ``fig.show()`` would pick a renderer per front end, and some of them
    (JupyterLab's plotly mimetype) do not run :data:`GRID_JS`; one HTML output works
    everywhere a browser runs the notebook's output.
    """
    from IPython.display import display

    display(_Shown(fig))
