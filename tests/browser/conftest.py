"""Fixtures for the browser tests: the built site, a local HTTP server, and headless Chromium.

Environment variables:

* ``ATTNLIB_SITE_DIR``: the built HTML site (default ``<repo>/docs/_build/html``).
* ``ATTNLIB_GALLERY_DIR``: the tutorial scripts (default ``<repo>/gallery``).
* ``ATTNLIB_CHROMIUM``: the Chromium binary (default ``/usr/bin/chromium``).
* ``ATTNLIB_REQUIRE_BROWSER=1``: a missing site, Chromium or playwright fails the tests
  instead of skipping them (CI sets it, so a CI run can never pass by skipping).
* ``ATTNLIB_AXE_JS``: axe-core's ``axe.min.js`` for the accessibility tests (``nox -s tests``
  installs axe-core from npm and sets it; default: where that session puts it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ATTNLIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
NONE = "<none>"  # the parameter used when there is nothing to parametrize over
NOT_PAGES = {"_static", "_sources", "_images", "_downloads"}
MATH_CLASS = re.compile(r'class="(?:[^"]*\s)?math(?:\s[^"]*)?"')
SETTLE_S = 15  # how long a page's requests may stay unanswered after load
AXE_DEFAULT = REPO / ".nox" / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"

# Runs after load: makes every image eager, waits for it to load, returns those that did not.
IMAGES_JS = """async () => {
  const imgs = [...document.images];
  const wait = (img) => Promise.race([
    img.decode().catch(() => {}), new Promise((done) => setTimeout(done, 10000))]);
  imgs.forEach((img) => { img.loading = "eager"; });
  await Promise.all(imgs.map(wait));
  return imgs.filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => img.currentSrc || img.src || img.outerHTML.slice(0, 120));
}"""

# Runs after load on pages with .math nodes: waits for MathJax's first typeset, reports on it.
# TeX errors are found in MathJax's internal trees: an merror node, or (the default
# `noundefined` package) an undefined macro typeset as red text beginning with a backslash.
MATH_JS = r"""async () => {
  const nodes = [...document.querySelectorAll(".math")];
  if (!nodes.length) return null;
  const deadline = Date.now() + 10000;
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() > deadline) return {error: "MathJax never started"};
    await new Promise((done) => setTimeout(done, 50));
  }
  try { await MathJax.startup.promise; } catch (e) { return {error: `MathJax failed: ${e}`}; }
  const cut = (s) => s.trim().replace(/\s+/g, " ").slice(0, 100);
  const errors = [];
  for (const item of MathJax.startup.document.math) {
    item.root.walkTree((node) => {
      const text = node.isKind("mtext") ? node.childNodes.map((c) => c.getText?.() ?? "") : [];
      if (node.isKind("merror")) {
        errors.push(`${node.attributes.get("data-mjx-error") || "error"} in ${cut(item.math)}`);
      } else if (/^\\[A-Za-z]/.test(text.join(""))) {
        errors.push(`undefined ${text.join("")} in ${cut(item.math)}`);
      }
    });
  }
  return {
    errors,
    containers: document.querySelectorAll("mjx-container").length,
    untypeset: nodes.filter((n) => !n.querySelector("mjx-container"))
      .map((n) => cut(n.textContent)),
    raw: nodes.map((n) => n.innerText).filter((t) => /\\[()[\]]|\$\$/.test(t)).map(cut),
  };
}"""


def unavailable(reason: str) -> None:
    """Skip, or fail where ``ATTNLIB_REQUIRE_BROWSER`` is set."""
    if os.environ.get("ATTNLIB_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"{reason} (ATTNLIB_REQUIRE_BROWSER is set)", pytrace=False)
    pytest.skip(reason)


def site_root() -> Path:
    return Path(os.environ.get("ATTNLIB_SITE_DIR", REPO / "docs" / "_build" / "html")).resolve()


def gallery_root() -> Path:
    return Path(os.environ.get("ATTNLIB_GALLERY_DIR", REPO / "gallery")).resolve()


@functools.cache
def html_pages() -> list[str]:
    """Every HTML page of the site, relative to it (assets folders excluded)."""
    root = site_root()
    if not (root / "index.html").is_file():
        return []
    paths = (p.relative_to(root) for p in root.rglob("*.html"))
    return sorted(p.as_posix() for p in paths if not NOT_PAGES & set(p.parts[:-1]))


@functools.cache
def math_pages() -> list[str]:
    """The pages whose HTML holds Sphinx math nodes (class ``math``)."""
    root = site_root()
    return [p for p in html_pages() if MATH_CLASS.search((root / p).read_text("utf-8"))]


@functools.cache
def tutorial_pages() -> list[str]:
    """The page sphinx-gallery makes of each tutorial script, ``auto_gallery/<path>.html``."""
    root = gallery_root()
    scripts = sorted(root.rglob("[!_]*.py")) if root.is_dir() else []
    return [f"auto_gallery/{s.relative_to(root).with_suffix('.html').as_posix()}" for s in scripts]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``html_page``, ``math_page`` and ``tutorial`` from the site on disk."""
    for name, values in [
        ("html_page", html_pages),
        ("math_page", math_pages),
        ("tutorial", tutorial_pages),
    ]:
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values() or [NONE])


@dataclass
class Visit:
    """What happened while one page loaded."""

    page: str
    status: int | None = None
    foreign: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    math: dict | None = None

    def problems(self) -> list[str]:
        return (
            ([] if self.status == 200 else [f"HTTP status {self.status}"])
            + [f"request to another host: {u}" for u in self.foreign]
            + [f"console error: {m}" for m in self.console_errors]
            + [f"uncaught exception: {m}" for m in self.page_errors]
            + [f"failed request: {m}" for m in self.failed]
        )

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, f"{self.page}:\n  " + "\n  ".join(problems)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS


class SiteBrowser:
    """One Chromium page, reused for every visit; requests to other hosts are blocked."""

    def __init__(self, context, base_url: str) -> None:
        self.base_url = base_url
        self.visits: dict[str, Visit] = {}
        self._visit = Visit("<before the first page>")
        self._owner: dict = {}  # request -> the Visit during which it started
        context.route("**/*", self._route)
        self.page = context.new_page()
        self.page.set_default_timeout(30_000)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self._visit.page_errors.append(str(exc)))
        self.page.on("request", self._on_request)
        self.page.on("requestfinished", lambda req: self._owner.pop(req, None))
        self.page.on("requestfailed", self._on_failed)
        self.page.on("response", self._on_response)

    def visit(self, page: str) -> Visit:
        """The record of ``page``, loading it only if it was not loaded before."""
        return self.visits.get(page) or self.goto(page)

    def goto(self, page: str) -> Visit:
        """Load ``page`` now (the live DOM is ``self.page`` afterwards) and record the visit."""
        visit = self._visit = Visit(page)
        response = self.page.goto(f"{self.base_url}/{quote(page)}", wait_until="load")
        visit.status = response.status if response else None
        visit.broken_images = self.page.evaluate(IMAGES_JS)
        visit.math = self.page.evaluate(MATH_JS)
        deadline = time.monotonic() + SETTLE_S
        while self._owner and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)
        visit.failed += [f"{r.url} (no answer after {SETTLE_S} s)" for r in self._owner]
        self._owner.clear()
        self.visits[page] = visit
        return visit

    def site_path(self, url: str) -> str | None:
        """The file, relative to the site, that a same-host URL points at."""
        parts = urlsplit(url)
        if parts.hostname not in LOCAL_HOSTS:
            return None
        path = unquote(parts.path).lstrip("/")
        return path + "index.html" if path == "" or path.endswith("/") else path

    def _route(self, route) -> None:
        if is_local(route.request.url):
            route.continue_()
        else:
            self._visit.foreign.append(route.request.url)
            route.abort("blockedbyclient")

    def _on_console(self, msg) -> None:
        if msg.type == "error":
            where = msg.location.get("url", "")
            self._visit.console_errors.append(f"{msg.text} ({where})" if where else msg.text)

    def _on_request(self, request) -> None:
        if is_local(request.url) and not request.url.startswith(("data:", "blob:")):
            self._owner[request] = self._visit

    def _on_failed(self, request) -> None:
        owner = self._owner.pop(request, None)
        if owner is None or not is_local(request.url):
            return  # a request to another host (recorded by _route) or one already reported
        aborted = "ERR_ABORTED" in (request.failure or "")
        if aborted and (owner is not self._visit or request.resource_type == "other"):
            # cancelled because the browser went on to the next page; the favicon
            # (type "other") is fetched lazily and often cancelled that way. A
            # missing file still fails through its HTTP status (_on_response).
            return
        owner.failed.append(f"{request.url} ({request.failure})")

    def _on_response(self, response) -> None:
        if response.status >= 400 and is_local(response.url):
            self._visit.failed.append(f"{response.url} (HTTP {response.status})")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` over HTTP on 127.0.0.1 (a port the OS chose); yields the URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def site_dir() -> Path:
    """The built site; skips (or fails, see ``ATTNLIB_REQUIRE_BROWSER``) if it is missing."""
    root = site_root()
    if not (root / "index.html").is_file():
        unavailable(
            f"no built site: {root / 'index.html'} is missing "
            "(run `sphinx-build -b html docs docs/_build/html` or set ATTNLIB_SITE_DIR)"
        )
    return root


@pytest.fixture(scope="session")
def site_url(site_dir: Path):
    """The site served over HTTP on 127.0.0.1, at a port the OS chose."""
    with serve(site_dir) as url:
        yield url


@contextlib.contextmanager
def launch_chromium():
    """Headless Chromium (the system one: no browser is ever downloaded); skips (or
    fails, see ``ATTNLIB_REQUIRE_BROWSER``) when it or playwright is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (install it or set ATTNLIB_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def _chromium_process():
    """The one headless Chromium of the session: Playwright's sync API allows only one
    running instance per thread, so every browser fixture shares it."""
    with launch_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def browser(_chromium_process):
    """Headless Chromium for the tests that serve their own pages (no built site needed)."""
    return _chromium_process


@pytest.fixture(scope="session")
def chromium(site_dir: Path, _chromium_process):
    """Headless Chromium, once the site is known to exist."""
    return _chromium_process


@pytest.fixture(scope="session")
def site(chromium, site_url: str):
    """A :class:`SiteBrowser` on the served site, shared by all the browser tests."""
    context = chromium.new_context(service_workers="block")
    yield SiteBrowser(context, site_url)
    context.close()


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """axe-core's ``axe.min.js`` (``ATTNLIB_AXE_JS``, else where ``nox -s tests`` installs it);
    skips (or fails, see ``ATTNLIB_REQUIRE_BROWSER``) when it is missing."""
    path = Path(os.environ.get("ATTNLIB_AXE_JS") or AXE_DEFAULT)
    if not path.is_file():
        unavailable(
            f"no axe-core at {path} (`nox -s tests` installs it from npm; or set ATTNLIB_AXE_JS)"
        )
    return path
