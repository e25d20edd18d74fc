"""`make live`: the built book, with code cells that run in place on a local Jupyter kernel.

The static build is never changed and never holds a token. This launcher:

1. builds the book (`make book`) when a chapter is newer than its page in the build;
2. makes sure Thebe's JavaScript and CSS are vendored in `.vendor/` (fetched once with
   `npm pack`, checked against the registry's pinned sha512);
3. starts `jupyter server` on a free 127.0.0.1 port with a fresh random token, its root
   (and every kernel's working directory) in `chapters/`, accepting the book's origin;
4. serves the built book from a second 127.0.0.1 port and adds to its pages live.js
   (which mounts a "Run live" button where a page has code cells), Thebe (served from
   `/_live/`, never from a CDN) and the Jupyter server's address;
5. prints one line with the URL to open, and on Ctrl-C (or SIGTERM) shuts the Jupyter
   server down, which stops its kernels, and exits 0 with no process left behind.

The token travels only in that URL's fragment (`#token=...`), which browsers never send to
a server: live.js keeps it in the book origin's localStorage (the origin includes the
port, so nothing else on 127.0.0.1 sees it) and sends it to Jupyter alone. The book server
never serves it, so another local user who can reach the port gets pages, not a kernel.

Run `python scripts/live.py --help` for the options (the tests use `--html` and
`--no-build` to serve a build of their own).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
ASSETS = ROOT / "_ext" / "live"  # live.js and live.css, written for this book
VENDOR = ROOT / ".vendor"

# npm packages served under /_live/: name, version, the registry's sha512 integrity, and
# the files of the unpacked package that are kept (source maps and types are left out).
PACKAGES = {
    "thebe": (
        "0.9.3",
        "sha512-Rb/7kVhtlffXra3kIe7OuIGE7awsm2/fGWxw21DiNfnWLnUQiDl9AWqYdshPwZPG/5DzLpsJRPix2xtCPtJmQQ==",
        "lib/",
    ),
    # Thebe's widget manager fetches require.js before it renders the first ipywidget;
    # live.js hands it this copy instead of the CDN address compiled into Thebe.
    "requirejs": (
        "2.3.6",
        "sha512-ipEzlWQe6RK3jkzikgCupiTbTvm4S0/CAU5GlgptkN5SO6F3u0UD0K18wy6ErDqiCyP4J4YYe1HuAShvsxePLg==",
        "require.js",
    ),
}
CONFIG_ID = "densenet-live-config"
SERVER_START_TIMEOUT = 60.0


def log(message: str) -> None:
    print(f"live: {message}", file=sys.stderr, flush=True)


# --- set-up ---------------------------------------------------------------------------------
def vendor_dir(name: str) -> Path:
    return VENDOR / f"{name}-{PACKAGES[name][0]}"


def assets_ready() -> bool:
    return all((vendor_dir(name) / ".complete").is_file() for name in PACKAGES)


def fetch_assets() -> None:
    """Vendor Thebe and require.js with `npm pack` (once; a stamp file marks success)."""
    for name, (version, integrity, keep) in PACKAGES.items():
        target = vendor_dir(name)
        if (target / ".complete").is_file():
            continue
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit(
                "live: npm is needed once, to fetch Thebe from the npm registry: "
                "sudo apt-get install npm (make live does it), then re-run"
            )
        log(f"fetching {name}@{version} from the npm registry (once)")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [npm, "pack", f"{name}@{version}", "--pack-destination", tmp, "--silent"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            (tarball,) = Path(tmp).glob("*.tgz")
            digest = hashlib.sha512(tarball.read_bytes()).digest()
            if "sha512-" + base64.b64encode(digest).decode() != integrity:
                raise SystemExit(f"live: {tarball.name} does not match its pinned sha512")
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            with tarfile.open(tarball) as archive:
                for member in archive.getmembers():
                    relative = member.name.removeprefix("package/")
                    wanted = relative == keep or (keep.endswith("/") and relative.startswith(keep))
                    if not member.isfile() or not wanted or relative.endswith(".map"):
                        continue
                    if "/types/" in relative or ".." in Path(relative).parts:
                        continue
                    out = target / (relative.removeprefix(keep) if keep.endswith("/") else keep)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(archive.extractfile(member).read())
        (target / ".complete").write_text(f"{name}@{version} {integrity}\n")


def _toc_pages() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part.get("chapters", []))
    return pages


def book_is_stale(html: Path) -> bool:
    """True when a page of _toc.yml is missing from the build or older than its source."""
    if not (html / "index.html").is_file():
        return True
    settings = max(
        (ROOT / name).stat().st_mtime for name in ("_config.yml", "_toc.yml", "references.bib")
    )
    for page in _toc_pages():
        built = html / f"{page}.html"
        if not built.is_file():
            return True
        # The file the book builds: the notebook of a jupytext pair, else the page itself.
        sources = [p for p in (ROOT / f"{page}.ipynb", ROOT / f"{page}.md") if p.exists()][:1]
        newest = max([settings] + [p.stat().st_mtime for p in sources])
        if newest > built.stat().st_mtime:
            return True
    return False


# --- the Jupyter server ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the Jupyter server gets SIGTERM if this launcher is killed outright."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_jupyter(port: int, token: str, origin: str, workdir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["JUPYTER_TOKEN"] = token  # not on the command line, where `ps` would show it
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")  # its connection files go too
    env.pop("JUPYTER_PASSWORD", None)
    command = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={CHAPTERS}",
        f"--ServerApp.allow_origin={origin}",
        "--ServerApp.allow_remote_access=False",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.log_level=WARN",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers; Jupyter refuses otherwise
        command.append("--ServerApp.allow_root=True")
    log_file = open(workdir / "jupyter.log", "wb")  # noqa: SIM115 - closed by stop()
    process = subprocess.Popen(
        command,
        cwd=CHAPTERS,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        # Its own session: Ctrl-C in the terminal reaches this launcher only, which then
        # shuts the server down in order (a server that saw the SIGINT would ask y/n).
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    process.log_file = log_file  # type: ignore[attr-defined]
    return process


def wait_until_up(process: subprocess.Popen, base_url: str, token: str) -> None:
    request = urllib.request.Request(
        f"{base_url}/api/status", headers={"Authorization": f"token {token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError):
            with opener.open(request, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError("the Jupyter server did not start")


def stop_jupyter(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM: the server shuts its kernels down, then exits; stragglers are killed."""
    try:
        import psutil

        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except Exception:  # psutil missing or the server already gone
        tree = []
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for proc in tree[1:]:
        with contextlib.suppress(Exception):
            proc.wait(5)
        with contextlib.suppress(Exception):
            if proc.is_running():
                proc.kill()
    process.log_file.close()  # type: ignore[attr-defined]


# --- the book server ------------------------------------------------------------------------
def live_snippet(config: dict) -> bytes:
    payload = json.dumps(config).replace("<", "\\u003c")  # cannot close the <script>
    return (
        '\n<link rel="stylesheet" href="/_live/live.css">\n'
        f'<script type="application/json" id="{CONFIG_ID}">{payload}</script>\n'
        '<script src="/_live/live.js" defer></script>\n'
    ).encode()


class BookHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of the build; chapter pages get the live snippet before </head>."""

    server: BookServer

    def __init__(self, request, client_address, server: BookServer):
        super().__init__(request, client_address, server, directory=str(server.html))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass  # one line on the terminal, not one per request

    def end_headers(self) -> None:
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def _host_ok(self) -> bool:
        """Only the printed address, not a rebound DNS name (which would read as ours)."""
        host = self.headers.get("Host", "")
        if host == f"127.0.0.1:{self.server.port}":
            return True
        if host == f"localhost:{self.server.port}":
            self.send_response(301)
            self.send_header("Location", f"http://127.0.0.1:{self.server.port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        self.send_error(403, "unknown Host")
        return False

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        if not self._host_ok():
            return
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/_live/"):
            return self._send_asset(path.removeprefix("/_live/"), head)
        page = path.lstrip("/")
        if page == "favicon.ico" and not (self.server.html / page).is_file():
            return self._send(b"", "image/x-icon", head, no_store=False)  # no console 404
        if page.endswith("/") or not page:
            page += "index.html"
        file = self.server.html / page
        if page.endswith(".html") and file.is_file():
            if file.resolve().is_relative_to(self.server.html):
                body = file.read_bytes()
                # Kernels start in chapters/, as for the book's build; the session is
                # named after the page's notebook.
                notebook = Path(page).with_suffix(".ipynb").name
                snippet = live_snippet({**self.server.live, "kernelPath": notebook})
                body = body.replace(b"</head>", snippet + b"</head>", 1)
                return self._send(body, "text/html; charset=utf-8", head, no_store=True)
        return super().do_HEAD() if head else super().do_GET()

    def _send_asset(self, relative: str, head: bool) -> None:
        roots = {
            "thebe/": vendor_dir("thebe"),
            "requirejs/": vendor_dir("requirejs"),
            "": ASSETS,
        }
        for prefix, root in roots.items():
            if relative.startswith(prefix):
                file = (root / relative.removeprefix(prefix)).resolve()
                if file.is_file() and file.is_relative_to(root.resolve()):
                    kind = self.guess_type(str(file))
                    return self._send(file.read_bytes(), kind, head, no_store=False)
                break
        self.send_error(404)

    def _send(self, body: bytes, kind: str, head: bool, no_store: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store" if no_store else "max-age=3600")
        self.end_headers()
        if not head:
            self.wfile.write(body)


class BookServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, html: Path, live: dict):
        self.html = html.resolve()
        self.live = live
        super().__init__(("127.0.0.1", port), BookHandler)
        self.port = self.server_address[1]


# --- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--html", type=Path, default=ROOT / "_build" / "html", help="the built book to serve"
    )
    parser.add_argument("--port", type=int, default=0, help="book port (0: a free one)")
    parser.add_argument("--jupyter-port", type=int, default=0, help="Jupyter's (0: a free one)")
    parser.add_argument("--no-build", action="store_true", help="serve --html as it is")
    parser.add_argument("--fetch-only", action="store_true", help="vendor Thebe (set-up) and exit")
    return parser.parse_args(argv)


class Stop(Exception):
    """SIGTERM, handled like Ctrl-C."""


def _raise_stop(signum, frame) -> None:
    raise Stop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fetch_assets()
    if args.fetch_only:
        return 0
    html = args.html.resolve()
    if not args.no_build and book_is_stale(html):
        if html != (ROOT / "_build" / "html").resolve():
            raise SystemExit(f"live: {html} is not built (or out of date); build it first")
        log("the book is missing or older than its chapters: building it (make book)")
        build = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "book"])
        if build.returncode != 0:
            raise SystemExit("live: the book did not build (see above)")
    if not (html / "index.html").is_file():
        raise SystemExit(f"live: no built book in {html}: run `make book` first")

    signal.signal(signal.SIGTERM, _raise_stop)
    token = secrets.token_urlsafe(32)
    jupyter_port = args.jupyter_port or free_port()
    jupyter_url = f"http://127.0.0.1:{jupyter_port}"
    book = BookServer(args.port, html, {"baseUrl": jupyter_url})
    origin = f"http://127.0.0.1:{book.port}"
    jupyter = None
    serving = False
    with tempfile.TemporaryDirectory(prefix="densenet-live-") as workdir:
        try:
            jupyter = start_jupyter(jupyter_port, token, origin, Path(workdir))
            try:
                wait_until_up(jupyter, jupyter_url, token)
            except RuntimeError:
                tail = (Path(workdir) / "jupyter.log").read_text(errors="replace")[-2000:]
                log(f"the Jupyter server did not start; its log ends with:\n{tail}")
                return 1
            threading.Thread(target=book.serve_forever, daemon=True).start()
            serving = True
            start = _toc_pages()[0]
            print(f"Live book: {origin}/{start}.html#token={token} (Ctrl-C to stop)", flush=True)
            while jupyter.poll() is None:
                time.sleep(0.5)
            tail = (Path(workdir) / "jupyter.log").read_text(errors="replace")[-2000:]
            log(f"the Jupyter server stopped on its own; its log ends with:\n{tail}")
            return 1
        except (KeyboardInterrupt, Stop):
            return 0
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot cut it short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if serving:
                book.shutdown()
            book.server_close()
            if jupyter is not None:
                stop_jupyter(jupyter)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C during the set-up or the build: nothing runs yet
        sys.exit(130)
