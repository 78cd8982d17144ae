"""
Attention rollout and attention flow
====================================

The attention map of one layer says how that layer mixes its inputs, but
those inputs are already mixtures made by the layers below, and each layer
also passes its input on unchanged through the residual connection. Attention
rollout and attention flow (Abnar and Zuidema, 2020, arXiv:2005.00928) follow
the information through every layer and the residual stream down to the
input words. We write rollout out in a few lines, build the flow graph, check
both against the library and against what theory predicts, and then ask the
ground truth of the synthetic reviews which view finds the words that decide
the label: raw attention of either layer, rollout with three ways of fusing
the heads, or flow.
"""

# %%
# The classifier and one negated review
# -------------------------------------
#
# :func:`attnlib.pretrained.sentiment_classifier` gives the classifier of
# chapter 4 (two pre-norm encoder layers of four heads, mean pooling) with
# its tokenizer and the test split of the synthetic reviews.
# Our example is a review whose label hangs on a negation: ``"awful"`` alone
# would be negative, ``"not awful"`` is positive.

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnlib.data.synthetic import SENTIMENT_LEXICON
from attnlib.interpret.faithfulness import evidence_scores, evidence_token_positions
from attnlib.interpret.maps import capture_attention
from attnlib.interpret.plots import plot_token_highlights
from attnlib.interpret.relevance import attention_flow, attention_rollout, pooled_relevance
from attnlib.plotting import plot_attention
from attnlib.pretrained import sentiment_classifier

torch.manual_seed(0)
np.random.seed(0)

sentiment = sentiment_classifier()
model, tokenizer, test = sentiment.model, sentiment.tokenizer, sentiment.test
print(f"test accuracy {sentiment.test_accuracy:.3f}")

review = test[test["text"] == "i had popcorn. honestly, the pacing was not awful."].iloc[0]
tokens = sentiment.encode(review["text"])
with torch.no_grad():
    probs = torch.softmax(model(tokens), -1)[0]
maps = capture_attention(model, tokens, tokenizer=tokenizer)
labels = maps.labels("encoder")[1]
weights = maps["encoder"].double()  # (layers, heads, L, L)
evidence = evidence_token_positions(
    review["text"], [int(p) for p in review["evidence_positions"].split()], tokenizer
)
print(
    f"label {review['label']!r}, predicted {sentiment.classes[int(probs.argmax())]!r} "
    f"(p = {probs.max():.2f})"
)
print("tokens:  ", labels)
print("evidence:", [labels[p] for p in evidence])
print("attention maps:", tuple(weights.shape))

# %%
# What one attention map leaves out
# ---------------------------------
#
# A pre-norm encoder layer computes
#
# .. math::
#
#     h' = h + \mathrm{Attn}\big(\mathrm{LN}(h)\big), \qquad
#     h'' = h' + \mathrm{FFN}\big(\mathrm{LN}(h')\big).
#
# The layer norms and the feed-forward network act on each position
# separately: only attention moves information *between* tokens. So the
# token-to-token mixing of a layer is its attention :math:`A` plus the
# identity of the residual connection, and the mixing of the whole stack is
# the product of the layers' mixings. The map of the last layer alone tells
# which *layer-1 representations* the output reads, not which *words*: the
# representation at ``"awful"`` may already carry ``"not"``.
#
# Rollout, written out
# --------------------
#
# Abnar and Zuidema give the residual and the attention equal weight,
# :math:`\hat A_l = \tfrac12 A_l + \tfrac12 I` (re-normalised so rows sum to
# 1), and multiply the layers, first layer on the right:
#
# .. math::
#
#     R = \hat A_L \hat A_{L-1} \cdots \hat A_1, \qquad
#     R_{ij} = \text{share of input token } j \text{ in the output at } i.
#
# The 0.5 is an assumption, not a measurement: it treats the residual
# branch and the attention branch as equally large. The heads of a layer are
# *fused* into one map first: their mean (the paper), their maximum (keep
# every link that some head makes strongly: a sharp head is not averaged
# away by three diffuse ones) or their minimum (keep only links all heads
# agree on).


def rollout(weights, head_fusion="mean", residual=True):
    fuse = {"mean": lambda w: w.mean(0), "max": lambda w: w.amax(0), "min": lambda w: w.amin(0)}
    eye = torch.eye(weights.shape[-1], dtype=weights.dtype)
    r = eye
    for layer in weights:  # (heads, L, L), first layer first
        a = fuse[head_fusion](layer)
        a = 0.5 * a + 0.5 * eye if residual else a
        r = (a / a.sum(-1, keepdim=True)) @ r
    return r


for fusion in ("mean", "max", "min"):
    for residual in (True, False):
        ours = rollout(weights, fusion, residual)
        theirs = attention_rollout(weights, head_fusion=fusion, residual=residual)
        err = (ours - theirs).abs().max().item()
        print(f"head fusion {fusion:4s} residual {residual!s:5s}: max |ours - library| {err:.1e}")
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
R = attention_rollout(maps)  # from the captured maps directly; mean fusion, residual
assert torch.allclose(R.sum(-1), torch.ones(len(labels), dtype=torch.float64))

# %%
# Attention flow
# --------------
#
# Flow reads the same residual-augmented maps as a network of pipes. The
# nodes are (layer, token) pairs: layer 0 holds the input tokens, layer
# :math:`L` the outputs. An edge runs from token :math:`j` at layer
# :math:`l` to token :math:`i` at layer :math:`l+1` with capacity
# :math:`\hat A_{l+1}[i, j]`. The flow score :math:`F_{ij}` is the maximum
# flow that can be pushed from input :math:`j` to output :math:`i`
# (:func:`attnlib.interpret.relevance.attention_flow` solves one max-flow
# problem per pair with networkx). Rollout *multiplies* along paths and adds
# the paths up; flow is limited by the narrowest pipes on the way and by
# paths that share an edge.
#
# With one layer there is a single edge from :math:`j` to :math:`i`, so flow
# and rollout must coincide. We check that on the first layer of our model:

one_layer = weights[:1]
flow_1, rollout_1 = attention_flow(one_layer), attention_rollout(one_layer)
print(f"one layer:  max |flow - rollout| = {(flow_1 - rollout_1).abs().max():.1e}")
assert torch.allclose(flow_1, rollout_1, rtol=0, atol=1e-9)

start = time.perf_counter()
F = attention_flow(maps)
flow_seconds = time.perf_counter() - start
print(f"two layers: max |flow - rollout| = {(F - R).abs().max():.3f}")
print(f"networkx flow for {len(labels)} tokens: {flow_seconds:.2f} s")

# %%
# With two layers the paths from :math:`j` to :math:`i` go through one middle
# node :math:`k` each and share no edge, so the maximum flow is the sum of
# the paths' bottlenecks. Rollout and flow differ only in how a path's two
# edges combine:
#
# .. math::
#
#     R_{ij} = \sum_k \hat A_2[i,k]\, \hat A_1[k,j], \qquad
#     F_{ij} = \sum_k \min\big(\hat A_2[i,k],\ \hat A_1[k,j]\big).
#
# Since weights lie in :math:`[0, 1]`, :math:`\min(a, b) \ge ab`: flow is
# everywhere at least rollout, and its rows no longer sum to 1. The closed
# form agrees with the max-flow solver, and costs one tensor operation
# instead of :math:`L^2` max-flow problems (deeper models have paths that
# share edges and need the solver).


def augmented(weights):
    a = 0.5 * weights.mean(1) + 0.5 * torch.eye(weights.shape[-1], dtype=weights.dtype)
    return a / a.sum(-1, keepdim=True)  # (layers, L, L)


def two_layer_flow(weights):
    a1, a2 = augmented(weights)
    return torch.minimum(a2[:, :, None], a1[None, :, :]).sum(1)  # (i, k, j) -> (i, j)


start = time.perf_counter()
F_closed = two_layer_flow(weights)
closed_seconds = time.perf_counter() - start
print(f"max |closed form - networkx| = {(F_closed - F).abs().max():.1e}")
print(f"closed form: {closed_seconds * 1e3:.2f} ms, networkx: {flow_seconds * 1e3:.0f} ms")
print(f"flow row sums: {F.sum(-1).min():.2f} .. {F.sum(-1).max():.2f}")
assert torch.allclose(F_closed, F, rtol=0, atol=1e-9)
assert (F >= R - 1e-12).all()

# %%
# The networkx solver's cost grows quickly with the length: each of the
# :math:`L^2` problems is on a graph of :math:`2L^2` edges. We time it on
# three more test reviews, of 6, 9 and 15 tokens:

lengths = test["text"].map(lambda t: len(tokenizer.encode(t)))
timing = []
for n in (6, 9, 15):
    w = capture_attention(model, sentiment.encode(test["text"][lengths.eq(n).idxmax()]))["encoder"]
    start = time.perf_counter()
    exact = attention_flow(w)
    timing.append({"tokens": w.shape[-1], "networkx (s)": time.perf_counter() - start})
    assert torch.allclose(two_layer_flow(w.double()), exact, rtol=0, atol=1e-9)
pd.DataFrame(timing).round(3)

# %%
# Three views of one review
# -------------------------
#
# The last layer's raw attention (heads averaged), the rollout and the flow
# of the example. The last layer reads the column of ``"awful"`` from every
# position, ``"not"`` much less. Rollout and flow trace that through the
# first layer, where ``"awful"`` itself read ``"not"``: they put the most on
# ``"not"``, then on ``"awful"``. Rollout's diagonal is heavy (every token
# keeps at least a quarter of itself through the two residual connections),
# and so is flow's, whose entries are larger everywhere (its rows sum to
# more than 1).

fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), layout="constrained")
views = {
    "raw attention, layer 1 (mean of heads)": weights[-1].mean(0),
    "attention rollout": R,
    "attention flow": F,
}
for ax, (title, w) in zip(axes, views.items(), strict=True):
    plot_attention(w, labels, labels, ax=ax, title=title, annotate=False, ylabel="output")
fig.suptitle(f"{review['text']!r}: token-to-token maps")
plt.show()

# %%
# The classifier averages its outputs over the tokens, so the share of token
# :math:`j` in the pooled representation is the mean of column :math:`j`
# over the rows (:func:`attnlib.interpret.relevance.pooled_relevance`). The
# highlighted text shows each view's token scores beside the ground truth.

pooled = {
    "raw attention, layer 1": pooled_relevance(weights[-1].mean(0)),
    "attention rollout": pooled_relevance(R),
    "attention flow": pooled_relevance(F),
    "ground truth (evidence words)": torch.tensor(
        [float(p in evidence) for p in range(len(labels))]
    ),
}
fig, axes = plt.subplots(4, 1, figsize=(8, 6), layout="constrained")
for ax, (title, scores) in zip(axes, pooled.items(), strict=True):
    plot_token_highlights(labels, scores, ax=ax, title=title)
fig.suptitle("Pooled relevance of each token")
plt.show()
pd.DataFrame({k: v.numpy() for k, v in pooled.items()}, index=labels).T.round(3)

# %%
# Against the ground truth
# ------------------------
#
# Every review of the corpus records the words that decide its label (the
# adjective with its ``"not"`` and ``"very"``; for a contrast only the clause
# after ``"but"``). For each review with evidence words (filler-only neutral
# reviews have none) and each view we ask
# :func:`attnlib.interpret.faithfulness.evidence_scores` for the precision at
# :math:`k` (the share of the :math:`k` top-scored tokens that are evidence,
# :math:`k` = number of evidence tokens) and the mass (the share of the
# score on evidence tokens). A random ranking has precision :math:`k/n` on
# average, and a uniform score has mass :math:`k/n`: that is chance.
#
# The networkx flow would take about half a second per review, minutes for
# the test split; the closed form above is exact for this two-layer model,
# so we use it for all of them. We also add rollout without the residual
# term, to see what the :math:`\tfrac12 I` buys. For the negated reviews we
# also note whether the top :math:`k` holds ``"not"``, and whether it holds
# every evidence adjective.

adjectives = {w for kind in ("positive", "negative", "neutral") for w in SENTIMENT_LEXICON[kind]}
methods = {
    "raw attention, layer 0": lambda w: w[0].mean(0),
    "raw attention, layer 1": lambda w: w[1].mean(0),
    "rollout, mean fusion": lambda w: attention_rollout(w, head_fusion="mean"),
    "rollout, max fusion": lambda w: attention_rollout(w, head_fusion="max"),
    "rollout, min fusion": lambda w: attention_rollout(w, head_fusion="min"),
    "rollout, no residual": lambda w: attention_rollout(w, residual=False),
    "attention flow": two_layer_flow,
}
rows = []
start = time.perf_counter()
for _, r in test[test["evidence_positions"] != ""].iterrows():
    w = capture_attention(model, sentiment.encode(r["text"]))["encoder"].double()
    positions = [int(p) for p in r["evidence_positions"].split()]
    truth = evidence_token_positions(r["text"], positions, tokenizer)
    words = tokenizer.tokenize(r["text"])
    for name, method in methods.items():
        relevance = pooled_relevance(method(w))
        row = {"method": name, "negated": r["negated"], **evidence_scores(relevance, truth)}
        if r["negated"]:
            top = set(relevance.topk(len(truth)).indices.tolist())
            row["'not' in top k"] = float(any(words[p] == "not" for p in top))
            row["adjective in top k"] = float(
                all(p in top for p in truth if words[p] in adjectives)
            )
        rows.append(row)
scored = pd.DataFrame(rows)
print(
    f"{scored.shape[0] // len(methods)} reviews x {len(methods)} views in "
    f"{time.perf_counter() - start:.1f} s"
)

summary = scored.groupby("method", sort=False)[["precision", "mass", "chance"]].mean()
negated = scored[scored["negated"]].groupby("method")
summary["precision, negated"] = negated["precision"].mean()
summary["negated: 'not' in top k"] = negated["'not' in top k"].mean()
summary["negated: adjective in top k"] = negated["adjective in top k"].mean()
summary["precision / chance"] = summary["precision"] / summary["chance"]
summary.round(3)

# %%
# Flow and rollout with mean or max fusion find the evidence best and are
# tied: about 82 % of their top-:math:`k` tokens are evidence words, more
# than five times chance. Raw attention of the *last* layer, the map one is
# tempted to draw, is the worst view: the last two columns show why. In a
# negated review it finds the adjective but rarely ``"not"``, because by the
# second layer the adjective's representation already holds the negation,
# read from ``"not"`` by the first layer; rollout and flow follow that path
# back and find ``"not"`` in almost every negated review. The first layer's
# raw map points at the words themselves, and puts the most *mass* on them:
# rollout and flow spread mass onto every token through the identity, which
# lowers the mass though not the ranking. Without the residual term rollout
# loses about 7 points of precision; min fusion keeps only the links all
# four heads agree on and loses more.

chance = summary["chance"].iloc[0]
fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
x = np.arange(len(summary))
ax.bar(x - 0.2, summary["precision"], 0.4, label="precision at k")
ax.bar(x + 0.2, summary["mass"], 0.4, label="mass on evidence")
ax.axhline(chance, color="black", ls="--", lw=1, label=f"chance ({chance:.2f})")
ax.set_xticks(x, summary.index, rotation=25, ha="right", rotation_mode="anchor")
ax.set_xlabel("view")
ax.set_ylabel("mean over test reviews")
ax.set_ylim(0, 1)
ax.set_title(f"Agreement with the evidence words ({scored.shape[0] // len(methods)} reviews)")
ax.legend(fontsize=8)
plt.show()

# %%
# The path through the first layer can be measured directly. In every
# negated test review, take each polar adjective that follows a ``"not"``
# (at most four words back): how much does it attend to that ``"not"`` in
# layer 0, and how much attention do the two words receive in layer 1?

polar = set(SENTIMENT_LEXICON["positive"]) | set(SENTIMENT_LEXICON["negative"])
path = []
for text in test.loc[test["negated"], "text"]:
    w = capture_attention(model, sentiment.encode(text))["encoder"].mean(1)  # (layers, L, L)
    words = tokenizer.tokenize(text)
    for i, word in enumerate(words):
        nots = [j for j in range(max(0, i - 4), i) if words[j] == "not"]
        if word in polar and nots:
            j = nots[-1]
            path.append(
                {
                    "layer 0: adjective -> 'not'": w[0, i, j].item(),
                    "uniform weight 1/n": 1 / len(words),
                    "layer 1: received by 'not'": w[1, :, j].mean().item(),
                    "layer 1: received by the adjective": w[1, :, i].mean().item(),
                }
            )
path = pd.DataFrame(path)
print(f"{len(path)} negated adjectives")
path.mean().to_frame("mean").round(3)

# %%
# The adjective reads its ``"not"`` in the first layer with several times the
# uniform weight; in the last layer the adjective, now carrying the
# negation, receives about three times as much attention as ``"not"``. The raw
# last-layer map is right about what the output reads and wrong about which
# words it came from.
#
# Checks
# ------
#
# Measured with the default classifier, precision at :math:`k` on the 344
# test reviews with evidence words: flow 0.821, rollout (mean fusion) 0.820,
# rollout (max) 0.813, raw layer 0 0.774, rollout without residual 0.754,
# rollout (min) 0.673, raw layer 1 0.588, chance 0.151. Paired bootstrap
# 95 % intervals of the differences: rollout minus raw layer 1 [0.19, 0.28],
# rollout minus raw layer 0 [0.02, 0.07], rollout minus rollout without
# residual [0.05, 0.09], max minus min fusion [0.10, 0.18]; the thresholds
# sit below them.

best = summary["precision"].idxmax()
precision = summary["precision"]
print(f"best view: {best} ({precision[best]:.3f}, chance {chance:.3f})")
assert best.startswith("rollout") or best == "attention flow", summary
assert precision[best] > chance + 0.5, summary  # measured 0.821 vs 0.151
assert precision["rollout, mean fusion"] > 4.5 * chance, summary  # measured 5.4x
assert precision["attention flow"] > 4.5 * chance, summary  # measured 5.4x
assert precision["rollout, mean fusion"] > precision["raw attention, layer 1"] + 0.15, summary
assert precision["rollout, mean fusion"] > precision["raw attention, layer 0"], summary
assert precision["rollout, mean fusion"] > precision["rollout, no residual"] + 0.02, summary
assert precision["rollout, min fusion"] + 0.07 < min(
    precision["rollout, mean fusion"], precision["rollout, max fusion"]
), summary
# two layers: flow differs from rollout and is at least rollout everywhere
assert (F - R).abs().max() > 0.05 and (F >= R - 1e-12).all()
# the first layer carries "not" into the adjective, the last layer reads the adjective
means = path.mean()
assert means["layer 0: adjective -> 'not'"] > 3 * means["uniform weight 1/n"], means
assert means["layer 1: received by the adjective"] > 2 * means["layer 1: received by 'not'"], means
