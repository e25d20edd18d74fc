"""Helpers shared by the book tests: what _toc.yml and _config.yml say, where the build is."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# DENSENET_EDU_BUILD checks a book built elsewhere (jupyter-book build --path-output DIR:
# DENSENET_EDU_BUILD=DIR/_build), e.g. while another build owns _build.
HTML = Path(os.environ.get("DENSENET_EDU_BUILD", ROOT / "_build")) / "html"


#: The book's editions: English at the root, the Chinese edition (same code) under zh/.
EDITIONS = ("en", "zh")


def book_root(edition: str = "en") -> Path:
    return ROOT if edition == "en" else ROOT / edition


def html_root(edition: str = "en") -> Path:
    return HTML if edition == "en" else HTML / edition


def config(edition: str = "en") -> dict:
    return yaml.safe_load((book_root(edition) / "_config.yml").read_text())


def toc_files(edition: str = "en") -> list[str]:
    """Every page of the book, in reading order, as paths without suffix."""
    toc = yaml.safe_load((book_root(edition) / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part.get("chapters", []))
    return files


def source_of(page: str, edition: str = "en") -> Path:
    for suffix in (".ipynb", ".md"):
        path = book_root(edition) / f"{page}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"_toc.yml lists {page}, but neither .ipynb nor .md exists")


def notebooks(edition: str = "en") -> list[str]:
    return [page for page in toc_files(edition) if (book_root(edition) / f"{page}.ipynb").exists()]


def built_page(page: str, edition: str = "en") -> Path:
    path = html_root(edition) / f"{page}.html"
    if not html_root(edition).is_dir():
        pytest.fail("the book is not built: run `make book` (make test does it first)")
    return path


def in_both(pages: Callable[[str], list[str]]) -> list[Any]:
    """pytest params (edition, page) for every page of both editions, with readable ids."""
    return [
        pytest.param(edition, page, id=page if edition == "en" else f"{edition}:{page}")
        for edition in EDITIONS
        for page in pages(edition)
    ]


# How every browser test starts Debian's Chromium: headless, and with its background
# connections off (this machine's closed network refuses them, noisily).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_executable() -> str:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is not installed: sudo apt-get install chromium (make test does)")
    return executable


@contextlib.contextmanager
def chromium(offline: bool = True, height: int = 900) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_executable()
    with tempfile.TemporaryDirectory() as profile, playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            offline=offline,
            viewport={"width": 1280, "height": height},
        )
        try:
            yield context
        finally:
            context.close()
