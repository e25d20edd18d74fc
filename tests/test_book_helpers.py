"""densenet_edu.book: the helpers every chapter shares."""

from __future__ import annotations

import builtins
import re
import sys

import pandas as pd
import pytest

from densenet_edu import book, published
from densenet_edu.layers import DenseLayer


def _documented(x: int) -> int:
    """A docstring that
    spans lines."""
    # a comment stays
    return x + 1


def test_source_text_drops_the_docstring_by_parsing():
    text = book.source_text(_documented)
    assert "docstring" not in text and "spans lines" not in text
    assert text.startswith("def _documented(x: int) -> int:\n")
    assert "# a comment stays" in text and "return x + 1" in text


def test_source_text_keeps_the_docstring_when_asked():
    assert '"""A docstring that' in book.source_text(_documented, docstring=True)


def test_source_text_starts_at_the_requested_line_dedented():
    text = book.source_text(_documented, start="return")
    assert text == "return x + 1\n"


def test_source_text_names_a_start_that_is_not_there():
    with pytest.raises(ValueError, match="does not occur"):
        book.source_text(_documented, start="no such line")


def test_source_text_of_a_method_is_dedented():
    assert book.source_text(DenseLayer.forward).startswith("def forward(")


def test_glue_without_myst_nb_shows_the_value_only_when_asked(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "myst_nb", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    book.glue("hidden", 1234, display=False)
    assert capsys.readouterr().out == ""
    book.glue("shown", 1234)
    assert capsys.readouterr().out.strip() == "1234"


def test_table_formats_thousands():
    html = book.table(pd.DataFrame({"n": [7978856]})).to_html()
    assert "7,978,856" in html


def test_use_book_style_sets_the_one_figure_style():
    import matplotlib.pyplot as plt

    book.use_book_style()
    assert plt.rcParams["figure.dpi"] == book.BOOK_STYLE["figure.dpi"]


def test_show_cli_help_prints_the_help_and_swallows_only_its_exit(capsys):
    import argparse

    def main(argv):
        argparse.ArgumentParser(prog="python -m demo", description="Demo.").parse_args(argv)

    book.show_cli_help(main)
    assert capsys.readouterr().out.startswith("usage: python -m demo")

    def failing(argv):
        raise SystemExit(2)

    with pytest.raises(SystemExit):
        book.show_cli_help(failing)


def test_published_tables_hold_the_papers_headline_figures():
    bc100 = next(r for r in published.CIFAR_RESULTS if (r.model, r.depth) == ("DenseNet-BC", 100))
    assert bc100.c10_plus == 4.51 and bc100.bottleneck_compression
    assert published.TORCHVISION_WEIGHTS["densenet121"].params == 7_978_856
    assert published.IMAGENET_ERRORS["densenet121"].top1_single_crop == 25.02
    naive, efficient = (published.PLEISS_DENSENET_BC_100[k] for k in ("naive", "efficient"))
    assert (
        efficient.memory_gb < naive.memory_gb
        and efficient.seconds_per_batch > naive.seconds_per_batch
    )


def test_table_shows_a_named_index_as_columns_without_blank_header_cells():
    df = pd.DataFrame({"block": [1, 2], "params": [1000, 2000]}).set_index("block")
    html = book.table(df).to_html()
    headers = re.findall(r"<th[^>]*>(.*?)</th>", html)
    assert headers == ["block", "params"]
    assert "2,000" in html


def test_table_hides_a_default_range_index():
    html = book.table(pd.DataFrame({"n": [1, 2]})).to_html()
    assert re.findall(r"<th[^>]*>(.*?)</th>", html) == ["n"]


def test_glue_with_zh_also_glues_the_chinese_twin(monkeypatch):
    import myst_nb

    glued = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.append((name, value)))
    book.glue("ch99_word", "exactly zero", display=False, zh="恰好为零")
    assert sorted(glued) == [("ch99_word", "exactly zero"), ("ch99_word_zh", "恰好为零")]
