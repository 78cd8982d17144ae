"""The interactive explorers' Python side (attnlib.interpret.explorer and .widgets).

No browser here: the HTML fragment (no foreign URL, no external script, escaping), the
compact encodings decoded back by an independent decoder, the checks on what the page can
reproduce, the parameter map through which the page's code finds every tensor (that code's
forward pass run in Node.js where ``node`` is installed), and the ipywidgets version.
tests/browser/test_explorer.py runs the pages.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from attnlib.attention import MultiHeadAttention
from attnlib.data.text import SubwordTokenizer, WordTokenizer
from attnlib.inference import predict
from attnlib.interpret.explorer import (
    CLASSIFIER_FORMAT,
    AttentionExplorer,
    ClassifierExplorer,
    _asset,
    export_classifier,
)
from attnlib.interpret.maps import AttentionMaps, capture_attention
from attnlib.transformer import DecoderLM, EncoderClassifier

EVIL = ["<img src=x onerror=alert(1)>", '"><script>alert(2)</script>']
TEXTS = ["the film was good , not bad .", "a dull plot and weak acting", "great fun !"]
DATA = re.compile(r'<script type="application/json" id="([\w-]+)-data">(.*?)</script>', re.S)


def _data(fragment: str) -> dict:
    """The explorer's JSON data, as the page's JSON.parse reads it."""
    (match,) = DATA.findall(fragment)
    return json.loads(match[1])


@pytest.fixture
def tokenizer() -> WordTokenizer:
    return WordTokenizer.fit(TEXTS)


@pytest.fixture
def model(tokenizer) -> EncoderClassifier:
    return EncoderClassifier(len(tokenizer), 3, d_model=16, nhead=2, num_layers=2, max_len=8)


@pytest.fixture
def maps(model, tokenizer) -> AttentionMaps:
    ids = torch.tensor([tokenizer.encode(TEXTS[0])[:6] + [0, 0]])  # two padding keys: masked
    labels = EVIL + ["good", ",", "not", "bad", "<pad>", "<pad>"]
    return capture_attention(model.eval(), ids, labels=labels)


def _decode_weights(kind: dict, bits: int) -> np.ndarray:
    """An independent decoder of the quantised weights: (layers, heads, query, key)."""
    raw = base64.b64decode(kind["weights"])
    codes = np.frombuffer(raw, dtype=np.uint8 if bits == 8 else "<u2").astype(np.float64)
    values = kind["lo"] + codes * (kind["hi"] - kind["lo"]) / (2**bits - 1)
    return values.reshape(kind["layers"], kind["heads"], len(kind["query"]), len(kind["key"]))


def _decode_mask(kind: dict) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(kind["mask"]), dtype=np.uint8))
    n = len(kind["query"]) * len(kind["key"])
    return bits[:n].reshape(len(kind["query"]), len(kind["key"])).astype(bool)


# -- the HTML fragment -------------------------------------------------------------------


def test_fragment_is_self_contained(maps, model, tokenizer):
    explorers = [
        AttentionExplorer(maps, title="t", prediction={"neg": 0.2, "pos": 0.8}),
        ClassifierExplorer(model, tokenizer, ["a", "b", "c"], examples=TEXTS),
    ]
    for explorer in explorers:
        fragment = explorer.to_html()
        assert "http://" not in fragment and "https://" not in fragment
        assert not re.search(r"<script[^>]*\bsrc\b", fragment, re.I)
        assert not re.search(r"<link\b", fragment, re.I)
        assert "@import" not in fragment
        assert not re.search(r"url\(\s*[\"']?(?!#)", fragment)  # only SVG-internal url(#id)
        assert "require(" not in fragment and "import(" not in fragment
        # three scripts: the data, the (guarded) code, the mount call
        assert fragment.count("<script") == 3
        assert "window.attnlibExplorer =\nwindow.attnlibExplorer ||" in fragment
        assert explorer._repr_html_().startswith("<style>")


def test_each_fragment_has_its_own_id(maps):
    explorer = AttentionExplorer(maps)
    ids = {DATA.search(explorer.to_html()).group(1) for _ in range(3)}
    assert len(ids) == 3


def test_dangerous_tokens_are_escaped(maps):
    title = "</script><script>alert(3)</script>"
    fragment = AttentionExplorer(maps, title=title, prediction={EVIL[0]: 1.0}).to_html()
    for evil in [*EVIL, title]:
        assert evil not in fragment
    assert "<img" not in fragment
    assert fragment.count("</script>") == 3  # only the three script elements end
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in fragment
    assert "&lt;/script&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in fragment  # the fallback
    data = _data(fragment)  # and the page reads the labels back unchanged
    assert data["kinds"][0]["query"][:2] == EVIL
    assert data["title"] == title
    assert data["prediction"] == [[EVIL[0], 1.0]]


# -- the compact encodings ---------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16])
def test_quantised_weights_decode_within_the_stated_error(maps, bits):
    explorer = AttentionExplorer(maps, bits=bits)
    assert explorer.max_error == pytest.approx(
        (maps["encoder"].max().item() - 0) / (2 * (2**bits - 1))
    )
    assert explorer.max_error <= 1 / (2 * (2**bits - 1))  # weights in [0, 1]: 1/510, 1/131070
    (kind,) = _data(explorer.to_html())["kinds"]
    decoded = _decode_weights(kind, bits)
    error = np.abs(decoded - maps["encoder"].double().numpy()).max()
    assert error <= explorer.max_error + 1e-12
    assert error > 0  # it is a quantisation
    np.testing.assert_array_equal(_decode_mask(kind), maps.mask("encoder").numpy())
    assert kind["query"] == maps.labels("encoder")[0]


def test_every_kind_is_encoded():
    weights = {k: torch.rand(2, 3, 4, 5).softmax(-1) for k in ("decoder", "cross")}
    labels = {k: [f"q{i}" for i in range(4)] for k in weights}
    keys = {k: [f"k{i}" for i in range(5)] for k in weights}
    maps = AttentionMaps(weights, labels, keys, masks={"decoder": None, "cross": None})
    data = _data(AttentionExplorer(maps, kind="cross", layer=1, head=2).to_html())
    assert [k["name"] for k in data["kinds"]] == ["decoder", "cross"]
    assert (data["kind"], data["layer"], data["head"]) == ("cross", 1, 2)
    for kind in data["kinds"]:
        assert kind["mask"] is None
        decoded = _decode_weights(kind, 8)
        assert np.abs(decoded - weights[kind["name"]].numpy()).max() <= 1 / 510 + 1e-12


def test_exported_weights_are_exact(model, tokenizer):
    for p in model.parameters():  # trained-looking values, not the initial zeros and ones
        p.data.normal_()
    spec = export_classifier(model, tokenizer, ["a", "b", "c"])
    json.dumps(spec)  # JSON-serialisable
    state = model.state_dict()
    assert set(spec["tensors"]) == {k for k in state if not k.endswith("table")}
    for name, (shape, data) in spec["tensors"].items():
        array = np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(shape)
        assert torch.equal(torch.from_numpy(array.copy()), state[name]), name
    config = spec["config"]
    assert spec["format"] == CLASSIFIER_FORMAT == "attnlib-classifier/2"
    assert (config["d_model"], config["nhead"], config["num_layers"]) == (16, 2, 2)
    assert (config["max_len"], config["pooling"], config["activation"]) == (8, "mean", "relu")
    assert config["eps"]["encoder.layers.1.norm2"] == 1e-5
    assert config["norm_eps"] == {
        "layers": [{"norm1": 1e-5, "norm2": 1e-5}] * 2,
        "final_norm": None,
    }
    assert spec["tokenizer"]["tokens"] == tokenizer.vocab.itos
    assert spec["classes"] == ["a", "b", "c"]


def test_export_covers_pre_norm_gelu_and_first_pooling(tokenizer):
    model = EncoderClassifier(len(tokenizer), 2, d_model=8, nhead=2, norm_first=True)
    model.pooling = "first"
    for layer in model.encoder.layers:
        layer.ff.activation = "gelu"
    spec = export_classifier(model, tokenizer, ["x", "y"])
    assert spec["config"]["final_norm"] and spec["config"]["norm_first"]
    assert (spec["config"]["activation"], spec["config"]["pooling"]) == ("gelu", "first")
    assert "encoder.norm.weight" in spec["tensors"]
    assert spec["params"]["final_norm_weight"] == "encoder.norm.weight"


# -- the parameter map: the page finds every tensor through it ----------------------------

NODE = shutil.which("node")
# Runs explorer.js (as the page inlines it) in Node.js: each case's model data through the
# page's Classifier, its forward pass or its error message back as JSON.
RUN_JS = r"""
const vm = require("node:vm");
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
globalThis.window = globalThis;
vm.runInThisContext(input.code, { filename: "explorer.js" });
const results = input.cases.map(({ spec, ids }) => {
  try {
    const out = new window.attnlibExplorer.Classifier(spec).forward(ids);
    return { attention: out.attention.map((l) => l.map((h) => Array.from(h))), probs: out.probs };
  } catch (error) {
    return { error: error.message };
  }
});
process.stdout.write(JSON.stringify(results));
"""
IDS = [[2, 5, 7, 3, 9], [4, 0, 6, 0, 8, 2, 5, 3]]  # the second with padding (id 0)


def _run_js(cases: list[tuple[dict, list[int]]]) -> list[dict]:
    """The page's forward pass of each ``(spec, ids)``, run by Node.js."""
    if NODE is None:
        reason = "no node: the page's JavaScript is not run here (apt-get install nodejs)"
        if os.environ.get("ATTNLIB_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"{reason} (ATTNLIB_REQUIRE_BROWSER is set)", pytrace=False)
        pytest.skip(reason)
    data = {"code": _asset("explorer.js"), "cases": [{"spec": s, "ids": i} for s, i in cases]}
    done = subprocess.run(
        [NODE, "-e", RUN_JS], input=json.dumps(data), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _assert_matches_pytorch(result: dict, model: EncoderClassifier, ids: list[int]) -> None:
    assert "error" not in result, result
    tokens = torch.tensor([ids])
    maps = capture_attention(model.eval(), tokens)["encoder"].double()  # (layers, heads, L, L)
    with torch.no_grad():
        probs = torch.softmax(model(tokens).double(), -1)[0]
    page = torch.tensor(result["attention"], dtype=torch.float64).reshape(maps.shape)
    assert (page - maps).abs().max() < 1e-5
    assert (torch.tensor(result["probs"], dtype=torch.float64) - probs).abs().max() < 1e-5


def _keys(params: dict) -> list[str]:
    """Every state-dict key the map names (None: no final LayerNorm)."""
    keys = [key for role, key in params.items() if role != "layers"]
    keys += [key for layer in params["layers"] for key in layer.values()]
    return [key for key in keys if key is not None]


@pytest.mark.parametrize("norm_first", [False, True])
def test_parameter_map_names_every_tensor_with_its_shape(tokenizer, norm_first):
    d, ff, v, c = 16, 24, len(tokenizer), 3
    model = EncoderClassifier(
        v, c, d_model=d, nhead=2, num_layers=2, dim_feedforward=ff, norm_first=norm_first
    )
    model.encoder.layers[1].self_attn.k_proj.bias = None  # exported as zeros, under its key
    spec = export_classifier(model, tokenizer, ["a", "b", "c"])
    params, tensors = spec["params"], spec["tensors"]
    json.dumps(params)

    def linear(n_out, n_in):
        return {"weight": [n_out, n_in], "bias": [n_out]}

    norm = {"weight": [d], "bias": [d]}
    modules = {"embedding": {"weight": [v, d]}, "head": linear(c, d)}
    modules["final_norm"] = norm if norm_first else {"weight": None, "bias": None}
    per_layer = dict.fromkeys(("q", "k", "v", "out"), linear(d, d))
    per_layer |= {"ff1": linear(ff, d), "ff2": linear(d, ff), "norm1": norm, "norm2": norm}
    expected = {f"{m}_{p}": shape for m, ps in modules.items() for p, shape in ps.items()}
    layer_shapes = {f"{m}_{p}": shape for m, ps in per_layer.items() for p, shape in ps.items()}
    assert set(params) == {*expected, "layers"}
    assert len(params["layers"]) == spec["config"]["num_layers"] == 2
    for roles, shapes in [(params, expected), *((r, layer_shapes) for r in params["layers"])]:
        assert set(roles) - {"layers"} == set(shapes)
        for role, shape in shapes.items():
            if shape is None:
                assert roles[role] is None, role
            else:
                assert tensors[roles[role]][0] == shape, role
    # one role per tensor, one tensor per role, and every parameter has one
    keys = _keys(params)
    assert len(keys) == len(set(keys)) and set(keys) == set(tensors)
    assert {n for n, _ in model.named_parameters()} <= set(keys)
    # each role names the module the forward pass uses for it
    layer = model.encoder.layers[1]
    for role, tensor in [
        (params["embedding_weight"], model.embed.embedding.weight),
        (params["head_bias"], model.head.bias),
        (params["layers"][1]["q_weight"], layer.self_attn.q_proj.weight),
        (params["layers"][1]["ff2_weight"], layer.ff.linear2.weight),
        (params["layers"][1]["norm2_bias"], layer.norm2.bias),
    ]:
        assert model.get_parameter(role) is tensor
    k_bias = params["layers"][1]["k_bias"]
    assert k_bias not in dict(model.named_parameters()) and tensors[k_bias][0] == [d]
    assert not np.frombuffer(base64.b64decode(tensors[k_bias][1]), "<f4").any()
    assert config_eps_follow_the_map(spec, model)


def config_eps_follow_the_map(spec: dict, model: EncoderClassifier) -> bool:
    eps = spec["config"]["norm_eps"]
    layers = model.encoder.layers
    assert eps["layers"] == [{"norm1": x.norm1.eps, "norm2": x.norm2.eps} for x in layers]
    final = model.encoder.norm
    assert eps["final_norm"] == (None if final is None else final.eps)
    return True


def test_page_runs_the_exported_model(model, tokenizer):
    for p in model.parameters():
        p.data.normal_(std=0.5)
    pre = EncoderClassifier(len(tokenizer), 3, d_model=8, nhead=2, num_layers=1, norm_first=True)
    pre.pooling = "first"
    pre.encoder.layers[0].ff.activation = "gelu"
    cases = [(m, ids) for m in (model, pre) for ids in IDS]
    specs = [export_classifier(m, tokenizer, ["a", "b", "c"]) for m, _ in cases]
    results = _run_js([(spec, ids) for spec, (_, ids) in zip(specs, cases, strict=True)])
    for result, (m, ids) in zip(results, cases, strict=True):
        _assert_matches_pytorch(result, m, ids)


def test_the_map_follows_a_renamed_attribute(model, tokenizer, monkeypatch):
    """Attributes renamed in the model's code (here ``head`` -> ``classifier`` and every
    ``q_proj`` -> ``query``, the old names left as what ``_modules_by_role`` reads) change
    the exported keys; the page, which reads the map only, computes the same."""

    def renamed(new: str, old: str):
        return property(lambda self: self._modules.get(new) or self._modules[old])

    monkeypatch.setattr(EncoderClassifier, "head", renamed("classifier", "head"), raising=False)
    monkeypatch.setattr(MultiHeadAttention, "q_proj", renamed("query", "q_proj"), raising=False)
    for p in model.parameters():
        p.data.normal_(std=0.5)
    model._modules["classifier"] = model._modules.pop("head")
    for layer in model.encoder.layers:
        layer.self_attn._modules["query"] = layer.self_attn._modules.pop("q_proj")
    spec = export_classifier(model, tokenizer, ["a", "b", "c"])
    params = spec["params"]
    assert (params["head_weight"], params["head_bias"]) == ("classifier.weight", "classifier.bias")
    assert params["layers"][1]["q_weight"] == "encoder.layers.1.self_attn.query.weight"
    state = {k for k in model.state_dict() if not k.endswith("table")}
    assert set(spec["tensors"]) == set(_keys(params)) == state
    assert "head.weight" not in spec["tensors"]
    for result, ids in zip(_run_js([(spec, ids) for ids in IDS]), IDS, strict=True):
        _assert_matches_pytorch(result, model, ids)


def test_a_moved_attribute_fails_in_python_not_on_the_page(model, tokenizer):
    model._modules["classifier"] = model._modules.pop("head")  # a rename nobody told the map
    with pytest.raises(TypeError, match=r"'head'.* update attnlib.interpret.explorer._modules_by"):
        ClassifierExplorer(model, tokenizer, ["a", "b", "c"])
    with pytest.raises(TypeError, match=r"'head'.* update attnlib.interpret.explorer._modules_by"):
        export_classifier(model, tokenizer, ["a", "b", "c"])


def test_a_parameter_the_map_misses_raises(model, tokenizer):
    model.encoder.layers[1].register_parameter("gate", nn.Parameter(torch.ones(16)))
    with pytest.raises(
        ValueError, match=r"no role for the parameters \['encoder.layers.1.gate'\]"
    ):
        export_classifier(model, tokenizer, ["a", "b", "c"])


def test_page_refuses_other_formats_and_missing_tensors(model, tokenizer):
    spec = export_classifier(model, tokenizer, ["a", "b", "c"])
    old = {**spec, "format": "attnlib-classifier/1"}
    missing = json.loads(json.dumps(spec))
    del missing["tensors"][missing["params"]["layers"][1]["ff1_bias"]]
    errors = [r.get("error") for r in _run_js([(old, [2, 3]), (missing, [2, 3])])]
    assert errors[0] == (
        'expected model data of format attnlib-classifier/2, got "attnlib-classifier/1": '
        "export the model again with the attnlib version of this page"
    )
    assert errors[1] == (
        "model data: params.layers[1].ff1_bias names encoder.layers.1.ff.linear1.bias, "
        "not among its tensors"
    )


def test_page_code_names_no_parameter():
    """The page's code finds tensors through the map only: no state-dict key in it, every
    role it reads is one the map has, and it reads the format Python writes."""
    code = _asset("explorer.js")  # as the page gets it: no comments
    for literal in ('"encoder.layers', "`encoder.", '.weight"', '.bias"', '"embed.', '"head.'):
        assert literal not in code
    strings = re.findall(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`(?:[^`\\]|\\.)*`', code)
    key = re.compile(r"\.(weight|bias)\b|\b(embed|encoder|layers|self_attn|ff|head)\.\w|_proj\b")
    literal_text = (re.sub(r"\$\{[^}]*\}", "", s) for s in strings)  # not what ${...} holds
    assert [s for s in literal_text if key.search(s)] == []
    assert re.findall(r"tensors\[(\w+)\]", code) == ["key"]  # only in tensorsByRole
    assert re.findall(r'const MODEL_FORMAT = "([^"]+)";', code) == [CLASSIFIER_FORMAT]
    tokenizer = WordTokenizer.fit(TEXTS)
    model = EncoderClassifier(len(tokenizer), 2, d_model=8, nhead=2, norm_first=True)
    params = export_classifier(model, tokenizer, ["x", "y"])["params"]
    roles = {r for r in params if r != "layers"} | set(params["layers"][0])
    used = set(re.findall(r"\b(?:w|top)\.(\w+_(?:weight|bias))\b", code))
    assert used == roles


# -- what the page cannot reproduce ------------------------------------------------------


def test_refuses_other_models(tokenizer):
    with pytest.raises(TypeError, match="model: expected an attnlib.transformer.EncoderCl"):
        ClassifierExplorer(DecoderLM(len(tokenizer)), tokenizer, ["a"])

    class Custom(EncoderClassifier):
        pass

    with pytest.raises(TypeError, match="got Custom"):
        export_classifier(Custom(len(tokenizer), 2), tokenizer, ["a", "b"])


def test_refuses_unknown_activation_and_interventions(model, tokenizer):
    model.encoder.layers[1].ff.activation = "tanh"
    with pytest.raises(ValueError, match=r"layers\[1\]\.ff\.activation: expected one of"):
        ClassifierExplorer(model, tokenizer, ["a", "b", "c"])
    model.encoder.layers[1].ff.activation = "relu"
    model.encoder.layers[0].self_attn.weights_hook = lambda w: w
    with pytest.raises(ValueError, match="weights_hook: expected None"):
        ClassifierExplorer(model, tokenizer, ["a", "b", "c"])


def test_refuses_subword_tokenizers_and_others(model, tokenizer):
    subword = SubwordTokenizer.fit(TEXTS * 3, vocab_size=40)
    with pytest.raises(TypeError, match="SubwordTokenizer is not supported"):
        ClassifierExplorer(model, subword, ["a", "b", "c"])
    with pytest.raises(TypeError, match=r"expected an attnlib WordTokenizer .*, got dict"):
        export_classifier(model, {}, ["a", "b", "c"])
    small = EncoderClassifier(5, 3, d_model=8, nhead=2)
    with pytest.raises(ValueError, match="tokenizer: expected at most 5 tokens"):
        ClassifierExplorer(small, tokenizer, ["a", "b", "c"])


def test_clear_errors_for_bad_arguments(maps, model, tokenizer):
    with pytest.raises(ValueError, match="classes: expected 3 names .* got 2"):
        ClassifierExplorer(model, tokenizer, ["a", "b"])
    with pytest.raises(TypeError, match="examples: expected a sequence of str, got str"):
        ClassifierExplorer(model, tokenizer, ["a", "b", "c"], examples="good")
    with pytest.raises(ValueError, match="kind: expected one of 'encoder', got 'cross'"):
        AttentionExplorer(maps, kind="cross")
    with pytest.raises(ValueError, match=r"head: expected an index in \[0, 2\)"):
        AttentionExplorer(maps, head=2)
    with pytest.raises(ValueError, match="bits: expected 8 or 16, got 4"):
        AttentionExplorer(maps, bits=4)
    with pytest.raises(TypeError, match="maps: expected an AttentionMaps"):
        AttentionExplorer(maps["encoder"])
    with pytest.raises(ValueError, match=r"prediction\['pos'\]: expected a finite non-negative"):
        AttentionExplorer(maps, prediction={"pos": -0.1})
    with pytest.raises(ValueError, match="cmap: expected a matplotlib colormap name"):
        AttentionExplorer(maps, cmap="no-such-map")


def test_save_writes_a_standalone_document(maps, model, tokenizer, tmp_path):
    path = AttentionExplorer(maps, title="A <b>map</b>").save(tmp_path / "map.html")
    page = path.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page and "<title>A &lt;b&gt;map&lt;/b&gt;</title>" in page
    assert page.rstrip().endswith("</html>") and "attnlibExplorer.mount(" in page
    other = ClassifierExplorer(model, tokenizer, ["a", "b", "c"], text="good").save(
        str(tmp_path / "cls.html")
    )
    data = _data(other.read_text("utf-8"))
    assert data["type"] == "classifier" and data["text"] == "good"


# -- the ipywidgets version ------------------------------------------------------------


def test_classifier_widget_updates(model, tokenizer):
    pytest.importorskip("ipywidgets")
    from attnlib.interpret.widgets import classifier_widget

    widget = classifier_widget(model, tokenizer, ["a", "b", "c"], text=TEXTS[1])
    assert widget.state["title"] == f"layer 0, head 0: {TEXTS[1]!r}"
    assert widget.state["tokens"] == ["a", "dull", "plot", "and", "weak", "acting"]
    assert len(widget.output.outputs) == 1
    assert widget.output.outputs[0]["data"]["image/png"]
    reference = predict(model, tokenizer, TEXTS[1], classes=["a", "b", "c"])
    for name, p in widget.state["probs"].items():
        assert p == pytest.approx(float(reference[f"p({name})"][0]), abs=1e-6)

    widget.text.value = "Not GOOD at all, a zzzz film"  # unknown words, cut to 8 tokens
    assert widget.state["tokens"] == ["not", "good", "<unk>", "<unk>", ",", "a", "<unk>", "film"]
    assert widget.state["truncated"] is False
    assert "Not GOOD" in widget.state["title"]
    widget.layer.value, widget.head.value = 1, 1
    assert widget.state["title"].startswith("layer 1, head 1:")
    assert torch.equal(widget.state["weights"], widget.state["maps"]["encoder"][1, 1])
    assert "<b>Prediction:" in widget.prediction.value
    assert "application/vnd.jupyter.widget-view+json" in widget._repr_mimebundle_()

    with pytest.raises(ValueError, match=r"layer: expected an index in \[0, 2\), got 5"):
        classifier_widget(model, tokenizer, ["a", "b", "c"], layer=5)

    # computed in Python, the widget takes a subword tokenizer too
    subword = SubwordTokenizer.fit(TEXTS * 3, vocab_size=40)
    other = EncoderClassifier(len(subword), 2, d_model=8, nhead=2, num_layers=1)
    widget = classifier_widget(other, subword, ["x", "y"], text="a good plot")
    assert "".join(widget.state["tokens"]).replace("\u2581", " ").strip() == "a good plot"


def test_classifier_widget_needs_ipywidgets(model, tokenizer, monkeypatch):
    from attnlib.interpret.widgets import classifier_widget

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` fails
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        classifier_widget(model, tokenizer, ["a", "b", "c"])


def test_later_explorers_of_a_page_can_leave_out_the_code(tmp_path):
    maps = AttentionMaps(
        {"encoder": torch.softmax(torch.randn(1, 2, 3, 3), -1)},
        {"encoder": ["a", "b", "c"]},
        {"encoder": ["a", "b", "c"]},
    )
    first, second = AttentionExplorer(maps), AttentionExplorer(maps)
    second.assets = False
    full, light = first.to_html(), second.to_html()
    assert "<style>" in full and "<style>" not in light
    assert "window.attnlibExplorer.mount(" in light
    assert len(light) < len(full) - 30_000
    page = second.save(tmp_path / "alone.html").read_text()  # a document keeps its code
    assert "<style>" in page and second.assets is False


# -- the head view and sentence pairs (BertViz's head view, Vig 2019) -----------------------


def _pair_maps(layers=2, heads=3, n=7, kinds=("encoder",)) -> AttentionMaps:
    weights = {k: torch.rand(layers, heads, n, n).softmax(-1) for k in kinds}
    labels = {k: [f"t{i}" for i in range(n)] for k in kinds}
    return AttentionMaps(weights, labels, labels)


def test_segments_travel_to_the_page_in_every_accepted_form():
    maps = _pair_maps()
    expected = [0, 0, 0, 0, 1, 1, 1]
    forms = [
        expected,
        4,  # the first token of text B
        np.int64(4),
        torch.tensor([expected]),  # token_type_ids of one pair, (1, L)
        torch.tensor(expected),
        np.array(expected, dtype=bool),
        tuple(float(v) for v in expected),
    ]
    for form in forms:
        explorer = AttentionExplorer(maps, view="heads", segments=form)
        assert explorer.segments == expected, form
        data = _data(explorer.to_html())
        assert data["view"] == "heads"
        assert data["kinds"][0]["segments"] == expected
    plain = _data(AttentionExplorer(maps).to_html())
    assert plain["view"] == "heatmap" and plain["kinds"][0]["segments"] is None
    assert "view='heads'" in repr(AttentionExplorer(maps, view="heads"))


def test_segments_label_the_self_attention_kind_only():
    maps = AttentionMaps(
        {"encoder": torch.rand(1, 2, 5, 5), "cross": torch.rand(1, 2, 3, 5)},
        {"encoder": list("abcde"), "cross": list("xyz")},
        {"encoder": list("abcde"), "cross": list("abcde")},
    )
    data = _data(AttentionExplorer(maps, segments=2, kind="cross").to_html())
    by_name = {k["name"]: k["segments"] for k in data["kinds"]}
    assert by_name == {"encoder": [0, 0, 1, 1, 1], "cross": None}
    decoder_only = _pair_maps(kinds=("decoder",), n=4)
    assert AttentionExplorer(decoder_only, segments=[0, 1, 1, 1]).segment_kind == "decoder"
    cross_only = AttentionMaps({"cross": torch.rand(1, 1, 2, 3)}, {"cross": list("ab")},
                               {"cross": list("abc")})  # fmt: skip
    with pytest.raises(ValueError, match=r"segments: expected maps with self-attention"):
        AttentionExplorer(cross_only, segments=1)


@pytest.mark.parametrize(
    ("segments", "error", "message"),
    [
        ([0, 0, 1], ValueError, r"segments: expected 7 segment ids, shape \(7,\) or \(1, 7\), "
         r"one per token of the 7 tokens of the 'encoder' attention, got shape \(3,\)"),
        (torch.zeros(2, 7, dtype=torch.long), ValueError, r"got shape \(2, 7\)"),
        ([0, 0, 0, 0, 0, 0, 0], ValueError, r"segments: expected the segment ids 0 \(text A\) "
         r"and 1 \(text B\), both present \(a sentence pair\), got the values \[0\]"),
        ([0, 0, 1, 1, 2, 2, 2], ValueError, r"got the values \[0, 1, 2\]"),
        ([0, 0, 0.5, 1, 1, 1, 1], TypeError, r"segments: expected integer segment ids, got dtype"),
        (0, ValueError, r"segments: expected the first token of text B, a position in \[1, 7\) "
         r"for the 7 tokens of the 'encoder' attention, got 0"),
        (7, ValueError, r"in \[1, 7\) .* got 7"),
        (True, TypeError, r"segments: expected an int or a sequence of segment ids, got bool"),
        ("AABB", TypeError, r"segments: expected an int or a sequence .* got str"),
        ([[0, 1], [1]], TypeError, r"segments: expected an int or a sequence .* got list"),
    ],
)  # fmt: skip
def test_bad_segments_name_the_argument_what_it_expects_and_what_it_got(segments, error, message):
    with pytest.raises(error, match=message):
        AttentionExplorer(_pair_maps(), segments=segments)


def test_bad_view_is_refused():
    with pytest.raises(ValueError, match="view: expected one of 'heatmap', 'heads', got 'model'"):
        AttentionExplorer(_pair_maps(), view="model")


def test_head_view_page_stays_self_contained():
    fragment = AttentionExplorer(_pair_maps(), view="heads", segments=3).to_html()
    assert "http://" not in fragment and "https://" not in fragment
    assert not re.search(r"<script[^>]*\bsrc\b", fragment, re.I)
    assert fragment.count("<script") == 3
    code = _asset("explorer.js")
    for needed in ("buildHeadView", "drawLines", "setFilter", "onGridKey"):
        assert needed in code  # the head view and the grid's keyboard travel with the page


def test_page_weight_of_a_minilm_pair_is_the_code_plus_one_byte_per_weight():
    """A (6 layers, 12 heads, 15 x 15) pair, MiniLM's shape: the fragment is the inlined
    code, the weights at 8 bits (base64: 4 characters per 3 bytes) and about 2 kB of labels
    and colours. A float JSON (BertViz's format) would be over 5 times the weights."""
    maps = _pair_maps(layers=6, heads=12, n=15)
    explorer = AttentionExplorer(maps, view="heads", segments=9)
    fragment = explorer.to_html()
    code = len(_asset("explorer.js")) + len(_asset("explorer.css"))
    weights = 4 * math.ceil(6 * 12 * 15 * 15 / 3)
    assert len(_data(fragment)["kinds"][0]["weights"]) == weights
    overhead = len(fragment) - code - weights
    assert 0 < overhead < 3_000, overhead
    as_floats = len(json.dumps(maps["encoder"].tolist()))
    assert as_floats > 5 * weights, (as_floats, weights)
    decoded = _decode_weights(_data(fragment)["kinds"][0], 8)
    assert np.abs(decoded - maps["encoder"].double().numpy()).max() <= explorer.max_error + 1e-12
