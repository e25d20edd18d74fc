"""Reader's editions (_ext/reader_notebooks.py): notebooks for Jupyter and Colab without MyST.

The first tests render small Markdown snippets and need no build. The tests marked `book`
check the editions that `make book` wrote, and run every one of them top to bottom in a fresh
virtual environment holding only what a chapter's Colab set-up cell installs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from pybtex.database import parse_file

from book_build import HTML, ROOT, notebooks

sys.path.insert(0, str(ROOT / "_ext"))
import reader_notebooks as rn  # noqa: E402

SITE = "https://example.github.io/book/"


def make_page(glue: dict[str, dict] | None = None) -> rn.Page:
    book = rn.Book(
        site_url=SITE,
        titles={"chapters/03_x": "3. Growth", "chapters/04_y": "4. Bottleneck"},
        labels={
            "ex-ch03-1": ("chapters/03_x", "ex-ch03-1", "Exercise"),
            "sec-growth": ("chapters/03_x", "sec-growth", "How it grows"),
        },
        fignumbers={"chapters/03_x": {"exercise": {"ex-ch03-1": (3, 1)}}},
        numfig_format={"exercise": "Exercise %s"},
        equations={"eq-width": ("chapters/03_x", 2)},
        bibliography=parse_file(str(ROOT / "references.bib")),
        glue_for=lambda doc: glue or {},
    )
    return rn.Page("chapters/03_x", book)


def value(text: str, markdown: str | None = None) -> dict:
    data = {"text/plain": text}
    if markdown is not None:
        data["text/markdown"] = markdown
    return {"data": data}


def render(source: str, page: rn.Page | None = None) -> str:
    return rn.render_markdown(source, page or make_page())


def test_glue_text_is_replaced_by_the_value_in_the_roles_format():
    page = make_page({"k": value("32"), "big": value("1024"), "share": value("0.8612")})
    text = render("k = {glue:text}`k`, {glue:text}`big:,` channels, {glue:text}`share:.0%`", page)
    assert text == "k = 32, 1,024 channels, 86%"


def test_glued_strings_lose_their_quotes_and_markdown_is_escaped():
    page = make_page({"s": value("'exactly zero'"), "u": value("'a_b*c'")})
    assert render("{glue:text}`s` and {glue}`u`", page) == r"exactly zero and a\_b\*c"


def test_glue_md_pastes_markdown():
    page = make_page({"status": value("<Markdown>", "**Built** offline.")})
    assert render("{glue:md}`status`", page) == "**Built** offline."


def test_a_glue_key_without_a_value_is_an_error():
    with pytest.raises(rn.ReaderNotebookError, match="'missing' has no value"):
        render("{glue:text}`missing:.2f`")


def test_roles_inside_code_spans_and_code_blocks_stay_as_written():
    source = "Write ``{glue:text}`k` `` in prose.\n\n```python\nx = '{cite}`a`'\n```"
    assert render(source) == source


def test_admonitions_become_blockquotes_with_a_bold_title():
    text = render(":::{admonition} Learning goals\n:class: tip\nYou can\n- count\n:::")
    assert text == "> **Learning goals**\n>\n> You can\n> - count"
    # {tip} takes no title: as in the HTML, text after the name opens the body.
    assert render(":::{tip} Practise it\nWrite it.\n:::") == (
        "> **Tip**\n>\n> Practise it\n> Write it."
    )


def test_exercises_are_numbered_as_sphinx_numbers_them_and_solutions_fold():
    source = (
        "```{exercise} Widths\n:label: ex-ch03-1\nHow wide?\n```\n\n"
        "````{solution} ex-ch03-1\n:class: dropdown\n64 channels.\n\n"
        "```python\nprint(64)\n```\n````"
    )
    assert render(source) == (
        "> **Exercise 3.1** (Widths)\n>\n> How wide?\n\n"
        "<details>\n<summary>Solution to Exercise 3.1</summary>\n\n64 channels.\n\n"
        "```python\nprint(64)\n```\n\n</details>"
    )


def test_a_gated_solution_is_closed_within_its_markdown_cell():
    page = make_page()
    start = render("````{solution-start} ex-ch03-1\n:class: dropdown\n````\n\nBecause.", page)
    assert start == (
        "<details>\n<summary>Solution to Exercise 3.1</summary>\n\nBecause.\n\n</details>"
    )
    assert render("````{solution-end}\n````\n\n## Next", page) == "## Next"
    exercise = render("````{exercise-start}\n:label: ex-ch03-1\n````\n\nDo it.", page)
    assert exercise == "**Exercise 3.1**\n\nDo it."


def test_citations_become_author_year_text_and_a_references_cell():
    page = make_page()
    text = render("As shown {cite}`huang2017densenet`; see {cite}`ioffe2015batchnorm`.", page)
    assert text == r"As shown \[Huang et al., 2017\]; see \[Ioffe and Szegedy, 2015\]."
    references = rn.references_markdown(page.cited, page.book.bibliography)
    assert references.startswith("## References\n")
    assert "Densely connected convolutional networks" in references
    assert references.index("Huang et al.") < references.index("Ioffe and Szegedy")


def test_cross_references_link_to_the_published_pages():
    assert render("{doc}`04_y`") == f"[4. Bottleneck]({SITE}chapters/04_y.html)"
    assert render("{doc}`the next one <04_y>`") == f"[the next one]({SITE}chapters/04_y.html)"
    url = f"{SITE}chapters/03_x.html#ex-ch03-1"
    assert render("{numref}`ex-ch03-1`") == f"[Exercise 3.1]({url})"
    assert render("{ref}`ex-ch03-1`") == f"[Exercise 3.1]({url})"
    assert render("{ref}`sec-growth`") == f"[How it grows]({SITE}chapters/03_x.html#sec-growth)"
    assert render("{eq}`eq-width`") == f"[(2)]({SITE}chapters/03_x.html#equation-eq-width)"
    assert render("[next](04_y.ipynb)") == f"[next]({SITE}chapters/04_y.html)"
    assert render("[web](https://pytorch.org/a.md)") == "[web](https://pytorch.org/a.md)"


def test_unknown_roles_directives_and_targets_are_errors_not_silence():
    with pytest.raises(rn.ReaderNotebookError, match="role"):
        render("{py:func}`torch.cat`")
    with pytest.raises(rn.ReaderNotebookError, match="directive"):
        render("```{figure} a.png\n```")
    with pytest.raises(rn.ReaderNotebookError, match="unknown label"):
        render("{ref}`nowhere`")
    with pytest.raises(rn.ReaderNotebookError, match="not a page"):
        render("{doc}`99_missing`")


def _app(baseurl: str, repository: str, prefix: str = "") -> SimpleNamespace:
    options = {"repository_url": repository}
    config = SimpleNamespace(
        html_baseurl=baseurl,
        html_theme_options=options,
        reader_notebooks_prefix=prefix,
        reader_notebooks_branch="notebooks",
    )
    return SimpleNamespace(config=config)


def test_site_url_is_github_pages_of_the_repository_unless_baseurl_is_set():
    assert rn.site_url(_app("", "https://github.com/Org/book")) == "https://org.github.io/book/"
    assert rn.site_url(_app("https://book.example/x", "")) == "https://book.example/x/"


def test_the_chinese_edition_lives_under_its_prefix_on_the_site_and_the_branch():
    app = _app("", "https://github.com/Org/book", prefix="zh/")
    assert rn.site_url(app) == "https://org.github.io/book/zh/"
    assert rn.colab_url(app, "chapters/03_channel_growth") == (
        "https://colab.research.google.com/github/Org/book/blob/notebooks/zh/"
        "chapters/03_channel_growth.ipynb"
    )


def test_edition_words_follow_the_language():
    assert rn.words_for("zh_CN")["solution"] == "解答"
    assert rn.words_for(None)["solution"] == "Solution"
    assert rn.words_for("fr")["references"] == "References"  # no French words: English


def test_leftover_check_finds_myst_outside_code_only():
    assert rn.myst_leftovers("see {doc}`x`\n:::{note}\n(lbl)=") == [
        "{doc}`x`",
        ":::{note}",
        "(lbl)=",
    ]
    assert rn.myst_leftovers("``{doc}`x` ``\n```python\n{cite}`y`\n```") == []


# --- the built editions -------------------------------------------------------------------

PAGES = notebooks()
NOTEBOOKS = HTML / rn.FOLDER
CHINESE_NOTEBOOKS = HTML / "zh" / rn.FOLDER
#: Chinese reader's notebooks also run in the fresh environment: one chapter with a figure
#: shows that their own first cell makes the figures Chinese (the code is the English code).
CHINESE_RUNS = ["chapters/01_preface"]
# Independent of the extension: anything here in a Markdown cell is MyST that Jupyter shows raw.
MYST_ONLY = [
    (r"\{[a-zA-Z][\w:.-]*\}`", "a role such as {glue:text}`...`"),
    (r"^\s*(`{3,}|:{3,})\s*\{", "a directive fence such as ```{exercise}"),
    (r"^\s*:{3,}", "a colon fence"),
    (r"^\s*\([\w.:-]+\)=\s*$", "a MyST target (label)="),
    (r"\{\{\s*[\w.-]+\s*\}\}", "a MyST substitution {{ ... }}"),
    (r"^%", "a MyST comment line"),
]


def edition(page: str) -> nbformat.NotebookNode:
    path = NOTEBOOKS / f"{page}.ipynb"
    if not HTML.is_dir():
        pytest.fail("the book is not built: run `make book` (make test does it first)")
    assert path.is_file(), f"no reader's edition of {page} at {path}"
    return nbformat.read(path, as_version=4)


def prose(markdown: str) -> str:
    """Markdown without fenced code blocks and code spans (code may show anything)."""
    markdown = re.sub(r"^(`{3,})[^\n]*\n.*?^\1\s*$", "", markdown, flags=re.M | re.S)
    return re.sub(r"(?<!\})(`+).+?\1", "", markdown, flags=re.S)  # a role keeps its `...`


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_reader_editions_hold_no_myst_only_syntax(page):
    for cell in edition(page).cells:
        if cell.cell_type != "markdown":
            continue
        text = prose(cell.source)
        for pattern, what in MYST_ONLY:
            found = re.search(pattern, text, re.M)
            assert not found, f"{page}: {what} is left: {found.group(0)!r}"


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_reader_editions_keep_the_chapters_code_cells_unchanged(page):
    source = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    ours = [(c.source, c.metadata) for c in source.cells if c.cell_type == "code"]
    theirs = [(c.source, c.metadata) for c in edition(page).cells if c.cell_type == "code"]
    assert theirs == ours
    # The Colab set-up cell (tagged remove-cell in the book) is the first code cell.
    assert '"google.colab" in sys.modules' in theirs[0][0]
    assert edition(page).metadata["kernelspec"]["name"] == "python3"


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_reader_editions_show_the_glued_values(page):
    """Every {glue:text} of the chapter appears as the number the build computed."""
    from myst_nb.core.variables import format_plain_text

    cells = nbformat.read(ROOT / f"{page}.ipynb", as_version=4).cells
    source = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    roles = re.findall(r"\{glue:text\}`([^`:]+):?([^`]*)`", source)
    if not roles:
        return
    glue_file = HTML.parent / "jupyter_execute" / f"{page}.glue.json"
    glued = json.loads(glue_file.read_text())
    text = "\n".join(c.source for c in edition(page).cells if c.cell_type == "markdown")
    text = text.replace("\\", "")
    for key, fmt in roles:
        shown = format_plain_text(glued[key]["data"]["text/plain"], fmt)
        assert shown in text, f"{page}: {key} should read {shown!r}"


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_reader_editions_list_the_references_they_cite(page):
    source = "\n".join(c.source for c in nbformat.read(ROOT / f"{page}.ipynb", 4).cells)
    cells = edition(page).cells
    if "{cite" in source:
        assert cells[-1].source.startswith("## References")
    else:
        assert "## References" not in cells[-1].source


# --- the Colab-faithful run ---------------------------------------------------------------

COLAB_VENV = ROOT / ".venv-colab"
# What the set-up cell installs (densenet-edu[book], from the repository) plus a kernel.
KERNEL_PACKAGES = ["ipykernel", "nbclient"]


def _package_copy(into: Path) -> Path:
    """The files `pip install git+<repository>` would see: tracked and new, not ignored ones."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def _pip(python: Path, *args: str) -> None:
    # pip's own cache (~/.cache/pip) is used: a rebuild downloads nothing twice.
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-3000:]


@pytest.fixture(scope="session")
def colab_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only densenet-edu[book] + a kernel; rebuilt when pyproject.toml changes."""
    python = COLAB_VENV / "bin" / "python"
    stamp = COLAB_VENV / ".pyproject-sha256"
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + " ".join(KERNEL_PACKAGES).encode()
    ).hexdigest()
    package = _package_copy(tmp_path_factory.mktemp("densenet-edu"))
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        # Same dependencies: only this checkout's package is reinstalled.
        _pip(python, "--no-deps", "--force-reinstall", str(package))
    else:
        shutil.rmtree(COLAB_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(COLAB_VENV)], check=True)
        _pip(python, f"{package}[book]", *KERNEL_PACKAGES)
        stamp.write_text(wanted)
    return python


@pytest.fixture(scope="session")
def colab_runs(colab_python: Path) -> dict[str, dict]:
    """Every reader's edition executed top to bottom in the fresh venv (once per session)."""
    for page in PAGES:
        edition(page)  # fails clearly when the book or an edition is missing
    paths = [NOTEBOOKS / f"{page}.ipynb" for page in PAGES]
    paths += [CHINESE_NOTEBOOKS / f"{page}.ipynb" for page in CHINESE_RUNS]
    with tempfile.TemporaryDirectory(prefix="colab-run-") as workdir:
        result = subprocess.run(
            [str(colab_python), str(ROOT / "tests" / "reader_notebook_runner.py"), workdir]
            + [str(p) for p in paths],
            capture_output=True,
            text=True,
            cwd=workdir,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]

    def key(run: dict) -> str:
        path = Path(run["notebook"])
        if path.is_relative_to(CHINESE_NOTEBOOKS):
            return "zh:" + str(path.relative_to(CHINESE_NOTEBOOKS).with_suffix(""))
        return str(path.relative_to(NOTEBOOKS).with_suffix(""))

    return {key(run): run for run in runs}


@pytest.mark.book
@pytest.mark.parametrize("page", PAGES)
def test_reader_edition_runs_top_to_bottom_in_a_fresh_colab_like_environment(page, colab_runs):
    """nbclient, kernel of the fresh venv, cwd = the notebook's folder. Cells tagged
    skip-execution (the practice skeletons a learner completes) are not executed, as in the
    book; every other cell runs, and none may raise."""
    run = colab_runs.get(page)
    assert run is not None, f"{page} was not run"
    assert run["ok"], f"{page} failed in the fresh environment:\n{run['error']}"


@pytest.mark.book
@pytest.mark.parametrize("page", CHINESE_RUNS)
def test_chinese_reader_edition_draws_its_figures_in_chinese(page, colab_runs):
    run = colab_runs.get(f"zh:{page}")
    assert run is not None, f"zh:{page} was not run"
    assert run["ok"], f"zh:{page} failed in the fresh environment:\n{run['error']}"
    assert run["figure_languages"] and set(run["figure_languages"]) == {"zh"}
    assert set(colab_runs[page]["figure_languages"]) == {"en"}
