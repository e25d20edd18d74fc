"""Number exercises per chapter: "Exercise 3.1", "Exercise 3.2", ... instead of 1 to 60.

sphinx-exercise numbers its exercises through Sphinx's numfig machinery (figure type
``"exercise"``): Sphinx's toctree collector counts them in ``env.toc_fignumbers``, and
both the exercise's title and every ``{numref}`` to it read the number from there. The
book's table of contents is not numbered (chapter titles carry their own numbers, as in
"# 3. Channel growth"), so Sphinx counts exercises through the whole book.

This extension runs right after the collector (``env-get-updated``, later priority) and
rewrites each exercise's number to ``(chapter, n)``:

- the chapter number is read from the page's file name: ``chapters/03_channel_growth``
  is chapter 3 (the preface, ``01_preface``, is 1);
- a practice page, ``chapters/practice_03_channel_growth``, belongs to the same chapter
  and continues its count: if chapter 3 has exercises 3.1 to 3.3, the practice page's
  first exercise is 3.4;
- pages whose names carry no chapter number keep Sphinx's numbers.

Titles, ``{numref}`` texts, solution titles and the reader's notebooks all follow,
because they all read ``env.toc_fignumbers``.
"""

from __future__ import annotations

import re
from collections import defaultdict

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

FIGTYPE = "exercise"

# "chapters/03_channel_growth" -> ("", "03"); "chapters/practice_03_x" -> ("practice_", "03")
_PAGE_NAME = re.compile(r"(?:^|/)(practice_)?(\d+)_[^/]*$")

FigNumbers = dict[str, dict[str, dict[str, tuple[int, ...]]]]


def chapter_of(docname: str) -> tuple[int, bool] | None:
    """(chapter number, is a practice page) from a page's name; None if it has none."""
    match = _PAGE_NAME.search(docname)
    if match is None:
        return None
    return int(match.group(2)), bool(match.group(1))


def renumber_per_chapter(fignumbers: FigNumbers, figtype: str = FIGTYPE) -> FigNumbers:
    """A copy of `fignumbers` with every `figtype` number replaced by (chapter, n).

    `fignumbers` is Sphinx's ``env.toc_fignumbers``: docname -> figure type -> node id ->
    number tuple, numbered through the book in reading order. Within a chapter, the
    chapter page's exercises come first, then its practice page's, each in Sphinx's
    (reading) order. Other figure types and pages without a chapter number are unchanged.
    """
    by_chapter: dict[int, list[tuple[bool, tuple[int, ...], str, str]]] = defaultdict(list)
    for docname, types in fignumbers.items():
        chapter = chapter_of(docname)
        if chapter is None:
            continue
        number, practice = chapter
        for node_id, old in types.get(figtype, {}).items():
            by_chapter[number].append((practice, old, docname, node_id))

    result: FigNumbers = {
        docname: {t: dict(numbers) for t, numbers in types.items()}
        for docname, types in fignumbers.items()
    }
    for number, exercises in by_chapter.items():
        for n, (_, _, docname, node_id) in enumerate(sorted(exercises), start=1):
            result[docname][figtype][node_id] = (number, n)
    return result


def _renumber(app: Sphinx, env: BuildEnvironment) -> list[str]:
    env.toc_fignumbers = renumber_per_chapter(env.toc_fignumbers)
    # The collector has already asked for every page whose numbers changed to be written.
    return []


def setup(app: Sphinx) -> dict:
    # The toctree collector assigns the numbers on env-get-updated at the default
    # priority (500); a larger priority runs after it.
    app.connect("env-get-updated", _renumber, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
