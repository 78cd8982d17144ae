"""
Explore attention interactively
===============================

A static heatmap answers the question its author asked: one sentence, one
head. Here the reader asks the questions. The sentiment classifier of
chapter 4 runs *in this page*: type any sentence into the box below and its
attention maps and class probabilities update as you type, with no server
and no network access. A second explorer shows the three kinds of attention
of an encoder-decoder model that sorts letters. Last, the same kind of view
in a Jupyter notebook, computed in Python.
"""

# %%
# One head, four sentences: the static view
# -----------------------------------------
#
# :func:`attnlib.pretrained.sentiment_classifier` trains (once per session)
# the classifier of
# :ref:`sphx_glr_auto_gallery_04_pipeline_03_classifier.py`: two pre-norm
# encoder layers of four heads, mean pooling, three classes. We pick four
# reviews that exercise its grammar — a negation, a contrast, an intensified
# opinion and a neutral review — and check that
# :func:`attnlib.inference.predict` gets each of them right.

import base64
import inspect
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnlib.capture import record_attention
from attnlib.decoding import greedy_decode
from attnlib.inference import predict
from attnlib.interpret.explorer import AttentionExplorer, ClassifierExplorer, export_classifier
from attnlib.interpret.maps import capture_attention
from attnlib.interpret.widgets import classifier_widget
from attnlib.plotting import plot_attention
from attnlib.pretrained import algorithmic_transformer, sentiment_classifier
from attnlib.report import key_figure
from attnlib.tasks import EOS, PAD, algorithmic_batch, exact_match
from attnlib.training import seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, else 0

sentiment = sentiment_classifier(seed=SEED)
model, tokenizer, classes = sentiment.model, sentiment.tokenizer, sentiment.classes
key_figure("test accuracy", sentiment.test_accuracy)

EXAMPLES = {  # sentence -> (what it exercises, the label the grammar gives it)
    "the ending was not bad.": ("negation", "positive"),
    "the acting was superb, but the music was really dull.": ("contrast", "negative"),
    "the soundtrack was extremely delightful.": ("intensifier", "positive"),
    "it had an average plot and the music was okay.": ("neutral", "neutral"),
}
examples = list(EXAMPLES)
table = predict(model, tokenizer, examples, classes=classes)
table.insert(1, "kind", [kind for kind, _ in EXAMPLES.values()])
table.insert(2, "expected", [label for _, label in EXAMPLES.values()])
key_figure("smallest confidence on the four examples", table["confidence"].min())
table.drop(columns=["unknown", "truncated"]).round(4)

# %%
# The static view of this chapter so far: one head, drawn once per sentence
# with :func:`attnlib.plotting.plot_attention`. Which head learns what
# depends on the random initialisation, so we let the author's choice be
# made the way authors make it: the head whose queries most often read the
# word that decides each polar example (``not`` of ``not bad``, ``dull``
# after the ``but``, ``delightful``).

DECIDING = ["not", "dull", "delightful"]  # the deciding word of each polar example
all_maps = [capture_attention(model, sentiment.encode(t), tokenizer=tokenizer) for t in examples]
hits = sum(  # (layers, H): queries whose largest weight is on the deciding word
    (m["encoder"].argmax(-1) == m.labels()[1].index(word)).sum(-1)
    for m, word in zip(all_maps[:3], DECIDING, strict=True)  # the three polar examples
)
LAYER, HEAD = divmod(int(hits.argmax()), hits.shape[1])
queries = sum(len(m.labels()[0]) for m in all_maps[:3])
key_figure("queries of the chosen head reading the deciding word", hits.max() / queries)

fig, axes = plt.subplots(2, 2, figsize=(10, 8.5), layout="constrained")
for ax, text, maps in zip(axes.flat, examples, all_maps, strict=True):
    words, head_map = maps.labels()[0], maps.head(None, LAYER, HEAD)
    plot_attention(head_map, words, words, ax=ax, title=EXAMPLES[text][0], annotate=False)
fig.suptitle(f"Layer {LAYER}, head {HEAD} of the sentiment classifier, on four chosen reviews")
plt.show()

# %%
# Over the three polar reviews most queries of this head read one key, the
# word that decides the label (the share is printed above): ``not`` (not
# ``bad``), ``dull`` (the clause after ``but``, not ``superb``),
# ``delightful``; the neutral review, which has no such word, shows what the
# head does without one. A tidy story — about the four sentences and the
# one head the author chose.
#
# Type your own sentence
# ----------------------
#
# :class:`attnlib.interpret.explorer.ClassifierExplorer` puts the same model
# in the page. The box holds the first example; the buttons load the others.
# Type anything — a word the model never saw is read as ``<unk>`` and shown
# in italics, a text longer than the model's 64 positions is cut to them, as
# :func:`attnlib.inference.predict` does. Then:
#
# - the bars give the class probabilities of the sentence as it stands;
# - the grid has one thumbnail per layer (rows) and head (columns): click
#   one, or use the *Layer* and *Head* menus, to draw it large below;
# - hover a token on the left (a query) to list where it attends, with the
#   weights; hover a cell for one weight (or focus the map and use the arrow
#   keys);
# - *Export PNG* and *Export SVG* save the current map as a figure.
#
# Things to try: ``the ending was bad.`` (what does the head above read
# when there is no ``not``?); the contrast with its clauses swapped; the
# other heads on the contrast — does one of them read ``but``, or the
# overridden ``superb``?; the other layer; ``the plot was not not good.``,
# which the grammar never produces.

explorer = ClassifierExplorer(
    model,
    tokenizer,
    classes,
    examples=examples,
    title="The sentiment classifier of chapter 4, running in this page",
)
explorer

# %%
# What runs where
# ---------------
#
# Nothing above runs in Python once the page is built. The explorer's HTML
# fragment carries:
#
# - the model, from :func:`attnlib.interpret.explorer.export_classifier`:
#   its configuration, the tokenizer's vocabulary and options, and every
#   parameter as the bytes of its little-endian float32 values, base64
#   encoded;
# - plain JavaScript and CSS, inlined (their size is part of the "everything
#   else" printed below): the script
#   decodes the weights, reproduces :class:`attnlib.data.text.WordTokenizer`
#   (Unicode normalisation, lower case, punctuation as separate tokens) and
#   the encoder's forward pass — embedding times :math:`\sqrt{d_{model}}`
#   plus the sinusoidal positions, then per layer LayerNorm, multi-head
#   attention, residual, LayerNorm, feed-forward, residual; a final
#   LayerNorm, mean pooling and the linear head — in float64 from the
#   float32 weights.
#
# No file is fetched, so the page works offline and from a saved copy. The
# test suite loads the explorer in headless Chromium and checks that the
# tokens, every attention map and the probabilities equal PyTorch's to
# 1e-4 (tests/browser/test_explorer.py), and that this very page does too
# once the site is built (tests/browser/test_site_explorer.py).
#
# The weights travel exactly: decoded in Python, they are the model's
# parameters bit for bit.

spec = export_classifier(model, tokenizer, classes)
weights = {
    name: torch.from_numpy(np.frombuffer(base64.b64decode(data), "<f4").reshape(shape).copy())
    for name, (shape, data) in spec["tensors"].items()
}
model_params = dict(model.named_parameters())
exact = all(torch.equal(w, model_params[name]) for name, w in weights.items())
print({key: value for key, value in spec["config"].items() if key not in ("eps", "norm_eps")})
print(f"{len(weights)} tensors, {sum(w.numel() for w in weights.values()):,} numbers")
print(f"every exported tensor equals the model's parameter bit for bit: {exact}")

fragment = explorer.to_html()
weight_chars = sum(len(data) for _, data in spec["tensors"].values())
print(f"page weight of the fragment: {len(fragment) / 1000:.0f} kB")
print(f"  the weights (base64): {weight_chars / 1000:.0f} kB")
other_chars = len(fragment) - weight_chars
print(f"  everything else (code, vocabulary, colours): {other_chars / 1000:.0f} kB")

# %%
# The page's computation, in NumPy
# --------------------------------
#
# Everything the page needs is in that exported dictionary. Here is the
# computation the JavaScript does, written in NumPy from the dictionary
# alone (the tokenizer aside, which we take from Python), for the pre-norm
# model we have; it gives PyTorch's attention maps and probabilities. Like
# the JavaScript, it finds each tensor through ``spec["params"]``, which maps
# a role (``embedding_weight``; per layer ``q_weight``, ``norm1_bias``,
# ``ff1_weight`` ...; ``final_norm_weight``, ``head_bias``) to its key in
# ``spec["tensors"]``, and each LayerNorm's epsilon through
# ``spec["config"]["norm_eps"]``: neither depends on how the model names
# its modules.


def page_forward(spec, words):
    """Attention maps (layers, heads, L, L) and probabilities of one tokenized text."""
    cfg, vocab, roles = spec["config"], spec["tokenizer"], spec["params"]
    assert cfg["norm_first"] and cfg["final_norm"] and cfg["pooling"] == "mean"
    tensors = {
        key: np.frombuffer(base64.b64decode(data), "<f4").reshape(shape).astype(np.float64)
        for key, (shape, data) in spec["tensors"].items()
    }
    index = {w: i for i, w in enumerate(vocab["tokens"])}
    ids = [index.get(w, vocab["unk_idx"]) for w in words][: cfg["max_len"]]
    n, d, heads = len(ids), cfg["d_model"], cfg["nhead"]
    dh = d // heads

    def linear(x, where, role):  # where: the map of the roles (of the model, or of a layer)
        return x @ tensors[where[role + "_weight"]].T + tensors[where[role + "_bias"]]

    def norm(x, where, role, eps):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        scaled = (x - mean) / np.sqrt(var + eps)
        return scaled * tensors[where[role + "_weight"]] + tensors[where[role + "_bias"]]

    pos, i = np.arange(n)[:, None], np.arange(0, d, 2)
    angle = pos * np.exp(-np.log(cfg["base"]) * i / d)
    x = tensors[roles["embedding_weight"]][ids] * cfg["scale"]
    x[:, 0::2] += np.sin(angle)
    x[:, 1::2] += np.cos(angle)
    maps = []
    for layer, eps in zip(roles["layers"], cfg["norm_eps"]["layers"], strict=True):
        h = norm(x, layer, "norm1", eps["norm1"])
        q, k, v = (linear(h, layer, m).reshape(n, heads, dh).transpose(1, 0, 2) for m in "qkv")
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(dh)  # (H, L, L)
        a = np.exp(scores - scores.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        maps.append(a)
        x = x + linear((a @ v).transpose(1, 0, 2).reshape(n, d), layer, "out")
        hidden = np.maximum(linear(norm(x, layer, "norm2", eps["norm2"]), layer, "ff1"), 0)
        x = x + linear(hidden, layer, "ff2")
    pooled = norm(x, roles, "final_norm", cfg["norm_eps"]["final_norm"]).mean(0)
    logits = linear(pooled, roles, "head")
    probs = np.exp(logits - logits.max())
    return np.stack(maps), probs / probs.sum()


assert spec["config"]["activation"] == "relu"
rows = []
for text in examples:
    page_maps, page_probs = page_forward(spec, tokenizer.tokenize(text))
    torch_maps = capture_attention(model, sentiment.encode(text))["encoder"].double().numpy()
    torch_probs = table.loc[table["text"] == text, [f"p({c})" for c in classes]].to_numpy()[0]
    rows.append(
        {
            "text": text,
            "page label": classes[int(page_probs.argmax())],
            "max |attention diff|": np.abs(page_maps - torch_maps).max(),
            "max |probability diff|": np.abs(page_probs - torch_probs).max(),
        }
    )
agreement = pd.DataFrame(rows)
agreement

# %%
# The differences are float32 rounding: PyTorch computes in float32, the
# page (and this NumPy version) in float64 from the same float32 weights.
#
# Three kinds of attention
# ------------------------
#
# :class:`attnlib.interpret.explorer.AttentionExplorer` shows any
# :class:`attnlib.interpret.maps.AttentionMaps`, here those of an
# encoder-decoder model, whose three kinds are selected with the buttons
# above the grid: the encoder's self-attention over the source, the
# decoder's masked self-attention over the output so far (the causal mask is
# drawn hatched: position :math:`t` may not read positions after :math:`t`),
# and the cross-attention from each decoder position to the source.
#
# A small :class:`attnlib.transformer.Seq2SeqTransformer` (two encoder and
# two decoder layers of four heads, :math:`d_{model} = 32`), trained by
# :func:`attnlib.pretrained.algorithmic_transformer`, learns to sort
# sequences of 3 to 8 letters from :func:`attnlib.tasks.algorithmic_batch`
# in a few seconds. Sorting is a lookup by content: to write its next letter
# the decoder must find, in the source, the smallest letter it has not
# written yet, wherever it stands.

SYMBOLS, MAX_LEN = 10, 8
LETTERS = ["<pad>", "<s>", "</s>"] + [chr(ord("a") + i) for i in range(SYMBOLS)]

sorter = algorithmic_transformer("sort", num_layers=2, max_len=MAX_LEN, num_symbols=SYMBOLS)
src, tgt, _ = algorithmic_batch("sort", 500, 3, MAX_LEN, SYMBOLS, generator=seeded_generator(107))
sorted_exactly = exact_match(greedy_decode(sorter, src, max_new_tokens=MAX_LEN + 1), tgt)
key_figure("sorted exactly, 500 new sequences", sorted_exactly)

# how often each cross-attention head's largest weight is on a source letter equal to the
# letter being written next (teacher forcing, every answer position of the 500 sequences)
with torch.no_grad(), record_attention(sorter) as record:
    sorter(src, tgt[:, :-1])
writes = tgt[:, 1:]  # the letter each decoder position writes
answer = (writes != PAD) & (writes != EOS)  # letters only, not the end token
lookup, some_head = {}, {}
for layer in range(2):
    cross = record[f"transformer.decoder.layers.{layer}.cross_attn"]  # (B, H, T, S)
    read = src.gather(1, cross.argmax(-1).flatten(1)).view(cross.shape[:3])  # (B, H, T)
    right = read == writes[:, None]  # the letter read is the one written
    for head in range(4):
        lookup[(layer, head)] = float(right[:, head][answer].float().mean())
    some_head[layer] = float(right.any(1)[answer].float().mean())
lookup = pd.Series(lookup, name="reads the letter it writes").rename_axis(["layer", "head"])
best_layer, best_head = (int(i) for i in lookup.idxmax())
key_figure("best cross-attention head: reads the letter it writes", lookup.max())
key_figure("some head of that layer reads it", some_head[best_layer])
lookup.unstack().round(3)

# %%
# The table says, for each head, how often its largest weight is on the
# letter about to be written; the best head is right at most positions, and
# at even more positions *some* head of its layer is (both printed above):
# the heads share the work. Now one sequence, with its letters as labels: the source,
# and the decoder's inputs (``<s>`` then the letters written so far: the row
# of ``<s>`` computes the first output letter, the row of each letter the
# next one). The explorer opens on the cross-attention of the most reliable
# head; the last row, which writes the end token, has no letter to look up.

WORD = "hbjegacd"
source = torch.tensor([[LETTERS.index(c) for c in WORD]])
decoded = greedy_decode(sorter, source, max_new_tokens=MAX_LEN + 1)[:, : len(WORD) + 2]
written = [LETTERS[i] for i in decoded[0].tolist()]
print(f"{' '.join(WORD)}  ->  {' '.join(written[1:])}")
kinds = capture_attention(
    sorter,
    (source, decoded[:, :-1]),  # the decoder's inputs: <s> and the letters
    labels=list(WORD),
    target_labels=written[:-1],
)
print(kinds)
reads = kinds["cross"][best_layer, best_head, : len(WORD)].argmax(-1)  # one row per letter
rows = kinds["cross"][best_layer, best_head, : len(WORD)]
for letter, j, w in zip(written[1:-1], reads.tolist(), rows, strict=True):
    print(f"writes {letter}: reads {WORD[j]} ({float(w[j]):.2f})", end="; ")
print()
sort_explorer = AttentionExplorer(
    kinds,
    title=f"Sorting {' '.join(WORD)}: encoder, decoder and cross-attention",
    kind="cross",
    layer=best_layer,
    head=best_head,
)
# the page already has the JavaScript and CSS, inlined by the first
# explorer: this one only brings its data
sort_explorer.assets = False
sort_explorer

# %%
# In the cross-attention of that head, read down the rows: the brightest
# cell jumps around the source in sorted order — the sorted word being looked
# up letter by letter, wherever each letter stands (the line printed above
# lists, for each letter written, the source letter the head reads most and
# its weight). Where a row hesitates or reads the wrong letter, click the
# other heads of the same layer: one of them usually reads the right one.
# The heads share the work, which is why the model sorts almost every
# sequence although no single head is always right. Click *decoder
# self-attention* to see the
# causal mask, and the encoder's heads to see the source letters looking at
# each other.
#
# These maps travel quantised, 8 bits per weight, which keeps the fragment
# small; each weight read back in the page is within ``max_error`` of the
# captured one. We decode the fragment's JSON in Python to check.

sort_fragment = sort_explorer.to_html()
data = json.loads(
    re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', sort_fragment)[1]
)
decode_error = 0.0
for k in data["kinds"]:
    codes = np.frombuffer(base64.b64decode(k["weights"]), np.uint8).astype(np.float64)
    page = k["lo"] + codes / 255 * (k["hi"] - k["lo"])
    captured = kinds[k["name"]].double().numpy().ravel()
    decode_error = max(decode_error, float(np.abs(page - captured).max()))
print(f"page weight of the fragment: {len(sort_fragment) / 1000:.0f} kB")
print(f"quantisation: bound {sort_explorer.max_error:.5f}, largest error {decode_error:.5f}")

# %%
# In a Jupyter notebook
# ---------------------
#
# Both explorers are HTML with ``_repr_html_``: the last expression of a
# notebook cell displays them, exactly as in this page (in a trusted
# notebook, which runs the fragment's script), and ``explorer.save(path)``
# writes a standalone HTML file to share. The download links at the bottom
# of this page give it as a notebook.
#
# In a notebook with a live kernel there is also
# :func:`attnlib.interpret.widgets.classifier_widget`: the same "type a
# sentence" view built with ipywidgets, where every update runs the PyTorch
# model in the kernel (:func:`attnlib.interpret.maps.capture_attention` and a
# softmax) and draws with :func:`attnlib.plotting.plot_attention`. It works
# for any attnlib classifier and tokenizer, a
# :class:`attnlib.data.text.SubwordTokenizer` too, which the in-page
# explorer cannot reproduce. It needs ``pip install ipywidgets``, and a
# static page cannot show it, so it is not run here:
#
# .. code-block:: python
#
#    from attnlib.interpret.widgets import classifier_widget
#    from attnlib.pretrained import sentiment_classifier
#
#    sentiment = sentiment_classifier()
#    widget = classifier_widget(
#        sentiment.model,
#        sentiment.tokenizer,
#        sentiment.classes,
#        text="the acting was superb, but the music was really dull.",
#        layer=0,
#        head=3,
#    )
#    widget  # a text box (updated on Enter), layer and head menus, the bars, the heatmap
#
# After an update, ``widget.state`` holds what is shown: the ``tokens``, the
# ``probs`` (class name to probability), the ``weights`` of the chosen map
# and all the ``maps``.
#
# Checks
# ------
#
# The asserts below check the claims of this page, with bars set from the
# spread of the key figures over several seeds and thread counts (the robustness
# matrix): the four examples get their grammar's label with high confidence;
# the chosen head reads the deciding word from most queries of the polar
# examples; the NumPy version of the page's computation matches PyTorch up
# to float32 rounding; both fragments are self-contained and small, most of
# the classifier's being its weights; the quantisation error stays within
# its bound. The sorter sorts nearly every new sequence and the example
# word; its best cross-attention head reads the letter it writes at most
# positions, and some head of its layer at more of them.

assert sentiment.test_accuracy > 0.95, sentiment.test_accuracy
# the static figure: in the polar examples most queries of the head read the deciding word
assert hits.max() > 0.7 * queries, (hits, queries)
# each example: the label of the model's own forward pass = predict's = the grammar's
for text, (_, expected) in EXAMPLES.items():
    with torch.no_grad():
        probs = model(sentiment.encode(text)).softmax(-1)[0]
    row = table[table["text"] == text].iloc[0]
    assert classes[int(probs.argmax())] == row["label"] == expected, (text, row["label"])
    assert row["confidence"] > 0.9, (text, row["confidence"])
# the page's computation, from the exported data alone, is PyTorch's
assert exact
assert (agreement["page label"] == table["label"]).all()
assert agreement["max |attention diff|"].max() < 1e-5, agreement
assert agreement["max |probability diff|"].max() < 1e-5, agreement
# self-contained fragments: no other host, no external script, modest size
for html, limit in ((fragment, 330_000), (sort_fragment, 12_000)):
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert html.count("attnlibExplorer.mount(") == 1
    assert len(html) < limit, (len(html), limit)
assert weight_chars > 0.7 * len(fragment)  # most of the classifier's page weight is weights
# quantisation within its bound
assert sort_explorer.max_error < 0.002, sort_explorer.max_error
assert decode_error <= sort_explorer.max_error + 1e-6, decode_error
# the sorter: sorts, the explorer's head looks letters up, the decoder is causal
assert sorted_exactly > 0.95, sorted_exactly
assert written[1:] == sorted(WORD) + ["</s>"], written
assert lookup.max() > 0.6, lookup
assert some_head[best_layer] > lookup.max() + 0.03, (some_head, lookup)  # heads share the work
assert torch.equal(kinds.mask("decoder"), torch.ones(len(WORD) + 1, len(WORD) + 1).tril().bool())
assert float(kinds["decoder"].triu(1).abs().max()) == 0.0
# the snippet for Jupyter calls classifier_widget as it is
assert list(inspect.signature(classifier_widget).parameters)[:4] == [
    "model",
    "tokenizer",
    "classes",
    "text",
]
