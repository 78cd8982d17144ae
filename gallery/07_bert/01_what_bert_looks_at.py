"""
What does BERT look at?
=======================

Clark, Khandelwal, Levy and Manning (2019, "What Does BERT Look At? An
Analysis of BERT's Attention", arXiv:1906.04341) measured what the 144
attention heads of BERT-base do on a thousand Wikipedia segments: how much
attention goes to the special tokens [CLS] and [SEP] and to punctuation,
which heads read the previous or the next token, which attend broadly, and
which heads behave alike. We repeat their surface measurements on the 72
heads (6 layers of 12) of a real pre-trained BERT that ships offline,
all-MiniLM-L6-v2, over a few hundred English sentences taken from the text
that ships with Python, and set the numbers side by side with theirs: where
the small distilled model agrees with BERT-base, and where it does not.
"""

# %%
# The model and the sentences
# ---------------------------
#
# :func:`attnlib.pretrained.minilm` returns sentence-transformers'
# all-MiniLM-L6-v2 as a Hugging Face ``BertModel`` and its WordPiece
# tokenizer, read from an installed package (nothing is downloaded). It is a
# 6-layer BERT distilled from a larger one (MiniLM, Wang et al., 2020,
# arXiv:2002.10957) and then fine-tuned to produce sentence embeddings
# (Reimers and Gurevych, 2019, arXiv:1908.10084).
#
# The text: CPython ships the topics of its interactive ``help()`` — the
# sections of the Python Language Reference — in the module
# ``pydoc_data.topics``. We keep the plain English sentences of its prose
# paragraphs (indented lines are code and are left out): 8 to 25 words of
# letters, commas, semicolons, apostrophes and hyphens, ending with a period,
# with at most two capitalised words after the first (names of functions and
# modules stay out). The set changes a little with the Python version, so
# the page draws a random 220 of the sentences it finds (with the seed): the
# robustness matrix, which runs the page on several seeds, then checks that
# the verdicts below do not hang on a particular set of sentences.

import pydoc_data.topics
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy
from sklearn.manifold import MDS

from attnlib.interpret.stats import (
    attention_entropy,
    attention_to_tokens,
    head_js_divergence,
    offset_attention,
)
from attnlib.plotting import plot_attention
from attnlib.pretrained import minilm
from attnlib.report import key_figure
from attnlib.training import seed_everything

SEED = seed_everything()  # $ATTNLIB_SEED, else 0 (the sentences drawn, the permutation test)

SENTENCE = re.compile(r"[A-Z][A-Za-z ,;'-]*[a-z]\.")


def prose_sentences(topics: dict[str, str]) -> list[str]:
    """The plain English sentences of the prose paragraphs of ``topics``, in order,
    without repeats."""
    found = []
    for key in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[key]):
            lines = paragraph.split("\n")
            if any(line.startswith(" ") for line in lines):  # code, grammar, tables
                continue
            text = " ".join(line.strip() for line in lines)
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                words = sentence.split()
                capitals = sum(w[0].isupper() for w in words[1:])
                if SENTENCE.fullmatch(sentence) and 8 <= len(words) <= 25 and capitals <= 2:
                    found.append(sentence)
    return list(dict.fromkeys(found))


found = prose_sentences(pydoc_data.topics.topics)
rng = np.random.default_rng(SEED)
sentences = [found[i] for i in sorted(rng.choice(len(found), 220, replace=False))]
print(f"{len(sentences)} of {len(found)} sentences, for example:")
for s in sentences[:: len(sentences) // 5]:
    print("  ", s)

model, tokenizer = minilm()
config = model.config
n_layers, n_heads = config.num_hidden_layers, config.num_attention_heads
print(f"{n_layers} layers x {n_heads} heads, hidden size {config.hidden_size}")

# %%
# One padded batch
# ----------------
#
# The tokenizer adds [CLS] in front and [SEP] at the end of each sentence and
# pads the batch to its longest member; ``attention_mask`` marks the real
# tokens. With ``output_attentions=True`` the model returns one
# ``(B, H, L, L)`` tensor per layer; we stack them to ``(B, layers, H, L, L)``.
# Clark et al. fed two-segment inputs, ``[CLS] paragraph [SEP] paragraph
# [SEP]`` of up to 128 tokens; ours are single sentences with one [SEP] each,
# as the model reads them when it embeds a sentence.

batch = tokenizer(sentences, padding=True, return_tensors="pt")
with torch.no_grad():
    out = model(**batch, output_attentions=True)
weights = torch.stack(out.attentions, 1)  # (B, layers, H, L, L)
real = batch["attention_mask"].bool()  # (B, L): True at real tokens
ids = batch["input_ids"]
lengths = real.sum(-1)  # (B,) tokens per sentence, [CLS] and [SEP] included
print(f"weights {tuple(weights.shape)}; {int(lengths.sum())} tokens in all")
print(f"mean tokens per sentence: {float(lengths.double().mean()):.1f}")

# the three kinds of key Clark et al. count, as (B, L) boolean masks
period, comma = tokenizer.convert_tokens_to_ids([".", ","])
keys = {
    "[CLS]": ids == tokenizer.cls_token_id,
    "[SEP]": ids == tokenizer.sep_token_id,
    ". or ,": (ids == period) | (ids == comma),
}
# what a head attending uniformly would give each kind: its share of the tokens
uniform_share = {name: float((k.sum(-1) / lengths).double().mean()) for name, k in keys.items()}
LAYERS = [f"layer {layer + 1}" for layer in range(n_layers)]  # 1-based, as in the paper
HEADS = [str(head + 1) for head in range(n_heads)]


def head_map(values, ax, title, label, vmax=1.0):
    """A layer x head heatmap of one statistic ``(layers, H)``, its colour bar labelled."""
    plot_attention(
        values, LAYERS, HEADS, ax=ax, vmax=vmax, xlabel="head", ylabel="layer", title=title
    )
    ax.images[0].colorbar.set_label(label)


# %%
# Where the attention goes: [CLS], [SEP], punctuation
# ---------------------------------------------------
#
# For each head, :func:`attnlib.interpret.stats.attention_to_tokens` gives
# the attention mass a query puts on a set of keys,
# :math:`\sum_{j \in K} a_{ij}`, averaged over the real queries of each
# sentence and then over the sentences (Clark et al.'s averaging). One
# value by hand first: the [CLS] share of head 2-1 (layer 2, head 1;
# heads are named ``layer-head`` from 1, as in the paper).

to_keys = {name: attention_to_tokens(weights, k, real) for name, k in keys.items()}  # (layers, H)
cls_by_hand = np.mean(
    [float(weights[b, 1, 0, : lengths[b], 0].mean()) for b in range(len(sentences))]
)
print(
    f"[CLS] share of head 2-1: by hand {cls_by_hand:.6f}, "
    f"library {float(to_keys['[CLS]'][1, 0]):.6f}"
)

fig, axes = plt.subplots(1, 3, figsize=(15, 3.4), layout="constrained")
for ax, (name, share) in zip(axes, to_keys.items(), strict=True):
    head_map(share, ax, f"attention to {name}", "mean attention mass")
fig.suptitle(
    "Mean attention mass on each kind of key, per head (colour: share of a query's weight)"
)
plt.show()

# %%
# The same numbers by layer, one dot per head, the line through the layer
# means — the layout of Clark et al.'s Figure 2 — with the share each kind of
# key would get from uniform attention (dashed).

fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
x = np.arange(1, n_layers + 1)
for colour, (name, share) in zip(("C0", "C1", "C2"), to_keys.items(), strict=True):
    ax.scatter(
        np.repeat(x, n_heads) + (list(keys).index(name) - 1) * 0.12,
        share.flatten(),
        s=10,
        color=colour,
        alpha=0.6,
    )
    ax.plot(x, share.mean(1), color=colour, marker="o", label=name)
    ax.axhline(uniform_share[name], color=colour, ls="--", lw=1)
ax.set_xlabel("layer")
ax.set_ylabel("mean attention mass")
ax.set_title("Attention to [CLS], [SEP] and punctuation (dashed: uniform attention)")
ax.legend()
plt.show()

layer_means = pd.DataFrame({name: share.mean(1) for name, share in to_keys.items()}, index=LAYERS)
layer_means.loc["uniform attention"] = uniform_share
cls_upper = key_figure("[CLS] share, layers 2-6", to_keys["[CLS]"][1:].mean())
sep_middle = key_figure("[SEP] share, layers 3-4", to_keys["[SEP]"][2:4].mean())
sep_most = float(to_keys["[SEP]"].mean(1).max())  # the layer that reads [SEP] most
punct_most = float(to_keys[". or ,"].mean(1).max())  # the layer that reads . and , most
layer_means.round(3)

# %%
# Read the table by rows. From layer 2 on, the heads of MiniLM put a large
# part of their attention on [CLS] — in every layer many times the uniform
# share, for most heads (the heatmap). [SEP] gets little in every layer, and
# periods and commas get less than twice their share of the tokens, in the
# deep layers too. In BERT-base the big receiver of the middle
# layers was [SEP]: over half of the attention of layers 6-10, with [CLS]
# read by early heads and periods and commas by deep ones (Clark et al.,
# section 3.2). They argued that attention to [SEP] works as a "no-op", a
# place to put weight when a head's function does not apply. MiniLM has such
# a place too, a token every input contains — but it is [CLS], not [SEP].
#
# Previous and next token
# -----------------------
#
# :func:`attnlib.interpret.stats.offset_attention` gives, for an offset
# (-1: previous token, +1: next, 0: itself), the mean weight
# :math:`a_{i,i+\text{offset}}` and the share of queries whose most-attended
# key is :math:`i + \text{offset}` — the head used as a classifier that
# predicts "the previous token", as Clark et al. use heads in their section 4.
# By hand for the previous-token share of head 1-3:

offsets = {"previous": -1, "itself": 0, "next": 1}
positional = {name: offset_attention(weights, o, real) for name, o in offsets.items()}
hits = []
for b in range(len(sentences)):
    a = weights[b, 0, 2, 1 : lengths[b], : lengths[b]]  # queries 1..n-1 of head 1-3
    hits.append(float((a.argmax(-1) == torch.arange(lengths[b] - 1)).double().mean()))
print(
    f"previous-token share of head 1-3: by hand {np.mean(hits):.6f}, "
    f"library {float(positional['previous'][1][0, 2]):.6f}"
)

fig, axes = plt.subplots(2, 3, figsize=(15, 6.4), layout="constrained")
for col, (name, (mean_weight, share)) in enumerate(positional.items()):
    head_map(mean_weight, axes[0, col], f"mean weight on {name}", "mean weight")
    head_map(share, axes[1, col], f"top key is {name}", "share of queries")
fig.suptitle("Positional heads: attention to the previous token, to itself, to the next token")
plt.show()


def heads_above(table, threshold):
    """Names ``layer-head`` (from 1) of the heads whose value exceeds ``threshold``."""
    return [f"{layer + 1}-{head + 1}" for layer, head in (table > threshold).nonzero().tolist()]


rows = []
for name, (mean_weight, share) in positional.items():
    rows.append(
        {
            "relation": name,
            "mean weight > 0.5": heads_above(mean_weight, 0.5),
            "top key in > 50% of queries": heads_above(share, 0.5),
            "largest mean weight": float(mean_weight.max()),
        }
    )
n_previous = int((positional["previous"][1] > 0.5).sum())
n_next = int((positional["next"][1] > 0.5).sum())
key_figure("heads with previous- or next-token share > 0.5", n_previous + n_next, fmt="{:.0f}")
best_previous = float(positional["previous"][1].max())
best_next = float(positional["next"][1].max())
self_most = float(positional["itself"][0].max())
# the deeper half, layers 4-6: the best share of either relation
positional_late = max(float(positional[n][1][3:].max()) for n in ("previous", "next"))
key_figure("best previous/next share in layers 4-6", positional_late)
pd.DataFrame(rows).set_index("relation")

# %%
# A few heads — named in the table — are previous- or next-token heads, and
# they sit in the first two layers; one of them puts nearly all of its
# weight on the previous token for every query. Layer 3 has a near miss
# (the heatmaps); in the deeper half, layers 4-6, no head's top key is the
# previous or the next token in as many as half of its queries, and no head
# attends much to the token itself. That is Clark et al.'s picture of
# BERT-base (section 3.1): most heads put little attention on the current
# token, and a handful — four for the previous token, five for the next,
# out of 144 — put more than half of their attention there, most of them in
# the lower layers.
#
# Broad and focused heads: entropy
# --------------------------------
#
# :func:`attnlib.interpret.stats.attention_entropy` averages the entropy of
# the attention rows, :math:`-\sum_j a_{ij} \log a_{ij}` in nats: 0 for a
# head that puts all its weight on one key, :math:`\log n` for one that
# spreads it evenly over the :math:`n` tokens (dashed: the mean of
# :math:`\log n` over the sentences). Clark et al. (section 3.3) also
# measured the rows of [CLS] alone (``queries=``). By hand with
# ``scipy.stats.entropy`` for head 1-1:

entropy = attention_entropy(weights, real)  # (layers, H)
entropy_cls = attention_entropy(weights, real, queries=keys["[CLS]"])
uniform_entropy = float(torch.log(lengths.double()).mean())
rows_1_1 = [weights[b, 0, 0, : lengths[b], : lengths[b]].double().numpy() for b in range(len(ids))]
entropy_by_hand = np.mean([scipy_entropy(a, axis=-1).mean() for a in rows_1_1])
print(f"entropy of head 1-1: by hand {entropy_by_hand:.6f}, library {float(entropy[0, 0]):.6f}")

fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
head_map(entropy, axes[0], "mean entropy of the rows", "nats", vmax=uniform_entropy)
for ax, values, what in ((axes[1], entropy, "all queries"), (axes[2], entropy_cls, "[CLS] only")):
    ax.scatter(np.repeat(x, n_heads), values.flatten(), s=10, alpha=0.6, label="one head")
    ax.plot(x, values.mean(1), marker="o", label="layer mean")
    ax.axhline(uniform_entropy, color="gray", ls="--", label="uniform attention")
    ax.set_xlabel("layer")
    ax.set_ylabel("mean entropy (nats)")
    ax.set_title(f"entropy by layer, {what}")
    ax.legend(loc="upper center", fontsize=8)
plt.show()

entropy_by_layer = entropy.mean(1)
entropy_first = key_figure("mean entropy, layer 1", entropy_by_layer[0])
entropy_rest = float(entropy_by_layer[1:].max())
cls_entropy_by_layer = entropy_cls.mean(1)
cls_last = key_figure("[CLS] row entropy, layer 6", cls_entropy_by_layer[-1])
broad = entropy > 0.8 * uniform_entropy  # (layers, H)
broad_first = int(broad[0].sum())
print(f"broad heads: {broad_first} of 12 in layer 1, {int(broad[1:].sum())} of 60 in layers 2-6")
pd.DataFrame(
    {
        "mean entropy": entropy_by_layer,
        "[CLS] rows": cls_entropy_by_layer,
        "broadest head": entropy.max(1).values,
    },
    index=LAYERS,
).round(3)

# %%
# Layer 1 is the broadest on average: most of its heads are broad (more
# than 0.8 of the uniform entropy, counted above), while the next layers
# concentrate (largely on [CLS], as seen above). The one head of layer 1
# near entropy zero is the previous-token head. The [CLS] rows are focused
# through the middle layers and broad in the last one. Both patterns are
# Clark et al.'s: some heads, especially in the lower layers, attend very
# broadly — their output is roughly a bag of vectors of the sentence — and
# the [CLS] token of the last layer has a high entropy (3.89 nats on their
# segments of up to 128 tokens, a longer input than ours).
#
# Which heads behave alike: Jensen-Shannon distances
# --------------------------------------------------
#
# Clark et al. (section 6) compare two heads by the Jensen-Shannon
# divergence between their attention distributions for the same query,
# summed over the tokens of their data, and draw the heads in two
# dimensions with multidimensional scaling (MDS). For each query row with
# the two heads' distributions :math:`P` and :math:`Q` and :math:`M = (P +
# Q)/2`:
#
# .. math::
#
#     \mathrm{JS}(P, Q) = \tfrac12 \mathrm{KL}(P \,\|\, M)
#     + \tfrac12 \mathrm{KL}(Q \,\|\, M)
#
# :func:`attnlib.interpret.stats.head_js_divergence` averages it over the
# queries of each sentence, then over the sentences: a 72 x 72 matrix. One
# entry by hand, with ``scipy.spatial.distance.jensenshannon`` (which gives
# the square root of the divergence):

divergence = head_js_divergence(weights, real).numpy()  # (72, 72), heads layer-major
js_by_hand = np.mean(
    [
        np.mean(
            [
                jensenshannon(
                    weights[b, 3, 0, i, : lengths[b]].double(),
                    weights[b, 3, 1, i, : lengths[b]].double(),
                )
                ** 2
                for i in range(lengths[b])
            ]
        )
        for b in range(len(sentences))
    ]
)
print(
    f"JS divergence of heads 4-1 and 4-2: by hand {js_by_hand:.6f}, "
    f"library {divergence[3 * n_heads, 3 * n_heads + 1]:.6f}"
)

layer_of = np.repeat(np.arange(n_layers), n_heads)  # (72,) the layer of each head
same_layer = layer_of[:, None] == layer_of[None, :]
pairs = ~np.eye(len(layer_of), dtype=bool)
within = divergence[same_layer & pairs].mean()
between = divergence[~same_layer].mean()
print(
    f"mean JS divergence: heads of the same layer {within:.4f}, of different layers {between:.4f}"
)
key_figure("JS divergence within / between layers", within / between)

# %%
# Heads of the same layer are closer than heads of different layers, on
# average. Is that more than chance? A permutation test: shuffle which
# heads belong to which layer (keeping six groups of twelve), 5,000 times,
# and count how often random groups are as close as the real layers. And a
# second, local view: for each head, is its nearest head (smallest
# divergence) in the same layer? At random that happens for 11 of the 71
# other heads.

rng = np.random.default_rng(SEED)
shuffled = []
for _ in range(5000):
    groups = rng.permutation(layer_of)
    shuffled.append(divergence[(groups[:, None] == groups[None, :]) & pairs].mean())
shuffled = np.array(shuffled)
p_layers = (1 + (shuffled <= within).sum()) / (1 + len(shuffled))
print(
    f"shuffled layers: mean within-group divergence {shuffled.mean():.4f} "
    f"(sd {shuffled.std():.4f}); permutation p = {p_layers:.4g}"
)
within_by_layer = pd.Series(
    [
        divergence[layer_of == layer][:, layer_of == layer][pairs[:n_heads, :n_heads]].mean()
        for layer in range(n_layers)
    ],
    index=LAYERS,
    name="mean JS divergence within the layer",
)
print(within_by_layer.round(3).to_string())
within_early = within_by_layer.iloc[:2].mean()
within_late = within_by_layer.iloc[3:].max()
nearest = np.where(pairs, divergence, np.inf).argmin(1)
nearest_same = key_figure(
    "heads whose nearest head is in the same layer", (layer_of[nearest] == layer_of).mean()
)
print(f"chance: {11 / 71:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(14, 6), layout="constrained")
ax = axes[0]
image = ax.imshow(divergence, cmap="viridis")
ticks = np.arange(n_layers) * n_heads + n_heads / 2 - 0.5
ax.set_xticks(ticks, LAYERS, rotation=45)
ax.set_yticks(ticks, LAYERS)
for edge in np.arange(1, n_layers) * n_heads - 0.5:
    ax.axhline(edge, color="gray", lw=0.8)
    ax.axvline(edge, color="gray", lw=0.8)
ax.set_xlabel("head (grouped by layer)")
ax.set_ylabel("head (grouped by layer)")
ax.set_title("Mean Jensen-Shannon divergence between heads (nats)")
fig.colorbar(image, ax=ax, shrink=0.8, label="mean JS divergence (nats)")

# the 2-D map: metric MDS on the precomputed divergences, classical-MDS start (deterministic)
mds = MDS(n_components=2, metric="precomputed", init="classical_mds", n_init=1, max_iter=500)
points = mds.fit_transform(divergence)
ax = axes[1]
marker = np.full(len(layer_of), "o")  # the shape says what a head does, the colour its layer
for which, shape in (  # thresholds of Clark et al.'s code (broad: ours, for short sentences)
    (entropy.flatten() > 0.8 * uniform_entropy, "^"),
    (to_keys["[CLS]"].flatten() > 0.6, "s"),
    (positional["next"][0].flatten() > 0.5, ">"),
    (positional["previous"][0].flatten() > 0.5, "<"),
):
    marker[which.numpy()] = shape
for h, (px, py) in enumerate(points):
    ax.scatter(px, py, color=f"C{layer_of[h]}", marker=marker[h], s=60 if marker[h] != "o" else 25)
    ax.annotate(
        f"{h // n_heads + 1}-{h % n_heads + 1}",
        (px, py),
        fontsize=6,
        xytext=(3, 3),
        textcoords="offset points",
    )
layer_legend = ax.legend(
    handles=[
        Line2D([], [], color=f"C{layer}", marker="o", ls="", label=name)
        for layer, name in enumerate(LAYERS)
    ],
    loc="lower left",
    fontsize=8,
    title="colour",
)
ax.add_artist(layer_legend)
ax.legend(
    handles=[
        Line2D([], [], color="gray", marker=m, ls="", label=label)
        for m, label in (
            ("<", "previous token (mean weight > 0.5)"),
            (">", "next token (mean weight > 0.5)"),
            ("s", "[CLS] (mean mass > 0.6)"),
            ("^", "broad (entropy > 0.8 x uniform)"),
            ("o", "other"),
        )
    ],
    loc="upper left",
    fontsize=8,
    title="shape",
)
ax.set_xlabel("MDS dimension 1")
ax.set_ylabel("MDS dimension 2")
ax.set_title("The 72 heads, placed by MDS on their JS divergences")
plt.show()

cls_heads = (to_keys["[CLS]"] > 0.6).flatten().numpy()
broad_heads = broad.flatten().numpy()


def mean_among(group):
    """The mean divergence between the distinct heads of a boolean group ``(72,)``."""
    return divergence[np.ix_(group, group)][pairs[np.ix_(group, group)]].mean()


among_cls, among_broad = mean_among(cls_heads), mean_among(broad_heads)
print(
    f"mean JS divergence among the [CLS] heads {among_cls:.4f}, the broad heads {among_broad:.4f}"
)

# %%
# The map shows the same thing as the numbers: heads of a layer tend to lie
# together — the deeper layers most clearly (their within-layer divergence,
# printed above, is well under the mean between layers), while the heads of
# layers 1 and 2 are about as far from each other as from any other head
# (the previous-token head, which attends to a single key, lies far from
# the broad heads of its own layer, and from every other head: the bright
# row and column of the matrix). Clark et al. found the first part for
# BERT-base: heads within the same layer are often close to each other,
# with similar attention distributions. The map shows a second grouping,
# by behaviour across layers: the heads that pour their weight on [CLS]
# (squares, from layers 2-5) lie together, and so do the broad heads
# (triangles, mostly layer 1); the mean divergence within each of these
# groups (printed with the map) is smaller than within the average layer.
#
# Side by side with Clark et al.
# ------------------------------
#
# The findings of Clark et al. (2019) on BERT-base, each with the number
# this run measured on MiniLM and whether it holds here. The verdicts are
# computed from the numbers, with the thresholds written in the code.

comparison = pd.DataFrame(
    [
        (
            "over half of the attention of layers 6-10 (of 12) goes to [SEP]",
            f"[SEP] share of layers 3-4 (of 6): {sep_middle:.3f}",
            sep_middle > 0.5,
        ),
        (
            "early heads attend to [CLS]",
            f"[CLS] share, layer 1: {float(to_keys['[CLS]'][0].mean()):.3f}; layers 2-6: "
            f"{cls_upper:.3f}",
            float(to_keys["[CLS]"][0].mean()) > 2 * uniform_share["[CLS]"],
        ),
        (
            "deep heads attend to periods and commas",
            f"largest layer share: {punct_most:.3f} (uniform: {uniform_share['. or ,']:.3f})",
            punct_most > 2 * uniform_share[". or ,"],
        ),
        (
            "most heads put little attention on the current token",
            f"largest mean weight on itself: {self_most:.3f}",
            self_most < 0.5,
        ),
        (
            "a few heads attend to the previous / next token, mostly early",
            f"{n_previous:.0f} / {n_next:.0f} heads over 0.5, best {best_previous:.2f} / "
            f"{best_next:.2f}; best in layers 4-6: {positional_late:.2f}",
            n_previous + n_next >= 2 and positional_late < 0.5,
        ),
        (
            "broad (high-entropy) heads, especially in the lower layers",
            f"mean entropy, layer 1: {entropy_first:.2f}; layers 2-6 at most {entropy_rest:.2f} "
            f"(uniform {uniform_entropy:.2f})",
            entropy_first > entropy_rest,
        ),
        (
            "last layer: broad attention from [CLS]",
            f"[CLS] entropy, layer 6: {cls_last:.2f}; other layers at most "
            f"{float(cls_entropy_by_layer[:-1].max()):.2f}",
            cls_last > float(cls_entropy_by_layer[:-1].max()),
        ),
        (
            "heads in the same layer behave alike (JS divergence, MDS)",
            f"within a layer {within:.3f}, between {between:.3f} (permutation p {p_layers:.2g})",
            within < between and p_layers < 0.01,
        ),
    ],
    columns=["Clark et al. (2019), BERT-base", "MiniLM, this run", "holds for MiniLM"],
)
comparison

# %%
# MiniLM agrees with BERT-base on every positional and structural finding:
# positional heads are few and early, heads rarely attend to themselves,
# the lower layers are the broad ones, the last layer's [CLS] attention is
# broad, and heads cluster by layer. It disagrees on *where* the weight
# pools: not [SEP] in the middle layers, nor periods and commas in the deep
# ones, but [CLS], from layer 2 to the end. Two differences between the
# set-ups may play a part, and this page cannot tell them apart: the input
# (a single sentence with one [SEP], where Clark et al. used two segments
# with two) and the model (6 layers distilled from a larger model, then
# fine-tuned for sentence embeddings, where BERT-base was only pre-trained).
# The :ref:`next page <sphx_glr_auto_gallery_07_bert_02_it_was_too_tired.py>`
# asks a harder question of the same heads: do any of them resolve a
# pronoun?
#
# Checks
# ------
#
# The library's statistics equal the hand computations; each verdict of
# the table holds, with margins set from the spread of the numbers over the
# robustness matrix's seeds (each draws other sentences).

assert len(found) >= 250, len(found)
# the statistics agree with their hand computations
assert abs(cls_by_hand - float(to_keys["[CLS]"][1, 0])) < 1e-6
assert abs(np.mean(hits) - float(positional["previous"][1][0, 2])) < 1e-9
assert abs(entropy_by_hand - float(entropy[0, 0])) < 1e-5
assert abs(js_by_hand - divergence[3 * n_heads, 3 * n_heads + 1]) < 1e-6
# every row sums to 1: the three kinds of key and the rest share the weight
everything = attention_to_tokens(weights, real, real)
assert torch.allclose(everything, torch.ones_like(everything), atol=1e-5)
# [CLS], not [SEP], takes the weight from layer 2 on
assert cls_upper > 0.3, to_keys["[CLS]"]
assert (to_keys["[CLS]"][1:].mean(1) > 5 * to_keys["[SEP]"][1:].mean(1)).all(), layer_means
assert sep_most < 0.2 and sep_middle < 0.1, layer_means
assert punct_most < 2 * uniform_share[". or ,"], layer_means
assert (to_keys["[CLS]"][1:].median(1).values > 4 * uniform_share["[CLS]"]).all(), layer_means
# positional heads: few, early, one nearly perfect previous-token head
assert best_previous > 0.9 and 1 <= n_previous <= 4 and 1 <= n_next <= 4, rows
assert positional_late < 0.45 and self_most < 0.35, rows
assert float(positional["previous"][0].max()) > 0.9  # nearly all its weight, not just the top
assert int(positional["previous"][1].argmax()) // n_heads == 0  # the best one is in layer 1
assert all((positional[n][1][2:] <= 0.5).all() for n in ("previous", "next"))  # all in layers 1-2
# entropy: layer 1 the broadest; the last layer's [CLS] rows the broadest
assert entropy_first > entropy_rest + 0.05 and entropy_first > 0.65 * uniform_entropy
assert broad_first >= 7 and broad[1:].sum() <= 5, broad
assert float(entropy[0, int(positional["previous"][0][0].argmax())]) < 0.1
assert cls_last > float(cls_entropy_by_layer[:-1].max()) + 0.3, cls_entropy_by_layer
assert (cls_entropy_by_layer[1:-1] < 0.5 * uniform_entropy).all(), cls_entropy_by_layer
# heads cluster by layer
assert within < between - 0.01 and p_layers < 0.01, (within, between, p_layers)
assert nearest_same > 2 * 11 / 71, nearest_same
assert within_late < between - 0.03 and within_early > within_late + 0.02, within_by_layer
assert abs(within_early - between) < 0.03, (within_early, between)  # layers 1-2: no grouping
# the previous-token head is the farthest from all others (the bright row of the matrix)
assert int(divergence.mean(1).argmax()) == int(positional["previous"][0].argmax())
assert among_cls < within - 0.03 and among_broad < within - 0.03, (among_cls, among_broad)
expected = [False, True, False, True, True, True, True, True]  # [SEP] and punctuation: no
assert comparison["holds for MiniLM"].tolist() == expected, comparison
print("all checks passed")
