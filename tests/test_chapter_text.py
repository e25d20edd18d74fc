"""The prose of chapters 1-3 and their practice pages: mistakes that once slipped in stay out."""

from __future__ import annotations

import re

import nbformat
import pytest

from book_build import ROOT

PAGES = [
    "chapters/01_preface",
    "chapters/02_dense_connectivity",
    "chapters/practice_02_dense_connectivity",
    "chapters/03_channel_growth",
    "chapters/practice_03_channel_growth",
]


def markdown(page: str) -> str:
    """The page's Markdown cells without code examples and display math.

    Directives (```` ```{exercise} ````, ...) keep their content: it is prose too.
    """
    nb = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    kept: list[str] = []
    fences: list[tuple[str, bool]] = []  # open fences: (backticks, is a code block)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            fence = re.match(r"\s*(`{3,}|:{3,})(\S*)", line)
            if fence and fences and fence.group(1) == fences[-1][0] and not fence.group(2):
                fences.pop()
                continue
            if fence:  # an opening fence: a directive if its info starts with "{"
                fences.append((fence.group(1), not fence.group(2).startswith("{")))
                continue
            if not any(code for _, code in fences):
                kept.append(line)
    return re.sub(r"\$\$.*?\$\$", "", "\n".join(kept), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_exercises_are_referred_to_by_label_never_by_a_typed_number(page):
    # {numref}`ex-ch03-2` renders the number; "exercise 3" goes stale when exercises move.
    typed = re.findall(r"\b[Ee]xercises? \d+(?:\.\d+)?\b", markdown(page))
    assert not typed, typed


@pytest.mark.parametrize("page", PAGES)
def test_no_line_of_prose_starts_with_a_plus_that_markdown_reads_as_a_list(page):
    # A wrapped line "+ x_{l-1}$" became a list item and broke the equation on the page.
    lines = [line for line in markdown(page).splitlines() if re.match(r"\s*\+\s", line)]
    assert not lines, lines


@pytest.mark.parametrize("page", PAGES)
def test_section_names_are_links_not_literal_markdown(page):
    assert "`## " not in markdown(page)


def test_channel_growth_cites_table_2_only_for_cifar():
    # Table 2 is CIFAR/SVHN; the ImageNet comparison is Table 3 and Figure 3.
    text = " ".join(markdown("chapters/03_channel_growth").split())
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
        if "Table 2" in sentence and "ImageNet" in sentence:
            # allowed only beside the ImageNet table it then names
            assert re.search(r"Table [13]\b", sentence), sentence
    for match in re.finditer(r"Table 2", text):
        assert "CIFAR" in text[max(0, match.start() - 80) : match.start()], text[
            match.start() - 120 : match.end() + 40
        ]
    assert "Table 3 and Figure 3" in text
