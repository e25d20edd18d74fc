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
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config

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
    app.add_css_file("editions.css")
    app.connect("builder-inited", _add_static_path)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _add_static_path(app: Sphinx) -> None:
    static = str(Path(__file__).parent / "editions_static")
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)
