"""The Chinese edition (zh/): the English chapters' code with Chinese prose, linked page to page.

The first tests read the sources and need no build: the code of every Chinese notebook is the
English notebook's code, cell for cell, and the MyST that carries numbers, citations and labels
is the same. The others read the built book (`make book`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from html import unescape
from pathlib import Path

import jupytext
import nbformat
import pytest

from book_build import EDITIONS, book_root, built_page, html_root, notebooks, toc_files

#: MyST that must survive translation unchanged: glued numbers, citations, targets, labels.
KEPT_MARKUP = {
    "glued number": r"\{glue:\w+\}`[^`]+`",
    "citation": r"\{cite[pt]?\}`[^`]+`",
    "target": r"^\([\w.:-]+\)=\s*$",
    "label": r"^:label:\s*\S+",
    "directive": r"^(?:`{3,}|:{3,})\{(?!admonition)[\w:-]+\}",
}

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


def _cells(edition: str, page: str) -> list:
    return jupytext.read(book_root(edition) / f"{page}.md").cells


@pytest.mark.parametrize("page", notebooks("en"))
def test_every_chapter_has_a_chinese_text_source(page):
    assert (book_root("zh") / f"{page}.md").is_file(), f"zh/{page}.md is missing"


@pytest.mark.parametrize("page", notebooks("en"))
def test_chinese_code_cells_are_the_english_code_cells(page):
    """One source of truth for the code: translate the prose only (scripts/zh_sync.py copies)."""
    english, chinese = _cells("en", page), _cells("zh", page)
    assert [c.cell_type for c in chinese] == [c.cell_type for c in english], (
        f"zh/{page}.md: the cells do not line up with chapters/{Path(page).name}.md"
    )
    for i, (e, z) in enumerate(zip(english, chinese, strict=True)):
        if e.cell_type == "code":
            assert z.source == e.source, f"zh/{page}.md: code cell {i} differs from the English"
            assert z.metadata == e.metadata, f"zh/{page}.md: code cell {i} has other metadata"


@pytest.mark.parametrize("page", notebooks("en"))
@pytest.mark.parametrize("kind", KEPT_MARKUP)
def test_chinese_prose_keeps_the_numbers_citations_and_labels(page, kind):
    pattern = re.compile(KEPT_MARKUP[kind], re.M)
    english, chinese = _cells("en", page), _cells("zh", page)
    for i, (e, z) in enumerate(zip(english, chinese, strict=True)):
        if e.cell_type == "markdown":
            # A value that is words has a Chinese twin, glued as <name>_zh (densenet_edu.book.glue).
            found = [re.sub(r"_zh(?=[:`])", "", m) for m in pattern.findall(z.source)]
            assert sorted(found) == sorted(pattern.findall(e.source)), (
                f"zh/{page}.md, cell {i}: a {kind} was changed, added or lost"
            )


# --- the built edition ----------------------------------------------------------------------


def _article(page: str, edition: str) -> str:
    html = built_page(page, edition).read_text()
    match = re.search(r'<article class="bd-article"[^>]*>(.*)</article>', html, re.S)
    assert match, f"{page}: no article in the page"
    return match.group(1)


def _prose_blocks(article: str) -> list[str]:
    """The text of the page's paragraphs, list items and headings: no code, math or outputs."""
    article = re.sub(r'<div class="cell_output.*?</div>\s*</div>\s*</div>', "", article, flags=re.S)
    for drop in (
        r"<(script|style|pre|code|table|mjx-container)\b.*?</\1>",
        r'<span class="math[^"]*">.*?</span>',
        r'<div class="math[^"]*">.*?</div>',
        r'<span class="pre">.*?</span>',
        r'<p class="language-switch">.*?</p>',
        r'<a class="reference internal" href="references\.html.*?</a>',  # author-year citations
    ):
        article = re.sub(drop, " ", article, flags=re.S)
    blocks = re.findall(r"<(p|li|h[1-6]|dt|dd|figcaption)\b[^>]*>(.*?)</\1>", article, re.S)
    texts = [unescape(re.sub(r"<[^>]+>", " ", inner)) for _, inner in blocks]
    return [re.sub(r"\s+", " ", t).strip() for t in texts if t.strip()]


def _chinese_pages() -> list[str]:
    return [p for p in toc_files("zh") if not p.endswith("references")]


@pytest.mark.book
@pytest.mark.parametrize("page", _chinese_pages())
def test_every_chinese_page_reads_as_chinese(page):
    blocks = _prose_blocks(_article(page, "zh"))
    text = " ".join(blocks)
    cjk, latin = len(CJK.findall(text)), len(LATIN.findall(text))
    assert cjk > latin, f"{page}: {cjk} Chinese characters but {latin} Latin letters"
    english = [b for b in blocks if len(LATIN.findall(b)) >= 40 and not CJK.search(b)]
    assert english == [], f"{page}: untranslated paragraphs, e.g. {english[:2]}"


@pytest.mark.book
def test_chinese_bibliography_page_has_a_chinese_title():
    assert "参考文献" in _article("chapters/references", "zh")


def _switch_target(page: str, edition: str) -> Path:
    html = built_page(page, edition).read_text()
    links = re.findall(r'<p class="language-switch"><a [^>]*href="([^"]+)"', html)
    assert len(links) == 1, f"{edition}:{page}: {len(links)} language links"
    return (built_page(page, edition).parent / links[0]).resolve()


@pytest.mark.book
@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("page", toc_files("en"))
def test_every_page_links_to_the_same_page_in_the_other_language(edition, page):
    other = "zh" if edition == "en" else "en"
    target = _switch_target(page, edition)
    assert target == built_page(page, other).resolve()
    assert target.is_file()
    assert _switch_target(page, other) == built_page(page, edition).resolve()


@pytest.mark.book
def test_chinese_pages_declare_their_language():
    html = built_page(toc_files("zh")[1], "zh").read_text()
    assert re.search(r'<html lang="zh[-_]CN"', html)


@pytest.mark.book
@pytest.mark.parametrize("page", notebooks("zh"))
def test_chinese_reader_notebooks_speak_chinese(page):
    nb = nbformat.read(html_root("zh") / "_notebooks" / f"{page}.ipynb", as_version=4)
    intro = nb.cells[0].source
    assert CJK.search(intro), "the reader's edition's introduction is not in Chinese"
    assert "/zh/" in intro, "the introduction links to the English page"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "<summary>Solution" not in markdown


# --- figures: drawn in Chinese once, in the English build (densenet_edu.figure_text) ---------

sys.path.insert(0, str(book_root("en") / "_ext"))
from editions import FIGURE_TEXT  # noqa: E402 - what a figure output's text/plain says


def _executed(page: str) -> dict:
    """The English edition's executed notebook of `page` (MyST-NB writes it beside the HTML)."""
    path = html_root("en").parent / "jupyter_execute" / f"{page}.ipynb"
    if not path.is_file():
        pytest.fail(f"no executed notebook at {path}: run `make book`")
    return json.loads(path.read_text("utf-8"))


def _figures(page: str) -> list[tuple[str, dict, dict]]:
    """(MIME type of the figure, data, metadata) of every figure output of `page`."""
    found = []
    for cell in _executed(page)["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            plain = "".join(data.get("text/plain", ""))
            if FIGURE_TEXT.match(plain):
                mime = "image/png" if "image/png" in data else "text/html"
                found.append((mime, data, output.get("metadata", {}).get(mime, {})))
    return found


@pytest.mark.book
@pytest.mark.parametrize("page", [p for p in notebooks("en") if "practice" not in p])
def test_every_figure_has_a_chinese_twin_with_no_english_left(page):
    from densenet_edu.figure_text import TWIN_KEY, UNTRANSLATED_KEY

    for mime, _, metadata in _figures(page):
        assert "zh" in metadata.get(TWIN_KEY, {}), f"{page}: a {mime} figure has no Chinese twin"
        left = metadata.get(UNTRANSLATED_KEY, {}).get("zh", [])
        assert left == [], f"{page}: figure text not in densenet_edu/figure_text_zh.py: {left}"


@pytest.mark.book
@pytest.mark.parametrize("page", [p for p in notebooks("en") if "practice" not in p])
def test_chinese_pages_show_the_chinese_figures_and_english_pages_the_english(page):
    from densenet_edu.figure_text import TWIN_KEY

    english = built_page(page, "en").read_text("utf-8")
    chinese = built_page(page, "zh").read_text("utf-8")
    for mime, data, metadata in _figures(page):
        if mime == "image/png":
            en_name = hashlib.sha256(base64.b64decode("".join(data[mime]))).hexdigest()
            zh_name = hashlib.sha256(base64.b64decode(metadata[TWIN_KEY]["zh"])).hexdigest()
            assert f"{en_name}.png" in english and f"{en_name}.png" not in chinese
            assert f"{zh_name}.png" in chinese
            assert (html_root("zh") / "_images" / f"{zh_name}.png").is_file()
        else:
            div = re.search(r'<div id="([^"]+)"', metadata[TWIN_KEY]["zh"]).group(1)
            assert f'id="{div}"' in chinese and f'id="{div}"' not in english


@pytest.mark.book
@pytest.mark.parametrize("page", notebooks("zh"))
def test_chinese_reader_notebooks_draw_figures_in_chinese(page):
    """One cell of their own, first, sets the figure language; the chapter's code follows."""
    chinese = nbformat.read(html_root("zh") / "_notebooks" / f"{page}.ipynb", as_version=4)
    english = nbformat.read(html_root("en") / "_notebooks" / f"{page}.ipynb", as_version=4)
    code = [c.source for c in chinese.cells if c.cell_type == "code"]
    assert 'os.environ["DENSENET_EDU_LANGUAGE"] = "zh"' in code[0]
    assert code[1:] == [c.source for c in english.cells if c.cell_type == "code"]
    assert all("DENSENET_EDU_LANGUAGE" not in c.source for c in english.cells)
