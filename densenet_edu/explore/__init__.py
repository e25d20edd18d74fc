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

One module per explorer, (a) to (d) as chapters 3, 4, 5 and 10 show them; ``sliders``
holds the grid of states and the shared look, ``display`` the HTML and :func:`show`.

>>> from densenet_edu.explore import channel_growth_explorer, show
>>> show(channel_growth_explorer())  # doctest: +SKIP
"""

from densenet_edu.explore.bottleneck_cost import bottleneck_cost_explorer
from densenet_edu.explore.channel_growth import channel_growth_explorer
from densenet_edu.explore.compression import compression_explorer, layer_input_widths
from densenet_edu.explore.display import EXPLORER_KEY as EXPLORER_KEY
from densenet_edu.explore.display import GRID_JS, LOADER_JS, PAGE_HAS_PLOTLY_ENV, show, to_html
from densenet_edu.explore.display import GRID_KEY as GRID_KEY
from densenet_edu.explore.reuse_heatmaps import feature_reuse_explorer
from densenet_edu.explore.sliders import BLUE as BLUE  # the colours and font, as before
from densenet_edu.explore.sliders import FONT as FONT
from densenet_edu.explore.sliders import GREY as GREY
from densenet_edu.explore.sliders import ORANGE as ORANGE
from densenet_edu.explore.sliders import RED as RED
from densenet_edu.explore.sliders import grid_state

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
