"""Browser tests of the built documentation site (see conftest.py for the fixtures and flags).

Every page is loaded once in headless Chromium from a local server, with every request to
another host blocked and recorded; the per-page tests share that one load.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

from .conftest import NONE, gallery_root, math_pages, tutorial_pages

RUN_TIME = re.compile(r"Total running time of the script:\s*\((\d+) minutes? ([\d.]+) seconds?\)")
EXTERNAL = r"""\s*=\s*\\?["']?(?:https?:)?//"""
EXTERNAL_SRC = re.compile(
    r"<(?:script|img|iframe|source|embed)\b[^>]*?\bsrc(?:set)?" + EXTERNAL + r"[^\s\"'>\\]*", re.I
)
STYLE_BLOCK = re.compile(r"<style\b.*?</style>", re.I | re.S)  # its text is not markup
LINK_TAG = re.compile(r"<link\b[^>]*>", re.I)
FETCHING_REL = re.compile(
    r"\brel\s*=\s*\\?[\"']?[^>]*?\b(?:stylesheet|icon|preload|prefetch|preconnect|modulepreload)",
    re.I,
)
THEME_JS = """(theme) => {
  document.body.dataset.theme = theme;
  const main = document.querySelector("article[role=main]") || document.body;
  return [getComputedStyle(document.body).backgroundColor, getComputedStyle(main).color];
}"""


def channels(css: str) -> tuple[float, ...]:
    """``rgb(r, g, b)`` / ``rgba(r, g, b, a)`` as (r, g, b, alpha), alpha defaulting to 1."""
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    assert len(values) in (3, 4), f"unexpected CSS colour {css!r}"
    return (*values[:3], values[3] if len(values) == 4 else 1.0)


def luminance(css: str) -> float:
    """WCAG relative luminance of a CSS ``rgb()`` colour: 0 is black, 1 is white."""

    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b, _ = channels(css)
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def test_site_references_no_other_host(site_dir: Path) -> None:
    """No built HTML or JS file loads a script, stylesheet, image or frame from another host.

    A static guard that needs no browser; ``_static/mathjax/`` is left out because MathJax's
    code holds URL strings it never fetches with the local configuration.
    """
    found = []
    for path in sorted([*site_dir.rglob("*.html"), *site_dir.rglob("*.js")]):
        rel = path.relative_to(site_dir).as_posix()
        if rel.startswith("_static/mathjax/"):
            continue
        text = STYLE_BLOCK.sub("", path.read_text("utf-8", errors="replace"))
        links = [t for t in LINK_TAG.findall(text) if re.search(r"\bhref" + EXTERNAL, t)]
        hits = EXTERNAL_SRC.findall(text) + [t for t in links if FETCHING_REL.search(t)]
        found += [f"{rel}: {hit[:160]}" for hit in hits]
    assert not found, "references to other hosts:\n  " + "\n  ".join(found)


@pytest.mark.browser
def test_page_loads_cleanly(site, html_page: str) -> None:
    """The page loads with HTTP 200, no console error, no uncaught exception, no failed
    same-host request (network error or HTTP >= 400) and no request to any other host."""
    assert html_page != NONE, "the site has no HTML page"
    site.visit(html_page).assert_clean()


@pytest.mark.browser
def test_images_load(site, html_page: str) -> None:
    """Every ``<img>`` of the page, made eager, has loaded (complete, naturalWidth > 0)."""
    assert html_page != NONE, "the site has no HTML page"
    visit = site.visit(html_page)
    assert not visit.broken_images, f"{html_page}: images that did not load: " + ", ".join(
        visit.broken_images
    )


def test_site_has_math(site_dir: Path) -> None:
    """Some pages, the theory pages among them, contain math: the math test is not vacuous."""
    pages = math_pages()
    assert pages, f"no page under {site_dir} contains a Sphinx math node"
    assert any(p.startswith("theory/") for p in pages), f"no theory/ page has math: {pages}"


@pytest.mark.browser
def test_math_is_typeset(site, math_page: str) -> None:
    """MathJax (served locally) typesets every math node of the page without a TeX error and
    leaves no raw ``\\(``, ``\\[`` or ``$$`` delimiter visible."""
    assert math_page != NONE, "no page of the site contains math"
    visit = site.visit(math_page)
    math = visit.math
    assert math is not None, f"{math_page}: the HTML has math, but the DOM has no .math node"
    assert "error" not in math, f"{math_page}: {math.get('error')}"
    assert math["containers"] > 0, f"{math_page}: MathJax produced no mjx-container"
    assert not math["untypeset"], f"{math_page}: math left untypeset: {math['untypeset']}"
    assert not math["raw"], f"{math_page}: raw TeX delimiters visible: {math['raw']}"
    assert not math["errors"], f"{math_page}: TeX errors: {math['errors']}"


@pytest.mark.browser
def test_gallery_index_lists_every_tutorial(site, site_dir: Path) -> None:
    """The gallery index has exactly one thumbnail per tutorial script; each links to that
    tutorial's page, which exists, and each thumbnail image has loaded."""
    expected = tutorial_pages()
    assert expected, f"no tutorial scripts found in {gallery_root()}"
    visit = site.goto("auto_gallery/index.html")
    thumbs = site.page.evaluate("""() =>
      [...document.querySelectorAll(".sphx-glr-thumbcontainer")].map((t) => {
        const a = t.querySelector("a[href]"), img = t.querySelector("img");
        return {href: a ? a.href : null, img: img ? img.currentSrc || img.src : null,
                loaded: !!img && img.complete && img.naturalWidth > 0};
      })""")
    where = "auto_gallery/index.html"
    targets = [site.site_path(t["href"]) if t["href"] else None for t in thumbs]
    assert len(thumbs) == len(expected), (
        f"{where}: {len(thumbs)} thumbnails for {len(expected)} tutorial scripts"
    )
    assert sorted(map(str, targets)) == sorted(expected), (
        f"{where}: thumbnails link to {sorted(map(str, targets))}, expected {expected}"
    )
    missing = [t for t in targets if not (site_dir / t).is_file()]
    assert not missing, f"{where}: thumbnail links to missing pages: {missing}"
    broken = [t["img"] for t in thumbs if not t["loaded"]]
    assert not broken, f"{where}: thumbnail images that did not load: {broken}"
    visit.assert_clean()


@pytest.mark.browser
def test_tutorial_shows_run_time_and_downloads(site, site_dir: Path, tutorial: str) -> None:
    """The tutorial page reports a non-zero run time (so the script was executed) and links
    to its ``.py`` and ``.ipynb`` downloads, both present in the site."""
    assert tutorial != NONE, f"no tutorial scripts found in {gallery_root()}"
    visit = site.goto(tutorial)
    assert visit.status == 200, f"{tutorial}: HTTP {visit.status} (no page for the script?)"
    text, hrefs = site.page.evaluate(
        "() => [document.body.innerText, [...document.links].map((a) => a.href)]"
    )
    match = RUN_TIME.search(text)
    assert match, f"{tutorial}: no 'Total running time of the script' line"
    seconds = 60 * int(match[1]) + float(match[2])
    assert seconds > 0, f"{tutorial}: reported run time is {match[0]!r}"
    stem = PurePosixPath(tutorial).stem
    for suffix in (".py", ".ipynb"):
        name = stem + suffix
        files = [site.site_path(h) for h in hrefs if urlsplit(h).path.endswith("/" + name)]
        assert files, f"{tutorial}: no download link to {name}"
        missing = [f for f in files if f is None or not (site_dir / f).is_file()]
        assert not missing, f"{tutorial}: download links to missing files: {missing}"
    visit.assert_clean()


@pytest.mark.browser
def test_dark_theme_colours(site) -> None:
    """In furo's dark theme the page background is dark and the main text is light."""
    site.goto("index.html").assert_clean()
    background, text = site.page.evaluate(THEME_JS, "dark")
    assert luminance(background) < 0.1, f"index.html (dark): body background is {background}"
    assert luminance(text) > 0.4, f"index.html (dark): main text colour is {text}"


@pytest.mark.browser
def test_dark_theme_figures_on_white(site, site_dir: Path) -> None:
    """In the dark theme the gallery's figures sit on an opaque white card (custom.css)."""
    pages = [
        t
        for t in tutorial_pages()
        if (site_dir / t).is_file() and "sphx-glr-single-img" in (site_dir / t).read_text("utf-8")
    ]
    assert pages, "no tutorial page has a figure (img.sphx-glr-single-img)"
    site.goto(pages[0]).assert_clean()
    site.page.evaluate(THEME_JS, "dark")
    colours = site.page.evaluate("""() => [...document.querySelectorAll("img.sphx-glr-single-img")]
      .map((img) => [img.currentSrc || img.src, getComputedStyle(img).backgroundColor])""")
    grey = [(src, c) for src, c in colours if min(channels(c)[:3]) < 250 or channels(c)[3] < 1]
    assert not grey, f"{pages[0]} (dark): figures without an opaque white background: {grey}"


# API objects that the tutorials use: their pages must list those tutorials
# ("Tutorials using ..."), through sphinx-gallery's backreferences.
BACKREFERENCED = [
    "attnlib.attention.AdditiveAttention",
    "attnlib.attention.MultiHeadAttention",
    "attnlib.functional.calculate_attention_weights",
    "attnlib.functional.multi_head_attention",
    "attnlib.masks.causal_mask",
    "attnlib.plotting.plot_attention",
    "attnlib.seq2seq.Seq2Seq",
    "attnlib.data.frames.validate_dataframe",
    "attnlib.data.text.SubwordTokenizer",
    "attnlib.inference.predict",
    "attnlib.inference.translate",
    "attnlib.metrics.corpus_bleu",
    "attnlib.interpret.maps.capture_attention",
    "attnlib.interpret.plots.visualize_attention_weights",
    "attnlib.interpret.relevance.attention_rollout",
    "attnlib.interpret.explorer.ClassifierExplorer",
]


@pytest.mark.parametrize("name", BACKREFERENCED)
def test_api_pages_link_the_tutorials_that_use_them(site_dir: Path, name: str) -> None:
    """The API page of an object used by a tutorial shows that tutorial's thumbnail."""
    page = site_dir / "api" / "generated" / f"{name}.html"
    assert page.is_file(), f"no API page {page.relative_to(site_dir)}"
    html = page.read_text("utf-8")
    links = re.findall(r'href="([^"]*auto_gallery/[^"]+\.html)[^"]*"', html)
    assert "sphx-glr-thumbcontainer" in html and links, f"{name}: no tutorial listed"
