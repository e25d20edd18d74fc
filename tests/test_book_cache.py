"""scripts/book_cache.sh: the shared execution cache never outlives the code it was made with."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from book_build import ROOT


def _book(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "book_cache.sh", tmp_path / "scripts")
    (tmp_path / "densenet_edu").mkdir()
    (tmp_path / "densenet_edu" / "model.py").write_text("growth_rate = 32\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "results_cpu.json").write_text("{}\n")
    return tmp_path


def _run(book: Path) -> None:
    subprocess.run(["bash", str(book / "scripts" / "book_cache.sh")], check=True)


def _cached(book: Path) -> bool:
    return (book / "_build" / ".jupyter_cache").is_dir()


def _execute_chapters(book: Path) -> None:
    (book / "_build" / ".jupyter_cache").mkdir(parents=True, exist_ok=True)


def test_cache_survives_a_rebuild_with_the_same_package(tmp_path):
    book = _book(tmp_path)
    _run(book)
    _execute_chapters(book)
    _run(book)
    assert _cached(book)


def test_cache_goes_when_the_package_changes(tmp_path):
    book = _book(tmp_path)
    _run(book)
    _execute_chapters(book)
    (book / "densenet_edu" / "model.py").write_text("growth_rate = 12\n")
    _run(book)
    assert not _cached(book)


def test_cache_goes_when_recorded_results_change(tmp_path):
    book = _book(tmp_path)
    _run(book)
    _execute_chapters(book)
    (book / "benchmarks" / "results_cpu.json").write_text('{"new": 1}\n')
    _run(book)
    assert not _cached(book)


def test_cache_survives_an_edit_of_the_benchmarks_prose(tmp_path):
    # Chapters read the recorded results (*.json), not benchmarks/README.md.
    book = _book(tmp_path)
    (book / "benchmarks" / "README.md").write_text("# Benchmarks\n")
    _run(book)
    _execute_chapters(book)
    (book / "benchmarks" / "README.md").write_text("# Benchmarks, explained\n")
    _run(book)
    assert _cached(book)


def _saved_environments(book: Path) -> list[Path]:
    """Where Sphinx saves what it read, for the English and the Chinese edition."""
    return [book / "_build" / ".doctrees", book / "_build" / "zh" / "_build" / ".doctrees"]


def _read_pages(book: Path) -> None:
    for doctrees in _saved_environments(book):
        doctrees.mkdir(parents=True, exist_ok=True)
        (doctrees / "environment.pickle").write_bytes(b"pages as last read")


def _pages_kept(book: Path) -> list[bool]:
    return [(d / "environment.pickle").exists() for d in _saved_environments(book)]


def test_both_editions_read_every_page_again_when_the_cache_goes(tmp_path):
    book = _book(tmp_path)
    _run(book)
    _execute_chapters(book)
    _read_pages(book)
    (book / "densenet_edu" / "model.py").write_text("growth_rate = 12\n")
    _run(book)
    assert _pages_kept(book) == [False, False]


def test_pages_are_not_read_again_while_the_cache_is_valid(tmp_path):
    book = _book(tmp_path)
    _run(book)
    _execute_chapters(book)
    _read_pages(book)
    _run(book)
    assert _pages_kept(book) == [True, True]
