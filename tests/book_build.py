"""Helpers shared by the book tests: what _toc.yml and _config.yml say, where the build is."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# DENSENET_EDU_BUILD checks a book built elsewhere (jupyter-book build --path-output DIR:
# DENSENET_EDU_BUILD=DIR/_build), e.g. while another build owns _build.
HTML = Path(os.environ.get("DENSENET_EDU_BUILD", ROOT / "_build")) / "html"


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_files() -> list[str]:
    """Every page of the book, in reading order, as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part.get("chapters", []))
    return files


def source_of(page: str) -> Path:
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{page}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"_toc.yml lists {page}, but neither .ipynb nor .md exists")


def notebooks() -> list[str]:
    return [page for page in toc_files() if (ROOT / f"{page}.ipynb").exists()]


def built_page(page: str) -> Path:
    path = HTML / f"{page}.html"
    if not HTML.is_dir():
        pytest.fail("the book is not built: run `make book` (make test does it first)")
    return path


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
