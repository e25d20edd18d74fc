"""Two editions of one book: every page links to the same page in the other language.

The English book (``_config.yml``) is built into ``_build/html/`` and the Chinese one
(``zh/_config.yml``) into ``_build/html/zh/``; both have the same pages under the same names.
Configuration (``sphinx.config`` in each ``_config.yml``):

- ``language_switch_url``: where the other edition's root is, relative to this edition's root
  (``zh/`` from the English book, ``../`` from the Chinese one);
- ``language_switch_text``: the link's text, in the other language (``中文``, ``English``);
- ``shared_execution_cache``: the execution cache to use, relative to this book's folder. The
  Chinese edition points at the English one's, so chapters whose code cells are identical are
  not executed twice (jupyter-cache matches notebooks by their code).

Figures are drawn once per language while the English edition executes
(``densenet_edu.figure_text``): each output keeps its twin in the other language in its
metadata, and the other edition shows the twin in its place (:func:`twins_of`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: BCP 47 tags of the other edition, by the text of its link (for hreflang).
LANG_OF_LINK = {"中文": "zh-CN", "English": "en"}


def other_edition_href(pathto_root: str, switch_url: str, pagename: str) -> str:
    """The same page in the other edition, relative to the page itself.

    >>> other_edition_href("../", "zh/", "chapters/03_channel_growth")
    '../zh/chapters/03_channel_growth.html'
    >>> other_edition_href("../", "../", "chapters/03_channel_growth")
    '../../chapters/03_channel_growth.html'
    """
    if pathto_root in ("", "#", "./", "."):
        root = ""  # a page at the book's root
    else:
        root = pathto_root if pathto_root.endswith("/") else pathto_root + "/"
    return f"{root}{switch_url}{pagename}.html"


#: Chinese characters and full-width punctuation: a line break between two of them is no space.
_WIDE = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_WIDE_BREAK = re.compile(rf"(?<=[{_WIDE}])[ \t]*\n[ \t]*(?=[{_WIDE}])")
_WIDE_CHAR = re.compile(rf"[{_WIDE}]")
_VERBATIM = (nodes.literal_block, nodes.literal, nodes.math, nodes.math_block, nodes.raw)


def join_wide_lines(text: str, before: str = "", after: str = "") -> str:
    r"""Drop the line breaks that HTML would show as spaces between Chinese characters.

    `before` and `after` are the texts of the neighbouring inline nodes, so a break next to
    ``**粗体**`` is handled too.

    >>> join_wide_lines("稠密\n连接 and\nwords")
    '稠密连接 and\nwords'
    >>> join_wide_lines("\n连接", before="稠密")
    '连接'
    """
    text = _WIDE_BREAK.sub("", text)
    if before and _WIDE_CHAR.fullmatch(before[-1]):
        text = re.sub(rf"^[ \t]*\n[ \t]*(?=[{_WIDE}])", "", text)
    if after and _WIDE_CHAR.fullmatch(after[0]):
        text = re.sub(rf"(?<=[{_WIDE}])[ \t]*\n[ \t]*$", "", text)
    return text


def _join_chinese_lines(app: Sphinx, doctree: nodes.document) -> None:
    if not (app.config.language or "").startswith("zh"):
        return
    for node in list(doctree.findall(nodes.Text)):
        parent = node.parent
        if parent is None or isinstance(parent, _VERBATIM) or "\n" not in node:
            continue
        index = parent.index(node)
        before = parent[index - 1].astext() if index > 0 else ""
        after = parent[index + 1].astext() if index + 1 < len(parent) else ""
        joined = join_wide_lines(str(node), before, after)
        if joined != str(node):
            parent.replace(node, nodes.Text(joined))


#: Output-metadata key of a figure's twins (``densenet_edu.figure_text.TWIN_KEY``).
TWIN_KEY = "densenet_edu_twins"
#: What the figures' text/plain says: a matplotlib figure, an explorable plotly figure.
FIGURE_TEXT = re.compile(r"^<(Figure size|figure: )")


def edition_language(language: str | None) -> str:
    """The two-letter language of a Sphinx ``language`` (``"zh_CN"`` -> ``"zh"``)."""
    return (language or "en").replace("-", "_").split("_")[0]


def _text(content: str | list[str]) -> str:
    return "".join(content) if isinstance(content, list) else content


def twins_of(notebook: dict, language: str) -> tuple[dict[str, bytes], dict[str, str], int]:
    """A notebook's figure twins in `language`.

    Returns PNG twins by the SHA-256 of the English PNG (MyST-NB names image files by it),
    HTML twins by the English HTML, and the number of figures that have no twin.
    """
    images: dict[str, bytes] = {}
    pages: dict[str, str] = {}
    missing = 0
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data, metadata = output.get("data", {}), output.get("metadata", {})
            is_figure = bool(FIGURE_TEXT.match(_text(data.get("text/plain", ""))))
            found = False
            for mime in ("image/png", "text/html"):
                twin = metadata.get(mime, {}).get(TWIN_KEY, {}).get(language)
                if mime not in data or twin is None:
                    continue
                found = True
                if mime == "image/png":
                    english = base64.b64decode(_text(data[mime]))
                    images[hashlib.sha256(english).hexdigest()] = base64.b64decode(twin)
                else:
                    pages[_text(data[mime])] = twin
            missing += is_figure and not found
    return images, pages, missing


def executed_notebook(app: Sphinx, docname: str) -> dict | None:
    """The page's notebook with its outputs, as MyST-NB rendered them; None if not a notebook.

    With ``execute_notebooks: cache`` they come from the execution cache (the notebook MyST-NB
    writes to ``jupyter_execute/`` has no outputs when they were taken from the cache).
    """
    source = Path(app.env.doc2path(docname))
    if source.suffix != ".ipynb":
        return None
    settings = app.env.mystnb_config  # MyST-NB's settings, with the cache's resolved path
    if settings.execution_mode == "cache":
        import nbformat
        from jupyter_cache import get_cache

        cache = get_cache(settings.execution_cache_path)
        try:
            record = cache.match_cache_notebook(nbformat.read(source, as_version=4))
        except KeyError:
            return None
        return cache.get_cache_bundle(record.pk).nb
    written = Path(app.outdir).parent / "jupyter_execute" / f"{docname}.ipynb"
    return json.loads(written.read_text("utf-8")) if written.exists() else None


def _show_twins(app: Sphinx, doctree: nodes.document) -> None:
    """Put each figure's twin in this edition's language where the English figure was."""
    language = edition_language(app.config.language)
    if language == "en":
        return
    notebook = executed_notebook(app, app.env.docname)
    if notebook is None:
        return
    folder = Path(app.outdir).parent / "jupyter_execute"  # where MyST-NB writes outputs
    images, pages, missing = twins_of(notebook, language)
    if missing:
        logger.warning(
            f"{missing} figure(s) of {app.env.docname} have no {language!r} twin: the execution "
            f"cache was filled without DENSENET_EDU_EDITIONS={language}. Run `make book`, "
            "which sets it, after `rm -rf _build/.jupyter_cache`.",
            location=app.env.docname,
        )
    for image in doctree.findall(nodes.image):
        stem, _, suffix = image["uri"].rpartition("/")[2].partition(".")
        if suffix == "png" and stem in images:
            twin = images[stem]
            name = f"{hashlib.sha256(twin).hexdigest()}.png"
            (folder / name).write_bytes(twin)
            image["uri"] = image["uri"].rpartition("/")[0] + "/" + name
    for raw in doctree.findall(nodes.raw):
        if raw.get("format") == "html" and raw.astext() in pages:
            raw[0] = nodes.Text(pages[raw.astext()])


def _use_shared_cache(app: Sphinx, config: Config) -> None:
    if config.shared_execution_cache:
        # Relative to the book, not to wherever the build was started from.
        path = (Path(app.srcdir) / config.shared_execution_cache).resolve()
        config.nb_execution_cache_path = str(path)


def _add_switch(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    url, text = app.config.language_switch_url, app.config.language_switch_text
    if not url or not text or "body" not in context or pagename not in app.env.found_docs:
        return
    href = html.escape(other_edition_href(context["pathto"]("", 1), url, pagename))
    lang = LANG_OF_LINK.get(text, "")
    link = (
        f'<p class="language-switch"><a class="reference external" href="{href}" '
        f'hreflang="{lang}" lang="{lang}">{html.escape(text)}</a></p>\n'
    )
    context["body"] = link + context["body"]
    context["metatags"] = (
        context.get("metatags", "") + f'\n<link rel="alternate" hreflang="{lang}" href="{href}" />'
    )


def setup(app: Sphinx) -> dict:
    app.add_config_value("language_switch_url", "", "html", types=[str])
    app.add_config_value("language_switch_text", "", "html", types=[str])
    app.add_config_value("shared_execution_cache", "", "env", types=[str])
    app.connect("config-inited", _use_shared_cache, priority=100)
    app.connect("html-page-context", _add_switch)
    app.connect("doctree-read", _join_chinese_lines)
    # Before Sphinx collects the page's images (priority 500), so the twins are copied.
    app.connect("doctree-read", _show_twins, priority=400)
    app.add_css_file("editions.css")
    app.connect("builder-inited", _add_static_path)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _add_static_path(app: Sphinx) -> None:
    static = str(Path(__file__).parent / "editions_static")
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)
