"""Every chapter notebook has a MyST Markdown text source, and the two say the same thing."""

from __future__ import annotations

import jupytext
import nbformat
import pytest

from book_build import book_root, in_both, notebooks

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in nb.cells]


@pytest.mark.parametrize(("edition", "page"), in_both(notebooks))
def test_every_notebook_has_a_text_source(edition, page):
    root = book_root(edition)
    assert (root / f"{page}.md").is_file(), f"{page}.md is missing: jupytext --sync {page}.ipynb"


@pytest.mark.parametrize(("edition", "page"), in_both(notebooks))
def test_text_source_and_notebook_hold_the_same_cells(edition, page):
    text = jupytext.read(book_root(edition) / f"{page}.md")
    notebook = nbformat.read(book_root(edition) / f"{page}.ipynb", as_version=4)
    assert _cells(text) == _cells(notebook), (
        f"{page}.md and {page}.ipynb differ: edit the .md, then .venv/bin/jupytext --sync {page}.md"
    )


@pytest.mark.parametrize(("edition", "page"), in_both(notebooks))
def test_every_notebook_has_the_python3_kernelspec_and_nothing_else(edition, page):
    root = book_root(edition)
    for path in (root / f"{page}.ipynb", root / f"{page}.md"):
        metadata = jupytext.read(path).metadata
        assert metadata.get("kernelspec") == KERNELSPEC, path.name
        assert set(metadata) <= {"kernelspec", "jupytext"}, f"{path.name}: {sorted(metadata)}"
