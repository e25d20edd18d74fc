"""Serve MathJax from the built book instead of a CDN, so the math renders offline.

The PyPI package ``django-static-mathjax`` ships MathJax 3's files; ``tex-svg.js`` is a
single self-contained file (SVG output needs no web fonts). It is copied into
``_build/html/_static/mathjax/`` and ``mathjax_path`` (relative to ``_static``) points at it.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from sphinx.application import Sphinx

MATHJAX_FILE = "tex-svg.js"


def _source() -> Path:
    try:
        return Path(str(files("mathjax") / "static" / "mathjax" / "es5" / MATHJAX_FILE))
    except ModuleNotFoundError as err:
        raise RuntimeError(
            "offline MathJax needs the PyPI package django-static-mathjax: "
            "pip install django-static-mathjax"
        ) from err


def _copy(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax" / MATHJAX_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_source(), target)


def setup(app: Sphinx) -> dict:
    _source()  # fail at start-up, not after executing every notebook
    app.config.mathjax_path = f"mathjax/{MATHJAX_FILE}"
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
