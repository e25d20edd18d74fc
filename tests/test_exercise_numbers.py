"""Exercises are numbered per chapter (_ext/exercise_numbers.py): 3.1, 3.2, ... not 1 to 60."""

from __future__ import annotations

import re
import sys

import pytest

from book_build import ROOT, built_page, config

sys.path.insert(0, str(ROOT / "_ext"))
import exercise_numbers as en  # noqa: E402


def test_the_chapter_number_is_read_from_the_page_name():
    assert en.chapter_of("chapters/01_preface") == (1, False)
    assert en.chapter_of("chapters/03_channel_growth") == (3, False)
    assert en.chapter_of("chapters/practice_03_channel_growth") == (3, True)
    assert en.chapter_of("chapters/11_memory_and_speed") == (11, False)
    assert en.chapter_of("chapters/references") is None
    assert en.chapter_of("practice") is None


def test_exercises_are_renumbered_per_chapter_practice_pages_continuing():
    # What Sphinx assigns through an unnumbered toc: one count through the book.
    book = {
        "chapters/01_preface": {"exercise": {"ex-ch01-1": (1,), "ex-ch01-2": (2,)}},
        "chapters/02_dense": {"exercise": {"ex-ch02-1": (3,), "ex-ch02-2": (4,)}},
        "chapters/practice_02_dense": {"exercise": {"ex-p02-a": (5,), "ex-p02-b": (6,)}},
        "chapters/03_growth": {
            "exercise": {"ex-ch03-2": (8,), "ex-ch03-1": (7,)},
            "figure": {"fig-1": (1,)},
        },
        "chapters/references": {"figure": {"fig-2": (2,)}},
    }
    renumbered = en.renumber_per_chapter(book)
    assert renumbered["chapters/01_preface"]["exercise"] == {
        "ex-ch01-1": (1, 1),
        "ex-ch01-2": (1, 2),
    }
    assert renumbered["chapters/02_dense"]["exercise"] == {
        "ex-ch02-1": (2, 1),
        "ex-ch02-2": (2, 2),
    }
    assert renumbered["chapters/practice_02_dense"]["exercise"] == {
        "ex-p02-a": (2, 3),
        "ex-p02-b": (2, 4),
    }
    # Reading order is Sphinx's number, not the order of the dictionary.
    assert renumbered["chapters/03_growth"]["exercise"] == {
        "ex-ch03-1": (3, 1),
        "ex-ch03-2": (3, 2),
    }
    # Other figure types and pages without a chapter number are left alone.
    assert renumbered["chapters/03_growth"]["figure"] == {"fig-1": (1,)}
    assert renumbered["chapters/references"] == {"figure": {"fig-2": (2,)}}
    # The input is not modified.
    assert book["chapters/02_dense"]["exercise"]["ex-ch02-1"] == (3,)


def test_a_practice_page_listed_before_its_chapter_still_comes_after_it():
    book = {
        "chapters/practice_04_b": {"exercise": {"p": (1,)}},
        "chapters/04_b": {"exercise": {"c": (2,)}},
    }
    renumbered = en.renumber_per_chapter(book)
    assert renumbered["chapters/04_b"]["exercise"]["c"] == (4, 1)
    assert renumbered["chapters/practice_04_b"]["exercise"]["p"] == (4, 2)


def test_the_book_loads_the_extension_after_sphinx_numbers_the_exercises():
    assert config()["sphinx"]["local_extensions"]["exercise_numbers"] == "_ext"
    connected = []

    class App:
        def connect(self, event, callback, priority=500):
            connected.append((event, callback, priority))

    en.setup(App())
    # Sphinx's toctree collector numbers figures on env-get-updated at priority 500.
    assert [(e, p > 500) for e, _, p in connected] == [("env-get-updated", True)]


@pytest.mark.book
def test_the_built_chapter_3_numbers_its_exercises_3_1_and_numref_agrees():
    html = built_page("chapters/03_channel_growth").read_text()
    titles = re.findall(r'class="caption-number">Exercise ([\d.]+) ', html)
    assert titles[:3] == ["3.1", "3.2", "3.3"], titles
    # A {numref} to the first exercise renders the same number as its title.
    reference = re.search(r'href="#ex-ch03-1"><span class="std std-numref">([^<]+)</span>', html)
    assert reference and reference.group(1) == "Exercise 3.1"


@pytest.mark.book
def test_the_built_practice_page_continues_its_chapters_numbers():
    def numbers(page: str) -> list[str]:
        html = built_page(page).read_text()
        return re.findall(r'class="caption-number">Exercise ([\d.]+) ', html)

    chapter = numbers("chapters/03_channel_growth")
    practice = numbers("chapters/practice_03_channel_growth")
    assert practice and all(t.startswith("3.") for t in practice), practice
    assert practice[0] == f"3.{len(chapter) + 1}"
