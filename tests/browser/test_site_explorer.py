"""The built tutorial page "Explore attention interactively", in headless Chromium.

The page (gallery/06_interpretability/05_interactive_explorer.py, built by sphinx-gallery)
holds two explorers: a :class:`~attnlib.interpret.explorer.ClassifierExplorer` of
:func:`attnlib.pretrained.sentiment_classifier`, whose forward pass runs in the page's
JavaScript, and an :class:`~attnlib.interpret.explorer.AttentionExplorer` of an
encoder-decoder model's three kinds of attention. The page is loaded from the local
server of conftest.py with every request to another host blocked and recorded; it must
run with no console error, no uncaught exception, no failed request and no dialog.

The classifier in the page must be the one ``sentiment_classifier()`` trains here (same
code, same seed; trained once per module, with the docs build's thread count), and what
the page computes for a typed sentence must equal PyTorch's to 1e-4.

Like the other site tests these skip without a built site or Chromium, and fail instead
where ``ATTNLIB_REQUIRE_BROWSER`` is set.
"""

from __future__ import annotations

import base64
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlib.inference import predict
from attnlib.interpret.maps import capture_attention
from attnlib.pretrained import sentiment_classifier

from .conftest import SiteBrowser, Visit
from .test_explorer import STATE_JS, _heatmap

pytestmark = pytest.mark.browser

PAGE = "auto_gallery/06_interpretability/05_interactive_explorer.html"
SENTENCES = [
    "The acting was NOT superb, but the music was really delightful!",  # contrast, capitals
    "i found the xylophone soundtrack very dull.",  # an unknown word
    "the ending was not not bad",  # a double negation the grammar never produces
]
TOL = 1e-4
KINDS = {"encoder", "decoder", "cross"}
EXPLORERS_JS = """() => [...document.querySelectorAll(".attnlib-explorer")].map((e) => ({
  id: e.id, type: e.dataset.explorer, ready: e.classList.contains("attnlib-ex-ready"),
  error: e.querySelector(".attnlib-ex-error")?.textContent ?? null,
  fallback: !!e.querySelector(".attnlib-ex-fallback"),
  mounted: !!(window.attnlibExplorer && window.attnlibExplorer.instances[e.id]),
}))"""
MODEL_JS = "(id) => window.attnlibExplorer.instances[id].data.model"
MAX_DIFF = {"attention": 0.0, "probability": 0.0}  # the largest |page - PyTorch| seen
# the colour of one cell's centre of the big heatmap: (r, g, b, a)
PIXEL_JS = """([id, row, col]) => {
  const c = document.querySelector(`#${id} canvas.attnlib-ex-map`);
  const cs = c.width / +c.dataset.cols;
  const pixel = c.getContext("2d").getImageData((col + 0.5) * cs, (row + 0.5) * cs, 1, 1);
  return Array.from(pixel.data);
}"""


@dataclass
class Tab:
    """One fresh load of the page, with what must stay empty afterwards."""

    browser: SiteBrowser
    visit: Visit
    dialogs: list[str] = field(default_factory=list)

    @property
    def page(self):
        return self.browser.page

    def explorers(self) -> dict[str, str]:
        """Explorer type ("classifier", "attention") to its element id."""
        found = self.page.evaluate(EXPLORERS_JS)
        return {e["type"]: e["id"] for e in found}

    def state(self, uid: str) -> dict:
        return self.page.evaluate(STATE_JS, uid)

    def view_state(self, uid: str) -> dict:
        return self.page.evaluate(
            "(id) => { const s = window.attnlibExplorer.instances[id].state;"
            " return {kind: s.kind, layer: s.layer, head: s.head}; }",
            uid,
        )


@pytest.fixture(scope="module", autouse=True)
def report_differences():
    yield
    print(f"\nmax |page - PyTorch| in {__name__}: {MAX_DIFF}")


@pytest.fixture(scope="module")
def page_file(site_dir: Path) -> Path:
    path = site_dir / PAGE
    if not path.is_file():
        pytest.fail(f"{PAGE} is missing from the built site {site_dir}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def reference(site_dir: Path):
    """The classifier the site was built with, trained here as the docs build trains it
    (one thread unless ``ATTNLIB_NUM_THREADS`` says otherwise: docs/sphinxext)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("ATTNLIB_NUM_THREADS", "1")))
    try:
        return sentiment_classifier()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def tab(chromium, site_url: str, page_file: Path):
    context = chromium.new_context(service_workers="block", accept_downloads=True)
    browser = SiteBrowser(context, site_url)
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    browser.page.on("dialog", on_dialog)
    visit = browser.goto(PAGE)
    yield Tab(browser, visit, dialogs)
    browser.page.wait_for_timeout(50)  # let late console messages arrive
    context.close()
    visit.assert_clean()  # also covers what happened during the test's interactions
    assert not dialogs, f"{PAGE}: dialogs (a script ran): {dialogs}"


def _type(tab: Tab, uid: str, text: str) -> dict:
    """Fill the classifier's text box (one input event) and wait for the update."""
    before = tab.state(uid)["updates"]
    tab.page.locator(f"#{uid} input.attnlib-ex-input").fill(text)
    tab.page.wait_for_function(
        "([id, n]) => window.attnlibExplorer.instances[id].state.updates > n", arg=[uid, before]
    )
    return tab.state(uid)


def _compare(tab: Tab, uid: str, state: dict, reference, text: str) -> None:
    """The page's tokens, attention maps and probabilities for ``text`` are PyTorch's."""
    model, tokenizer, classes = reference.model, reference.tokenizer, reference.classes
    max_len = model.embed.positions.table.shape[0]
    ids = tokenizer.encode(text)[:max_len]
    assert state["text"] == text
    assert state["tokens"] == tokenizer.tokenize(text)[:max_len], text
    assert state["ids"] == ids, text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a truncation warning, if any
        table = predict(model, tokenizer, text, classes=classes)
    probs = [float(table[f"p({c})"][0]) for c in classes]
    diff = max(abs(a - b) for a, b in zip(state["probs"], probs, strict=True))
    MAX_DIFF["probability"] = max(MAX_DIFF["probability"], diff)
    assert diff < TOL, f"{text!r}: probabilities differ from predict's by {diff}"
    shown = tab.page.locator(f"#{uid} .attnlib-ex-best .attnlib-ex-predlabel").inner_text()
    assert shown == table["label"][0], f"{text!r}: the page shows {shown!r}"
    torch_maps = capture_attention(model, torch.tensor([ids]))["encoder"].double()
    js = torch.tensor(state["attention"], dtype=torch.float64)  # (layers, heads, L * L)
    js = js.reshape(*js.shape[:2], len(ids), len(ids))
    assert js.shape == torch_maps.shape
    diff = float((js - torch_maps).abs().max())
    MAX_DIFF["attention"] = max(MAX_DIFF["attention"], diff)
    assert diff < TOL, f"{text!r}: attention differs from capture_attention's by {diff}"


# -- the page -------------------------------------------------------------------------


def test_page_shows_both_explorers(tab):
    tab.visit.assert_clean()  # HTTP 200, no other host, no console error, no exception
    assert not tab.dialogs, tab.dialogs
    found = tab.page.evaluate(EXPLORERS_JS)
    assert [e["type"] for e in found] == ["classifier", "attention"], found
    for e in found:
        assert e["mounted"] and e["ready"], e
        assert e["error"] is None, e["error"]
        assert not e["fallback"], f"{e['id']}: still shows its no-JavaScript fallback"
    uid = tab.explorers()["classifier"]
    examples = tab.page.locator(f"#{uid} button.attnlib-ex-example").all_inner_texts()
    assert len(examples) == 4, examples
    assert tab.page.locator(f"#{uid} input.attnlib-ex-input").input_value() == examples[0]
    assert tab.state(uid)["text"] == examples[0]
    uid = tab.explorers()["attention"]
    kinds = tab.page.locator(f"#{uid} button.attnlib-ex-kind")
    assert {kinds.nth(i).get_attribute("data-kind") for i in range(kinds.count())} == KINDS


def test_page_holds_the_pretrained_classifier(tab, reference):
    """The weights in the page are those of sentiment_classifier(), bit for bit (else the
    site is stale, or training is not reproducible on this machine)."""
    spec = tab.page.evaluate(MODEL_JS, tab.explorers()["classifier"])
    assert spec["classes"] == list(reference.classes)
    assert spec["tokenizer"]["tokens"] == list(reference.tokenizer.vocab.itos)
    params = dict(reference.model.named_parameters())
    assert set(spec["tensors"]) == set(params)
    for name, (shape, data) in spec["tensors"].items():
        page = np.frombuffer(base64.b64decode(data), "<f4").reshape(shape)
        ours = params[name].detach().numpy()
        assert np.array_equal(page, ours), (
            f"{name}: the page's weights differ from sentiment_classifier()'s by up to "
            f"{np.abs(page - ours).max():.3g}: the site is stale, or was built with another "
            "thread count than ATTNLIB_NUM_THREADS (default 1) or on another machine"
        )


# -- the classifier: typed sentences and examples are computed as PyTorch does ------------


def test_typed_sentences_match_pytorch(tab, reference):
    uid = tab.explorers()["classifier"]
    info = tab.page.locator(f"#{uid} .attnlib-ex-info")
    italic = tab.page.locator(f"#{uid} .attnlib-ex-rowlabel.attnlib-ex-unknown")
    vocab = set(reference.tokenizer.vocab.itos)
    for text in SENTENCES:
        _compare(tab, uid, _type(tab, uid, text), reference, text)
        unknown = [t for t in reference.tokenizer.tokenize(text) if t not in vocab]
        assert ("xylophone" in unknown) == ("xylophone" in text)
        assert italic.all_text_contents() == unknown  # shown in italics
        if unknown:
            assert info.inner_text().endswith("(read as <unk>): " + " ".join(unknown))


def test_example_buttons_match_pytorch(tab, reference):
    uid = tab.explorers()["classifier"]
    _compare(tab, uid, tab.state(uid), reference, tab.state(uid)["text"])  # as loaded
    buttons = tab.page.locator(f"#{uid} button.attnlib-ex-example")
    for i in range(buttons.count()):
        before = tab.state(uid)["updates"]
        text = buttons.nth(i).inner_text()
        buttons.nth(i).click()
        state = tab.state(uid)
        assert state["updates"] == before + 1 and state["text"] == text
        _compare(tab, uid, state, reference, text)


def test_hover_lists_the_weights(tab):
    uid = tab.explorers()["classifier"]
    state = tab.state(uid)
    tab.page.locator(f"#{uid} .attnlib-ex-rowlabel").nth(1).hover()
    panel = tab.page.locator(f"#{uid} .attnlib-ex-panel")
    assert state["tokens"][1] in panel.inner_text()
    n = len(state["tokens"])
    row = state["attention"][state["layer"]][state["head"]][n : 2 * n]
    assert panel.locator(".attnlib-ex-wvalue").all_inner_texts() == [f"{w:.4f}" for w in row]


# -- choosing a head, a kind ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["classifier", "attention"])
def test_thumbnail_changes_the_big_heatmap(tab, which):
    uid = tab.explorers()[which]
    first, view = _heatmap(tab, uid), tab.view_state(uid)
    assert (first["layer"], first["head"]) == (str(view["layer"]), str(view["head"]))
    thumbs = tab.page.locator(f"#{uid} button.attnlib-ex-thumb")
    assert thumbs.count() >= 2
    target = next(
        i
        for i in range(thumbs.count())
        if thumbs.nth(i).get_attribute("data-head") != first["head"]
    )
    layer = thumbs.nth(target).get_attribute("data-layer")
    head = thumbs.nth(target).get_attribute("data-head")
    thumbs.nth(target).click()
    second = _heatmap(tab, uid)
    assert (second["layer"], second["head"]) == (layer, head)
    assert second["caption"].endswith(f"layer {layer}, head {head}")
    assert second["pixels"] != first["pixels"], "the big heatmap did not change"
    assert thumbs.nth(target).get_attribute("aria-pressed") == "true"
    view = tab.view_state(uid)
    assert (view["layer"], view["head"]) == (int(layer), int(head))


def test_decoder_kind_draws_the_causal_mask(tab):
    uid = tab.explorers()["attention"]
    tab.page.locator(f'#{uid} button.attnlib-ex-kind[data-kind="decoder"]').click()
    canvas = tab.page.locator(f"#{uid} canvas.attnlib-ex-map")
    assert canvas.get_attribute("data-kind") == "decoder"
    n = int(canvas.get_attribute("data-rows"))
    assert n == int(canvas.get_attribute("data-cols")) and n >= 3
    assert tab.page.locator(f"#{uid} .attnlib-ex-legend").is_visible()
    # above the diagonal: masked, drawn grey (no viridis colour is grey); below: a colour
    r, g, b, _ = tab.page.evaluate(PIXEL_JS, [uid, 0, n - 1])
    assert r == g == b and 140 <= r <= 217, (r, g, b)
    r, g, b, _ = tab.page.evaluate(PIXEL_JS, [uid, n - 1, 0])
    assert not r == g == b, (r, g, b)
    rows = tab.page.locator(f"#{uid} .attnlib-ex-rowlabel").all_text_contents()
    cols = tab.page.locator(f"#{uid} .attnlib-ex-collabel").all_text_contents()
    assert rows == cols and len(rows) == n
    tab.page.locator(f'#{uid} button.attnlib-ex-kind[data-kind="cross"]').click()
    assert canvas.get_attribute("data-kind") == "cross"
    assert tab.page.locator(f"#{uid} .attnlib-ex-rowlabel").all_text_contents() == rows


# -- exports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["classifier", "attention"])
def test_export_buttons_download(tab, which):
    uid = tab.explorers()[which]
    view = tab.view_state(uid)
    stem = f"attention-{view['kind']}-layer{view['layer']}-head{view['head']}"
    with tab.page.expect_download() as info:
        tab.page.locator(f"#{uid} button.attnlib-ex-export[data-format=png]").click()
    assert info.value.suggested_filename == f"{stem}.png"
    png = Path(info.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    with tab.page.expect_download() as info:
        tab.page.locator(f"#{uid} button.attnlib-ex-export[data-format=svg]").click()
    assert info.value.suggested_filename == f"{stem}.svg"
    svg = ET.fromstring(Path(info.value.path()).read_bytes())
    assert svg.tag.endswith("}svg")
    ns = svg.tag[: svg.tag.index("}") + 1]
    texts = {t.text for t in svg.iter(f"{ns}text")}
    rows = tab.page.locator(f"#{uid} .attnlib-ex-rowlabel").all_text_contents()
    assert set(rows) <= texts
    assert any(f"layer {view['layer']}, head {view['head']}" in (t or "") for t in texts)
