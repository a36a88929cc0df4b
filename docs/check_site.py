"""Check the built documentation site as a reader sees it, in headless Chromium.

Serves a built site (``mkdocs build``) on 127.0.0.1, loads every page at a desktop width
(1300 px) and a phone width (400 px) and reports:

* console errors and uncaught exceptions (KaTeX reports formulas it cannot parse there),
  and resources that fail to load (HTTP errors, network failures);
* images that do not load (not complete, or zero natural width);
* broken internal links: a link to a page of the site that does not exist, or to an anchor
  that the target page does not have;
* horizontal overflow of the main column: the page scrolling sideways, an element sticking
  out of the column or cut off, a box (table, formula) that scrolls sideways with neither a
  scrollbar that takes space nor scroll shadows (phones overlay their scrollbars, so a
  reader sees nothing there), and, on the landing page, a code block that needs sideways
  scrolling at desktop width.

It drives Chromium through the DevTools protocol over ``--remote-debugging-pipe`` (standard
library only; no Selenium or driver binary). Chromium is Debian's ``chromium`` package;
``CHROMIUM=/path/to/chrome`` picks another binary.

    python docs/check_site.py site                          # check a built site
    python docs/check_site.py site index theory benchmarks --screenshots /tmp/shots
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import html.parser
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WIDTHS = (1300, 400)
HEIGHT = 900
PHONE = 600  # below this width the page is emulated as a phone (mobile viewport, touch)
# Pages whose code blocks must fit the column at desktop width (elsewhere a wide code block
# may scroll sideways, visibly): the landing page, where a reader copies the first lines.
FIT_CODE_PAGES = ("",)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class ChromiumError(RuntimeError):
    pass


class Chromium:
    """A headless Chromium driven by the DevTools protocol over a pipe (fds 3 and 4)."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="cvximplicit-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
        res_r, res_w = os.pipe()  # Chromium writes replies and events on fd 4

        # bash moves the pipe ends to fds 3 and 4 and execs Chromium, so no preexec_fn forks
        # this (possibly multithreaded, e.g. JAX-importing) process. The ends are first copied
        # to fds from 20 up (hence bash: dash takes no fd above 9), so that moving one cannot
        # overwrite the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 20) for fd in (cmd_r, res_w)]
        move = f'exec "$0" "$@" 3<&{high[0]} 4>&{high[1]} {high[0]}<&- {high[1]}>&-'
        args = [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", move, executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=tuple(high),
        )
        for fd in (cmd_r, res_w, *high):
            os.close(fd)
        self.out = os.fdopen(cmd_w, "wb", buffering=0)
        self.inp = os.fdopen(res_r, "rb", buffering=0)
        self.next_id = 0
        self.replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.session = ""

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self.inp.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self.cond:
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def send(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        with self.cond:
            self.next_id += 1
            ident = self.next_id
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session and self.session:
            msg["sessionId"] = self.session
        self.out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self.cond:
            while ident not in self.replies:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise ChromiumError(f"no reply to {method} (Chromium exited or hung)")
                self.cond.wait(left)
            reply = self.replies.pop(ident)
        if "error" in reply:
            raise ChromiumError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, since: int) -> None:
        deadline = time.monotonic() + self.timeout
        with self.cond:
            while not any(e["method"] == method for e in self.events[since:]):
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise ChromiumError(f"no {method} event")
                self.cond.wait(left)

    def open_page(self) -> None:
        target = self.send("Target.createTarget", session=False, url="about:blank")
        attached = self.send(
            "Target.attachToTarget", session=False, targetId=target["targetId"], flatten=True
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise ChromiumError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.reader.join(timeout=10)  # ends at end of file, once Chromium has exited
        self.inp.close()
        shutil.rmtree(self.profile, ignore_errors=True)


# --- what is checked on each page ------------------------------------------------------------

PAGE_SCRIPT = (Path(__file__).parent / "check_site.js").read_text()


class IdCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def pages_of(site: Path) -> list[str]:
    pages = sorted(p.parent.relative_to(site).as_posix() for p in site.rglob("index.html"))
    return ["" if p == "." else p + "/" for p in pages]


class LinkChecker:
    def __init__(self, base: str) -> None:
        self.base = base
        self.cache: dict[str, set[str] | None] = {}

    def ids(self, url: str) -> set[str] | None:
        """Ids of the page at ``url``; None when it does not load."""
        if url not in self.cache:
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    body = resp.read()
                    kind = resp.headers.get_content_type()
            except (urllib.error.URLError, OSError):
                self.cache[url] = None
            else:
                collector = IdCollector()
                if kind == "text/html":
                    collector.feed(body.decode("utf-8", "replace"))
                self.cache[url] = collector.ids
        return self.cache[url]

    def check(self, link: str) -> str | None:
        if not link.startswith(self.base):
            return None  # external: not followed (no network)
        url, _, fragment = link.partition("#")
        ids = self.ids(url)
        if ids is None:
            return f"broken link {link[len(self.base) - 1 :]}"
        if fragment and urllib.parse.unquote(fragment) not in ids:
            return f"link to a missing anchor {link[len(self.base) - 1 :]}"
        return None


def viewport(browser: Chromium, width: int, height: int) -> None:
    """Emulate a window of ``width`` x ``height`` (a phone below ``PHONE`` pixels)."""
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=width < PHONE,
    )


def load(browser: Chromium, base: str, url: str, width: int) -> tuple[list[str], dict[str, Any]]:
    """Load ``url`` at ``width``; the console/network problems and the page script's report."""
    viewport(browser, width, HEIGHT)
    since = len(browser.events)
    browser.send("Page.navigate", url=url)
    browser.wait_event("Page.loadEventFired", since)
    fit_code = url.removeprefix(base) in FIT_CODE_PAGES
    report = browser.evaluate(f"{PAGE_SCRIPT}({json.dumps(fit_code)})")
    problems = []
    for event in browser.events[since:]:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            problems.append(f"console error: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description", details.get("text"))
            problems.append(f"uncaught exception: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            problems.append(f"console error: {entry['text']} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"failed to load a resource: {params.get('errorText')}")
    return problems, report


def screenshot(browser: Chromium, width: int, height: int, path: Path) -> None:
    """The whole page at ``width`` (as tall as its content)."""
    viewport(browser, width, height)
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def check_site(
    site: Path,
    executable: str,
    widths: tuple[int, ...] = WIDTHS,
    screenshots: Path | None = None,
    screenshot_pages: tuple[str, ...] = (),
) -> list[str]:
    """Every problem found on every page of the built site at ``site`` (empty: all good)."""
    problems: list[str] = []
    with serve(site) as base:
        links = LinkChecker(base)
        browser = Chromium(executable)
        try:
            browser.open_page()
            for page in pages_of(site):
                name = page.rstrip("/") or "index"
                seen_links: set[str] = set()
                for width in widths:
                    found, report = load(browser, base, base + page, width)
                    found += report["problems"]
                    found += [f"image does not load: {src}" for src in report["images"]]
                    seen_links.update(report["links"])
                    problems += [f"/{page} at {width} px: {p}" for p in dict.fromkeys(found)]
                    if screenshots is not None and name in screenshot_pages:
                        screenshots.mkdir(parents=True, exist_ok=True)
                        shot = screenshots / f"{name.replace('/', '-')}-{width}.png"
                        screenshot(browser, width, report["height"], shot)
                for link in sorted(seen_links):
                    broken = links.check(link)
                    if broken:
                        problems.append(f"/{page}: {broken}")
        finally:
            browser.close()
    return list(dict.fromkeys(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("site", type=Path, help="a built site (mkdocs build -d SITE)")
    parser.add_argument("pages", nargs="*", help="pages to screenshot: index, theory, ...")
    parser.add_argument("--screenshots", type=Path, help="write page screenshots here")
    args = parser.parse_args()
    executable = find_chromium()
    if executable is None:
        raise SystemExit(
            "Chromium not found: install Debian's chromium package "
            "(apt-get install chromium) or set CHROMIUM=/path/to/chrome"
        )
    start = time.perf_counter()
    problems = check_site(
        args.site, executable, screenshots=args.screenshots, screenshot_pages=tuple(args.pages)
    )
    pages = len(pages_of(args.site))
    took = time.perf_counter() - start
    for problem in problems:
        print(problem)
    print(
        f"{pages} pages at {' and '.join(f'{w} px' for w in WIDTHS)} in {took:.0f} s: "
        f"{len(problems)} problem(s)"
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
