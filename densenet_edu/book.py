"""Helpers the book's chapters share: glue, source listings, tables, one figure style, CLI help.

Every chapter imports these instead of defining its own copy, so the pages look alike and
a chapter runs the same in the built book, in Jupyter and in Colab:

- `glue` is MyST-NB's when it is installed (the book build) and otherwise only displays the
  value when asked to, so a reader's notebook needs nothing beyond ``densenet-edu[book]``.
- `show_source` lists a function's or class's source without its docstring, found by
  parsing, not by splitting strings.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BOOK_STYLE", "glue", "show_cli_help", "show_source", "table", "use_book_style"]

# One figure style for every page: readable on a laptop screen and in the HTML column.
BOOK_STYLE: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 10.5,
    "axes.titlesize": 11.5,
    "axes.labelsize": 10.5,
    "legend.fontsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def glue(name: str, value: Any, display: bool = True, zh: Any = None) -> None:
    """Make `value` available to the prose as ``{glue:text}`name` `` (MyST-NB's `glue`).

    Without MyST-NB (Colab, plain Jupyter) the prose is pre-rendered with the numbers in
    it, so this only shows the value when ``display=True``, as MyST-NB would.

    Numbers need no translation, but words do: ``zh`` is the Chinese edition's wording of a
    value that is text, glued as ``<name>_zh`` (the two editions share every code cell).
    """
    if zh is not None:
        glue(f"{name}_zh", zh, display=False)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


def _strip_docstring(source: str) -> str:
    """`source` (one def or class) without the docstring of its outermost definition."""
    tree = ast.parse(source)
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return source
    first = node.body[0] if node.body else None
    if not (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return source
    lines = source.splitlines(keepends=True)
    # Line numbers are 1-based; end_lineno is the docstring's closing line.
    del lines[first.lineno - 1 : first.end_lineno]
    return "".join(lines)


def source_text(obj: Callable[..., Any] | type, *, docstring: bool = False, start: str = "") -> str:
    """The dedented source of `obj`; without its docstring unless asked; from `start` on.

    `start` is the beginning of a line to begin the listing at (the first line that
    contains it), for showing only the part of a long function the text talks about.
    """
    source = textwrap.dedent(inspect.getsource(obj))
    if not docstring:
        source = _strip_docstring(source)
    if start:
        if start not in source:
            raise ValueError(f"{start!r} does not occur in the source of {obj!r}")
        first = source.index(start)
        source = textwrap.dedent(source[source.rfind("\n", 0, first) + 1 :])
    return source


def show_source(
    obj: Callable[..., Any] | type, *, docstring: bool = False, start: str = ""
) -> None:
    """Display `obj`'s source, highlighted (see `source_text` for the options)."""
    from IPython.display import Code, display

    display(Code(source_text(obj, docstring=docstring, start=start), language="python"))


def table(df: Any, fmt: str | dict[str, str] | None = "{:,}") -> Any:
    """A pandas Styler in the book's table style: thousands separators, right-aligned cells.

    A named index is shown as the first column(s), so the header has no row of blank cells
    under the index name; a default 0, 1, 2, ... index is not shown at all.

    `fmt` is passed to `Styler.format` (a format string or a column -> format dict);
    None leaves the values as they are.
    """
    import pandas as pd

    columns = list(df.columns)
    if any(name is not None for name in df.index.names):
        df, hide_index = df.reset_index(), True
    else:
        hide_index = isinstance(df.index, pd.RangeIndex)
    styler = df.style.hide(axis="index") if hide_index else df.style
    if isinstance(fmt, str):
        styler = styler.format(fmt, subset=columns)
    elif fmt is not None:
        styler = styler.format(fmt)
    return styler.set_table_styles(
        [{"selector": "th, td", "props": "padding: 0.15em 0.7em; text-align: right"}]
    )


def use_book_style() -> None:
    """Apply the book's one figure style to matplotlib (call once, at the top of a chapter).

    Figures are then also drawn in the reader's language when a reader's notebook of another
    edition asks for it, and with their other-language twins in the book build.
    """
    import matplotlib.pyplot as plt

    from .figure_text import install_figure_language

    plt.rcParams.update(BOOK_STYLE)
    # The Chinese edition's figure text (see densenet_edu.figure_text).
    install_figure_language()


def show_cli_help(main: Callable[[Sequence[str]], Any]) -> None:
    """Print a command line's ``--help`` text, as ``python -m ... --help`` would.

    `main` takes an argument list and lets argparse handle ``--help``, which prints the
    help and raises SystemExit(0): that exit is the expected end here, any other is raised.
    """
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["--help"])
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise
    print(out.getvalue(), end="")
