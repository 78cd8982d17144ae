"""
Attention heatmaps by layer and head
====================================

What does the sentiment classifier of chapter 4 look at? We draw its
attention weights as heatmaps: one head for one sentence, every head of a
layer on one colour scale, one head slot through the layers, and a padded
input whose masked cells are drawn as masked. Then we measure over the whole
test split how different the heads are, what each one does (entropy,
distance, favourite words) and how the two layers differ, and finish with
the three kinds of attention of an encoder-decoder model — encoder
self-attention, masked decoder self-attention and cross-attention.
"""

# %%
# The classifier
# --------------
#
# :func:`attnlib.pretrained.sentiment_classifier` trains (once per session)
# the classifier of chapter 4: two pre-norm encoder layers of four heads
# each, :math:`d_{model} = 48`, mean pooling over the tokens, and a linear
# layer for the three classes. It comes with its word tokenizer and the
# train, validation and test splits of the synthetic review corpus, whose
# ground-truth columns (which words decide the label, whether the review is
# negated or a contrast) we use below.

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from attnlib.capture import record_attention
from attnlib.data.synthetic import SENTIMENT_LEXICON
from attnlib.decoding import greedy_decode
from attnlib.interpret.maps import AttentionMaps, capture_attention, token_labels
from attnlib.interpret.plots import (
    plot_head_across_layers,
    plot_kinds,
    plot_layer,
    visualize_attention_weights,
)
from attnlib.interpret.stats import head_stats
from attnlib.pretrained import algorithmic_transformer, sentiment_classifier
from attnlib.report import key_figure
from attnlib.tasks import PAD, algorithmic_batch, exact_match
from attnlib.training import seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, else 0

sentiment = sentiment_classifier(seed=SEED)
model, tokenizer = sentiment.model, sentiment.tokenizer
key_figure("test accuracy", sentiment.test_accuracy)
print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
print(f"vocabulary: {len(tokenizer)} words")
attention = [layer.self_attn for layer in model.encoder.layers]
print(f"{len(attention)} layers, {attention[0].num_heads} heads, d_model {attention[0].embed_dim}")

# %%
# One head, one sentence
# ----------------------
#
# The seed notebook's function,
# :func:`attnlib.interpret.plots.visualize_attention_weights`, takes a
# sentence, the model, the tokenizer, a layer and a head: it tokenizes the
# sentence, runs the model, and draws that head's map, one row per query
# token (the position whose new representation is being computed) and one
# column per key token (the positions it reads from). Each row sums to 1.
#
# A negated sentence: "not very clumsy" is positive, so the model must
# combine the negator with the adjective it applies to. The model gets it
# right (the probabilities printed below). Which head — and even which
# layer — learns which role depends on the random initialisation, so we do
# not name a head in advance: we draw the head that reads ``not`` most
# strongly: the one whose rows put the most weight on ``not`` on average.

SENTENCE = "the acting was not very clumsy."
with torch.no_grad():
    probs = model(sentiment.encode(SENTENCE)).softmax(-1)[0]
print({c: round(float(p), 3) for c, p in zip(sentiment.classes, probs, strict=True)})

maps = capture_attention(model, sentiment.encode(SENTENCE), tokenizer=tokenizer)
NOT = maps.labels()[1].index("not")
on_not = maps["encoder"][..., NOT].mean(-1)  # (layers, H): mean weight on "not"
NOT_LAYER, NOT_HEAD = divmod(int(on_not.argmax()), on_not.shape[1])
print(f"the negator head: layer {NOT_LAYER}, head {NOT_HEAD}")
key_figure("mean weight on 'not', negator head", on_not[NOT_LAYER, NOT_HEAD])

visualize_attention_weights(SENTENCE, model, tokenizer, layer=NOT_LAYER, head=NOT_HEAD)
plt.show()

# %%
# Most queries of this head put nearly all their weight on one key,
# ``not`` (the mean weight is printed above): whatever the position, this
# head copies the negator into it. The classifier averages the positions
# (mean pooling), so after this head the whole sentence "knows" it is
# negated.
#
# Every head of a layer
# ---------------------
#
# :func:`attnlib.interpret.maps.capture_attention` runs the model once and
# returns an :class:`attnlib.interpret.maps.AttentionMaps`: every map,
# ``(layers, heads, query, key)``, with the token labels and the mask.
# :func:`attnlib.interpret.plots.plot_layer` draws the heads of one layer on
# **one shared colour scale**, so that a brighter cell in one head really is
# a larger weight than a darker cell in another.

print(maps)
layer_figures = [plot_layer(maps, layer) for layer in range(maps.num_layers())]
plt.show()

# %%
# Most rows put nearly all their weight on one or two keys, mostly ``not``
# or the adjective ``clumsy``; each head has its own balance between the
# words of ``not very clumsy`` and the rest (the test-split statistics below
# measure this over 400 reviews). Each figure has its own scale (the largest
# weight of its layer): compare the colour bars when comparing figures.
#
# One head slot through the layers
# --------------------------------
#
# :func:`attnlib.interpret.plots.plot_head_across_layers` shows head
# :math:`h` of every layer on one scale. The heads of different layers share
# nothing but an index — a head of layer 1 reads the *outputs* of layer 0,
# already mixed — so this view compares layers, not the "same" head. We
# take the slot of the negator head above: sharp on ``not`` in its layer,
# and whatever the head of the same index does in the other.

plot_head_across_layers(maps, NOT_HEAD)
plt.show()

# %%
# Padding: masked, not small
# --------------------------
#
# Sentences of a batch are padded to a common length with ``<pad>`` (id 0),
# and the padding mask (:func:`attnlib.masks.padding_mask`) keeps every query
# from reading the padding keys. A weight of exactly 0 because a key is
# forbidden is not the same as a small weight that the model chose, so the
# plots hatch forbidden cells in grey instead of drawing them dark.
#
# We pad three reviews into one batch and capture the shortest one with its
# padding. The ``<pad>`` *columns* are the masked keys. The ``<pad>`` *rows*
# are computed too (a layer runs at every position), but mean pooling throws
# them away, so :func:`attnlib.interpret.maps.capture_attention` marks them
# as masked as well, and the statistics leave them out.

batch_texts = [
    "the acting was superb.",
    "the music was dull, but the ending was not bad.",
    "i saw it on sunday. the plot is really clever.",
]
encoded = [tokenizer.encode(t) for t in batch_texts]
padded = torch.zeros(len(encoded), max(map(len, encoded)), dtype=torch.long)
for i, ids in enumerate(encoded):
    padded[i, : len(ids)] = torch.tensor(ids)
print(padded)

short = capture_attention(model, padded[:1], tokenizer=tokenizer)
plot_layer(
    short,
    0,
    title="layer 0 of a padded input: <pad> keys and <pad> queries are masked (hatched)",
    figsize=(12, 4.2),
)
plt.show()

n_short = len(encoded[0])
alone = capture_attention(model, sentiment.encode(batch_texts[0]), tokenizer=tokenizer)
pad_mass = float(short["encoder"][..., n_short:].abs().max())
pad_change = float((short["encoder"][..., :n_short, :n_short] - alone["encoder"]).abs().max())
print(f"largest weight on a <pad> key: {pad_mass}")
print(f"real tokens, padded vs alone: largest difference {pad_change:.1e}")

# %%
# Padding changes nothing for the real tokens (up to float rounding), and the
# padding keys get exactly 0.
#
# How different are the heads?
# ----------------------------
#
# Multi-head attention pays for several heads so that they can read
# different things. Over the whole test split (400 reviews) we compare every
# pair of heads of a layer with the Jensen-Shannon divergence of their rows,
#
# .. math::
#
#    \mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12
#    \mathrm{KL}(q \,\|\, m), \qquad m = \tfrac12 (p + q),
#
# averaged over the real (non-padding) queries: 0 for identical rows, at
# most :math:`\log 2 \approx 0.69` nats for rows with no key in common.
#
# One forward pass over the padded test batch, with
# :func:`attnlib.capture.record_attention`, gives every map at once.

test = sentiment.test.reset_index(drop=True)
test_ids = [tokenizer.encode(t) for t in test["text"]]
lengths = torch.tensor([len(ids) for ids in test_ids])
tokens = torch.zeros(len(test_ids), int(lengths.max()), dtype=torch.long)
for i, ids in enumerate(test_ids):
    tokens[i, : len(ids)] = torch.tensor(ids)
real = tokens != tokenizer.pad_idx  # (B, L)

with torch.no_grad(), record_attention(model) as record:
    logits = model(tokens)
weights = record.stack().transpose(0, 1)  # (B, layers, H, L, L)
n_layers, n_heads = weights.shape[1:3]


def js_divergence(p, q):
    m = (p + q) / 2
    kl_pm = torch.where(p > 0, p * (p / m).log(), torch.zeros_like(p)).sum(-1)
    kl_qm = torch.where(q > 0, q * (q / m).log(), torch.zeros_like(q)).sum(-1)
    return (kl_pm + kl_qm) / 2


js = torch.zeros(n_layers, n_heads, n_heads)
for layer in range(n_layers):
    for a in range(n_heads):
        for b in range(n_heads):
            d = js_divergence(weights[:, layer, a], weights[:, layer, b])  # (B, L)
            js[layer, a, b] = d[real].mean()

fig, axes = plt.subplots(1, n_layers, figsize=(9, 3.8), layout="constrained")
for layer, ax in enumerate(axes):
    sns.heatmap(
        js[layer].numpy(),
        ax=ax,
        annot=True,
        fmt=".2f",
        vmin=0,
        vmax=float(np.log(2)),
        cmap="magma",
        square=True,
        cbar=layer == n_layers - 1,
        cbar_kws={"label": "mean JS divergence (nats)"},
    )
    ax.set_title(f"layer {layer}")
    ax.set_xlabel("head")
    ax.set_ylabel("head")
fig.suptitle("How different the heads' rows are, over the test split (max log 2 = 0.69)")
plt.show()

off_diagonal = ~torch.eye(n_heads, dtype=torch.bool)
mean_js = [float(js[layer][off_diagonal].mean()) for layer in range(n_layers)]
for layer in range(n_layers):
    key_figure(f"mean JS between two heads, layer {layer}", mean_js[layer])
key_figure("smallest JS between two heads", js[:, off_diagonal].min())

# %%
# No two heads are copies of each other: the smallest divergence, printed
# above, is well above 0 (over seeds 0-5 with one thread it stayed between
# 0.07 and 0.27 nats). Layer 0's heads differed more from each other than
# layer 1's in every run we measured (seeds 0-5, one thread), by a margin
# that changes with the seed.
#
# What each head does
# -------------------
#
# :func:`attnlib.interpret.stats.head_stats` describes the heads of one
# input: the entropy of the rows (0 when all weight is on one key,
# :math:`\log n` when spread evenly over :math:`n` keys), the mean attended
# distance :math:`\sum_j a_{ij}|i-j|`, the weight on the previous token and on
# the token itself, and the largest weight of a row. We slice each review out
# of the batch (without its padding) into an
# :class:`attnlib.interpret.maps.AttentionMaps` and average the tables.
#
# The last row gives the same numbers for uniform attention over each review.
# To name what each head reads, we also list its favourite words: the words
# (seen at least 15 times in the test split) that receive the most attention
# relative to a uniform share, :math:`n \cdot \frac1n \sum_i a_{ij}` — 1 for
# uniform attention, 4 for four times the uniform share.

labels = [token_labels(ids, tokenizer) for ids in test_ids]
tables = []
for i, n in enumerate(lengths.tolist()):
    one = AttentionMaps(
        {"encoder": weights[i, :, :, :n, :n]}, {"encoder": labels[i]}, {"encoder": labels[i]}
    )
    tables.append(head_stats(one))
stats = pd.concat(tables).groupby(level=["layer", "head"]).mean()
entropy = stats["entropy"].unstack()  # layers x heads
# the same numbers for uniform attention over each review, for reference
uniform = pd.concat(
    [
        head_stats(
            AttentionMaps(
                {"encoder": torch.full((1, 1, n, n), 1 / n)}, {"encoder": w}, {"encoder": w}
            )
        )
        for n, w in zip(lengths.tolist(), labels, strict=True)
    ]
).mean()

# n * (mean over the n real queries) = the sum over the real queries: (B, layers, heads, L)
received = (weights * real[:, None, None, :, None]).sum(-2)
rows = []
for i, words in enumerate(labels):
    for j, word in enumerate(words):
        rows += [
            (layer, head, word, float(received[i, layer, head, j]))
            for layer in range(n_layers)
            for head in range(n_heads)
        ]
by_word = pd.DataFrame(rows, columns=["layer", "head", "word", "ratio"])
by_word = by_word.groupby(["layer", "head", "word"])["ratio"].agg(["mean", "count"])
by_word = by_word[by_word["count"] >= 15]["mean"]
favourites = [
    ", ".join(f"{w} {v:.0f}" for w, v in by_word.loc[lh].nlargest(5).items()) for lh in stats.index
]
head_table = stats.drop(columns="special")  # this tokenizer adds no special tokens
head_table["favourite words (x uniform)"] = favourites
head_table.loc[("uniform", ""), :] = [*uniform.drop("special"), ""]
for column in ("entropy", "previous", "diagonal"):
    key_figure(f"largest head {column}", stats[column].max(), fmt="{:.2f}", show=False)
    print(f"largest head {column}: {stats[column].max():.2f}, uniform {uniform[column]:.2f}")
head_table.round(2)

# %%
# Roles appear, and they are about *words*, not positions. Every head is
# sharper than uniform attention, most of them far sharper — a row entropy
# well below that of the last row, and a large share of each row on its
# largest key — and most have clear favourites: the negator, or adjectives
# of one polarity or the other. Which head (and which layer) takes which
# role changes with the seed: read the table for this run. No head is positional: the
# previous-token and self weights and the mean distance stay close to those
# of uniform attention (last row). The largest of the heads' entropies and
# their largest previous-token and self weights are printed below, against
# uniform attention's.
#
# Layer 0 against layer 1
# -----------------------
#
# Two numbers per layer show how the layers divide the work: the entropy
# of the rows, against :math:`\log n` for uniform attention, and the attention mass on
# the sentiment words of :data:`attnlib.data.synthetic.SENTIMENT_LEXICON`
# (polar and neutral adjectives) and on the negator ``not``, against their
# share of the tokens — the mass a query would give them by attending
# uniformly.

ADJECTIVES = set(SENTIMENT_LEXICON["positive"] + SENTIMENT_LEXICON["negative"])
ADJECTIVES |= set(SENTIMENT_LEXICON["neutral"])
is_adjective = torch.zeros_like(real)  # (B, L)
is_not = torch.zeros_like(real)
for i, words in enumerate(labels):
    is_adjective[i, : len(words)] = torch.tensor([w in ADJECTIVES for w in words])
    is_not[i, : len(words)] = torch.tensor([w == "not" for w in words])


def mass_on(keys):
    """Mean over real queries of the weight on ``keys`` ``(B, L)``: (layers, heads)."""
    mass = (weights * keys[:, None, None, None, :]).sum(-1)  # (B, layers, H, L)
    return (mass * real[:, None, None, :]).sum((0, 3)) / real.sum()


uniform_entropy = float(uniform["entropy"])  # mean of log n over the reviews
layers_table = pd.DataFrame(
    {
        "entropy (mean of heads)": entropy.mean(axis=1),
        "mass on adjectives": mass_on(is_adjective).mean(axis=1).numpy(),
        "mass on 'not'": mass_on(is_not).mean(axis=1).numpy(),
    }
)
shares = {
    "mass on adjectives": float(is_adjective.sum() / real.sum()),
    "mass on 'not'": float(is_not.sum() / real.sum()),
}

fig, (ax_h, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
for layer in range(n_layers):
    ax_h.scatter([layer] * n_heads, entropy.loc[layer], s=40, label=None, color=f"C{layer}")
ax_h.axhline(uniform_entropy, color="gray", ls="--", label="uniform over the tokens")
ax_h.set_xticks(range(n_layers), [f"layer {i}" for i in range(n_layers)])
ax_h.set_xlim(-0.5, n_layers - 0.5)
ax_h.set_ylim(0, uniform_entropy * 1.15)
ax_h.set_ylabel("row entropy (nats), one dot per head")
ax_h.set_title("Entropy of the rows")
ax_h.legend(loc="lower right")
x = np.arange(2)
for layer in range(n_layers):
    ax_m.bar(x + 0.27 * (layer - 1), layers_table.iloc[layer, 1:], 0.27, label=f"layer {layer}")
ax_m.bar(x + 0.27, list(shares.values()), 0.27, color="lightgray", label="share of tokens")
ax_m.set_xticks(x, ["sentiment adjectives", "negator 'not'"])
ax_m.set_ylabel("attention mass (mean over queries)")
ax_m.set_title("Where the attention goes")
ax_m.legend()
fig.suptitle("Layer 0 against layer 1, over the test split")
plt.show()
adjective_ratio = layers_table["mass on adjectives"] / shares["mass on adjectives"]
not_ratio = layers_table["mass on 'not'"] / shares["mass on 'not'"]
for layer in range(n_layers):
    key_figure(f"mass on adjectives / share, layer {layer}", adjective_ratio[layer], fmt="{:.2f}")
    key_figure(f"mass on 'not' / share, layer {layer}", not_ratio[layer], fmt="{:.2f}")
key_figure("mass on 'not' / share, the layer that reads it most", not_ratio.max(), show=False)
layers_table.round(3)

# %%
# At least one layer gives the sentiment adjectives several times their
# share of the tokens, and at least one gives the negator several times its
# share (the ratios printed above). How the two layers divide that work is
# *not* fixed by the task. Over seeds 0-5 with one thread, layer 0 gave the
# adjectives 3.4 to 4.9 times their share and ``not`` 3.4 to 7.6 times;
# layer 1 gave the adjectives 1.4 to 3.5 times and ``not`` 1.1 to 6.9 times:
# with some seeds layer 0 gathers the negation and layer 1 gives ``not``
# little more than its share, with others layer 1 reads it again, or reads
# it most. One trained model's division of labour is one solution among
# several, not a law of the architecture.
#
# Encoder, decoder and cross-attention
# ------------------------------------
#
# An encoder-decoder model has three kinds of attention: the encoder's
# self-attention over the source, the decoder's masked self-attention over
# the output so far, and the cross-attention from each output position to
# the source. A small :class:`attnlib.transformer.Seq2SeqTransformer` (one
# encoder and one decoder layer), trained by
# :func:`attnlib.pretrained.algorithmic_transformer`, learns to reverse
# sequences of 3 to 6 symbols from :func:`attnlib.tasks.algorithmic_batch` in
# a few seconds.

SYMBOLS, MAX_LEN = 10, 6
NAMES = ["<pad>", "<s>", "</s>"] + [chr(ord("a") + i) for i in range(SYMBOLS)]

reverser = algorithmic_transformer("reverse", max_len=MAX_LEN, num_symbols=SYMBOLS)
src, tgt, align = algorithmic_batch(
    "reverse", 500, 3, MAX_LEN, SYMBOLS, generator=seeded_generator(107)
)
exact = exact_match(greedy_decode(reverser, src, max_new_tokens=MAX_LEN + 1), tgt)
key_figure("reverser: exact match on 500 new sequences", exact)

# over all 500: does the cross-attention (mean of heads) peak on the source
# position that each output position copies? (teacher forcing)
with torch.no_grad(), record_attention(reverser) as record:
    reverser(src, tgt[:, :-1])
cross_name = next(name for name in record.names() if name.endswith("cross_attn"))
cross_all = record[cross_name].mean(1)  # (B, T, S), mean of heads
copies = align >= 0
on_mirror = float((cross_all.argmax(-1) == align)[copies].float().mean())
key_figure("cross-attention argmax on the copied position, 500 sequences", on_mirror)

# %%
# :func:`attnlib.interpret.plots.plot_kinds` draws the three kinds side by
# side for one layer (here the mean of the four heads), each with its own
# axes: keys and queries for self-attention, source and target for
# cross-attention. The decoder's causal mask is hatched: output position
# :math:`t` may not read positions after :math:`t`.

i = int((src != PAD).sum(1).argmax())  # a longest example
length = int((src[i] != PAD).sum())
example_src, example_tgt = src[i : i + 1, :length], tgt[i : i + 1, : length + 1]
kinds = capture_attention(
    reverser,
    (example_src, example_tgt),
    labels=[NAMES[t] for t in example_src[0].tolist()],
    target_labels=[NAMES[t] for t in example_tgt[0].tolist()],
)
print(kinds)
plot_kinds(kinds, head=None, figsize=(12, 4))
plt.show()

cross = kinds["cross"][0].mean(0)  # (target, source), mean of heads
hits = cross[:length].argmax(-1) == align[i, :length]
print(f"cross-attention argmax on the reversed position: {int(hits.sum())}/{length}")
key_figure("cross-attention argmax on the reversed position", hits.sum(), fmt="{:.0f}", show=False)

# %%
# The rows of the decoder views are the decoder's *inputs*: the row of
# ``<s>`` computes the first output symbol, the row of the first output
# symbol the second one, and so on. The cross-attention is the
# anti-diagonal of reversal: the row of ``<s>`` reads the last source symbol,
# the next row the one before it (the last row, which predicts the end
# token, has nothing to copy). Over all 500 test sequences the mean of the
# heads peaks on the position being copied at most positions (the share
# printed earlier), so this is not a property of one chosen example. The
# decoder's self-attention has nothing above the diagonal; the encoder's is
# free in both directions.
#
# Checks
# ------
#
# The asserts below check what the page claims, with bars set from the
# spread of the key figures over several seeds and thread counts (the robustness
# matrix): every captured row sums to 1 over its allowed keys with exactly 0
# on forbidden ones, padding keys get exactly 0 in the whole test batch, and
# padding changes the real tokens' weights only by float rounding. One head
# reads ``not`` from nearly every query of the negated sentence. Every head
# is sharper than uniform attention and none is positional; no two heads are
# alike. At least one layer gives the sentiment adjectives, and at least one
# gives ``not``, several times its share. The reverser decodes nearly every
# new sequence exactly, and its cross-attention peaks on the copied position
# at most positions.


def rows_ok(w, mask):
    """Each real query's row sums to 1 over its allowed keys, and its forbidden
    keys get 0 (the rows of padding queries are masked whole: their outputs
    are thrown away, so their weights do not matter)."""
    allowed = mask.expand(w.shape)
    rows_with_keys = allowed.any(-1)
    sums = (w * allowed).sum(-1)
    forbidden = ~allowed & rows_with_keys[..., None]
    return torch.allclose(sums[rows_with_keys], torch.ones(()), atol=1e-5) and bool(
        (w[forbidden] == 0).all()
    )


assert len(attention) == 2 and attention[0].num_heads == 4 and attention[0].embed_dim == 48
for captured in (maps, short, alone, kinds):
    for kind in captured.kinds:
        assert rows_ok(captured[kind], captured.mask(kind)), (captured, kind)
assert sentiment.classes[int(probs.argmax())] == "positive", probs
assert float(on_not[NOT_LAYER, NOT_HEAD]) > 0.7, on_not  # the negator head reads "not"
assert pad_mass == 0.0 and pad_change < 1e-5, (pad_mass, pad_change)
assert bool((weights * ~real[:, None, None, None, :] == 0).all())  # padding keys: exactly 0
assert torch.allclose(weights.sum(-1), torch.ones(())), "rows of the test batch sum to 1"
# the batch maps are the maps of each review alone
first = capture_attention(model, tokens[:1, : lengths[0]])
assert torch.allclose(first["encoder"], weights[0, :, :, : lengths[0], : lengths[0]], atol=1e-6)
# one shared colour scale per layer figure, equal to the layer's largest weight
for layer, fig in enumerate(layer_figures):
    limits = {ax.images[0].get_clim() for ax in fig.axes if ax.images}
    assert len(limits) == 1, limits
    assert np.isclose(limits.pop()[1], float(maps["encoder"][layer].max()))
# sharp heads that read words, not positions; no two alike
assert stats["entropy"].max() < uniform["entropy"] - 0.25, (stats, uniform)
for column in ("previous", "diagonal"):
    assert stats[column].max() < 2 * uniform[column], (column, stats[column], uniform)
assert float(js[:, off_diagonal].min()) > 0.05, js
# a layer reads the adjectives, a layer reads "not", several times their share
assert adjective_ratio.max() > 3, adjective_ratio
assert not_ratio.max() > 3, not_ratio
# the reverser: mostly exact, causal mask respected, cross-attention on the mirror position
assert exact > 0.9, exact
assert torch.equal(kinds["decoder"].triu(1), torch.zeros_like(kinds["decoder"]))
assert on_mirror > 0.6, on_mirror
