"""densenet_edu.figure_text: figure text in the Chinese edition, translated as a figure is drawn."""

from __future__ import annotations

import base64
import io
import json
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from densenet_edu import figure_text as ft  # noqa: E402
from densenet_edu.figure_text_zh import ZH, ZH_PATTERNS  # noqa: E402


@pytest.fixture
def table(monkeypatch):
    """A small known table in place of the real one (the real one is tested on its own)."""
    exact = {
        "Channels per layer": "每层的通道数",
        "layer": "层",
        "eager": "即时",
        "measured": "实测",
    }
    patterns = [(ft.re.compile(r"block (\d+)"), r"第 \1 个块", "block 1")]
    monkeypatch.setitem(ft._TABLES, "zh", (exact, patterns))
    return exact


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _figure():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["eager", "fast"], [1, 2])
    ax.plot([0, 1], [1, 2], label="measured")
    ax.set_title("Channels per layer")
    ax.set_xlabel("layer")
    ax.legend()
    return fig, ax


# --- the table -------------------------------------------------------------------------------


def test_a_known_text_is_translated_whole(table):
    assert ft.translate("Channels per layer", "zh") == "每层的通道数"


def test_surrounding_whitespace_is_kept(table):
    assert ft.translate("  layer\n", "zh") == "  层\n"


def test_lines_are_translated_one_by_one_when_the_whole_text_is_unknown(table):
    assert ft.translate("layer\nmeasured", "zh") == "层\n实测"
    assert ft.translate("layer<br>measured", "zh") == "层<br>实测"


def test_text_with_numbers_in_it_is_matched_by_a_pattern(table):
    assert ft.translate("block 3", "zh") == "第 3 个块"


def test_unknown_text_is_left_as_it_is(table):
    assert ft.translate("conv0", "zh") == "conv0"
    assert ft.translate("something new", "zh") == "something new"


def test_a_language_without_a_table_is_an_error():
    with pytest.raises(ValueError, match="no figure translations for language 'fr'"):
        ft.translate("layer", "fr")


def test_english_words_ignore_math_code_names_and_units():
    assert ft.english_words("$k_0 + k(\\ell - 1)$") == []
    assert ft.english_words("conv0 in_channels features.norm5") == []
    assert ft.english_words("DenseNet-121, 52 ms, ImageNet") == []
    assert ft.english_words("每层 k = 32") == []


def test_english_words_find_prose():
    assert ft.english_words("channels entering the layer") == [
        "channels",
        "entering",
        "the",
        "layer",
    ]
    assert ft.english_words("DenseNet-121 (θ = 0.5), measured") == ["measured"]
    assert ft.english_words("trans. 1") == ["trans"]


def test_every_translation_in_the_table_is_free_of_english_prose():
    left = {english: ft.english_words(chinese) for english, chinese in ZH.items()}
    assert {english: words for english, words in left.items() if words} == {}


def test_every_translation_in_the_table_is_needed():
    """A key that is itself free of English words would never need translating."""
    assert [english for english in ZH if not ft.english_words(english)] == []


@pytest.mark.parametrize("example", [example for _, _, example in ZH_PATTERNS])
def test_every_pattern_translates_its_example_completely(example):
    translated = ft.translate(example, "zh")
    assert translated != example
    assert ft.english_words(translated) == []


# --- matplotlib ------------------------------------------------------------------------------


def test_a_figure_drawn_in_chinese_has_chinese_titles_labels_legends_and_ticks(table):
    fig, ax = _figure()
    with ft.drawn_in(fig, "zh"):
        fig.canvas.draw()
        assert ax.get_title() == "每层的通道数"
        assert ax.get_xlabel() == "层"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["实测"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["即时", "fast"]
        left = ft.collect_english(fig)
    assert left == ["fast"]
    plt.close(fig)


def test_a_figure_is_as_it_was_after_drawing_in_chinese(table):
    fig, ax = _figure()
    before = _png(fig)
    with ft.drawn_in(fig, "zh"):
        _png(fig)
    assert ax.get_title() == "Channels per layer"
    assert _png(fig) == before
    plt.close(fig)


def test_chinese_text_is_drawn_with_a_chinese_font(table):
    if ft.cjk_font() is None:
        pytest.skip("no Chinese font installed (make setup installs fonts-noto-cjk)")
    fig, _ = _figure()
    with ft.drawn_in(fig, "zh"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _png(fig)
    assert [str(w.message) for w in caught if "missing from font" in str(w.message)] == []
    plt.close(fig)


# --- where figures are shown -----------------------------------------------------------------


class _Shell:
    """The part of an IPython shell install_figure_language uses."""

    def __init__(self) -> None:
        from IPython.core.formatters import DisplayFormatter

        self.display_formatter = DisplayFormatter()
        from matplotlib.figure import Figure

        self.display_formatter.formatters["image/png"].for_type(Figure, _png)


def test_the_book_build_gets_a_chinese_twin_of_every_figure(table, monkeypatch):
    monkeypatch.setenv(ft.EDITIONS_ENV, "zh")
    monkeypatch.delenv(ft.LANGUAGE_ENV, raising=False)
    shell = _Shell()
    ft.install_figure_language(shell)
    fig, _ = _figure()
    data, metadata = shell.display_formatter.format(fig)
    english = data["image/png"]
    twin = base64.b64decode(metadata["image/png"][ft.TWIN_KEY]["zh"])
    assert twin.startswith(b"\x89PNG") and twin != english
    assert english == _png(fig)
    assert metadata["image/png"][ft.UNTRANSLATED_KEY] == {"zh": ["fast"]}
    plt.close(fig)


def test_installing_twice_draws_each_twin_once(table, monkeypatch):
    monkeypatch.setenv(ft.EDITIONS_ENV, "zh")
    shell = _Shell()
    ft.install_figure_language(shell)
    ft.install_figure_language(shell)
    fig, _ = _figure()
    _, metadata = shell.display_formatter.format(fig)
    assert isinstance(metadata["image/png"][ft.TWIN_KEY]["zh"], str)
    plt.close(fig)


def test_a_chinese_reader_sees_figures_drawn_in_chinese(table, monkeypatch):
    if ft.cjk_font() is None:
        pytest.skip("no Chinese font installed (make setup installs fonts-noto-cjk)")
    monkeypatch.setenv(ft.LANGUAGE_ENV, "zh")
    monkeypatch.delenv(ft.EDITIONS_ENV, raising=False)
    shell = _Shell()
    ft.install_figure_language(shell)
    fig, ax = _figure()
    data, metadata = shell.display_formatter.format(fig)
    with ft.drawn_in(fig, "zh"):
        assert data["image/png"] == _png(fig)
    assert metadata["image/png"] == {ft.LANGUAGE_KEY: "zh"}
    assert ax.get_title() == "Channels per layer"
    plt.close(fig)


def test_without_a_chinese_font_a_reader_is_told_and_figures_stay_english(
    table, monkeypatch, capsys
):
    monkeypatch.setenv(ft.LANGUAGE_ENV, "zh")
    monkeypatch.setattr(ft, "cjk_font", lambda: None)
    shell = _Shell()
    ft.install_figure_language(shell)
    assert "fonts-noto-cjk" in capsys.readouterr().out
    fig, _ = _figure()
    data, _ = shell.display_formatter.format(fig)
    assert data["image/png"] == _png(fig)
    plt.close(fig)


def test_nothing_changes_without_either_setting(monkeypatch):
    monkeypatch.delenv(ft.LANGUAGE_ENV, raising=False)
    monkeypatch.delenv(ft.EDITIONS_ENV, raising=False)
    shell = _Shell()
    ft.install_figure_language(shell)
    from matplotlib.figure import Figure

    assert shell.display_formatter.formatters["image/png"].lookup_by_type(Figure) is _png


# --- plotly ----------------------------------------------------------------------------------


def _in_json(text: str) -> str:
    """`text` as plotly's JSON writes it (non-ASCII escaped)."""
    return json.dumps(text)[1:-1]


def _plotly_figure() -> go.Figure:
    fig = go.Figure(go.Bar(x=[1, 2], y=[3, 4], name="measured"))
    fig.update_layout(
        title="Channels per layer",
        xaxis_title="layer",
        sliders=[{"steps": [{"label": "block 1", "method": "skip"}]}],
        meta={"densenet_edu_grid": {"states": [{"layout": {"title.text": "block 2"}}]}},
    )
    return fig


def test_a_plotly_figure_is_translated_with_its_sliders_and_precomputed_states(table):
    zh = ft.translate_plotly(_plotly_figure(), "zh")
    assert zh.layout.title.text == "每层的通道数"
    assert zh.layout.xaxis.title.text == "层"
    assert zh.data[0].name == "实测"
    assert zh.layout.sliders[0].steps[0].label == "第 1 个块"
    assert zh.layout.sliders[0].steps[0].method == "skip"
    assert zh.layout.meta["densenet_edu_grid"]["states"][0]["layout"]["title.text"] == "第 2 个块"
    assert ft.plotly_english(zh) == []


def test_plotly_english_finds_untranslated_titles():
    assert ft.plotly_english(_plotly_figure()) == [
        "Channels per layer",
        "block 1",
        "block 2",
        "layer",
        "measured",
    ]


def test_an_explorable_figure_carries_its_chinese_twin_in_the_book_build(table, monkeypatch):
    from densenet_edu.explore.display import _Shown

    monkeypatch.setenv(ft.EDITIONS_ENV, "zh")
    monkeypatch.delenv(ft.LANGUAGE_ENV, raising=False)
    bundle, metadata = _Shown(_plotly_figure())._repr_mimebundle_()
    assert "Channels per layer" in bundle["text/html"]
    assert _in_json("每层的通道数") in metadata["text/html"][ft.TWIN_KEY]["zh"]


def test_an_explorable_figure_is_shown_in_the_readers_language(table, monkeypatch):
    from densenet_edu.explore.display import _Shown

    monkeypatch.setenv(ft.LANGUAGE_ENV, "zh")
    bundle = _Shown(_plotly_figure())._repr_mimebundle_()
    assert _in_json("每层的通道数") in bundle["text/html"]
