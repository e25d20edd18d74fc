"""The explorable figures work in the static book: a real browser moves their controls.

Headless Chromium (Debian's package) opens each page that shows one of the figures of
``densenet_edu.explore`` from disk with the network off, moves every slider (or picks another
entry of the dropdown) with real mouse clicks, and checks that the figure's data changed, that
a figure with several sliders shows exactly the precomputed state for the sliders' positions,
that the console stayed free of errors and that nothing was requested from outside the
build. Both editions: the Chinese one shows the figures' Chinese twins
(``densenet_edu.figure_text``), which must work the same. A screenshot of each figure goes
next to the build, to _build/screenshots/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from book_build import EDITIONS, HTML, chromium, html_root, toc_files

pytestmark = [pytest.mark.book, pytest.mark.browser]

EXPLORERS = ["channel-growth", "bottleneck-cost", "compression", "feature-reuse"]
LOCAL = re.compile(r"^(file://|https?://(localhost|127\.0\.0\.1)(:\d+)?/|data:|blob:)")

# JavaScript run in the page; `name` is the figure's layout.meta.densenet_edu_explorer.
FIND = """name => Array.from(document.querySelectorAll('.plotly-graph-div'))
    .findIndex(g => g.layout && g.layout.meta && g.layout.meta.densenet_edu_explorer === name)"""
SNAPSHOT = """i => JSON.stringify(
    document.querySelectorAll('.plotly-graph-div')[i].data.map(t => [t.x, t.y, t.z]))"""
# For a figure with several sliders: does it show the grid state of the sliders' positions?
SHOWS_GRID_STATE = """i => {
    const gd = document.querySelectorAll('.plotly-graph-div')[i];
    const grid = gd.layout.meta.densenet_edu_grid;
    let index = 0;
    grid.shape.forEach((size, s) => { index = index * size + gd.layout.sliders[s].active; });
    const state = grid.states[index];
    return state.traces.every((trace, j) => ['x', 'y'].every(key =>
        !(key in state.data) || JSON.stringify(state.data[key][j]) ===
            JSON.stringify(Array.from(gd.data[trace][key] || []))));
}"""


@pytest.fixture(scope="module")
def pages_by_explorer() -> dict[str, dict[str, str]]:
    """Which built page of each edition shows which explorable figure."""
    if not HTML.is_dir():
        pytest.fail("the book is not built: run `make book` (make test does it first)")
    found: dict[str, dict[str, str]] = {edition: {} for edition in EDITIONS}
    for edition in EDITIONS:
        for page in toc_files(edition):
            path = html_root(edition) / f"{page}.html"
            if path.exists():
                text = path.read_text()
                for name in re.findall(r'"densenet_edu_explorer":\s*"([a-z-]+)"', text):
                    found[edition].setdefault(name, page)
    return found


@pytest.fixture(scope="module")
def browser():
    with chromium() as context:
        yield context


def _wait_for_change(page, index: int, before: str, what: str) -> str:
    try:
        page.wait_for_function(
            "([i, before]) => (" + SNAPSHOT + ")(i) !== before", arg=[index, before], timeout=5000
        )
    except Exception as error:  # playwright's TimeoutError
        raise AssertionError(f"{what} did not change the figure's data") from error
    return page.evaluate(SNAPSHOT, index)


def _click_slider(page, figure, s: int) -> None:
    """Click the far end of slider s that it is not at: the first or the last step."""
    rail = figure.locator(".slider-rail-touch-rect").nth(s)
    rail.scroll_into_view_if_needed()
    box = rail.bounding_box()
    active = page.evaluate(
        "([i, s]) => document.querySelectorAll('.plotly-graph-div')[i].layout.sliders[s].active",
        [figure_index(page, figure), s],
    )
    x = box["x"] + (box["width"] - 2 if active == 0 else 2)
    page.mouse.click(x, box["y"] + box["height"] / 2)


def figure_index(page, figure) -> int:
    return figure.evaluate(
        "g => Array.from(document.querySelectorAll('.plotly-graph-div')).indexOf(g)"
    )


#: The figure's title, as the reader sees it.
TITLE = "i => document.querySelectorAll('.plotly-graph-div')[i].layout.title.text || ''"
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("name", EXPLORERS)
def test_explorable_figure_responds_offline_with_a_clean_console(
    browser, pages_by_explorer, name, edition
):
    pages = pages_by_explorer[edition]
    if name not in pages:
        pytest.fail(f"no page of the {edition} book shows the {name!r} figure")
    path = html_root(edition) / f"{pages[name]}.html"
    page = browser.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function(f"() => ({FIND})({name!r}) >= 0", timeout=15_000)
        index = page.evaluate(FIND, name)
        figure = page.locator(".plotly-graph-div").nth(index)
        figure.scroll_into_view_if_needed()
        snapshot = page.evaluate(SNAPSHOT, index)
        title = page.evaluate(TITLE, index)
        assert bool(CJK.search(title)) == (edition == "zh"), f"{edition} figure titled {title!r}"

        sliders = figure.locator(".slider-rail-touch-rect").count()
        if sliders:
            for s in range(sliders):
                _click_slider(page, figure, s)
                snapshot = _wait_for_change(page, index, snapshot, f"slider {s + 1}")
            if sliders > 1:
                assert page.evaluate(SHOWS_GRID_STATE, index), "the sliders and the data disagree"
        else:
            figure.locator(".updatemenu-header").click()
            figure.locator(".updatemenu-dropdown-button").nth(1).click()
            _wait_for_change(page, index, snapshot, "the dropdown")

        shots = HTML.parent / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        prefix = "" if edition == "en" else f"{edition}__"
        figure.screenshot(path=str(shots / f"{prefix}explore-{name}.png"))
        assert problems == []
        assert [url for url in requests if not LOCAL.match(url)] == []
        assert any("_static/plotly/plotly.min.js" in url for url in requests)
    finally:
        page.close()


def test_jupyter_output_loads_plotly_js_then_draws_and_responds(browser, tmp_path, monkeypatch):
    """The HTML `show` writes outside the book, inserted as JupyterLab inserts an output.

    JupyterLab sets the output's HTML with innerHTML and then re-creates each script, so an
    external script loads asynchronously; the figure must still draw. plotly.js comes from
    a file here instead of plotly's CDN, because the browser is offline.
    """
    from importlib.resources import files

    from densenet_edu import explore

    monkeypatch.delenv(explore.PAGE_HAS_PLOTLY_ENV, raising=False)
    plotly_js = Path(str(files("plotly") / "package_data" / "plotly.min.js")).as_uri()
    snippet = explore.to_html(explore.channel_growth_explorer(), plotly_src=plotly_js)
    escaped = json.dumps(snippet).replace("</", "<\\/")  # inside a <script>
    page_file = tmp_path / "output.html"
    page_file.write_text(
        "<!doctype html><html><head><meta charset='utf-8'></head><body><div id='out'></div>"
        "<script>const host = document.getElementById('out');"
        f"host.innerHTML = {escaped};"
        "host.querySelectorAll('script').forEach(old => {"
        "  const s = document.createElement('script'); s.textContent = old.textContent;"
        "  old.replaceWith(s); });</script></body></html>"
    )
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        page.goto(page_file.as_uri(), wait_until="load")
        page.wait_for_function(f"() => ({FIND})('channel-growth') >= 0", timeout=15_000)
        figure = page.locator(".plotly-graph-div").first
        before = page.evaluate(SNAPSHOT, 0)
        _click_slider(page, figure, 2)
        _wait_for_change(page, 0, before, "the layers slider")
        assert page.evaluate(SHOWS_GRID_STATE, 0)
        assert problems == []
    finally:
        page.close()
