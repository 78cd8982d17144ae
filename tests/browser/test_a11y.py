"""Accessibility of the built site: axe-core on every page, in light and dark mode, and the
keyboard on the interactive explorers (issue 16).

axe-core (the engine of the browsers' own accessibility audits; installed from npm by ``nox
-s tests``, see conftest's ``axe_js``) runs on every HTML page of the site with the WCAG 2.0
and 2.1 A and AA rules. No serious or critical violation is allowed, in either of furo's
themes. A page is loaded once (in a background thread, a few tabs at a time:
:class:`Auditor`) and audited in both themes; the dark audit runs the rules whose outcome
depends on colours (``DARK_RULES``): furo's theme switch changes colours only, so every
other rule would see the same page twice.

The explorers (:mod:`attnlib.interpret.explorer`) must be usable without a mouse: in each
of their views, Tab reaches every interactive element that is not part of a composite
widget (grid of head thumbnails, tokens of the head view), and the arrow keys, Home and End
reach every element of those from the one that Tab reaches. A focused code block scrolls
with the arrow keys instead of turning the page (_static/a11y.js).

``ATTNLIB_AXE_REPORT=FILE`` writes the violations found, counted by theme and rule, to FILE.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import json
import os
import re
import threading
from collections import Counter
from functools import partial
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NONE,
    SiteBrowser,
    html_pages,
    is_local,
    tutorial_pages,
)

pytestmark = pytest.mark.browser

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
THEMES = ["light", "dark"]
# the rules of TAGS that read colours (text, links told apart from text by colour only)
DARK_RULES = ["color-contrast", "link-in-text-block"]
IMPACTS = {"serious", "critical"}
EXPLORER_PAGES = [
    "auto_gallery/06_interpretability/05_interactive_explorer.html",
    "auto_gallery/07_bert/03_all_heads_at_once.html",
]

# Stops CSS transitions so that a theme switch shows its final colours at once.
NO_TRANSITIONS_JS = """() => {
  const style = document.createElement("style");
  style.textContent = "*, *::before, *::after { transition: none !important; " +
    "animation: none !important; }";
  document.head.appendChild(style);
}"""
AXE_RUN_JS = """async ([theme, runOnly, impacts]) => {
  document.body.dataset.theme = theme;
  const result = await axe.run(document, {runOnly, resultTypes: ["violations"]});
  return result.violations.flatMap((v) => v.nodes
    .filter((n) => impacts.includes(n.impact))
    .map((n) => ({id: v.id, impact: n.impact, help: v.help, url: v.helpUrl,
                  target: n.target.join(" "), html: n.html.slice(0, 160)})));
}"""

WORKERS = 3  # tabs audited at once (each tab's axe run is its own renderer process)
AUDIT_TIMEOUT_S = 900


class Auditor:
    """Audits every page in a background thread, ``WORKERS`` tabs at a time.

    The thread has its own Playwright and Chromium (async API), blocks requests to other
    hosts like :class:`~.conftest.SiteBrowser`, and resolves one future per page with its
    serious and critical violations by theme, so the per-page tests only wait for their
    page while the next ones are being audited.
    """

    def __init__(self, base_url: str, axe_js: Path, pages: list[str]) -> None:
        self.results = {page: concurrent.futures.Future() for page in pages}
        self.version: str | None = None
        self._args = (base_url, str(axe_js), pages)
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._run(*self._args))
        except BaseException as exc:  # noqa: BLE001 - handed to the tests waiting for pages
            for future in self.results.values():
                if not future.done():
                    future.set_exception(exc)

    async def _run(self, base_url: str, axe_js: str, pages: list[str]) -> None:
        from playwright.async_api import async_playwright

        async def route(route) -> None:
            if is_local(route.request.url):
                await route.continue_()
            else:
                await route.abort("blockedbyclient")

        queue = list(reversed(pages))

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            context = await browser.new_context(service_workers="block")
            await context.route("**/*", route)

            async def worker() -> None:
                tab = await context.new_page()
                tab.set_default_timeout(60_000)
                while queue:
                    page = queue.pop()
                    try:
                        self.results[page].set_result(
                            await self._audit(tab, base_url, axe_js, page)
                        )
                    except Exception as exc:  # noqa: BLE001 - reported by that page's test
                        self.results[page].set_exception(exc)

            await asyncio.gather(*(worker() for _ in range(WORKERS)))
            await browser.close()

    async def _audit(self, tab, base_url: str, axe_js: str, page: str) -> dict[str, list[dict]]:
        response = await tab.goto(f"{base_url}/{quote(page)}", wait_until="load")
        status = response.status if response else None
        assert status == 200, f"{page}: HTTP {status}"
        await tab.evaluate(MATH_READY_JS)
        await tab.evaluate(NO_TRANSITIONS_JS)
        await tab.add_script_tag(path=axe_js)
        self.version = self.version or await tab.evaluate("() => axe.version")
        found = {}
        for theme in THEMES:
            run_only = (
                {"type": "tag", "values": TAGS}
                if theme == "light"
                else {"type": "rule", "values": DARK_RULES}
            )
            found[theme] = await tab.evaluate(AXE_RUN_JS, [theme, run_only, sorted(IMPACTS)])
        return found


# MathJax typesets after the load event: audit the typeset page.
MATH_READY_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
}"""

_audits: dict[str, dict[str, list[dict]]] = {}
_meta: dict[str, str] = {}


@pytest.fixture(scope="module")
def auditor(site_url: str, axe_js: Path) -> Auditor:
    """Every page of the site, audited in the background (see :class:`Auditor`)."""
    return Auditor(site_url, axe_js, html_pages())


@pytest.fixture(scope="module", autouse=True)
def axe_report():
    """With ``ATTNLIB_AXE_REPORT=FILE``, writes what the audits found to FILE (JSON): the
    count of violating elements by theme and rule, and the violations of every page."""
    yield
    out = os.environ.get("ATTNLIB_AXE_REPORT")
    if out and _audits:
        counts = {
            theme: dict(Counter(v["id"] for r in _audits.values() for v in r[theme]))
            for theme in THEMES
        }
        report = {"axe": _meta.get("axe"), "tags": TAGS, "dark_rules": DARK_RULES,
                  "pages": len(_audits), "counts": counts, "pages_audited": _audits}  # fmt: skip
        Path(out).write_text(json.dumps(report, indent=1), encoding="utf-8")


def audit(auditor: Auditor, page: str) -> dict[str, list[dict]]:
    """The serious and critical violations of ``page``, by theme."""
    if page not in _audits:
        _audits[page] = auditor.results[page].result(timeout=AUDIT_TIMEOUT_S)
        _meta.setdefault("axe", auditor.version)
    return _audits[page]


def describe(violations: list[dict], limit: int = 25) -> str:
    lines = [
        f"{v['id']} ({v['impact']}): {v['help']}\n      at {v['target']}: {v['html']}\n"
        f"      {v['url']}"
        for v in violations[:limit]
    ]
    more = len(violations) - limit
    return "\n    ".join(lines + ([f"... and {more} more"] if more > 0 else []))


@pytest.mark.parametrize("theme", THEMES)
def test_no_serious_accessibility_violations(auditor: Auditor, html_page: str, theme: str):
    """axe-core finds no serious or critical WCAG 2.0/2.1 A/AA violation on the page."""
    assert html_page != NONE, "the site has no HTML page"
    violations = audit(auditor, html_page)[theme]
    assert not violations, (
        f"{html_page} ({theme} theme): {len(violations)} serious/critical axe-core "
        f"violations:\n    {describe(violations)}"
    )


def test_axe_reports_a_known_violation(chromium, axe_js: Path) -> None:
    """The audit is not vacuous: axe, injected as above, reports a link with no text and a
    scrollable block that the keyboard cannot reach."""
    page = chromium.new_page()
    try:
        page.set_content(
            '<html lang="en"><head><title>t</title></head><body><main>'
            '<a href="x.html"><span style="display: none">hidden</span></a>'
            '<pre style="width: 5em; overflow: auto">' + "x" * 400 + "</pre></main></body></html>"
        )
        page.add_script_tag(path=str(axe_js))
        found = page.evaluate(
            AXE_RUN_JS, ["light", {"type": "tag", "values": TAGS}, sorted(IMPACTS)]
        )
    finally:
        page.close()
    assert {"link-name", "scrollable-region-focusable"} <= {v["id"] for v in found}, found


# Marks the visible interactive elements of one explorer (data-kbd="i") and returns them.
MARK_JS = """(id) => {
  const root = document.getElementById(id);
  const selector = "a[href], button, input, select, textarea, summary, [tabindex], " +
    "[role=button], [contenteditable=true]";
  const nodes = [...root.querySelectorAll(selector)].filter((n) =>
    !n.disabled && n.getClientRects().length > 0 && getComputedStyle(n).visibility !== "hidden");
  return nodes.map((n, i) => {
    n.dataset.kbd = String(i);
    return {i, roving: n.getAttribute("tabindex") === "-1",
      what: `${n.tagName.toLowerCase()}.${[...n.classList].join(".")}` +
        (n.getAttribute("aria-label") ? ` "${n.getAttribute("aria-label")}"` : "") +
        (n.textContent.trim() ? ` (${n.textContent.trim().slice(0, 30)})` : "")};
  });
}"""
# Puts a focusable sentinel just before the explorer and focuses it.
START_JS = """(id) => {
  const start = document.createElement("button");
  start.id = "attnlib-kbd-start";
  start.textContent = "start";
  document.getElementById(id).before(start);
  start.focus();
}"""
# Where the focus is: [inside the explorer?, its data-kbd mark or null].
FOCUS_JS = """(id) => {
  const a = document.activeElement;
  return [!!a && document.getElementById(id).contains(a), a?.dataset?.kbd ?? null];
}"""
# From every marked element that has been reached, the arrow keys, Home and End (the keys of
# composite widgets); returns the marks reached that way.
ARROWS_JS = """(reached) => {
  const keys = ["ArrowRight", "ArrowLeft", "ArrowDown", "ArrowUp", "Home", "End"];
  const seen = new Set(reached), todo = [...reached];
  while (todo.length) {
    const from = document.querySelector(`[data-kbd="${todo.pop()}"]`);
    if (!from) continue;
    for (const key of keys) {
      from.focus();
      from.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true, cancelable: true}));
      const mark = document.activeElement?.dataset?.kbd;
      if (mark !== undefined && !seen.has(mark)) { seen.add(mark); todo.push(mark); }
    }
  }
  return [...seen];
}"""
VIEWS_JS = """(id) => [...document.getElementById(id).querySelectorAll(".attnlib-ex-view")]
  .filter((b) => b.getClientRects().length > 0).map((b) => b.dataset.view)"""


def tab_through(site: SiteBrowser, explorer: str, limit: int = 400) -> set[str]:
    """The marks that Tab reaches, from just before the explorer until the focus leaves it."""
    page = site.page
    page.evaluate(START_JS, explorer)
    reached: set[str] = set()
    entered = False
    for _ in range(limit):
        page.keyboard.press("Tab")
        inside, mark = page.evaluate(FOCUS_JS, explorer)
        if inside:
            entered = True
            if mark is not None:
                reached.add(mark)
        elif entered:
            break
    page.evaluate("() => document.getElementById('attnlib-kbd-start').remove()")
    assert entered, f"Tab never entered the explorer #{explorer}"
    return reached


def stay_on_page(site: SiteBrowser, page_name: str, action):
    """``action()``'s result, failing if the page was left meanwhile (a key turned the page:
    Sphinx's ``navigation_with_keys``, which _static/a11y.js keeps out of widgets)."""
    from playwright.sync_api import Error as PlaywrightError

    page = site.page
    page.evaluate("() => { window.attnlibStay = true; }")
    try:
        result = action()
        page.wait_for_timeout(300)
        stayed = page.evaluate("() => window.attnlibStay === true")
    except PlaywrightError as exc:  # the page's context was destroyed by a navigation
        stayed, result = False, exc
    if not stayed:
        page.wait_for_load_state("load")  # let the other page finish before the next test
    assert stayed, f"{page_name}: the keys took the reader away, to {page.url} ({result})"
    return result


@pytest.mark.parametrize("page_name", EXPLORER_PAGES)
def test_explorers_work_by_keyboard(site, page_name: str) -> None:
    """In each view of each explorer on the page (chosen with the keyboard: Tab to the view
    button, Enter), Tab reaches every interactive element except the members of composite
    widgets, and the arrow keys, Home and End reach those from an element Tab reached."""
    site.goto(page_name).assert_clean()
    page = site.page
    page.wait_for_function(
        """() => [...document.querySelectorAll(".attnlib-explorer")]
          .every((e) => e.classList.contains("attnlib-ex-ready"))""",
        timeout=30_000,
    )
    explorers = page.evaluate(
        "() => [...document.querySelectorAll('.attnlib-explorer')].map(e => e.id)"
    )
    assert explorers, f"{page_name}: no explorer on the page"
    missed = []
    checked = 0
    for explorer in explorers:
        for view in page.evaluate(VIEWS_JS, explorer) or [None]:
            if view is not None:  # choose the view with the keyboard
                button = page.locator(f"#{explorer} .attnlib-ex-view[data-view='{view}']")
                button.focus()
                page.keyboard.press("Enter")
                assert button.get_attribute("aria-pressed") == "true", (
                    f"#{explorer}: Enter on the view button {view!r} did not choose it"
                )
            elements = page.evaluate(MARK_JS, explorer)
            assert elements, f"#{explorer} ({view} view): no interactive element"
            by_tab = tab_through(site, explorer)
            by_keys = set(
                stay_on_page(site, page_name, partial(page.evaluate, ARROWS_JS, sorted(by_tab)))
            )
            for e in elements:
                mark = str(e["i"])
                reached = mark in (by_keys if e["roving"] else by_tab)
                if not reached:
                    how = "arrow keys" if e["roving"] else "Tab"
                    missed.append(f"#{explorer} ({view} view): {e['what']} (by {how})")
                checked += 1
            page.evaluate(
                "(id) => document.querySelectorAll(`#${id} [data-kbd]`)"
                ".forEach((n) => delete n.dataset.kbd)",
                explorer,
            )
    assert checked, f"{page_name}: no interactive element checked"
    assert not missed, f"{page_name}: not reachable by keyboard:\n  " + "\n  ".join(missed)


PRE_TEXT = re.compile(r"<pre\b[^>]*>(.*?)</pre>", re.S)
TAG = re.compile(r"<[^>]+>")
# The first <pre> wider than its box: marks it and returns its scroll width, or null.
WIDE_PRE_JS = """() => {
  const pre = [...document.querySelectorAll("article pre")]
    .find((p) => p.scrollWidth > p.clientWidth + 40);
  if (!pre) return null;
  pre.dataset.kbdWide = "1";
  return [pre.tabIndex, pre.getAttribute("aria-label")];
}"""


def widest_code_page(site_dir: Path) -> str | None:
    """The tutorial page whose code or output has the longest line (so it scrolls sideways)."""
    best, page = 0, None
    for tutorial in tutorial_pages():
        path = site_dir / tutorial
        if not path.is_file():
            continue
        for block in PRE_TEXT.findall(path.read_text("utf-8")):
            longest = max(map(len, html.unescape(TAG.sub("", block)).splitlines() or [""]))
            if longest > best:
                best, page = longest, tutorial
    return page if best > 120 else None


def test_code_blocks_scroll_by_keyboard(site, site_dir: Path) -> None:
    """A code or output block wider than the column takes the keyboard focus and scrolls with
    ArrowRight (the key does not turn the page), and it is named for screen readers."""
    page_name = widest_code_page(site_dir)
    assert page_name, "no tutorial has a code or output line longer than 120 characters"
    site.goto(page_name).assert_clean()
    page = site.page
    found = page.evaluate(WIDE_PRE_JS)
    assert found, f"{page_name}: no <pre> wider than its box at this window width"
    tab_index, label = found
    assert tab_index == 0, f"{page_name}: a scrolling <pre> has tabIndex {tab_index}, not 0"
    assert label, f"{page_name}: a scrolling <pre> has no aria-label"
    wide = page.locator("[data-kbd-wide]")
    wide.focus()

    def press_right() -> float:
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        return page.evaluate("() => document.querySelector('[data-kbd-wide]').scrollLeft")

    scrolled = stay_on_page(site, page_name, press_right)
    assert scrolled > 0, f"{page_name}: ArrowRight did not scroll the focused <pre>"


def test_build_time_fixes() -> None:
    """The doctests of docs/sphinxext/a11y.py: which blocks become focusable, named regions
    (the browser tests above check the built site itself)."""
    import doctest
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "docs" / "sphinxext" / "a11y.py"
    spec = importlib.util.spec_from_file_location("attnlib_docs_a11y", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted >= 5 and not result.failed, result
