"""The front page and the closing page ("Where to go next") of the built site.

Browser tests (see conftest.py for the fixtures and flags): the front page shows a
feature figure that loads, one chapter card per gallery chapter folder, each with a
thumbnail that loads and a link to an existing page; the closing page is in the
navigation and links every chapter. The last tests run the generator of those pages
(docs/sphinxext/frontpage.py) on a made-up gallery, with no site and no browser.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path, PurePosixPath

import pytest

from .conftest import REPO, gallery_root

sys.path.insert(0, str(REPO / "docs" / "sphinxext"))
import frontpage  # noqa: E402

CHAPTER = re.compile(r"^\d+_\w+$")

# Every loaded <img> in a selector: [src, alt, naturalWidth, complete] after decoding.
IMAGES_IN_JS = """async (selector) => {
  const imgs = [...document.querySelectorAll(selector)];
  imgs.forEach((img) => { img.loading = "eager"; });
  await Promise.all(imgs.map((img) => img.decode().catch(() => {})));
  return imgs.map((img) => [img.currentSrc || img.src, img.getAttribute("alt"),
                            img.naturalWidth, img.complete]);
}"""
CARDS_JS = """() => [...document.querySelectorAll(".attnlib-chapters .sd-card")].map((card) => ({
  title: card.querySelector(".sd-card-title")?.innerText.trim() ?? "",
  links: [...card.querySelectorAll("a[href]")].map((a) => a.href),
  names: [...card.querySelectorAll("a[href]")].map((a) => a.textContent.trim()),
  imgs: card.querySelectorAll("img").length,
}))"""
LINKS_JS = """(selector) => [...document.querySelectorAll(selector)].map((a) => a.href)"""


def chapter_folders() -> list[str]:
    """The gallery's chapters: folders ``NN_name`` that hold at least one tutorial script."""
    root = gallery_root()
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and CHAPTER.match(d.name) and any(d.glob("[!_]*.py"))
    )


def site_file(site, site_dir: Path, url: str) -> Path | None:
    """The file of the built site a same-host URL points at (None for another host)."""
    path = site.site_path(url.split("#")[0])
    return None if path is None else site_dir / path


@pytest.fixture
def front(site):
    """The front page, loaded afresh (the live DOM is ``site.page``)."""
    visit = site.goto("index.html")
    visit.assert_clean()
    return site


@pytest.mark.browser
def test_front_page_feature_figure_loads(front) -> None:
    """A figure drawn by a tutorial opens the page: it loads and has alt text and a
    caption that links the tutorial it comes from."""
    images = front.page.evaluate(IMAGES_IN_JS, "figure.attnlib-feature img")
    assert len(images) == 1, f"expected one feature figure, found {images}"
    src, alt, width, complete = images[0]
    assert complete and width > 0, f"the feature figure did not load: {src}"
    assert "/auto_gallery/" in src or "/_images/sphx_glr_" in src, src
    assert alt and len(alt) > 10, f"the feature figure has no useful alt text: {alt!r}"
    caption_links = front.page.evaluate(LINKS_JS, "figure.attnlib-feature figcaption a")
    assert any("/auto_gallery/" in u for u in caption_links), caption_links


@pytest.mark.browser
def test_front_page_has_one_card_per_chapter(front, site_dir: Path) -> None:
    """One card per gallery chapter, in order; each links (with text) to its chapter's page,
    which exists; each card of an executed chapter has a thumbnail that loads."""
    folders = chapter_folders()
    assert folders, f"no chapter folder under {gallery_root()}"
    cards = front.page.evaluate(CARDS_JS)
    assert len(cards) == len(folders), (
        f"{len(cards)} chapter cards for {len(folders)} chapter folders: "
        f"{[c['title'] for c in cards]} vs {folders}"
    )
    for folder, card in zip(folders, cards, strict=True):
        number = str(int(folder.split("_", 1)[0]))
        assert card["title"].startswith(number), f"card {card['title']!r} for {folder}"
        targets = [site_file(front, site_dir, u) for u in card["links"]]
        expected = site_dir / "auto_gallery" / folder / "index.html"
        assert expected in targets, f"{folder}: the card links to {card['links']}"
        assert all(t is not None and t.is_file() for t in targets), card["links"]
        assert all(card["names"]), f"{folder}: a link without text: {card['names']}"
    thumbs = front.page.evaluate(IMAGES_IN_JS, ".attnlib-chapters img")
    assert len(thumbs) == len(cards), f"{len(thumbs)} thumbnails for {len(cards)} cards"
    for src, alt, width, complete in thumbs:
        assert complete and width > 0, f"a chapter thumbnail did not load: {src}"
        assert alt, f"a chapter thumbnail has no alt text: {src}"


@pytest.mark.browser
def test_front_page_paths_link_tutorials(front, site_dir: Path) -> None:
    """The suggested paths (an hour, a weekend, everything) link existing tutorial pages."""
    titles = front.page.evaluate(
        "() => [...document.querySelectorAll('.attnlib-paths .sd-card-title')]"
        ".map((t) => t.innerText.trim())"
    )
    assert titles == ["An hour", "A weekend", "Everything"], titles
    links = front.page.evaluate(LINKS_JS, ".attnlib-paths a[href]")
    tutorials = [u for u in links if re.search(r"/auto_gallery/\d+_\w+/\d+_\w+\.html", u)]
    assert len(tutorials) >= 4, links
    missing = [u for u in links if not (f := site_file(front, site_dir, u)) or not f.is_file()]
    assert not missing, f"path links to missing pages: {missing}"


@pytest.mark.browser
def test_closing_page_in_navigation_and_links_every_chapter(site, site_dir: Path) -> None:
    """``next.html`` is in the site navigation, after the tutorials, and links every chapter."""
    visit = site.goto("index.html")
    nav = site.page.evaluate(LINKS_JS, ".sidebar-tree a.reference")
    pages = [PurePosixPath(site.site_path(u) or "").as_posix() for u in nav]
    assert "next.html" in pages, f"the closing page is not in the navigation: {pages}"
    assert pages.index("next.html") > pages.index("auto_gallery/index.html"), pages

    visit = site.goto("next.html")
    visit.assert_clean()
    assert "Where to go next" in site.page.title(), site.page.title()
    links = site.page.evaluate(LINKS_JS, "article[role=main] a[href]")
    linked = {site_file(site, site_dir, u) for u in links}
    for folder in chapter_folders():
        index = site_dir / "auto_gallery" / folder / "index.html"
        assert index.is_file(), f"no page for chapter {folder}"
        assert index in linked, f"the closing page does not link chapter {folder}"
    local = [u for u in links if site.site_path(u) is not None]
    missing = [u for u in local if not site_file(site, site_dir, u).is_file()]
    assert not missing, f"the closing page links missing pages: {missing}"


# -- The generator, on a made-up gallery (no site, no browser) -------------------------


def make_gallery(tmp_path: Path) -> tuple[Path, Path]:
    """A gallery of three chapters (one never executed, one without a header, one folder
    without any script) and a source dir with the thumbnails of the first chapter only."""
    gallery, srcdir = tmp_path / "gallery", tmp_path / "docs"
    one = gallery / "01_first"
    one.mkdir(parents=True)
    (one / "GALLERY_HEADER.rst").write_text("1. First things\n---------------\n\nThe blurb.\n")
    (one / "01_a.py").write_text('"""\nPage A\n======\n\nText.\n"""\nx = 1\n')
    (one / "02_b.py").write_text('"""\nPage B\n======\n"""\n')
    (one / "_helper.py").write_text("")
    two = gallery / "02_second_part"
    two.mkdir()
    (two / "01_c.py").write_text("x = 1\n")  # no docstring: the title is the file name
    (gallery / "03_empty").mkdir()
    (gallery / "03_empty" / "GALLERY_HEADER.rst").write_text("3. Empty\n--------\n")
    thumb = srcdir / "auto_gallery" / "01_first" / "images" / "thumb"
    thumb.mkdir(parents=True)
    (thumb / "sphx_glr_01_a_thumb.png").write_bytes(b"png")
    return gallery, srcdir


def test_generator_discovers_chapters_and_falls_back(tmp_path: Path) -> None:
    """Chapters come from the folders (one without scripts is left out); a chapter without
    header or thumbnail still gets a card, titled from its folder, with no image."""
    gallery, srcdir = make_gallery(tmp_path)
    chapters = frontpage.discover(gallery, srcdir)
    assert [c.folder for c in chapters] == ["01_first", "02_second_part"]
    first, second = chapters
    assert (first.title, first.blurb) == ("1. First things", "The blurb.")
    assert [t.title for t in first.tutorials] == ["Page A", "Page B"]
    assert first.thumbnail == "/auto_gallery/01_first/images/thumb/sphx_glr_01_a_thumb.png"
    assert (second.title, second.thumbnail, second.tutorials[0].title) == (
        "2. Second part",
        None,
        "01_c",
    )
    cards = frontpage.render_chapters(chapters)
    assert cards.count(".. grid-item-card::") == 2
    assert cards.count(":img-top:") == 1 and "no figure in this build" in cards
    # Once its tutorial has drawn a figure, the thumbnail is said to show it.
    (srcdir / "auto_gallery" / "01_first" / "images" / "sphx_glr_01_a_001.png").write_bytes(b"")
    chapters = frontpage.discover(gallery, srcdir)
    assert chapters[0].thumbnail_alt == "A figure from the tutorial “Page A”"
    assert ":link: /auto_gallery/02_second_part/index" in cards
    course = frontpage.render_course_map(chapters)
    assert ":doc:`/auto_gallery/02_second_part/01_c`" in course
    # No tutorial has a figure: no feature figure, and no error.
    assert ".. figure::" not in frontpage.render_figure(chapters, srcdir)
    # The suggested paths name tutorials of the real gallery: here none exists.
    paths = frontpage.render_paths(chapters)
    assert ":doc:`/auto_gallery/" not in paths.split("Everything")[0]
    assert "All 3 tutorials in 2 chapters" in paths


def test_generator_feature_figure_rule(tmp_path: Path) -> None:
    """The feature figure is matched by its title in the generated page, else by number."""
    gallery, srcdir = make_gallery(tmp_path)
    page = srcdir / "auto_gallery" / "01_first"
    images = page / "images"
    for n in (1, 2):
        (images / f"sphx_glr_01_a_00{n}.png").write_bytes(b"png")
    (page / "01_a.rst").write_text(
        "".join(
            f".. image-sg:: /auto_gallery/01_first/images/sphx_glr_01_a_00{n}.png\n"
            f"   :alt: {alt}\n   :class: sphx-glr-single-img\n\n"
            for n, alt in [(1, "A loss curve"), (2, "The circuit of interest")]
        )
    )
    chapters = frontpage.discover(gallery, srcdir)
    rule = [("01_first/01_a", "The circuit", 1)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frontpage, "FEATURE", rule)
        image, alt, tut, by_title = frontpage.feature_figure(chapters, srcdir)
        assert image.endswith("_002.png") and alt == "The circuit of interest" and by_title
        mp.setattr(frontpage, "FEATURE_CAPTION", {"01_first/01_a": "A written caption."})
        assert "A written caption." in frontpage.render_figure(chapters, srcdir)
        mp.setattr(frontpage, "FEATURE", [("01_first/01_a", "No such title", 1)])
        assert frontpage.feature_figure(chapters, srcdir)[0].endswith("_001.png")
        mp.setattr(frontpage, "FEATURE", [("09_gone/01_x", "", 1)])  # falls back: first found
        assert frontpage.feature_figure(chapters, srcdir)[0].endswith("_001.png")
        # found by number, not title: the written caption is not used (it may not fit)
        figure = frontpage.render_figure(chapters, srcdir)
        assert "A written caption." not in figure
    figure = frontpage.render_figure(chapters, srcdir)
    assert ".. figure:: /auto_gallery/01_first/images/sphx_glr_01_a_001.png" in figure
    assert ":alt: A loss curve" in figure and ":doc:`/auto_gallery/01_first/01_a`" in figure


def test_generator_writes_only_on_change(tmp_path: Path) -> None:
    """A file whose text is unchanged is not rewritten (Sphinx would rebuild the page)."""
    target = tmp_path / "out" / "x.rst"
    frontpage.write_if_changed(target, "a\n")
    stamp = target.stat().st_mtime_ns
    frontpage.write_if_changed(target, "a\n")
    assert target.stat().st_mtime_ns == stamp
    frontpage.write_if_changed(target, "b\n")
    assert target.read_text() == "b\n"


def test_real_gallery_has_a_card_per_chapter() -> None:
    """On the repository's gallery: every chapter folder with a script gets a card."""
    chapters = frontpage.discover(gallery_root(), REPO / "docs")
    assert [c.folder for c in chapters] == chapter_folders()
    assert all(c.title and c.tutorials for c in chapters)
    text = frontpage.render_chapters(chapters)
    assert text.count(".. grid-item-card::") == len(chapters)
