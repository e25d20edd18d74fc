"""The built book: every page exists, executed cleanly, and links to Colab; sources stay clean."""

from __future__ import annotations

import json
import re
from html import unescape

import nbformat
import pytest

from book_build import (
    EDITIONS,
    book_root,
    built_page,
    config,
    html_root,
    in_both,
    notebooks,
    source_of,
    toc_files,
)

pytestmark = pytest.mark.book

CORE_CHAPTERS = [p for p in notebooks() if re.match(r"chapters/\d\d_", p)]


def test_both_editions_list_the_same_pages():
    assert toc_files("zh") == toc_files("en")


@pytest.mark.parametrize(("edition", "page"), in_both(toc_files))
def test_every_toc_page_exists_in_the_build(edition, page):
    source_of(page, edition)  # raises when neither the .ipynb nor the .md exists
    assert built_page(page, edition).is_file(), f"{page} is in _toc.yml but not in the build"


@pytest.mark.parametrize(("edition", "page"), in_both(toc_files))
def test_no_executed_output_holds_an_error_or_traceback(edition, page):
    html = built_page(page, edition).read_text()
    assert "Traceback (most recent call last)" not in html
    assert 'class="output traceback' not in html
    exception = re.search(r"^\w+(Error|Exception): ", _outputs_text(html), re.M)
    assert not exception, f"an output shows an exception: {exception and exception.group(0)}"


@pytest.mark.parametrize("page", toc_files())
def test_no_executed_output_shows_a_warning(page):
    warning = re.search(r"\b\w+Warning: ", _outputs_text(built_page(page).read_text()))
    assert not warning, f"an output shows a warning: {warning and warning.group(0)}"


def _outputs_text(html: str) -> str:
    """The text of every cell output on a page, without markup."""
    blocks = re.findall(
        r'<div class="output [^"]*">\s*<div class="highlight"><pre>(.*?)</pre>', html, re.S
    )
    return unescape(re.sub(r"<[^>]+>", "", "\n".join(blocks)))


@pytest.mark.parametrize("edition", EDITIONS)
def test_the_build_left_no_execution_failure_reports(edition):
    reports = html_root(edition) / "reports"
    logs = list(reports.glob("*.log")) if reports.exists() else []
    assert not logs, f"notebook execution failed: {[p.name for p in logs]}"


@pytest.mark.parametrize(("edition", "page"), in_both(notebooks))
def test_notebooks_in_the_repository_hold_no_outputs(edition, page):
    nb = nbformat.read(book_root(edition) / f"{page}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{page}: a cell has stored outputs"
            assert cell.execution_count is None, f"{page}: a cell has an execution count"


@pytest.mark.parametrize(("edition", "page"), in_both(notebooks))
def test_every_chapter_page_links_to_its_reader_edition_in_colab(edition, page):
    """Colab opens the reader's edition (no MyST) on the branch the Pages workflow pushes."""
    owner_repo = config()["repository"]["url"].removeprefix("https://github.com/").rstrip("/")
    branch = config()["sphinx"]["config"]["reader_notebooks_branch"]
    prefix = "" if edition == "en" else f"{edition}/"
    expected = (
        f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{prefix}{page}.ipynb"
    )
    html = built_page(page, edition).read_text()
    assert expected in html
    assert len(re.findall(r"colab\.research\.google\.com/github/", html)) == 1


@pytest.mark.parametrize(("edition", "page"), in_both(notebooks))
def test_every_notebook_starts_with_a_hidden_colab_setup_cell(edition, page):
    repo = config()["repository"]
    first = nbformat.read(book_root(edition) / f"{page}.ipynb", as_version=4).cells[0]
    assert first.cell_type == "code"
    assert "remove-cell" in first.metadata.get("tags", [])
    assert '"google.colab" in sys.modules' in first.source
    assert 'find_spec("densenet_edu") is None' in first.source
    install = re.search(r"^\s+%pip install .*git\+(\S+?)@(\w+)", first.source, re.M)
    assert install, "the %pip install line is missing or commented out"
    assert install.groups() == (repo["url"], repo["branch"])


#: The headings every chapter has, in each edition's words.
SECTIONS = {
    "en": ("Learning goals", "Check", "Summary"),
    "zh": ("学习目标", "检查", "小结"),
}


@pytest.mark.parametrize(("edition", "page"), in_both(lambda e: CORE_CHAPTERS))
def test_every_chapter_has_goals_check_summary_and_exercises(edition, page):
    nb = nbformat.read(book_root(edition) / f"{page}.ipynb", as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    goals, check, summary = SECTIONS[edition]
    assert goals in markdown
    assert re.search(rf"^## {check}", markdown, re.M)
    assert re.search(rf"^## {summary}", markdown, re.M)
    exercises = re.findall(r"```\{exercise\}", markdown)
    assert 2 <= len(exercises) <= 6, f"{page}: {len(exercises)} exercises"
    assert markdown.count(":class: dropdown") >= len(exercises)
    assert "{glue:" in markdown, f"{page}: no number in the prose comes from code"


@pytest.mark.parametrize(("edition", "page"), in_both(lambda e: CORE_CHAPTERS))
def test_every_chapter_shows_at_least_one_figure(edition, page):
    html = built_page(page, edition).read_text()
    assert re.search(r"<img [^>]*src=\"[^\"]+\.(png|svg|jpg)\"", html) or "<svg" in html


@pytest.mark.parametrize(("edition", "page"), in_both(toc_files))
def test_pages_load_nothing_from_the_network(edition, page):
    html = built_page(page, edition).read_text()
    loaded = re.findall(r'<(?:script|img|link)\b[^>]*(?:src|href)="(https?://[^"]+)"', html)
    stylesheets_or_scripts = [
        url for url in loaded if not re.search(r"github\.com|colab\.research", url)
    ]
    assert stylesheets_or_scripts == []


@pytest.mark.parametrize("edition", EDITIONS)
def test_math_is_served_from_the_build(edition):
    assert (html_root(edition) / "_static" / "mathjax" / "tex-svg.js").stat().st_size > 100_000


def _search_index(edition: str) -> dict:
    text = (html_root(edition) / "searchindex.js").read_text()
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


@pytest.mark.parametrize("edition", EDITIONS)
def test_search_index_covers_every_page(edition):
    assert set(toc_files(edition)) <= set(_search_index(edition)["docnames"])


def test_chinese_search_finds_chinese_words():
    """Sphinx splits Chinese into words (jieba), so a search for a term finds its chapter."""
    index = _search_index("zh")
    growth = toc_files("zh").index("chapters/03_channel_growth")
    assert growth in _as_list(index["terms"].get("增长率")), "增长率 is not a search term"


def _as_list(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else value


@pytest.mark.parametrize(("edition", "page"), in_both(notebooks))
def test_every_notebook_page_offers_the_reader_edition_for_download(edition, page):
    html = built_page(page, edition).read_text()
    depth = page.count("/")
    assert f'href="{"../" * depth}_notebooks/{page}.ipynb"' in html
    assert f"_sources/{page}.ipynb" not in html
    assert (html_root(edition) / "_notebooks" / f"{page}.ipynb").exists()


@pytest.mark.parametrize(("edition", "page"), in_both(toc_files))
def test_tables_have_no_blank_header_cells(edition, page):
    html = built_page(page, edition).read_text()
    tables = re.findall(r"<table\b.*?</table>", html, re.S)
    blank = [
        cell
        for t in tables
        for cell in re.findall(r"<th\b[^>]*>(?:\s|&nbsp;)*</th>", t)
        if "row_heading" not in cell  # a row label may be empty only in a data row, never here
    ]
    assert blank == [], f"{page}: {len(blank)} blank header cells, e.g. {blank[:2]}"
