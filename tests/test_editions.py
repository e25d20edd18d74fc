"""_ext/editions.py: the link between the two editions, and Chinese lines joined without spaces."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from types import SimpleNamespace

from docutils import nodes

from book_build import ROOT

sys.path.insert(0, str(ROOT / "_ext"))
import editions  # noqa: E402


def test_english_page_links_into_zh():
    href = editions.other_edition_href("../", "zh/", "chapters/03_channel_growth")
    assert href == "../zh/chapters/03_channel_growth.html"


def test_chinese_page_links_back_to_the_english_root():
    href = editions.other_edition_href("../", "../", "chapters/03_channel_growth")
    assert href == "../../chapters/03_channel_growth.html"


def test_root_page_link_has_no_leading_dot():
    assert editions.other_edition_href("#", "zh/", "index") == "zh/index.html"


def test_a_break_between_chinese_characters_disappears():
    assert editions.join_wide_lines("稠密\n连接") == "稠密连接"


def test_a_break_after_full_width_punctuation_disappears():
    assert editions.join_wide_lines("拼接，\n而不是相加。") == "拼接，而不是相加。"


def test_a_break_next_to_latin_text_stays_a_space():
    assert editions.join_wide_lines("growth\nrate 增长率\nk") == "growth\nrate 增长率\nk"


def test_a_break_next_to_an_inline_node_is_judged_by_its_text():
    assert editions.join_wide_lines("\n连接", before="**稠密") == "连接"
    assert editions.join_wide_lines("稠密\n", after="连接") == "稠密"
    assert editions.join_wide_lines("\n连接", before="DenseNet") == "\n连接"


class _App:
    class config:  # noqa: N801 - stands in for Sphinx's app.config
        language = "zh_CN"


def test_doctree_paragraphs_are_joined_only_in_chinese():
    paragraph = nodes.paragraph("", "", nodes.Text("稠密\n连接"), nodes.literal("", "a\nb"))
    document = nodes.document(None, None)
    document += paragraph
    editions._join_chinese_lines(_App, document)
    assert paragraph.astext() == "稠密连接a\nb"
    _App.config.language = "en"
    english = nodes.paragraph("", "", nodes.Text("稠密\n连接"))
    document += english
    editions._join_chinese_lines(_App, document)
    assert english.astext() == "稠密\n连接"


# --- figure twins ----------------------------------------------------------------------------

ENGLISH_PNG, CHINESE_PNG = b"\x89PNG english", b"\x89PNG chinese"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _notebook(with_twins: bool = True) -> dict:
    png_metadata = {editions.TWIN_KEY: {"zh": _b64(CHINESE_PNG)}} if with_twins else {}
    html_metadata = {editions.TWIN_KEY: {"zh": "<div>中文图</div>"}} if with_twins else {}
    return {
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    {
                        "output_type": "display_data",
                        "data": {
                            "image/png": _b64(ENGLISH_PNG),
                            "text/plain": "<Figure size 640x480 with 1 Axes>",
                        },
                        "metadata": {"image/png": png_metadata},
                    },
                    {
                        "output_type": "display_data",
                        "data": {"text/html": "<div>figure</div>", "text/plain": "<figure: x>"},
                        "metadata": {"text/html": html_metadata},
                    },
                    {"output_type": "display_data", "data": {"text/html": "<table></table>"}},
                ],
            }
        ]
    }


def test_the_twin_key_is_the_one_the_package_writes():
    from densenet_edu.figure_text import TWIN_KEY

    assert editions.TWIN_KEY == TWIN_KEY


def test_twins_are_found_by_the_english_figures_hash_and_html():
    images, pages, missing = editions.twins_of(_notebook(), "zh")
    assert images == {hashlib.sha256(ENGLISH_PNG).hexdigest(): CHINESE_PNG}
    assert pages == {"<div>figure</div>": "<div>中文图</div>"}
    assert missing == 0


def test_figures_without_twins_are_counted_but_other_outputs_are_not():
    assert editions.twins_of(_notebook(with_twins=False), "zh") == ({}, {}, 2)


def _built_page(tmp_path, with_twins: bool = True):
    """A page as MyST-NB leaves it: outputs in jupyter_execute/, nodes pointing at them."""
    folder = tmp_path / "jupyter_execute"
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters" / "x.ipynb").write_text(json.dumps(_notebook(with_twins)))
    english = f"{hashlib.sha256(ENGLISH_PNG).hexdigest()}.png"
    (folder / english).write_bytes(ENGLISH_PNG)

    source = tmp_path / "x.ipynb"
    source.write_text("{}")

    class App:
        outdir = str(tmp_path / "html")

        class config:  # noqa: N801
            language = "zh_CN"

        class env:  # noqa: N801
            docname = "chapters/x"
            mystnb_config = SimpleNamespace(execution_mode="force", execution_cache_path="")

            @staticmethod
            def doc2path(docname):
                return str(source)

    document = nodes.document(None, None)
    document += nodes.image(uri=f"/../_build/jupyter_execute/{english}")
    document += nodes.raw("", "<div>figure</div>", format="html")
    document += nodes.raw("", "<table></table>", format="html")
    return App, document, folder


def test_the_chinese_page_shows_the_twins(tmp_path):
    app, document, folder = _built_page(tmp_path)
    editions._show_twins(app, document)
    image = next(iter(document.findall(nodes.image)))
    name = f"{hashlib.sha256(CHINESE_PNG).hexdigest()}.png"
    assert image["uri"] == f"/../_build/jupyter_execute/{name}"
    assert (folder / name).read_bytes() == CHINESE_PNG
    assert [raw.astext() for raw in document.findall(nodes.raw)] == [
        "<div>中文图</div>",
        "<table></table>",
    ]


def test_the_english_page_keeps_its_figures(tmp_path):
    app, document, _ = _built_page(tmp_path)
    app.config.language = "en"
    editions._show_twins(app, document)
    assert next(iter(document.findall(nodes.raw))).astext() == "<div>figure</div>"


def test_a_chinese_page_whose_figures_have_no_twins_is_a_warning(tmp_path, monkeypatch):
    app, document, _ = _built_page(tmp_path, with_twins=False)
    warned = []
    monkeypatch.setattr(editions.logger, "warning", lambda message, **_: warned.append(message))
    editions._show_twins(app, document)
    assert len(warned) == 1 and "DENSENET_EDU_EDITIONS=zh" in warned[0]


def test_with_a_cache_the_outputs_come_from_the_cache(tmp_path):
    """MyST-NB's written notebook has no outputs when they came from the cache."""
    import nbformat
    from jupyter_cache import get_cache

    executed = nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []})
    executed.cells.append(nbformat.v4.new_code_cell("plot()"))
    executed.cells[0].outputs = [nbformat.from_dict(_notebook()["cells"][0]["outputs"][0])]
    path = tmp_path / "x.ipynb"
    nbformat.write(executed, path)
    cache = get_cache(tmp_path / "cache")
    cache.cache_notebook_file(path, check_validity=False)
    unexecuted = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot()")])
    nbformat.write(unexecuted, path)

    class App:
        outdir = str(tmp_path / "html")

        class env:  # noqa: N801
            mystnb_config = SimpleNamespace(
                execution_mode="cache", execution_cache_path=str(tmp_path / "cache")
            )

            @staticmethod
            def doc2path(docname):
                return str(path)

    notebook = editions.executed_notebook(App, "x")
    images, _, _ = editions.twins_of(notebook, "zh")
    assert list(images.values()) == [CHINESE_PNG]
