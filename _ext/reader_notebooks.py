"""Reader's editions: every notebook page once more as a notebook that reads well in Jupyter and
Colab, where MyST-NB does not run.

The chapters are written in MyST: glued numbers (``{glue:text}`ch03_k` ``), admonitions,
exercises and solutions as directives, citations and cross-references as roles. Jupyter and
Colab show all of that as raw markup. After the book is built, this extension writes, for every
page whose source is a notebook, ``_build/html/_notebooks/<docname>.ipynb`` in which

- glued values are the numbers the build computed (from MyST-NB's ``<doc>.glue.json``),
  formatted with the role's format spec exactly as the book formats them;
- admonitions and exercises are Markdown blockquotes with a bold title, exercises numbered as
  in the HTML (from Sphinx's figure numbers); solutions are folded in ``<details>``;
- citations are author-year text, and a "References" cell at the end lists what the page cites
  (formatted with pybtex from the book's ``.bib`` files);
- cross-references (``{doc}``, ``{ref}``, ``{numref}``, ``{eq}``, links to other chapters) are
  links to the published page;
- code cells are the chapter's own, unchanged (so the set-up cell installs the package in Colab).

Markup it does not know is an error, and so is a glue key without a value: a reader's edition
never shows MyST, and never silently drops a number. The page's Colab button and its notebook
download button are pointed at the edition. The published site is ``html_baseurl`` when set,
otherwise the GitHub Pages address of ``repository.url``; the branch that the Pages workflow
pushes the editions to (and that Colab opens) is ``reader_notebooks_branch``.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

#: Where the editions go, relative to the HTML output (served with the book).
FOLDER = "_notebooks"

ADMONITION_TITLES = {
    "attention": "Attention",
    "caution": "Caution",
    "danger": "Danger",
    "error": "Error",
    "hint": "Hint",
    "important": "Important",
    "note": "Note",
    "seealso": "See also",
    "tip": "Tip",
    "warning": "Warning",
}

#: The words an edition adds itself, by the book's ``language`` (English unless listed).
WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "admonitions": ADMONITION_TITLES,
        "exercise": "Exercise %s",
        "solution": "Solution",
        "solution_to": "Solution to {exercise}",
        "references": "References",
        "colab_tooltip": "Open the reader's notebook in Colab",
        "download_tooltip": "Download the reader's notebook",
        "intro": (
            "*This notebook is the reader's edition of [{title}]({url}), a page of the book on "
            "DenseNet, for running in Jupyter or Colab. Run the cells from the top: in Colab the "
            "first one installs `densenet_edu`. The numbers quoted in the text were computed when "
            "the book was built; timings and anything random may differ in your run.*"
        ),
    },
    "zh": {
        "admonitions": {
            "attention": "注意",
            "caution": "小心",
            "danger": "危险",
            "error": "错误",
            "hint": "提示",
            "important": "重要",
            "note": "注",
            "seealso": "另见",
            "tip": "提示",
            "warning": "警告",
        },
        "exercise": "练习 %s",
        "solution": "解答",
        "solution_to": "{exercise} 的解答",
        "references": "参考文献",
        "colab_tooltip": "在 Colab 中打开读者版笔记本",
        "download_tooltip": "下载读者版笔记本",
        "intro": (
            "*本笔记本是 DenseNet 一书中 [{title}]({url}) 一页的读者版，供在 Jupyter 或 Colab "
            "中运行。请从头依次运行各单元格：在 Colab 中，第一个单元格会安装 `densenet_edu`。"
            "正文中引用的数字是构建本书时计算得到的；计时结果和随机结果在你的运行中可能不同。*"
        ),
        # Run before the chapter's own cells: its figures are then drawn in Chinese
        # (densenet_edu.figure_text), with a Chinese font that Colab lacks.
        "language_cell": """\
# 中文版：图中的文字用中文绘制（见 densenet_edu.figure_text）。
# 这需要一个中文字体；Colab 没有，这里安装 fonts-noto-cjk（约半分钟）。
import os
import subprocess
import sys

os.environ["DENSENET_EDU_LANGUAGE"] = "zh"
has_chinese_font = subprocess.run(
    ["fc-list", ":lang=zh"], capture_output=True, text=True
).stdout.strip()
if "google.colab" in sys.modules and not has_chinese_font:
    subprocess.run(
        "apt-get -qq update && apt-get -qq install -y fonts-noto-cjk",
        shell=True,
        stdout=subprocess.DEVNULL,
    )""",
    },
}


def words_for(language: str | None) -> dict[str, Any]:
    """The edition's own words for a Sphinx ``language`` such as ``"zh_CN"`` (default English)."""
    return WORDS.get((language or "en").split("_")[0].split("-")[0], WORDS["en"])


FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|:{3,})\s*(?P<info>.*)$")
DIRECTIVE_INFO = re.compile(r"^\{(?P<name>[\w:.-]+)\}\s*(?P<argument>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
# A role, or a code span (whose text is left alone); the role is tried first at each position.
INLINE = re.compile(
    r"(?P<role>\{(?P<name>[\w:.-]+)\}`(?P<content>[^`]*)`)|(?P<code>(?P<ticks>`+).+?(?P=ticks))",
    re.S,
)
TARGET_LINE = re.compile(r"^\s*\([\w.:-]+\)=\s*$")
COMMENT_LINE = re.compile(r"^%")
LOCAL_LINK = re.compile(
    r"\]\((?!(?:[a-z][a-z0-9+.-]*:|#|/))(?P<path>[^)\s#]+?)\.(?:ipynb|md)(?P<anchor>#[^)\s]*)?\)"
)
EXPLICIT_TARGET = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


class ReaderNotebookError(ExtensionError):
    """A page uses markup the reader's edition cannot render, or a glue key has no value."""


# --- what a page needs to know about the book --------------------------------------------


@dataclass
class Book:
    """Everything outside the page that rendering needs: URLs, titles, numbers, glue, cites."""

    site_url: str
    titles: dict[str, str]
    # label -> (docname, anchor, title)
    labels: dict[str, tuple[str, str, str]]
    # docname -> figtype -> anchor -> number tuple (Sphinx's env.toc_fignumbers)
    fignumbers: dict[str, dict[str, dict[str, tuple[int, ...]]]]
    numfig_format: dict[str, str]
    # label -> (docname, equation number)
    equations: dict[str, tuple[str, int]]
    bibliography: Any  # pybtex BibliographyData
    glue_for: Callable[[str], dict[str, dict[str, Any]]]
    words: dict[str, Any] = field(default_factory=lambda: WORDS["en"])

    def page_url(self, docname: str, anchor: str = "") -> str:
        return f"{self.site_url}{docname}.html" + (f"#{anchor}" if anchor else "")

    def exercise_number(self, label: str) -> str:
        docname, anchor, _ = self.label(label)
        number = self.fignumbers.get(docname, {}).get("exercise", {}).get(anchor)
        if not number:
            raise ReaderNotebookError(f"exercise {label!r} has no number in the Sphinx build")
        return ".".join(str(n) for n in number)

    def is_exercise(self, label: str) -> bool:
        docname, anchor, _ = self.label(label)
        return anchor in self.fignumbers.get(docname, {}).get("exercise", {})

    def label(self, label: str) -> tuple[str, str, str]:
        try:
            return self.labels[label]
        except KeyError:
            raise ReaderNotebookError(f"unknown label {label!r}") from None


@dataclass
class Page:
    """One page being rendered: its name, the book, and what it cited so far."""

    docname: str
    book: Book
    cited: list[str] = field(default_factory=list)
    solution_open: bool = False

    def error(self, message: str) -> ReaderNotebookError:
        return ReaderNotebookError(f"{self.docname}: reader's edition: {message}")


# --- inline markup -------------------------------------------------------------------------

MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>$|])")


def escape(text: str) -> str:
    """Literal text for Markdown (a glued value is text, not markup)."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _format_plain_text(text: str, fmt_spec: str) -> str:
    from myst_nb.core.variables import format_plain_text  # the book's own formatting

    return format_plain_text(text, fmt_spec)


def _glue(page: Page, name: str, content: str) -> str:
    docname, key = page.docname, content.strip()
    if "::" in key:
        path, key = key.split("::", 1)
        docname = posixpath.normpath(posixpath.join(posixpath.dirname(page.docname), path))
        docname = re.sub(r"\.(ipynb|md)$", "", docname)
    fmt_spec = ""
    if name == "glue:text" and ":" in key:
        key, fmt_spec = key.split(":", 1)
    data = page.book.glue_for(docname).get(key)
    if data is None:
        raise page.error(f"glue key {key!r} has no value (was it glued in {docname}?)")
    bundle = data["data"]
    if name == "glue:md" or (name != "glue:text" and "text/markdown" in bundle):
        if "text/markdown" not in bundle:
            raise page.error(f"glue key {key!r} has no text/markdown value for {{{name}}}")
        return str(bundle["text/markdown"]).strip()
    if "text/plain" not in bundle:
        raise page.error(f"glue key {key!r} has no text/plain value")
    try:
        return escape(_format_plain_text(bundle["text/plain"], fmt_spec))
    except (TypeError, ValueError) as err:
        raise page.error(f"glue key {key!r}: format {fmt_spec!r} failed: {err}") from err


def _explicit(content: str) -> tuple[str | None, str]:
    match = EXPLICIT_TARGET.match(content.strip())
    if match and match["text"]:
        return match["text"], match["target"].strip()
    return None, content.strip()


def _doc(page: Page, content: str) -> str:
    text, target = _explicit(content)
    target = re.sub(r"\.(ipynb|md)$", "", target)
    if target.startswith("/"):
        docname = target.lstrip("/")
    else:
        docname = posixpath.normpath(posixpath.join(posixpath.dirname(page.docname), target))
    if docname not in page.book.titles:
        raise page.error(f"{{doc}} target {target!r} is not a page of the book")
    return f"[{text or escape(page.book.titles[docname])}]({page.book.page_url(docname)})"


def _exercise_text(page: Page, label: str, fmt: str | None = None) -> str:
    number = page.book.exercise_number(label)
    fmt = fmt or page.book.numfig_format.get("exercise", page.book.words["exercise"])
    return fmt.replace("%s", number).replace("{number}", number)


def _ref(page: Page, name: str, content: str) -> str:
    text, label = _explicit(content)
    docname, anchor, title = page.book.label(label)
    url = page.book.page_url(docname, anchor)
    if name == "numref":
        if not page.book.is_exercise(label):
            raise page.error(f"{{numref}} to {label!r}: only exercises are numbered here")
        return f"[{_exercise_text(page, label, text)}]({url})"
    if text:
        return f"[{text}]({url})"
    if page.book.is_exercise(label):
        return f"[{_exercise_text(page, label)}]({url})"
    return f"[{escape(title)}]({url})"


def _eq(page: Page, content: str) -> str:
    text, label = _explicit(content)
    if label not in page.book.equations:
        raise page.error(f"{{eq}} to unknown equation {label!r}")
    docname, number = page.book.equations[label]
    return f"[{text or f'({number})'}]({page.book.page_url(docname, f'equation-{label}')})"


def author_year(entry: Any) -> tuple[str, str]:
    """("Huang et al.", "2017") for a pybtex entry, as sphinxcontrib-bibtex's author_year."""
    from pybtex.richtext import Text

    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [
        Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text") for p in persons
    ]
    if not names:
        authors = "Anonymous"
    elif len(names) == 1:
        authors = names[0]
    elif len(names) == 2:
        authors = f"{names[0]} and {names[1]}"
    else:
        authors = f"{names[0]} et al."
    return authors, entry.fields.get("year", "n.d.")


def _cite(page: Page, name: str, content: str) -> str:
    keys = [key.strip() for key in content.split(",") if key.strip()]
    parts = []
    for key in keys:
        if key not in page.book.bibliography.entries:
            raise page.error(f"{{cite}} key {key!r} is not in the bibliography")
        if key not in page.cited:
            page.cited.append(key)
        authors, year = author_year(page.book.bibliography.entries[key])
        parts.append((authors, year))
    if name in ("cite:t", "cite:ts"):
        return "; ".join(f"{a} \\[{y}\\]" for a, y in parts)
    return "\\[" + "; ".join(f"{a}, {y}" for a, y in parts) + "\\]"


def render_inline(text: str, page: Page) -> str:
    """Replace every role in `text` (outside code spans) by plain Markdown."""

    def replace(match: re.Match[str]) -> str:
        if match["code"]:
            return match["code"]
        name, content = match["name"], match["content"]
        if name in ("glue", "glue:", "glue:any", "glue:text", "glue:md"):
            return _glue(page, name, content)
        if name in ("cite", "cite:p", "cite:ps", "cite:t", "cite:ts"):
            return _cite(page, name, content)
        if name == "doc":
            return _doc(page, content)
        if name in ("ref", "numref"):
            return _ref(page, name, content)
        if name == "eq":
            return _eq(page, content)
        if name == "math":
            return f"${content}$"
        if name in ("sub", "sup", "kbd"):
            return f"<{name}>{content}</{name}>"
        if name == "abbr":
            return content
        raise page.error(f"role {{{name}}} is not supported (add it to _ext/reader_notebooks.py)")

    text = INLINE.sub(replace, text)
    return LOCAL_LINK.sub(lambda m: _local_link(page, m), text)


def _local_link(page: Page, match: re.Match[str]) -> str:
    docname = posixpath.normpath(posixpath.join(posixpath.dirname(page.docname), match["path"]))
    if docname not in page.book.titles:
        raise page.error(f"link to {match['path']!r}, which is not a page of the book")
    anchor = (match["anchor"] or "").lstrip("#")
    return f"]({page.book.page_url(docname, anchor)})"


# --- blocks --------------------------------------------------------------------------------


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    if body and body[0].strip() == "---":
        end = body.index("---", 1) if "---" in body[1:] else 0
        for line in body[1:end]:
            key, _, value = line.partition(":")
            options[key.strip()] = value.strip()
        body = body[end + 1 :]
    else:
        while body and (match := OPTION.match(body[0])):
            options[match["key"]] = match["value"]
            body = body[1:]
    while body and not body[0].strip():
        body = body[1:]
    return options, body


def _quote(lines: list[str]) -> list[str]:
    return [f"> {line}" if line.strip() else ">" for line in lines]


def _details(summary: str, content: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *content, "", "</details>"]


def _exercise_title(page: Page, label: str, argument: str) -> str:
    title = f"**{_exercise_text(page, label)}**"
    return f"{title} ({render_inline(argument, page)})" if argument else title


def _solution_summary(page: Page, target: str) -> str:
    if not target:
        return page.book.words["solution"]
    return page.book.words["solution_to"].format(exercise=_exercise_text(page, target))


def _directive(page: Page, name: str, argument: str, body: list[str]) -> list[str]:
    options, content = _split_options(body)
    argument = argument.strip()
    if name == "admonition":
        title = render_inline(argument, page) if argument else "Note"
        return _quote([f"**{title}**", "", *render_blocks(content, page)])
    if name in ADMONITION_TITLES:
        # These take no title: MyST puts text after the name into the body (so does the HTML).
        lines = ([argument] if argument else []) + content
        title = page.book.words["admonitions"][name]
        return _quote([f"**{title}**", "", *render_blocks(lines, page)])
    if name == "exercise":
        if "label" not in options:
            raise page.error("an {exercise} has no :label:, so it has no number to show")
        title = _exercise_title(page, options["label"], argument)
        return _quote([title, "", *render_blocks(content, page)])
    if name == "solution":
        return _details(_solution_summary(page, argument), render_blocks(content, page))
    if name == "exercise-start":
        if "label" not in options:
            raise page.error("an {exercise-start} has no :label:, so it has no number to show")
        return [_exercise_title(page, options["label"], argument)]
    if name == "exercise-end":
        return []
    if name == "solution-start":
        # Closed by {solution-end}, or at the end of this cell: a Markdown cell cannot leave
        # an HTML element open for the next one (the solution's code cells follow it).
        page.solution_open = True
        return ["<details>", f"<summary>{_solution_summary(page, argument)}</summary>", ""]
    if name == "solution-end":
        if page.solution_open:
            page.solution_open = False
            return ["", "</details>"]
        return []
    if name in ("code-block", "code", "sourcecode"):
        return [f"```{argument}", *content, "```"]
    if name == "math":
        return ["$$", *content, "$$"]
    raise page.error(
        f"directive {{{name}}} is not supported in reader's editions "
        "(add it to _ext/reader_notebooks.py)"
    )


def _render_text(lines: list[str], page: Page) -> list[str]:
    kept = [line for line in lines if not TARGET_LINE.match(line) and not COMMENT_LINE.match(line)]
    return render_inline("\n".join(kept), page).split("\n") if kept else []


def render_blocks(lines: list[str], page: Page) -> list[str]:
    """MyST Markdown lines -> plain Markdown lines (directives rendered, roles replaced)."""
    out: list[str] = []
    text: list[str] = []
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if not match:
            text.append(lines[i])
            i += 1
            continue
        out += _render_text(text, page)
        text = []
        fence = match["fence"]
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        body = lines[i + 1 : end]
        directive = DIRECTIVE_INFO.match(match["info"].strip())
        if directive:
            out += _directive(page, directive["name"], directive["argument"], body)
        elif fence[0] == ":":
            raise page.error(f"a colon fence without a directive: {lines[i]!r}")
        else:
            out += lines[i : end + 1]  # a code block: verbatim
        i = end + 1
    out += _render_text(text, page)
    return out


def render_markdown(source: str, page: Page) -> str:
    """One Markdown cell of the page, rendered. Closes a solution left open in this cell."""
    page.solution_open = False
    lines = render_blocks(source.split("\n"), page)
    if page.solution_open:
        lines += ["", "</details>"]
        page.solution_open = False
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --- whole notebooks -----------------------------------------------------------------------


URL = re.compile(r"https?://[^\s<>]+?(?=[.,;:)]?(?:\s|$))")
URL_COMMAND = re.compile(r"\\url\{([^}]*)\}")


def references_markdown(keys: list[str], bibliography: Any, heading: str = "References") -> str:
    """A "References" cell: the cited entries, formatted as the book's bibliography."""
    from pybtex.database import Entry
    from pybtex.plugin import find_plugin

    style = find_plugin("pybtex.style.formatting", "plain")()
    entries = []
    for key in keys:
        entry = bibliography.entries[key]
        # pybtex does not know \url{...}; the address itself is what a reader needs.
        fields = {name: URL_COMMAND.sub(r"\1", value) for name, value in entry.fields.items()}
        plain = Entry(entry.type, fields=fields, persons=entry.persons)
        plain.key = key
        entries.append(plain)
    entries.sort(key=author_year)
    lines = [f"## {heading}", ""]
    for formatted in style.format_entries(entries):
        authors, year = author_year(bibliography.entries[formatted.key])
        text = formatted.text.render_as("text").replace("\n", " ")
        pieces = URL.split(text)
        urls = [f"<{url}>" for url in URL.findall(text)] + [""]
        text = "".join(escape(piece) + url for piece, url in zip(pieces, urls, strict=True))
        lines.append(f"- \\[{authors}, {year}\\] {text}")
    return "\n".join(lines)


def intro_markdown(page: Page) -> str:
    title = page.book.titles[page.docname]
    url = page.book.page_url(page.docname)
    return page.book.words["intro"].format(title=escape(title), url=url)


def reader_notebook(notebook: nbformat.NotebookNode, page: Page) -> nbformat.NotebookNode:
    """The reader's edition of `notebook`: Markdown rendered, code cells unchanged.

    An edition in another language starts with one code cell of its own, which sets the
    language figures are drawn in (``language_cell`` of :data:`WORDS`).
    """
    edition = copy.deepcopy(notebook)
    for cell in edition.cells:
        if cell.cell_type == "markdown":
            cell.source = render_markdown(cell.source, page)
            leftovers = myst_leftovers(cell.source)
            if leftovers:
                raise page.error(f"MyST left in a Markdown cell: {leftovers}")
    # Fixed ids: an unchanged page gives an unchanged edition (and no diff on its branch).
    intro = nbformat.v4.new_markdown_cell(intro_markdown(page), id="reader-edition")
    edition.cells.insert(0, intro)
    if "language_cell" in page.book.words:
        language = nbformat.v4.new_code_cell(page.book.words["language_cell"], id="language")
        edition.cells.insert(1, language)
    if page.cited:
        references = references_markdown(
            page.cited, page.book.bibliography, page.book.words["references"]
        )
        edition.cells.append(nbformat.v4.new_markdown_cell(references, id="references"))
    nbformat.validate(edition)
    return edition


def myst_leftovers(markdown: str) -> list[str]:
    """MyST-only syntax in plain Markdown: roles, directive fences, targets, substitutions."""
    found = []
    in_code = None
    for line in markdown.split("\n"):
        fence = re.match(r"^\s*(`{3,}|~{3,})", line)
        if in_code:
            if fence and fence[1][0] == in_code[0] and len(fence[1]) >= len(in_code):
                in_code = None
            continue
        if re.match(r"^\s*(`{3,}|:{3,})\s*\{", line) or re.match(r"^\s*:{3,}", line):
            found.append(line.strip())
            continue
        if fence:
            in_code = fence[1]
            continue
        prose = re.sub(r"(?<!\})(`+).+?\1", "", line)  # code spans, not a role's content
        found += re.findall(r"\{[\w:.-]+\}`[^`]*`", prose)
        found += re.findall(r"\{\{[^}]*\}\}", prose)
        if TARGET_LINE.match(line):
            found.append(line.strip())
    return found


# --- Sphinx --------------------------------------------------------------------------------


def site_url(app: Sphinx) -> str:
    """The published book: html_baseurl, or GitHub Pages' address of the repository."""
    prefix = app.config.reader_notebooks_prefix
    if app.config.html_baseurl:
        return app.config.html_baseurl.rstrip("/") + "/" + prefix
    repository = (app.config.html_theme_options or {}).get("repository_url", "")
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", repository)
    if not match:
        raise ReaderNotebookError(
            "reader's editions link to the published book: set html.baseurl in _config.yml "
            f"(repository.url {repository!r} is not a GitHub repository)"
        )
    owner, name = match[1].lower(), match[2]
    if name.lower() == f"{owner}.github.io":
        return f"https://{owner}.github.io/{prefix}"
    return f"https://{owner}.github.io/{name}/{prefix}"


def colab_url(app: Sphinx, docname: str) -> str:
    options = app.config.html_theme_options or {}
    repository = options.get("repository_url", "")
    owner_repo = repository.removeprefix("https://github.com/").strip("/")
    colab = options.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com")
    branch = app.config.reader_notebooks_branch
    prefix = app.config.reader_notebooks_prefix
    return f"{colab.rstrip('/')}/github/{owner_repo}/blob/{branch}/{prefix}{docname}.ipynb"


def has_edition(app: Sphinx, docname: str) -> bool:
    return Path(app.env.doc2path(docname)).suffix == ".ipynb"


def book_from_env(env: Any, config: Any, srcdir: Path, outdir: Path, site: str) -> Book:
    """The Book of a Sphinx build environment (after reading: numbers are assigned)."""
    from pybtex.database import BibliographyData, parse_file

    std = env.domaindata["std"]
    labels = {name: (doc, anchor, title) for name, (doc, anchor, title) in std["labels"].items()}
    for name, (doc, anchor) in std["anonlabels"].items():
        labels.setdefault(name, (doc, anchor, ""))
    equations = {
        label: (doc, number)
        for label, (doc, number) in env.domaindata.get("math", {}).get("objects", {}).items()
    }
    bibliography = BibliographyData()
    for bibfile in getattr(config, "bibtex_bibfiles", []) or []:
        for key, entry in parse_file(str(Path(srcdir) / bibfile)).entries.items():
            bibliography.entries[key] = entry
    # MyST-NB writes each executed page's glue data next to the HTML output folder.
    glue_root = Path(outdir).parent / "jupyter_execute"
    cache: dict[str, dict[str, dict[str, Any]]] = {}

    def glue_for(docname: str) -> dict[str, dict[str, Any]]:
        if docname not in cache:
            path = glue_root / f"{docname}.glue.json"
            cache[docname] = json.loads(path.read_text("utf-8")) if path.exists() else {}
        return cache[docname]

    return Book(
        site_url=site,
        titles={doc: title.astext() for doc, title in env.titles.items()},
        labels=labels,
        fignumbers=env.toc_fignumbers,
        numfig_format=dict(config.numfig_format or {}),
        equations=equations,
        bibliography=bibliography,
        glue_for=glue_for,
        words=words_for(getattr(config, "language", None)),
    )


def write_editions(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    book = book_from_env(app.env, app.config, app.srcdir, app.outdir, site_url(app))
    out = Path(app.outdir) / FOLDER
    shutil.rmtree(out, ignore_errors=True)  # no edition of a page that is gone
    for docname in sorted(app.env.found_docs):
        if not has_edition(app, docname):
            continue
        source = nbformat.read(app.env.doc2path(docname), as_version=4)
        edition = reader_notebook(source, Page(docname, book))
        path = out / f"{docname}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(edition, path)


def _point_buttons_at_edition(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """The Colab button opens the edition on its branch; the .ipynb download is the edition."""
    if pagename not in app.env.found_docs or not has_edition(app, pagename):
        return
    colab = colab_url(app, pagename)
    download = f"{context['pathto'](FOLDER, 1)}/{pagename}.ipynb"
    found = {"colab": False, "download": False}
    words = words_for(app.config.language)

    def walk(buttons: list[dict[str, Any]]) -> None:
        for button in buttons:
            walk(button.get("buttons", []))
            url = button.get("url", "")
            if "colab.research.google.com" in url or button.get("text") == "Colab":
                button["url"] = colab
                button["tooltip"] = words["colab_tooltip"]
                found["colab"] = True
            elif re.search(r"_sources/.*\.ipynb$", url):
                button["url"] = download
                button["tooltip"] = words["download_tooltip"]
                found["download"] = True

    walk(context.get("header_buttons", []))
    missing = [name for name, ok in found.items() if not ok]
    if missing:
        raise ReaderNotebookError(
            f"{pagename}: no {' or '.join(missing)} button to point at the reader's edition "
            "(did sphinx-book-theme change how it builds header buttons?)"
        )


def setup(app: Sphinx) -> dict:
    app.add_config_value("reader_notebooks_branch", "notebooks", "html", types=[str])
    # Where this edition lives on the site and on that branch ("zh/" for the Chinese one).
    app.add_config_value("reader_notebooks_prefix", "", "html", types=[str])
    # After sphinx-book-theme adds the launch and download buttons (priority 501).
    app.connect("html-page-context", _point_buttons_at_edition, priority=600)
    app.connect("build-finished", write_editions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
