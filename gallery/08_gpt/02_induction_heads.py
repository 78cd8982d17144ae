"""
Induction heads, forming
========================

Give a language model ``... Harry Potter ... Harry`` and it predicts
``Potter``: it copies from its own context what followed the last time. In
Transformers this is the work of **induction heads** (Elhage et al., 2021, "A
Mathematical Framework for Transformer Circuits"; Olsson et al., 2022,
"In-context Learning and Induction Heads", arXiv:2209.11895): a circuit of two
heads in two layers that completes ``[A][B] ... [A] → [B]`` for tokens it has
never seen together. Olsson et al. found that these heads appear suddenly in
training — a *phase change*, visible as a bump in the loss curve — and that a
one-layer model cannot form them.

This page reproduces that on one CPU core: a two-layer, attention-only
Transformer learns to complete repeated random segments; we watch the phase
change happen, find the two heads of the circuit with three per-head scores,
see one head feed the other, and knock each head out to see which ones the
model cannot do without. A one-layer model trained the same way is the
control.
"""

# %%
# The task: a segment, seen twice
# -------------------------------
#
# Each training sequence is :math:`L = 40` random tokens from a vocabulary of
# :math:`V = 32`, in which a random segment of 8 to 16 tokens appears twice,
# the second time at a random later place
# (:func:`attnlib.tasks.repeated_segment_batch`). Nothing about a token's
# identity can be learnt: they are drawn uniformly, so the best a model can do
# on the first copy is :math:`\log 32 \approx 3.47` nats. But every token of
# the second copy after its first one is *predictable*: find the previous
# token earlier in the sequence and say what came after it. The segment's
# length and both places vary from row to row (fixed ones would let a model
# memorise positions instead of reading the context).
#
# We write tokens as letters. In the example below the first copy is in
# square brackets and the second copy in angle brackets.

import string
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from attnlib.interpret import intervene_attention
from attnlib.interpret.circuits import (
    ablate_head,
    attention_maps,
    copying_score,
    in_context_loss,
    phase_change_step,
    prefix_matching_score,
    previous_token_score,
)
from attnlib.plotting import outline_cells, plot_attention
from attnlib.pretrained import induction_transformer
from attnlib.report import key_figure
from attnlib.tasks import repeated_segment_batch
from attnlib.training import seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, else 0
LETTERS = string.ascii_lowercase + string.ascii_uppercase  # token id -> a letter


def show(batch, row: int) -> str:
    """One row of a batch as letters, the two copies bracketed."""
    first, second, n = (int(getattr(batch, k)[row]) for k in ("first", "second", "segment"))
    out = []
    for i, t in enumerate(batch.tokens[row].tolist()):
        out.append(("[" if i == first else "<" if i == second else "") + LETTERS[t])
        out[-1] += "]" if i == first + n - 1 else ">" if i == second + n - 1 else ""
    return " ".join(out)


start = time.perf_counter()
two = induction_transformer(2)  # trained here, or loaded from attnlib's cache
one = induction_transformer(1)  # the control: one layer, the same recipe
recipe = two.config
L, V = recipe["length"], recipe["vocab_size"]
data = {k: recipe[k] for k in ("min_segment", "max_segment")}
test = repeated_segment_batch(512, L, V, generator=seeded_generator(303), **data)
print(show(test, 0))
print(f"{int(test.predictable.sum())} predictable tokens in {len(test.tokens)} test sequences")

# %%
# Two models, one recipe
# ----------------------
#
# :func:`attnlib.pretrained.induction_transformer` trains an **attention-only**
# :class:`attnlib.transformer.DecoderLM` — no feed-forward blocks, as in
# Elhage et al. and Olsson et al., so that everything the model does happens
# in its attention heads — with :math:`d_{\text{model}} = 64` and four heads
# per layer, on fresh batches of 32 sequences, for 1 500 steps of AdamW at a
# learning rate of :math:`10^{-3}`, logging the losses and the head scores
# on a fixed batch every 50 steps. It caches the trained weights and the
# history on disk, like the chapter-4 classifier, so a second build loads them.
#
# One choice of the recipe was measured, not assumed: the positions are
# **rotary** (Su et al., 2021, arXiv:2104.09864; ``positions="rotary"``),
# which rotate queries and keys so that a score depends on the relative
# position only. "Attend to the token just before me" is then one pattern
# for every position. With GPT-2's learned absolute positions the same
# models, on shorter segments, had not formed the circuit after 3 000 steps.

print(
    f"models ready in {time.perf_counter() - start:.1f} s; training took "
    f"{two.train_seconds:.1f} s (two layers) and {one.train_seconds:.1f} s (one layer) "
    "on the machine that trained them"
)
for name, run in (("two layers", two), ("one layer", one)):
    n = sum(p.numel() for p in run.model.parameters())
    print(f"{name}: {n:,} parameters")

# %%
# The phase change
# ----------------
#
# The history holds, every 50 steps, the loss on the predictable tokens of the
# second copy, the loss on the same tokens in the first copy (where they are
# random), and two head scores defined in the next section: the best
# previous-token score in the first layer and the best prefix-matching score
# in the last one. We call the **phase change** the step at which the
# two-layer model's second-copy loss has covered half of its drop
# (:func:`attnlib.interpret.circuits.phase_change_step`), and measure how
# sudden it is: the largest share of the whole drop that happens within any
# 300 steps.

h2, h1 = two.history, one.history
phase = key_figure(
    "phase change (step), two layers", phase_change_step(h2.step, h2.second_loss), fmt="{:.0f}"
)
rise = key_figure(
    "prefix matching halfway (step)", phase_change_step(h2.step, -h2.prefix_matching), fmt="{:.0f}"
)
window = 300 // int(h2.step[1] - h2.step[0])  # rows per 300 steps
drops = h2.second_loss.to_numpy()[:-window] - h2.second_loss.to_numpy()[window:]
sudden = key_figure(
    "largest share of the drop in 300 steps",
    drops.max() / (h2.second_loss.iloc[0] - h2.second_loss.iloc[-1]),
)
before = int(np.searchsorted(h2.step, phase - 300))  # the row 300 steps before
gap_before = key_figure(
    "two minus one layer, 300 steps before", h2.second_loss[before] - h1.second_loss[before]
)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for name, h, colour in (("two layers", h2, "C0"), ("one layer", h1, "C1")):
    axes[0].plot(h.step, h.second_loss, color=colour, label=f"{name}: second copy")
    axes[0].plot(h.step, h.first_loss, color=colour, ls=":", label=f"{name}: first copy")
    axes[1].plot(
        h.step, h.prefix_matching, color=colour, label=f"{name}: prefix matching (last layer)"
    )
    axes[1].plot(
        h.step, h.previous_token, color=colour, ls="--", label=f"{name}: previous token (layer 0)"
    )
for ax in axes:
    ax.axvline(phase, color="grey", lw=1)
    ax.set_xlabel("training step")
axes[0].axhline(np.log(V), color="grey", ls="--", lw=0.8)
axes[0].text(0, np.log(V) + 0.05, "log V", color="grey", va="bottom")
axes[0].set_ylabel("cross-entropy (nats)")
axes[0].set_title("Loss on the predictable tokens")
axes[1].set_ylabel("best head's score")
axes[1].set_title("Head scores (grey line: the phase change)")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=8, loc="upper left")
fig.suptitle("The two-layer model learns to copy all at once; the one-layer model never does")
plt.show()

# %%
# For the first few hundred steps the two models are level: both learn that
# a token seen earlier in the sequence is somewhat more likely to come again,
# which lowers the second-copy loss a little below :math:`\log V` (one layer
# can do that: attend to earlier tokens and raise their logits). Then the
# two-layer model's loss falls by more than two nats within a few hundred
# steps, and in the same steps a head of its last layer starts to attend
# to the token after the earlier occurrence (prefix matching) while a head of
# its first layer turns into a previous-token head. The key figures above
# give the steps; across the robustness matrix's seeds (0 to 2, one and two
# threads) the phase change happened between steps 800 and 950.
#
# Three scores per head
# ---------------------
#
# - **Previous-token score**: the mean attention from each token to the one
#   just before it (:func:`~attnlib.interpret.circuits.previous_token_score`).
# - **Prefix-matching score** (Olsson et al.): at a token ``A`` of the second
#   copy, the attention to the token that followed ``A`` in the first copy
#   (:func:`~attnlib.interpret.circuits.prefix_matching_score`). Written out
#   for one head below.
# - **Copying score**: if the head attended only to a position holding token
#   ``t``, would its output raise ``t``'s logit above the others? The share
#   of the other tokens that ``t`` beats, averaged over the positions of the
#   test sequences (0.5 is chance, 0 is anti-copying; the head's "OV circuit"
#   of Elhage et al., read through the LayerNorms;
#   :func:`~attnlib.interpret.circuits.copying_score`). We pass it the test
#   tokens so that each layer reads the residual stream it really reads: in
#   a small attention-only model the token embedding is a small part of it,
#   and a second-layer head copies what the first layer wrote (the score
#   computed from the embedding alone misses that).
#
# An induction head has both a high prefix-matching and a high copying score:
# it looks at the right token and says it.

scores = {}
for name, run in (("two layers", two), ("one layer", one)):
    maps = attention_maps(run.model, test.tokens)  # (B, layers, H, L, L)
    scores[name] = {
        "previous token": previous_token_score(maps),  # (layers, H)
        "prefix matching": prefix_matching_score(maps, test),
        "copying": copying_score(run.model, test.tokens),
    }
    if name == "two layers":
        maps2 = maps

fig, axes = plt.subplots(
    2, 3, figsize=(11, 4.6), layout="constrained", gridspec_kw={"height_ratios": [2, 1]}
)
for r, (name, table) in enumerate(scores.items()):
    for c, (score, values) in enumerate(table.items()):
        layers = [f"layer {i}" for i in range(values.shape[0])]
        plot_attention(
            values,
            layers,
            [f"head {j}" for j in range(values.shape[1])],
            ax=axes[r, c],
            vmin=0,
            vmax=1,
            annotate=True,
            colorbar=c == 2,
            title=f"{score}, {name}",
            xlabel="",
            ylabel="",
        )
for ax in axes[:, 2]:
    ax.images[0].colorbar.set_label("score")
fig.suptitle("Per-head scores of the two-layer model (top) and the one-layer control (bottom)")
plt.show()

s2, s1 = scores["two layers"], scores["one layer"]
prev_head = int(s2["previous token"][0].argmax())  # the first layer's best previous-token head
prev_heads = (s2["previous token"][0] > 0.2).nonzero().flatten().tolist() or [prev_head]
ind_head = int(s2["prefix matching"][1].argmax())  # the second layer's best induction head
induction_heads = (s2["prefix matching"][1] > 0.3).nonzero().flatten().tolist() or [ind_head]
print(f"previous-token heads (score above 0.2): layer 0, heads {prev_heads}")
print(f"induction heads (prefix matching above 0.3): layer 1, heads {induction_heads}")
prev_score = key_figure("best previous-token score, layer 0", s2["previous token"][0, prev_head])
match_score = key_figure(
    "prefix-matching score, best induction head", s2["prefix matching"][1, ind_head]
)
copy_scores = s2["copying"][1, induction_heads]
copy_score = key_figure("lowest copying score, induction heads", copy_scores.min())
control_match = key_figure("best prefix-matching score, one layer", s1["prefix matching"].max())
control_copy = key_figure("best copying score, one layer", s1["copying"].max())
uniform_prev = key_figure(
    "previous-token score of uniform attention",
    previous_token_score(torch.tril(torch.ones(L, L)) / torch.arange(1, L + 1)[:, None]),
)

# %%
# Olsson et al. describe one induction head; this model has several in its
# second layer (the table above; how many varies with the seed), which
# divide the work, and the previous-token job, too, is often shared by two
# or three first-layer heads. We call a head an induction head if its
# prefix-matching score is above 0.3 and a previous-token head if its
# previous-token score is above 0.2 (uniform attention scores the value
# printed above). Each reads what the first layer wrote and copies it:
# their copying scores are near 1. The first layer's heads, with copying
# scores near 0, do not copy tokens to the output; they move information
# between positions for the second layer to read. The one-layer control
# has copying heads but no prefix matching: it can raise the logits of
# tokens that occurred earlier, not find the one that comes next.
#
# The prefix-matching score written out, for the best induction head: for every
# predictable token at position :math:`j` of the second copy, the query is
# the token before it, :math:`j - 1` (an ``A``), and the key is
# ``source[j]``, the place of the same token in the first copy (the ``B``
# after the first ``A``).

weights = maps2[:, 1, ind_head]  # (B, L, L)
by_hand = []
for b, j in test.predictable.nonzero().tolist():
    by_hand.append(float(weights[b, j - 1, test.source[b, j]]))
by_hand = float(np.mean(by_hand))
print(f"by hand {by_hand:.6f}, attnlib {float(s2['prefix matching'][1, ind_head]):.6f}")

# %%
# The circuit on one sequence
# ---------------------------
#
# Why two layers? An induction head at the second ``A`` must find the
# ``B`` whose *previous* token was ``A``. A key vector only describes its own
# position — unless an earlier head has already copied "the token before me"
# into it. That is what the previous-token heads of layer 0 do. Their output
# feeds the keys of the induction heads in layer 1 (*K-composition*, Elhage
# et al.). A one-layer model has no earlier head, and its keys cannot know
# their predecessors.
#
# Below, on the first test sequence: the best previous-token head (the red
# boxes mark each token's predecessor), the best induction head (red boxes:
# the token after the earlier occurrence, for each query in the second
# copy), and the same induction head when the previous-token heads are
# knocked out (made to attend uniformly over the tokens they may see): the
# stripe is gone.

row = 0
labels = [LETTERS[t] for t in test.tokens[row].tolist()]
causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
prev_cells = torch.diag(torch.ones(L - 1, dtype=torch.bool), -1)
ind_cells = torch.zeros(L, L, dtype=torch.bool)
for j in test.predictable[row].nonzero().flatten().tolist():
    ind_cells[j - 1, test.source[row, j]] = True
knocked_maps = {}
for heads in [[h] for h in range(two.model.blocks.layers[0].self_attn.num_heads)] + [prev_heads]:
    with ablate_head(two.model, 0, heads):
        knocked_maps[tuple(heads)] = attention_maps(two.model, test.tokens)  # (B, layers, H, L, L)

fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), layout="constrained")
panels = [
    (maps2[row, 0, prev_head], prev_cells, f"layer 0, head {prev_head}: previous token"),
    (maps2[row, 1, ind_head], ind_cells, f"layer 1, head {ind_head}: induction"),
    (
        knocked_maps[tuple(prev_heads)][row, 1, ind_head],
        ind_cells,
        f"layer 1, head {ind_head}, layer 0 heads {prev_heads} knocked out",
    ),
]
for ax, (w, cells, title) in zip(axes, panels, strict=True):
    plot_attention(
        w, labels, labels, ax=ax, mask=causal, vmin=0, vmax=1, title=title, colorbar=ax is axes[-1]
    )
    outline_cells(ax, cells, linewidth=1.5)
    ax.tick_params(labelsize=6)
fig.suptitle(f"The induction circuit on one test sequence: {show(test, row)}", fontsize=9)
plt.show()

# %%
# The same on all test sequences: the induction heads' mean prefix-matching
# score when one head of layer 0 is knocked out, and when the previous-token
# heads are knocked out together. The last column is each first-layer head's
# attention to its own position (the diagonal).


def mean_matching(maps: torch.Tensor) -> float:
    """The induction heads' mean prefix-matching score."""
    return float(prefix_matching_score(maps, test)[1, induction_heads].mean())


self_scores = torch.diagonal(maps2[:, 0], 0, -2, -1).mean(-1).mean(0)  # (H,) layer 0
intact_match = key_figure("induction heads' prefix matching, intact", mean_matching(maps2))
for heads, maps in knocked_maps.items():
    prev = ", ".join(f"{float(s2['previous token'][0, h]):.2f}" for h in heads)
    own = ", ".join(f"{float(self_scores[h]):.2f}" for h in heads)
    print(
        f"layer 0, heads {list(heads)} knocked out: {mean_matching(maps):.3f}  "
        f"(previous-token score {prev}; self {own})"
    )
knocked_match = key_figure(
    "induction heads' prefix matching, previous-token heads knocked out",
    mean_matching(knocked_maps[tuple(prev_heads)]),
)
self_head = int(self_scores.argmax())
self_match = key_figure(
    "induction heads' prefix matching, self-attending head knocked out",
    mean_matching(knocked_maps[(self_head,)]),
)

# %%
# Knocking out the previous-token heads takes most of the induction heads'
# prefix matching away, as K-composition predicts. One more first-layer head
# matters, in every seed we ran: the one that attends mostly to its own
# position (the largest "self" value). It does not move information between
# positions; it rewrites the current token into a form that the induction
# heads' *queries* can match against the keys (*Q-composition*, Elhage et
# al.). Knocking it out lowers the prefix matching too (the run prints by
# how much).
#
# Knocking heads out
# ------------------
#
# If this circuit is what the model uses, removing its heads should take the
# in-context copying away and leave the rest. We knock out each head in turn
# and then all the induction heads together — a knocked-out head attends
# uniformly over the tokens it may see, so its output becomes an average of
# the context — and measure the loss on the second copy and on the first.
# The intervention is :func:`attnlib.interpret.faithfulness.intervene_attention`, which
# lets a function replace the attention weights of every attention module
# inside the module it is given; we give it one layer and a function that
# changes some of its heads. (:func:`attnlib.interpret.circuits.ablate_head`
# is the library's shortcut for the same; we check that they agree.)


def uniform_heads(heads: list[int]):
    """Replace some heads' weights (B, H, Lq, Lk) by uniform weights over their allowed keys."""

    def fn(weights: torch.Tensor) -> torch.Tensor:
        weights = weights.clone()
        for head in heads:
            allowed = (weights[:, head] > 0).to(weights.dtype)  # the causal prefix
            weights[:, head] = allowed / allowed.sum(-1, keepdim=True)
        return weights

    return fn


rows = []
for name, run in (("two layers", two), ("one layer", one)):
    base = in_context_loss(run.model, test)
    rows.append((name, "none", base["second"], base["first"]))
    for layer, block in enumerate(run.model.blocks.layers):
        for head in range(block.self_attn.num_heads):
            with intervene_attention(block, uniform_heads([head])):
                loss = in_context_loss(run.model, test)
            rows.append((name, f"layer {layer}, head {head}", loss["second"], loss["first"]))
    if name == "two layers":
        for label, layer, heads in (
            ("previous-token heads", 0, prev_heads),
            ("all induction heads", 1, induction_heads),
        ):
            with intervene_attention(run.model.blocks.layers[layer], uniform_heads(heads)):
                loss = in_context_loss(run.model, test)
            rows.append((name, label, loss["second"], loss["first"]))
ablation = {(m, h): (s, f) for m, h, s, f in rows}
for m, h, s, f in rows:
    print(f"{m:10s} {h:20s} second copy {s:.3f}  first copy {f:.3f}")

with ablate_head(two.model, 1, induction_heads):  # the library's shortcut
    shortcut = in_context_loss(two.model, test)["second"]
print(
    f"ablate_head gives {shortcut:.6f}, intervene_attention "
    f"{ablation[('two layers', 'all induction heads')][0]:.6f}"
)

fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
ax.bar(
    range(len(rows)),
    [s for _, _, s, _ in rows],
    color=["C0" if m == "two layers" else "C1" for m, *_ in rows],
)
ax.axhline(np.log(V), color="grey", ls="--", lw=0.8)
ax.set_xticks(range(len(rows)), [f"{m}: {h}" for m, h, _, _ in rows], rotation=60, ha="right")
ax.tick_params(axis="x", labelsize=8)
ax.set_ylabel("loss on the second copy (nats)")
ax.set_title("Knocking heads out (blue: two layers; orange: one layer; dashed: log V)")
plt.show()

base2 = ablation[("two layers", "none")][0]
all_cost = key_figure(
    "second-copy loss, all induction heads knocked out",
    ablation[("two layers", "all induction heads")][0],
)
best_single = key_figure(
    "second-copy loss increase, best induction head alone knocked out",
    ablation[("two layers", f"layer 1, head {ind_head}")][0] - base2,
)
prev_cost = key_figure(
    "second-copy loss increase, previous-token heads knocked out",
    ablation[("two layers", "previous-token heads")][0] - base2,
)
first_shift = key_figure(
    "largest change of the first-copy loss, any knock-out",
    max(
        abs(f - ablation[("two layers", "none")][1])
        for (m, _), (_, f) in ablation.items()
        if m == "two layers"
    ),
)

# %%
# What the run shows (the key figures and tables above): the two-layer model
# learns to predict the second copy — its loss there ends far below the first
# copy's :math:`\log V` — and it does so in a sudden drop, the phase change,
# while the one-layer model, trained the same way, improves a little and
# stays there. In the two-layer model heads of layer 0 attend to the
# previous token, and heads of layer 1 are induction heads: they attend
# from each ``A`` to the ``B`` after the earlier ``A`` and copy it. Their
# attention depends on the previous-token heads (K-composition) and on a
# self-attending head (Q-composition): with those knocked out, their
# prefix matching falls. Knocking out all the induction heads sends the
# second-copy loss back to the one-layer model's level or above; one
# induction head alone costs less, because the others share its work; the
# first copy, which no head can predict, barely changes.
#
# Checks
# ------

assert abs(by_hand - float(s2["prefix matching"][1, ind_head])) < 1e-6  # written out = library
assert abs(shortcut - ablation[("two layers", "all induction heads")][0]) < 1e-6
final2, final1 = h2.second_loss.iloc[-1], h1.second_loss.iloc[-1]
assert final2 < h2.first_loss.iloc[-1] - 2.0, h2.tail()  # the two-layer model copies
assert final1 > final2 + 1.5, (final1, final2)  # the control cannot
assert 300 <= phase <= 1400, phase  # a phase change inside the run
assert sudden > 0.5, sudden  # most of the drop within 300 steps
assert abs(rise - phase) <= 200, (rise, phase)  # prefix matching rises with it
assert abs(gap_before) < 0.3, gap_before  # level with the control before it
assert prev_score > 3 * uniform_prev, (prev_score, uniform_prev)
assert match_score > 0.5 and copy_score > 0.7, (match_score, copy_scores)
assert control_match < 0.2, control_match
assert knocked_match < 0.4 * intact_match, (knocked_match, intact_match)  # K-composition
assert self_match < 0.8 * intact_match, (self_match, intact_match)  # Q-composition
assert all_cost > final1 - 0.3, (all_cost, final1)  # no better than one layer
assert prev_cost > 1.0, prev_cost
assert first_shift < 0.3, first_shift
print("all checks passed")
