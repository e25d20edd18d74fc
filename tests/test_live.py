"""`make live` in a real browser: a chapter's code runs in place on a local kernel.

The test starts scripts/live.py on free ports (it makes its own token), opens the printed
URL in headless Chromium, goes to a chapter, presses "Run live", replaces a cell's code (a
different growth rate), runs it and reads the new output: text, a matplotlib figure and an
ipywidget. It checks that the Jupyter server refuses requests without the token, that the
book server never serves the token, that the page loaded nothing from outside 127.0.0.1,
and that Ctrl-C stops everything: exit status 0, no server or kernel process left. A
screenshot of the live page goes to _build/screenshots/live.png.

DENSENET_EDU_LIVE_HTML=/path/to/html serves another build (screenshots go next to it).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import densenet_edu as de

from book_build import CHROMIUM_FLAGS, HTML, ROOT, chromium_executable

pytestmark = [pytest.mark.book, pytest.mark.browser]

BUILD = Path(os.environ.get("DENSENET_EDU_LIVE_HTML", HTML))
SCREENSHOT = BUILD.parent / "screenshots" / "live.png"
PAGE = "chapters/03_channel_growth"
GROWTH_RATE = 12
# What the reader types into the chapter's first cell: another growth rate, a figure, a widget.
EDITED_CELL = f"""import os
import ipywidgets
import matplotlib.pyplot as plt
import densenet_edu as de
k = {GROWTH_RATE}
s = de.channel_schedule(growth_rate=k, num_init_features=2 * k)
where = os.path.basename(os.getcwd())
print(f"live k={{k}}: {{s.final_channels}} channels, in {{where}}/")
fig, ax = plt.subplots(figsize=(6, 2.4))
ax.plot([1, 2, 3, 4], [b.out_channels for b in s.blocks], "o-")
ax.set(xticks=[1, 2, 3, 4], title=f"k = {{k}}")
ax.set(xlabel="dense block", ylabel="channels out")
plt.show()
display(ipywidgets.IntSlider(value=k, min=4, max=48, description="k"))
"""


def _first_line(stream, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


# 127.0.0.1 directly, whatever http_proxy says.
_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with _open(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def test_published_pages_have_no_live_control_or_token():
    page = BUILD / f"{PAGE}.html"
    if not page.is_file():
        pytest.fail("the book is not built: run `make book` (make test does it first)")
    text = page.read_text()
    for marker in ("densenet-live-config", "/_live/", "thebe-launch-button", "Run live"):
        assert marker not in text, f"the static page holds {marker!r}"


def test_run_live_edits_and_runs_a_cell_on_a_local_kernel():
    psutil = pytest.importorskip("psutil")
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_executable()
    if not (BUILD / f"{PAGE}.html").is_file():
        pytest.fail("the book is not built: run `make book` (make test does it first)")

    launcher = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "live.py"), "--html", str(BUILD), "--no-build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(launcher.stdout, timeout=120)
        match = re.fullmatch(
            r"Live book: ((http://127\.0\.0\.1:\d+)/\S+\.html)#token=(\S+) \(Ctrl-C to stop\)\n",
            line,
        )
        if not match:
            why = launcher.stderr.read()[-2000:] if launcher.poll() is not None else "(running)"
            pytest.fail(f"unexpected first line {line!r}; the launcher's stderr: {why}")
        start, book, token = match[1], match[2], match[3]
        assert len(token) >= 32

        # The chapter page as served: live config inline (Jupyter's address, never the token).
        with _open(f"{book}/{PAGE}.html") as response:
            html = response.read().decode()
        assert token not in html
        config = json.loads(re.search(r'id="densenet-live-config">(.*?)</script>', html).group(1))
        jupyter = config["baseUrl"]
        assert urlsplit(jupyter).hostname == "127.0.0.1"
        assert _status(f"{jupyter}/api/kernels") == 403
        assert _status(f"{jupyter}/api/kernels?token=wrong") == 403
        assert _status(f"{jupyter}/api/kernels", {"Authorization": f"token {token}"}) == 200
        assert _status(f"{book}/{PAGE}.html", {"Host": "attacker.example:80"}) == 403

        allowed = {urlsplit(book).netloc, urlsplit(jupyter).netloc}
        outside: list[str] = []
        errors: list[str] = []

        def route(r):
            if urlsplit(r.request.url).netloc in allowed:
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        with tempfile.TemporaryDirectory() as profile, playwright_api.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 1000},
            )
            try:
                context.route("**/*", route)
                page = context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{start}#token={token}", wait_until="load")  # what the reader opens
                assert token not in page.url  # kept in localStorage, out of the address bar
                page.goto(f"{book}/{PAGE}.html", wait_until="load")
                page.get_by_role("button", name="Run live").click()
                page.wait_for_function(
                    "() => ['ready', 'failed'].includes(document.documentElement.dataset.live)",
                    timeout=60_000,
                )
                status = page.locator("#live-status").inner_text()
                assert page.evaluate("document.documentElement.dataset.live") == "ready", status

                cell = page.locator("div.cell:has(.thebe-cell)").first
                cell.locator(".CodeMirror").click()
                page.keyboard.press("Control+A")
                page.keyboard.insert_text(EDITED_CELL)
                cell.locator("button.thebe-run-button").click()

                final = de.channel_schedule(
                    growth_rate=GROWTH_RATE, num_init_features=2 * GROWTH_RATE
                ).final_channels
                expected = f"live k={GROWTH_RATE}: {final} channels, in chapters/"
                output = cell.locator(".cell_output")
                playwright_api.expect(output).to_contain_text(expected, timeout=60_000)
                figure = output.locator("img")
                playwright_api.expect(figure).to_have_count(1, timeout=30_000)
                assert figure.evaluate(
                    "i => i.src.startsWith('data:image/png') && i.naturalWidth > 100"
                )
                playwright_api.expect(output.locator(".widget-slider")).to_be_visible(
                    timeout=30_000
                )
                playwright_api.expect(cell.locator(".thebe-busy")).to_be_hidden()
                cell.evaluate("c => { c.scrollIntoView({block: 'start'}); scrollBy(0, -100); }")
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT))

                # The Chinese edition's page asks the kernel for Chinese figure text.
                page.goto(f"{book}/zh/{PAGE}.html", wait_until="load")
                page.get_by_role("button", name="Run live").click()
                page.wait_for_function(
                    "() => ['ready', 'failed'].includes(document.documentElement.dataset.live)",
                    timeout=60_000,
                )
                assert page.evaluate("document.documentElement.dataset.live") == "ready"
                cell = page.locator("div.cell:has(.thebe-cell)").first
                cell.locator(".CodeMirror").click()
                page.keyboard.press("Control+A")
                page.keyboard.insert_text(
                    'import os\nprint("figures in", os.environ.get("DENSENET_EDU_LANGUAGE"))'
                )
                cell.locator("button.thebe-run-button").click()
                playwright_api.expect(cell.locator(".cell_output")).to_contain_text(
                    "figures in zh", timeout=60_000
                )
            finally:
                context.close()
        assert outside == [], f"requests outside 127.0.0.1: {outside}"
        assert errors == [], errors

        # The processes of this run: the Jupyter server and the kernel it started in chapters/.
        tree = psutil.Process(launcher.pid).children(recursive=True)
        kernels = [p for p in tree if "ipykernel_launcher" in " ".join(p.cmdline())]
        assert len(kernels) == 1, [p.cmdline() for p in tree]
        assert Path(kernels[0].cwd()) == ROOT / "chapters"
    finally:
        tree = (
            psutil.Process(launcher.pid).children(recursive=True) if launcher.poll() is None else []
        )
        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise
    rest = launcher.stdout.read()
    assert launcher.returncode == 0, launcher.stderr.read()
    assert rest == "", f"more than one line printed: {rest!r}"
    left = [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes left after Ctrl-C: {left}"
