"""A real browser reads the built book from disk with the network off.

Headless Chromium (Debian's package) loads every page; the test checks that MathJax
typeset the math, every image decoded, nothing tried to reach the network, and the
console stayed free of errors. A screenshot of each page goes to _build/screenshots/.
"""

from __future__ import annotations

import pytest

from book_build import ROOT, built_page, chromium, in_both, toc_files

pytestmark = [pytest.mark.book, pytest.mark.browser]

SCREENSHOTS = ROOT / "_build" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    with chromium() as context:
        yield context


def _record_console_error(problems: list[str], message) -> None:
    if message.type == "error":
        problems.append(f"console error: {message.text}")


@pytest.mark.parametrize(("edition", "page_name"), in_both(toc_files))
def test_page_renders_offline_with_math_images_and_a_clean_console(browser, edition, page_name):
    path = built_page(page_name, edition)
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: _record_console_error(problems, m))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    try:
        page.goto(path.as_uri(), wait_until="load")
        math_nodes = page.locator(".math").count()
        if math_nodes:
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
            )
            page.evaluate("() => MathJax.startup.promise")
            typeset = page.locator("mjx-container").count()
            assert typeset >= math_nodes, f"{typeset} of {math_nodes} formulas typeset"
            assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"
        broken = page.evaluate(
            "() => Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        assert broken == [], f"images that did not load: {broken}"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        prefix = "" if edition == "en" else f"{edition}__"
        page.screenshot(
            path=str(SCREENSHOTS / f"{prefix}{page_name.replace('/', '__')}.png"), full_page=True
        )
        assert problems == []
    finally:
        page.close()


def test_dark_mode_switches_the_theme(browser):
    page = browser.new_page()
    try:
        page.goto(built_page(toc_files()[0]).as_uri(), wait_until="load")
        page.evaluate("() => { localStorage.setItem('mode', 'dark'); }")
        page.reload(wait_until="load")
        assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    finally:
        page.close()


def test_search_finds_densenet(browser):
    page = browser.new_page()
    try:
        search = ROOT / "_build" / "html" / "search.html"
        page.goto(search.as_uri() + "?q=DenseNet", wait_until="load")
        page.wait_for_selector("#search-results ul.search li", timeout=15_000)
        assert page.locator("#search-results ul.search li").count() >= 1
    finally:
        page.close()


def test_chinese_text_renders_as_glyphs_not_boxes(browser):
    """Two different Chinese characters draw different pixels; a missing font draws two boxes."""
    page = browser.new_page()
    try:
        page.goto(built_page("chapters/03_channel_growth", "zh").as_uri(), wait_until="load")
        same = page.evaluate(
            """() => {
                const font = getComputedStyle(document.querySelector("article p")).font;
                const draw = (ch) => {
                    const canvas = document.createElement("canvas");
                    canvas.width = canvas.height = 64;
                    const ctx = canvas.getContext("2d");
                    ctx.font = font.replace(/\\d+(\\.\\d+)?px/, "40px");
                    ctx.fillText(ch, 4, 48);
                    return Array.from(ctx.getImageData(0, 0, 64, 64).data).join(",");
                };
                return draw("稠") === draw("密");
            }"""
        )
        assert not same, "Chinese characters render as boxes: install a CJK font (fonts-noto-cjk)"
    finally:
        page.close()


def test_the_language_link_opens_the_chinese_page(browser):
    page = browser.new_page()
    try:
        page.goto(built_page("chapters/03_channel_growth").as_uri(), wait_until="load")
        page.click("p.language-switch a")
        page.wait_for_load_state("load")
        assert page.url.endswith("/zh/chapters/03_channel_growth.html")
        assert page.evaluate("() => document.documentElement.lang").startswith("zh")
    finally:
        page.close()
