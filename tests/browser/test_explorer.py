"""The interactive explorers in headless Chromium (attnlib.interpret.explorer).

These tests need no built site: they write explorer pages to a temporary folder, serve it
on 127.0.0.1 and load them in the system Chromium (see conftest.py for ``unavailable``,
the Chromium flags and ``ATTNLIB_REQUIRE_BROWSER``). Every page must load and run with
no console error, no uncaught exception, no dialog (an escaping failure would run
``alert``) and no request to any other host.

The classifier page runs the tokenizer and the forward pass in JavaScript: the tokens,
every attention map and the class probabilities must equal PyTorch's to 1e-4.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from attnlib.data.synthetic import sentiment_corpus
from attnlib.data.text import WordTokenizer
from attnlib.inference import predict
from attnlib.interpret.explorer import AttentionExplorer, ClassifierExplorer
from attnlib.interpret.maps import capture_attention
from attnlib.transformer import EncoderClassifier

from .conftest import is_local, serve

pytestmark = pytest.mark.browser

CLASSES = ["negative", "neutral", "positive"]
MAX_LEN = 12
EVIL = ["<img src=x onerror=alert(1)>", '"><script>alert(2)</script>']
SENTENCES = [
    "The film was NOT good.",  # negation, capitals, punctuation
    "Wasn\u2019t the plot \u201cdelightful\u201d?!",  # curly quotes, an inner apostrophe
    "The xylophone soundtrack felt bad",  # an unknown word
    "the acting was good , but the plot felt really dull . the ending is too long .",  # > 12
    "\uff27\uff2f\uff2f\uff24 \u2014 very good",  # full-width letters (NFKC), an em dash
    "café, naïve résumé: 42 times_over!",  # Unicode letters, digits, underscore
]
TOKENIZER_TEXTS = [
    *SENTENCES,
    "  Tabs\tand\u00a0non-breaking\u2003spaces\u3000here  ",
    "don't 'quoted' rock'n'roll ''",
    "ﬁne ΣΊΣΥΦΟΣ İstanbul ß",
    "emoji 👍🏽 and マルチバイト文字 ①②",
]
STATE_JS = """(id) => {
  const s = window.attnlibExplorer.instances[id].state;
  return {text: s.text, tokens: s.tokens, ids: s.ids, truncated: s.truncated, probs: s.probs,
          updates: s.updates, layer: s.layer, head: s.head,
          attention: s.attention.map((layer) => layer.map((head) => Array.from(head)))};
}"""
MAX_DIFF = {"attention": 0.0, "probability": 0.0}  # the largest |JavaScript - PyTorch| seen


def _model(tokenizer: WordTokenizer, **kwargs) -> EncoderClassifier:
    model = EncoderClassifier(len(tokenizer), 3, d_model=32, nhead=4, max_len=MAX_LEN, **kwargs)
    with torch.no_grad():  # sharper attention than at initialisation: a harder test
        for layer in model.encoder.layers:
            layer.self_attn.q_proj.weight.mul_(3)
        model.head.weight.mul_(4)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def report_differences():
    yield
    print(f"\nmax |JavaScript - PyTorch| in {__name__}: {MAX_DIFF}")


@pytest.fixture(scope="module")
def tokenizer() -> WordTokenizer:
    return WordTokenizer.fit(sentiment_corpus(300, seed=0)["text"])


@pytest.fixture(scope="module")
def models(tokenizer) -> dict[str, EncoderClassifier]:
    torch.manual_seed(0)
    post = _model(tokenizer)  # post-norm, relu, mean pooling
    pre = _model(tokenizer, norm_first=True)  # pre-norm, final LayerNorm
    pre.pooling = "first"
    for layer in pre.encoder.layers:
        layer.ff.activation = "gelu"
    return {"post": post, "pre": pre}


@pytest.fixture(scope="module")
def evil_maps(models, tokenizer):
    ids = tokenizer.encode("the story: the plot felt good")[:6] + [0, 0]  # padding: masked
    labels = [*EVIL, "the", "plot", "felt", "good", "<pad>", "<pad>"]
    return capture_attention(models["post"], torch.tensor([ids]), labels=labels)


@pytest.fixture(scope="module")
def explorer_site(tmp_path_factory, models, tokenizer, evil_maps):
    """The explorer pages, served on 127.0.0.1."""
    root = tmp_path_factory.mktemp("explorer")
    examples = ["the ending was good", "the plot was not bad"]
    ClassifierExplorer(models["post"], tokenizer, CLASSES, examples=examples).save(
        root / "post.html"
    )
    ClassifierExplorer(models["pre"], tokenizer, CLASSES, text="not good").save(root / "pre.html")
    evil = AttentionExplorer(
        evil_maps, title=EVIL[1], prediction={EVIL[0]: 0.25, "positive": 0.75}, layer=1, head=3
    )
    evil.save(root / "evil.html")
    two = ClassifierExplorer(models["post"], tokenizer, CLASSES, text="good").to_html()
    (root / "two.html").write_text(
        f"<!DOCTYPE html><meta charset='utf-8'><body>{evil.to_html()}{two}</body>", "utf-8"
    )
    with serve(root) as url:
        yield url


class Page:
    """One page of one test, with what must stay empty: other hosts, errors, dialogs."""

    def __init__(self, browser, base: str, color_scheme: str = "light") -> None:
        self.base = base
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context = browser.new_context(
            service_workers="block", accept_downloads=True, color_scheme=color_scheme
        )
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("dialog", self._dialog)

    def _route(self, route) -> None:
        if is_local(route.request.url):
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort("blockedbyclient")

    def _console(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, name: str) -> list[str]:
        """Load a page; the ids of its explorers, in page order."""
        response = self.page.goto(f"{self.base}/{name}", wait_until="load")
        assert response is not None and response.status == 200
        return self.page.evaluate(
            "() => [...document.querySelectorAll('.attnlib-explorer')].map((e) => e.id)"
        )

    def state(self, uid: str) -> dict:
        return self.page.evaluate(STATE_JS, uid)

    def close(self) -> None:
        self.page.wait_for_timeout(50)  # let late console messages arrive
        self.context.close()
        assert not self.foreign, f"requests to other hosts: {self.foreign}"
        assert not self.errors, f"errors: {self.errors}"
        assert not self.dialogs, f"dialogs (script ran): {self.dialogs}"


@pytest.fixture
def tab(browser, explorer_site):
    page = Page(browser, explorer_site)
    yield page
    page.close()


def _torch_reference(model, tokenizer, text: str) -> tuple[list[int], torch.Tensor, list[float]]:
    """Token ids (cut like predict), the attention maps and the probabilities of `predict`."""
    ids = tokenizer.encode(text)[: model.embed.positions.table.shape[0]]
    maps = capture_attention(model, torch.tensor([ids]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning about truncated text
        table = predict(model, tokenizer, text, classes=CLASSES)
    probs = [float(table[f"p({c})"][0]) for c in CLASSES]
    with torch.no_grad():
        direct = torch.softmax(model(torch.tensor([ids])), -1)[0].tolist()
    assert max(abs(a - b) for a, b in zip(probs, direct, strict=True)) < 1e-6
    return ids, maps["encoder"].double(), probs


def _compare(state: dict, model, tokenizer, text: str) -> None:
    ids, attention, probs = _torch_reference(model, tokenizer, text)
    assert state["text"] == text
    assert state["tokens"] == tokenizer.tokenize(text)[:MAX_LEN]
    assert state["ids"] == ids
    assert state["truncated"] == (len(tokenizer.tokenize(text)) > MAX_LEN)
    js = torch.tensor(state["attention"], dtype=torch.float64)  # (layers, heads, L * L) rows
    js = js.reshape(*js.shape[:2], len(ids), len(ids))
    assert js.shape == attention.shape
    diff = float((js - attention).abs().max())
    MAX_DIFF["attention"] = max(MAX_DIFF["attention"], diff)
    assert diff < 1e-4, f"{text!r}: attention differs by {diff}"
    diff = max(abs(a - b) for a, b in zip(state["probs"], probs, strict=True))
    MAX_DIFF["probability"] = max(MAX_DIFF["probability"], diff)
    assert diff < 1e-4, f"{text!r}: probabilities differ by {diff}"


def _type(tab: Page, uid: str, text: str) -> dict:
    """Fill the text box as a user would (one input event) and wait for the update."""
    before = tab.state(uid)["updates"]
    tab.page.locator(f"#{uid} input.attnlib-ex-input").fill(text)
    tab.page.wait_for_function(
        "([id, n]) => window.attnlibExplorer.instances[id].state.updates > n", arg=[uid, before]
    )
    return tab.state(uid)


# -- (a) the page's forward pass is PyTorch's ---------------------------------------------


def test_classifier_page_matches_pytorch(tab, models, tokenizer):
    (uid,) = tab.open("post.html")
    state = tab.state(uid)
    _compare(state, models["post"], tokenizer, "the ending was good")  # the first example
    info = tab.page.locator(f"#{uid} .attnlib-ex-info")
    for text in SENTENCES:
        _compare(_type(tab, uid, text), models["post"], tokenizer, text)
        long = len(tokenizer.tokenize(text)) > MAX_LEN
        assert info.inner_text().endswith(f"cut to the model's {MAX_LEN} positions") == long
        if "xylophone" in text:
            assert info.inner_text().endswith("(read as <unk>): xylophone")
    # typing key by key: the update is debounced, one recomputation at the end
    box = tab.page.locator(f"#{uid} input.attnlib-ex-input")
    box.fill("")
    tab.page.wait_for_function(
        "(id) => window.attnlibExplorer.instances[id].state.text === ''", arg=uid
    )
    empty = tab.state(uid)
    assert empty["tokens"] == [] and empty["probs"] is None
    assert tab.page.locator(f"#{uid} .attnlib-ex-empty").is_visible()
    box.press_sequentially("not bad at all", delay=20)
    tab.page.wait_for_function(
        "(id) => window.attnlibExplorer.instances[id].state.text === 'not bad at all'", arg=uid
    )
    tab.page.wait_for_timeout(300)
    assert tab.state(uid)["updates"] == empty["updates"] + 1
    _compare(tab.state(uid), models["post"], tokenizer, "not bad at all")
    # an example button
    tab.page.locator(f"#{uid} button.attnlib-ex-example", has_text="not bad").click()
    _compare(tab.state(uid), models["post"], tokenizer, "the plot was not bad")


def test_pre_norm_gelu_classifier_matches_pytorch(tab, models, tokenizer):
    (uid,) = tab.open("pre.html")
    _compare(tab.state(uid), models["pre"], tokenizer, "not good")
    for text in SENTENCES[::2]:
        _compare(_type(tab, uid, text), models["pre"], tokenizer, text)


def test_tokenizer_matches_python(tab, tokenizer):
    (uid,) = tab.open("post.html")
    for options in [
        {"lowercase": True, "remove_punctuation": False},
        {"lowercase": False, "remove_punctuation": False},
        {"lowercase": True, "remove_punctuation": True},
    ]:
        python = WordTokenizer(tokenizer.vocab, **options)
        js = tab.page.evaluate(
            "([texts, o]) => texts.map((t) => window.attnlibExplorer.tokenize(t, o))",
            [TOKENIZER_TEXTS, options],
        )
        assert js == [python.tokenize(t) for t in TOKENIZER_TEXTS], options


# -- (b) choosing a head changes the big heatmap -----------------------------------------


def _heatmap(tab: Page, uid: str) -> dict:
    return tab.page.evaluate(
        """(id) => {
          const c = document.querySelector(`#${id} canvas.attnlib-ex-map`);
          return {layer: c.dataset.layer, head: c.dataset.head, pixels: c.toDataURL(),
                  caption: document.querySelector(`#${id} .attnlib-ex-caption`).textContent};
        }""",
        uid,
    )


def test_selecting_a_head_changes_the_heatmap(tab):
    (uid,) = tab.open("post.html")
    first = _heatmap(tab, uid)
    assert (first["layer"], first["head"]) == ("0", "0")
    thumbs = tab.page.locator(f"#{uid} button.attnlib-ex-thumb")
    assert thumbs.count() == 2 * 4
    thumbs.nth(4 + 2).click()  # layer 1, head 2
    second = _heatmap(tab, uid)
    assert (second["layer"], second["head"]) == ("1", "2")
    assert second["caption"].endswith("layer 1, head 2")
    assert second["pixels"] != first["pixels"]
    assert thumbs.nth(6).get_attribute("aria-pressed") == "true"
    assert thumbs.nth(0).get_attribute("aria-pressed") == "false"
    state = tab.state(uid)
    assert (state["layer"], state["head"]) == (1, 2)
    tab.page.locator(f"#{uid} .attnlib-ex-select select").nth(1).select_option("3")
    third = _heatmap(tab, uid)
    assert (third["layer"], third["head"]) == ("1", "3")
    assert third["pixels"] not in (first["pixels"], second["pixels"])
    thumbs.nth(0).focus()  # keyboard: a thumbnail is a button
    tab.page.keyboard.press("Enter")
    assert _heatmap(tab, uid)["pixels"] == first["pixels"]
    # a new sentence keeps the chosen head
    thumbs.nth(5).click()
    state = _type(tab, uid, "the plot was good")
    assert (state["layer"], state["head"]) == (1, 1)


def test_hover_shows_where_a_query_attends(tab):
    (uid,) = tab.open("post.html")
    state = tab.state(uid)
    before = _heatmap(tab, uid)["pixels"]
    tab.page.locator(f"#{uid} .attnlib-ex-rowlabel").nth(1).hover()
    panel = tab.page.locator(f"#{uid} .attnlib-ex-panel")
    assert "Query" in panel.inner_text() and state["tokens"][1] in panel.inner_text()
    values = panel.locator(".attnlib-ex-wvalue").all_inner_texts()
    row = state["attention"][0][0][len(state["tokens"]) * 1 : len(state["tokens"]) * 2]
    assert values == [f"{w:.4f}" for w in row]
    assert _heatmap(tab, uid)["pixels"] != before  # the other rows are dimmed
    canvas = tab.page.locator(f"#{uid} canvas.attnlib-ex-map")
    box = canvas.bounding_box()
    n = len(state["tokens"])
    canvas.hover(position={"x": box["width"] * 2.5 / n, "y": box["height"] * 0.5 / n})
    tooltip = tab.page.locator(f"#{uid} .attnlib-ex-tooltip")
    assert tooltip.is_visible()
    assert tooltip.inner_text().split("\n") == [
        f"{state['tokens'][0]} \u2192 {state['tokens'][2]}",
        f"weight {state['attention'][0][0][2]:.4f}",
    ]
    tab.page.mouse.move(0, 0)
    assert not tooltip.is_visible()
    # the keyboard: focus the map, move with the arrow keys
    canvas.focus()
    for key in ("ArrowDown", "ArrowRight", "ArrowRight", "ArrowDown"):
        tab.page.keyboard.press(key)
    cell = tab.page.evaluate("(id) => window.attnlibExplorer.instances[id].state.cell", uid)
    assert cell == [1, 2] and tooltip.is_visible()
    assert tooltip.inner_text().startswith(f"{state['tokens'][1]} \u2192 {state['tokens'][2]}")
    tab.page.keyboard.press("Escape")
    assert not tooltip.is_visible()


# -- (c) labels are text, never markup ------------------------------------------------------


def test_labels_are_shown_as_text(tab, evil_maps):
    (uid,) = tab.open("evil.html")
    root = tab.page.locator(f"#{uid}")
    assert root.locator("img, script, iframe").count() == 0
    assert root.locator(".attnlib-ex-title").inner_text() == EVIL[1]
    rows = root.locator(".attnlib-ex-rowlabel").all_text_contents()
    cols = root.locator(".attnlib-ex-collabel").all_text_contents()
    assert rows == evil_maps.labels()[0] and cols == evil_maps.labels()[1]
    assert rows[:2] == EVIL
    assert root.locator(".attnlib-ex-predlabel").first.text_content() == EVIL[0]
    # the padding keys are masked: drawn grey and hatched (no viridis colour is grey)
    r, g, b, _ = tab.page.evaluate(
        """(id) => {
          const c = document.querySelector(`#${id} canvas.attnlib-ex-map`);
          const cs = c.width / +c.dataset.cols;
          return Array.from(c.getContext('2d').getImageData(7.5 * cs, 6.5 * cs, 1, 1).data);
        }""",
        uid,
    )
    assert r == g == b and 140 <= r <= 217
    root.locator(".attnlib-ex-rowlabel").first.hover()
    assert EVIL[0] in root.locator(".attnlib-ex-panel").inner_text()
    assert root.locator(".attnlib-ex-panel .attnlib-ex-wvalue").all_inner_texts()[-2:] == [
        "masked",
        "masked",
    ]
    assert root.locator(".attnlib-ex-legend").is_visible()
    assert tab.page.evaluate("() => document.title") == EVIL[1]


def test_two_explorers_on_one_page(tab):
    first, second = tab.open("two.html")
    kinds = tab.page.evaluate(
        "(ids) => ids.map((id) => window.attnlibExplorer.instances[id].data.type)", [first, second]
    )
    assert kinds == ["attention", "classifier"]
    assert tab.state(second)["tokens"] == ["good"]
    tab.page.locator(f"#{first} button.attnlib-ex-thumb").nth(1).click()
    assert _heatmap(tab, second)["head"] == "0" and _heatmap(tab, first)["head"] == "1"


def test_card_reads_well_in_dark_mode(browser, explorer_site):
    page = Page(browser, explorer_site, color_scheme="dark")
    try:
        (uid,) = page.open("post.html")
        colours = page.page.evaluate(
            """(id) => {
              document.body.style.background = '#131416';
              document.body.style.color = '#ffffff';
              const s = getComputedStyle(document.getElementById(id));
              return [s.backgroundColor, s.color];
            }""",
            uid,
        )
        assert colours == ["rgb(255, 255, 255)", "rgb(31, 35, 40)"]
    finally:
        page.close()


# -- (d) exports -----------------------------------------------------------------------------


def test_export_png_and_svg(tab, evil_maps):
    (uid,) = tab.open("evil.html")
    with tab.page.expect_download() as info:
        tab.page.locator(f"#{uid} button", has_text="Export PNG").click()
    download = info.value
    assert download.suggested_filename == "attention-encoder-layer1-head3.png"
    png = Path(download.path()).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000

    with tab.page.expect_download() as info:
        tab.page.locator(f"#{uid} button", has_text="Export SVG").focus()
        tab.page.keyboard.press("Enter")  # keyboard accessible
    download = info.value
    assert download.suggested_filename.endswith(".svg")
    svg = ET.fromstring(Path(download.path()).read_bytes())
    assert svg.tag.endswith("}svg") and svg.get("width") is not None
    ns = svg.tag[: svg.tag.index("}") + 1]
    texts = {t.text for t in svg.iter(f"{ns}text")}
    assert set(evil_maps.labels()[0]) <= texts
    assert any("layer 1, head 3" in t for t in texts)
    rects = [r for r in svg.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(rects) == 8 * 8
    # masked: the 2 padding keys (columns) and the rows of the 2 padding queries
    assert sum(r.get("fill") == "url(#attnlib-hatch)" for r in rects) == 8 * 8 - 6 * 6
