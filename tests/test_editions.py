"""_ext/editions.py: the link between the two editions, and Chinese lines joined without spaces."""

from __future__ import annotations

import sys

from docutils import nodes

from book_build import ROOT

sys.path.insert(0, str(ROOT / "_ext"))
import editions  # noqa: E402


def test_english_page_links_into_zh():
    href = editions.other_edition_href("../", "zh/", "chapters/03_channel_growth")
    assert href == "../zh/chapters/03_channel_growth.html"


def test_chinese_page_links_back_to_the_english_root():
    href = editions.other_edition_href("../", "../", "chapters/03_channel_growth")
    assert href == "../../chapters/03_channel_growth.html"


def test_root_page_link_has_no_leading_dot():
    assert editions.other_edition_href("#", "zh/", "index") == "zh/index.html"


def test_a_break_between_chinese_characters_disappears():
    assert editions.join_wide_lines("稠密\n连接") == "稠密连接"


def test_a_break_after_full_width_punctuation_disappears():
    assert editions.join_wide_lines("拼接，\n而不是相加。") == "拼接，而不是相加。"


def test_a_break_next_to_latin_text_stays_a_space():
    assert editions.join_wide_lines("growth\nrate 增长率\nk") == "growth\nrate 增长率\nk"


def test_a_break_next_to_an_inline_node_is_judged_by_its_text():
    assert editions.join_wide_lines("\n连接", before="**稠密") == "连接"
    assert editions.join_wide_lines("稠密\n", after="连接") == "稠密"
    assert editions.join_wide_lines("\n连接", before="DenseNet") == "\n连接"


class _App:
    class config:  # noqa: N801 - stands in for Sphinx's app.config
        language = "zh_CN"


def test_doctree_paragraphs_are_joined_only_in_chinese():
    paragraph = nodes.paragraph("", "", nodes.Text("稠密\n连接"), nodes.literal("", "a\nb"))
    document = nodes.document(None, None)
    document += paragraph
    editions._join_chinese_lines(_App, document)
    assert paragraph.astext() == "稠密连接a\nb"
    _App.config.language = "en"
    english = nodes.paragraph("", "", nodes.Text("稠密\n连接"))
    document += english
    editions._join_chinese_lines(_App, document)
    assert english.astext() == "稠密\n连接"
