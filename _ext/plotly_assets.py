"""Serve plotly.js from the built book, so the explorable figures work offline.

``densenet_edu.explore.show`` writes each figure as HTML. In Jupyter and Colab that HTML
loads plotly.js from plotly's CDN; in the book it must not. This extension

- sets ``DENSENET_EDU_PAGE_HAS_PLOTLY`` in the environment of the build, which the kernels
  that execute the chapters inherit: ``show`` then writes HTML that loads nothing;
- copies the ``plotly.min.js`` that ships inside the installed ``plotly`` Python package into
  ``_build/html/_static/plotly/``, and adds it to the ``<head>`` of every page that holds a
  plotly figure (only there: other pages stay light);
- warns (an error under ``-W``) if a page body loads a script from the network or would
  load plotly.js from its CDN.

``window.PlotlyConfig = {MathJaxConfig: 'local'}`` comes first, so that plotly leaves
the book's MathJax configuration (``_ext/offline_mathjax.py``) alone.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

PLOTLY_JS = "plotly/plotly.min.js"  # relative to _static
FIGURE_MARKER = 'class="plotly-graph-div"'
#: The variable densenet_edu.explore reads (PAGE_HAS_PLOTLY_ENV there).
ENV_VAR = "DENSENET_EDU_PAGE_HAS_PLOTLY"
REMOTE_SCRIPT = re.compile(r'<script\b[^>]*\bsrc="(https?://[^"]+)"')


def _source() -> Path:
    try:
        path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError as err:
        raise RuntimeError("the explorable figures need plotly: pip install plotly") from err
    if not path.is_file():
        raise RuntimeError(f"the plotly package has no bundled plotly.js at {path}")
    return path


def _copy(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_source(), target)


def _serve_locally(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    body = context.get("body") or ""
    if FIGURE_MARKER not in body:
        return
    for url in REMOTE_SCRIPT.findall(body):
        logger.warning("%s: a figure loads %s from the network", pagename, url)
    if "cdn.plot.ly" in body:  # show() did not see ENV_VAR: it wrote its Jupyter loader
        logger.warning(
            "%s: a figure would load plotly.js from the CDN (%s unset)", pagename, ENV_VAR
        )
    app.add_js_file(None, body="window.PlotlyConfig = {MathJaxConfig: 'local'};", priority=480)
    app.add_js_file(PLOTLY_JS, priority=481)


def setup(app: Sphinx) -> dict:
    _source()  # fail at start-up, not after executing every notebook
    os.environ[ENV_VAR] = "1"  # before any kernel starts
    app.connect("builder-inited", _copy)
    app.connect("html-page-context", _serve_locally)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
