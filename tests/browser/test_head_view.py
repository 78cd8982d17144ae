"""The explorer's head view and model view in headless Chromium (attnlib.interpret.explorer).

No built site is needed: the tests save explorers of known small attention maps to a
temporary folder, serve it on 127.0.0.1 and load the pages in the system Chromium (see
conftest.py for ``unavailable``, the Chromium flags and ``ATTNLIB_REQUIRE_BROWSER``).

The maps: 2 layers of 3 heads over 6 tokens, a sentence pair (tokens 0-2 are text A,
3-5 text B) whose last token is padding (masked as a key, and as a query). The head view
of one layer must draw exactly one line per head shown and unmasked (query, key) pair
that the pair filter and the hovered or focused token leave, with the weight as its
opacity; every control must be reachable with the keyboard and show a focus ring; and
the page must make no request at all besides its own document.
"""

from __future__ import annotations

import re

import pytest
import torch

from attnlib.interpret.explorer import AttentionExplorer
from attnlib.interpret.maps import AttentionMaps

from .conftest import serve

pytestmark = pytest.mark.browser

LAYERS, HEADS, N = 2, 3, 6
TOKENS = ["[CLS]", "cats", "sleep", "[SEP]", "dogs", "[PAD]"]
SEGMENTS = [0, 0, 0, 1, 1, 1]
KEEP = [True] * 5 + [False]  # the padding token
REAL = [i for i in range(N) if KEEP[i]]
IN = {"A": [i for i in REAL if SEGMENTS[i] == 0], "B": [i for i in REAL if SEGMENTS[i] == 1]}
LINES_JS = """(id) => [...document.querySelectorAll(`#${id} .attnlib-ex-hvlines line`)].map(
  (l) => [+l.dataset.head, +l.dataset.query, +l.dataset.key, +l.getAttribute("stroke-opacity"),
          l.getAttribute("stroke")])"""
# the focused element, described: tag, class, its accessible name, whether its focus shows
FOCUS_JS = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const box = e.querySelector(":scope > .attnlib-ex-hvbox");
  const style = getComputedStyle(box || e);
  const ring = box ? style.stroke !== "none" && parseFloat(style.strokeWidth) >= 2
                   : style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
  let name = e.getAttribute("aria-label") || e.textContent.trim();
  if (!name && e.labels && e.labels.length) name = e.labels[0].textContent.trim();
  return {tag: e.tagName.toLowerCase(), cls: e.getAttribute("class") || "", name, ring};
}"""


def _maps() -> AttentionMaps:
    g = torch.Generator().manual_seed(0)
    scores = 3 * torch.randn(LAYERS, HEADS, N, N, generator=g)
    keep = torch.tensor(KEEP)
    weights = scores.masked_fill(~keep, float("-inf")).softmax(-1)
    weights[:, :, ~keep] = 0.0  # the padding query's row
    mask = keep[:, None] & keep[None, :]
    return AttentionMaps({"encoder": weights}, {"encoder": TOKENS}, {"encoder": TOKENS},
                         masks={"encoder": mask})  # fmt: skip


@pytest.fixture(scope="module")
def maps() -> AttentionMaps:
    return _maps()


@pytest.fixture(scope="module")
def pages(tmp_path_factory, maps):
    root = tmp_path_factory.mktemp("head_view")
    AttentionExplorer(maps, view="heads", segments=SEGMENTS, title="pair").save(root / "pair.html")
    AttentionExplorer(maps, view="heads").save(root / "single.html")  # no segments: no filter
    AttentionExplorer(maps, segments=3).save(root / "heatmap.html")  # the heatmap first
    with serve(root) as url:
        yield url


class Tab:
    """One page; records every request and every error, which must stay empty."""

    def __init__(self, browser, base: str, name: str) -> None:
        self.url = f"{base}/{name}"
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(service_workers="block")
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        response = self.page.goto(self.url, wait_until="load")
        assert response is not None and response.status == 200
        (self.uid,) = self.page.evaluate(
            "() => [...document.querySelectorAll('.attnlib-explorer')].map((e) => e.id)"
        )
        self.root = self.page.locator(f"#{self.uid}")

    def _route(self, route) -> None:
        self.requests.append(route.request.url)
        if route.request.url == self.url:
            route.continue_()
        else:
            route.abort("blockedbyclient")

    def lines(self) -> list[list]:
        return self.page.evaluate(LINES_JS, self.uid)

    def state(self, key: str):
        return self.page.evaluate(
            "([id, k]) => window.attnlibExplorer.instances[id].state[k]", [self.uid, key]
        )

    def close(self) -> None:
        self.page.wait_for_timeout(50)  # late console messages
        self.context.close()
        assert self.requests == [self.url], f"requests besides the page: {self.requests}"
        assert not self.errors, self.errors


@pytest.fixture
def pair(browser, pages):
    tab = Tab(browser, pages, "pair.html")
    yield tab
    tab.close()


def _expected(heads=range(HEADS), queries=REAL, keys=REAL) -> set[tuple[int, int, int]]:
    return {(h, i, j) for h in heads for i in queries for j in keys}


def _drawn(tab: Tab) -> set[tuple[int, int, int]]:
    lines = tab.lines()
    drawn = {tuple(line[:3]) for line in lines}
    assert len(drawn) == len(lines), "a line drawn twice"
    assert tab.state("lines") == len(lines)
    return drawn


# -- what is drawn --------------------------------------------------------------------------


def test_one_line_per_head_and_unmasked_pair_with_the_weight_as_opacity(pair, maps):
    assert pair.root.locator(".attnlib-ex-headview").is_visible()
    assert not pair.root.locator(".attnlib-ex-figure").is_visible()  # view="heads" first
    lines = pair.lines()
    assert len(lines) == HEADS * len(REAL) ** 2 == 75
    assert {tuple(line[:3]) for line in lines} == _expected()
    bound = AttentionExplorer(maps).max_error + 0.0005  # quantisation, then 3 decimals
    for layer in range(LAYERS):
        if layer:
            pair.root.locator(".attnlib-ex-select select").first.select_option(str(layer))
            lines = pair.lines()
        w = maps["encoder"][layer]
        assert len(lines) == 75
        assert max(abs(o - float(w[h, i, j])) for h, i, j, o, _ in lines) <= bound
    colours = {h: {c for hh, *_, c in lines if hh == h} for h in range(HEADS)}
    assert all(len(c) == 1 for c in colours.values()), colours  # one colour per head
    assert len(set.union(*colours.values())) == HEADS  # and a different one for each
    toggles = pair.root.locator("button.attnlib-ex-hvhead")
    assert toggles.count() == HEADS
    for h in range(HEADS):  # the toggle wears its head's colour
        style = toggles.nth(h).evaluate("(b) => b.style.getPropertyValue('--attnlib-head')")
        assert style.strip() in colours[h]
    texts = pair.root.locator(".attnlib-ex-hvtoken text").evaluate_all(
        "(nodes) => nodes.map((t) => t.firstChild.textContent)"
    )
    assert texts == TOKENS + TOKENS
    assert "layer 1, 3 of 3 heads" in pair.root.locator(".attnlib-ex-headview").inner_text()


def test_toggling_a_head_removes_its_lines(pair):
    toggles = pair.root.locator("button.attnlib-ex-hvhead")
    toggles.nth(1).click()
    assert toggles.nth(1).get_attribute("aria-pressed") == "false"
    assert _drawn(pair) == _expected(heads=[0, 2])
    toggles.nth(1).focus()
    pair.page.keyboard.press("Space")  # the keyboard too
    assert toggles.nth(1).get_attribute("aria-pressed") == "true"
    assert _drawn(pair) == _expected()
    pair.root.locator("button.attnlib-ex-hvall", has_text="None").click()
    assert _drawn(pair) == set()
    assert "0 lines" in pair.root.locator(".attnlib-ex-hvinfo").inner_text()
    toggles.nth(2).click()
    assert _drawn(pair) == _expected(heads=[2])
    pair.root.locator("button.attnlib-ex-hvall", has_text="All").click()
    assert _drawn(pair) == _expected()


def test_pair_filter_keeps_the_lines_between_the_chosen_texts(pair):
    buttons = pair.root.locator("button.attnlib-ex-hvpair")
    assert buttons.all_inner_texts() == ["All", "A \u2192 A", "A \u2192 B", "B \u2192 A",
                                         "B \u2192 B"]  # fmt: skip
    total = 0
    for index, (q, k) in enumerate(["AA", "AB", "BA", "BB"], start=1):
        buttons.nth(index).click()
        assert buttons.nth(index).get_attribute("aria-pressed") == "true"
        drawn = _drawn(pair)
        assert drawn == _expected(queries=IN[q], keys=IN[k]), (q, k)
        total += len(drawn)
        dimmed = pair.root.locator(".attnlib-ex-hvtoken.attnlib-ex-dim")
        assert dimmed.count() == (N - sum(s == "AB".index(q) for s in SEGMENTS)) + (
            N - sum(s == "AB".index(k) for s in SEGMENTS)
        )
    assert total == 75  # the four filters split the lines
    buttons.first.click()
    assert _drawn(pair) == _expected()


def test_hovering_or_focusing_a_token_shows_only_its_lines(pair):
    tokens = pair.root.locator(".attnlib-ex-hvtoken")
    tokens.nth(1).hover()  # query "cats"
    assert _drawn(pair) == _expected(queries=[1])
    assert "query cats (position 1)" in pair.root.locator(".attnlib-ex-hvinfo").inner_text()
    tokens.nth(N + 4).hover()  # key "dogs"
    assert _drawn(pair) == _expected(keys=[4])
    pair.page.mouse.move(1, 1)
    assert _drawn(pair) == _expected()
    # with the pair filter: query "cats" (text A) to text B
    pair.root.locator("button.attnlib-ex-hvpair").nth(2).click()
    tokens.nth(1).hover()
    assert _drawn(pair) == _expected(queries=[1], keys=IN["B"])
    pair.page.mouse.move(1, 1)
    pair.root.locator("button.attnlib-ex-hvpair").first.click()
    # the keyboard: focus a token, move with the arrows, Escape shows every line again
    tokens.nth(0).focus()
    assert _drawn(pair) == _expected(queries=[0])
    pair.page.keyboard.press("ArrowDown")
    pair.page.keyboard.press("ArrowDown")
    assert _drawn(pair) == _expected(queries=[2])
    pair.page.keyboard.press("ArrowRight")  # to the key of the same position
    assert _drawn(pair) == _expected(keys=[2])
    focused = pair.page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert focused == "key 2: sleep (text A)"
    pair.page.keyboard.press("End")
    assert _drawn(pair) == set()  # the padding key: every pair with it is masked
    pair.page.keyboard.press("Escape")
    assert _drawn(pair) == _expected()


# -- the keyboard and the model view --------------------------------------------------------


def test_keyboard_reaches_every_control_with_a_visible_focus_ring(pair):
    seen = []
    pair.page.locator("body").focus()
    for _ in range(60):
        pair.page.keyboard.press("Tab")
        focus = pair.page.evaluate(FOCUS_JS)
        if focus is None or (seen and focus == seen[0]):
            break
        seen.append(focus)
    assert seen, "nothing takes the focus"
    for f in seen:
        assert f["ring"], f"no visible focus ring on {f}"
        assert f["name"], f"no accessible name for {f}"
    names = [f["name"] for f in seen]
    classes = " ".join(f["cls"] for f in seen)
    for needed in ("Heatmap", "Head view", "All: show all heads", "None: hide all heads"):
        assert needed in names, (needed, names)
    assert [n for n in names if re.fullmatch(r"head \d", n)] == [f"head {h}" for h in range(3)]
    filters = [f for f in seen if "attnlib-ex-hvpair" in f["cls"]]
    assert len(filters) == 5 and all("queries" in f["name"] for f in filters)
    assert classes.count("attnlib-ex-thumb") == 1  # the grid is one stop: arrows move in it
    assert classes.count("attnlib-ex-hvtoken") == 1  # so are the tokens
    assert sum(f["tag"] == "select" for f in seen) == 2  # layer, head
    assert any(f["name"] == "query 0: [CLS] (text A)" for f in seen)


def test_model_view_thumbnail_chooses_the_head_with_the_keyboard(pair):
    thumbs = pair.root.locator("button.attnlib-ex-thumb")
    assert thumbs.count() == LAYERS * HEADS
    thumbs.first.focus()
    for key in ("ArrowDown", "ArrowRight", "ArrowRight"):
        pair.page.keyboard.press(key)
    focused = pair.page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert focused == "encoder self-attention: layer 1, head 2"
    pair.page.keyboard.press("Enter")  # the head view shows that head alone
    assert thumbs.nth(HEADS + 2).get_attribute("aria-pressed") == "true"
    assert (pair.state("layer"), pair.state("head")) == (1, 2)
    assert pair.state("heads") == [False, False, True]
    assert _drawn(pair) == _expected(heads=[2])
    caption = pair.root.locator(".attnlib-ex-headview .attnlib-ex-caption").inner_text()
    assert caption.endswith("layer 1, 1 of 3 heads")
    # and the heatmap view shows it large
    pair.root.locator("button", has_text="Heatmap").click()
    assert pair.root.locator(".attnlib-ex-figure").is_visible()
    assert not pair.root.locator(".attnlib-ex-headview").is_visible()
    canvas = pair.root.locator("canvas.attnlib-ex-map")
    assert (canvas.get_attribute("data-layer"), canvas.get_attribute("data-head")) == ("1", "2")


def test_other_pages_single_text_and_heatmap_first(browser, pages):
    single = Tab(browser, pages, "single.html")
    try:
        assert single.root.locator(".attnlib-ex-headview").is_visible()
        assert not single.root.locator(".attnlib-ex-hvfilterrow").is_visible()  # no pair
        assert _drawn(single) == _expected()
    finally:
        single.close()
    first = Tab(browser, pages, "heatmap.html")
    try:
        assert first.root.locator(".attnlib-ex-figure").is_visible()
        assert not first.root.locator(".attnlib-ex-headview").is_visible()
        assert first.lines() == []  # nothing drawn while hidden
        first.root.locator("button", has_text="Head view").click()
        assert first.root.locator(".attnlib-ex-hvfilterrow").is_visible()
        assert _drawn(first) == _expected()
    finally:
        first.close()
