"""Figure text in the book's other language: one table of translations, applied when drawing.

The two editions share every code cell, so ``ax.set_title("Channels per layer")`` is the same
line in the English and the Chinese chapter. Its words are translated here, as the figure is
drawn, never in a chapter's code:

- **The book build** (``make book`` sets :data:`EDITIONS_ENV` to ``zh``): every matplotlib
  figure is drawn twice, in English and in Chinese, and the Chinese PNG travels in the
  output's metadata as its *twin* (:data:`TWIN_KEY`); the explorable plotly figures get a
  twin of their HTML. The Chinese edition's build (``_ext/editions.py``) shows the twins, so
  the chapters are still executed once for both editions.
- **The Chinese reader's notebooks** (their first cell sets :data:`LANGUAGE_ENV` to ``zh``):
  figures are drawn in Chinese directly, when the machine has a Chinese font.

Text that is not in the table stays as it is, and :func:`english_words` finds what is left:
a twin records the texts it still shows in English, and a test requires there are none.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from matplotlib.ticker import Formatter

from .figure_text_zh import KEEP_WORDS, ZH, ZH_PATTERNS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "EDITIONS_ENV",
    "LANGUAGE_ENV",
    "LANGUAGE_KEY",
    "LANGUAGES",
    "TWIN_KEY",
    "UNTRANSLATED_KEY",
    "cjk_font",
    "drawn_in",
    "english_words",
    "figure_language",
    "install_figure_language",
    "translate",
    "translate_plotly",
]

#: Set by ``make book`` to the other editions' languages ("zh"): figures get twins in them.
EDITIONS_ENV = "DENSENET_EDU_EDITIONS"
#: Set by a reader's notebook of another edition: figures are drawn in that language.
LANGUAGE_ENV = "DENSENET_EDU_LANGUAGE"
#: Output-metadata key (under the MIME type) of the twins: ``{"zh": data}``.
TWIN_KEY = "densenet_edu_twins"
#: Output-metadata key of the texts a twin still shows in English: ``{"zh": [...]}``.
UNTRANSLATED_KEY = "densenet_edu_untranslated"
#: Output-metadata key of the language a reader's figure was drawn in (``"zh"``).
LANGUAGE_KEY = "densenet_edu_language"

Replacement = str | Callable[[re.Match[str]], str]
#: A text with numbers in it: the pattern, its replacement, and an example it must translate.
Pattern = tuple[re.Pattern[str], Replacement, str]
_TABLES: dict[str, tuple[dict[str, str], list[Pattern]]] = {
    "zh": (ZH, ZH_PATTERNS),
}
LANGUAGES = tuple(_TABLES)

#: Chinese fonts to draw with, best first; the first one installed is used.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Noto Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "SimHei",
)
_LINE_BREAK = re.compile(r"(\n|<br>)")


def _table(language: str) -> tuple[dict[str, str], list[Pattern]]:
    if language not in _TABLES:
        raise ValueError(f"no figure translations for language {language!r}; have {LANGUAGES}")
    return _TABLES[language]


def translate(text: str, language: str) -> str:
    """`text` in `language`, from the table: the whole text, else line by line, else a pattern.

    Text the table does not know is returned unchanged (numbers, names, code).
    """
    exact, patterns = _table(language)
    core = text.strip()
    if not core:
        return text
    if core in exact:
        return text.replace(core, exact[core], 1)
    if _LINE_BREAK.search(core):
        return "".join(
            part if _LINE_BREAK.fullmatch(part) else translate(part, language)
            for part in _LINE_BREAK.split(text)
        )
    for pattern, replacement, _example in patterns:
        match = pattern.fullmatch(core)
        if match:
            new = replacement(match) if callable(replacement) else match.expand(replacement)
            return text.replace(core, new, 1)
    return text


_MATH = re.compile(r"\$[^$]*\$")
_MARKUP = re.compile(r"<[^<>]*>|%\{[^}]*\}|&\w+;")
# A word of letters only; touching a digit or "_", or a dot between it and another word,
# makes it code (conv0, in_channels, features.norm5); "trans. 1" is still a word.
_WORD = re.compile(r"(?<!\w)(?<!\w\.)[A-Za-z]{2,}(?!\w|\.\w)")


def english_words(text: str) -> list[str]:
    """The English words of `text` that a translation should have replaced.

    Math (``$...$``), markup, identifiers such as ``conv0`` or ``in_channels``, single
    letters and the names in :data:`KEEP_WORDS` (DenseNet, PyTorch, ms, ...) do not count.
    """
    plain = _MARKUP.sub(" ", _MATH.sub(" ", text))
    return [word for word in _WORD.findall(plain) if word not in KEEP_WORDS]


# --- fonts ---------------------------------------------------------------------------------


def cjk_font() -> str | None:
    """The name of an installed Chinese font matplotlib can use, or None.

    matplotlib caches its font list once, so a font installed after that (``make setup``
    installs ``fonts-noto-cjk``) is looked for on disk and added.
    """
    from matplotlib import font_manager

    def known() -> str | None:
        names = {entry.name for entry in font_manager.fontManager.ttflist}
        return next((name for name in CJK_FONTS if name in names), None)

    found = known()
    if found is None:
        for path in font_manager.findSystemFonts():
            lowered = os.path.basename(path).lower()
            if any(mark in lowered for mark in ("cjk", "wqy", "sourcehan", "sc-")):
                with contextlib.suppress(Exception):
                    font_manager.fontManager.addfont(path)
        found = known()
    return found


# --- matplotlib ----------------------------------------------------------------------------


class _TranslatedTicks(Formatter):
    """A tick formatter that translates what the axis's own formatter writes."""

    def __init__(self, inner: Formatter, language: str) -> None:
        self.inner, self.language = inner, language
        self.axis = inner.axis

    def set_axis(self, axis: Any) -> None:
        self.axis = axis
        self.inner.set_axis(axis)

    def __call__(self, x: float, pos: int | None = None) -> str:
        return translate(self.inner(x, pos), self.language)

    def format_ticks(self, values: Any) -> list[str]:
        return [translate(label, self.language) for label in self.inner.format_ticks(values)]

    def set_locs(self, locs: Any) -> None:
        self.inner.set_locs(locs)

    def get_offset(self) -> str:
        return self.inner.get_offset()


@contextlib.contextmanager
def drawn_in(fig: Figure, language: str) -> Iterator[list[str]]:
    """Inside this block `fig` draws in `language`; afterwards it is as it was.

    Titles, labels, legends, annotations and tick labels are translated through the table,
    and a Chinese font is added behind the usual one. Yields a list for the caller to fill
    with the texts still in English once it has drawn the figure (:func:`collect_english`).
    """
    import matplotlib as mpl
    from matplotlib.text import Text

    _table(language)  # an unknown language fails here, before the figure is touched
    texts = [(text, text.get_text(), text.get_fontfamily()) for text in fig.findobj(Text)]
    tickers = [
        ticker
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis, getattr(ax, "zaxis", None))
        if axis is not None
        for ticker in (axis.major, axis.minor)
    ]
    formatters = [ticker.formatter for ticker in tickers]
    # matplotlib falls back along a text's list of families, not within "sans-serif": the
    # Chinese font goes after each text's own, so digits and letters look as in English.
    font = cjk_font()
    extra = [font] if font else []
    left: list[str] = []
    try:
        for text, original, family in texts:
            text.set_fontfamily([*family, *extra])
            if original:
                text.set_text(translate(original, language))
        for ticker, formatter in zip(tickers, formatters, strict=True):
            ticker.formatter = _TranslatedTicks(formatter, language)
        # Tick labels made while drawing take their family from here.
        with mpl.rc_context({"font.family": [*mpl.rcParams["font.family"], *extra]}):
            yield left
    finally:
        for text, original, family in texts:
            text.set_text(original)
            text.set_fontfamily(family)
        for ticker, formatter in zip(tickers, formatters, strict=True):
            ticker.formatter = formatter


def collect_english(fig: Figure) -> list[str]:
    """The visible texts of `fig`, after its last draw, that still have English words."""
    from matplotlib.text import Text

    return sorted(
        {
            text.get_text()
            for text in fig.findobj(Text)
            if text.get_visible() and english_words(text.get_text())
        }
    )


def _png(fig: Figure, draw: Callable[[Figure], Any], language: str) -> tuple[Any, list[str]]:
    """`fig` drawn by `draw` in `language`, and the texts left in English."""
    with drawn_in(fig, language) as left:
        data = draw(fig)
        left.extend(collect_english(fig))
    return data, left


def _as_text(data: Any) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")


# --- plotly --------------------------------------------------------------------------------


def _translated_json(value: Any, language: str) -> Any:
    if isinstance(value, str):
        return translate(value, language)
    if isinstance(value, dict):
        return {key: _translated_json(item, language) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_translated_json(item, language) for item in value]
    return value


def translate_plotly(fig: Any, language: str) -> Any:
    """A copy of the plotly figure `fig` with its text in `language` (titles, names, labels,
    hover text, slider labels, and the precomputed states of its sliders)."""
    import plotly.graph_objects as go

    return go.Figure(_translated_json(copy.deepcopy(fig.to_plotly_json()), language))


def plotly_english(fig: Any) -> list[str]:
    """The texts of a plotly figure that still have English words (as :func:`collect_english`)."""
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, str):
            shown = {"text", "name", "label", "prefix", "hovertemplate", "ticktext", "title"}
            # Precomputed slider states name what they update by path ("title.text").
            if key.rsplit(".", 1)[-1] in shown and english_words(value):
                found.add(value)
        elif isinstance(value, dict):
            for name, item in value.items():
                walk(item, name)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, key)

    walk(fig.to_plotly_json())
    return sorted(found)


# --- where figures are shown ---------------------------------------------------------------


def figure_language() -> str | None:
    """The language figures are drawn in for this reader (:data:`LANGUAGE_ENV`), or None."""
    language = os.environ.get(LANGUAGE_ENV, "").strip() or None
    return language if language in _TABLES else None


def twin_languages() -> tuple[str, ...]:
    """The languages of the twins the book build asks for (:data:`EDITIONS_ENV`)."""
    asked = os.environ.get(EDITIONS_ENV, "").replace(",", " ").split()
    return tuple(language for language in asked if language in _TABLES)


def install_figure_language(shell: Any = None) -> None:
    """Draw figures shown in this IPython kernel in the reader's language, or with twins.

    Called by :func:`densenet_edu.book.use_book_style`. Does nothing outside IPython, and
    nothing when neither :data:`LANGUAGE_ENV` nor :data:`EDITIONS_ENV` is set.
    """
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython else None
    if shell is None:
        return
    language, twins = figure_language(), twin_languages()
    if language and cjk_font() is None:
        print(
            "没有找到中文字体，图中文字仍用英文。安装一个（Colab / Debian / Ubuntu："
            "!apt-get -qq install fonts-noto-cjk），然后重新启动内核。"
            if language == "zh"
            else f"No font for {language}: figure text stays in English."
        )
        language = None
    if not language and not twins:
        return
    import matplotlib
    from matplotlib.figure import Figure

    if "inline" in str(matplotlib.get_backend()):
        # The inline backend registers its PNG formatter when its module is first imported
        # (usually at the first figure), and only then: import it now to wrap that formatter.
        with contextlib.suppress(ImportError):
            import matplotlib_inline.backend_inline  # noqa: F401
    png = shell.display_formatter.formatters["image/png"]
    try:
        draw = png.lookup_by_type(Figure)
    except KeyError:
        return  # no inline figures in this front end
    draw = getattr(draw, "densenet_edu_inner", draw)

    def show(fig: Figure) -> Any:
        if language:
            return _png(fig, draw, language)[0], {LANGUAGE_KEY: language}
        data = draw(fig)
        if data is None:
            return None
        metadata: dict[str, Any] = {TWIN_KEY: {}, UNTRANSLATED_KEY: {}}
        for other in twins:
            twin, left = _png(fig, draw, other)
            metadata[TWIN_KEY][other] = _as_text(twin)
            if left:
                metadata[UNTRANSLATED_KEY][other] = left
        return data, metadata

    show.densenet_edu_inner = draw  # type: ignore[attr-defined]
    png.for_type(Figure, show)
