"""
The attention zoo: every scoring function on one task
======================================================

The previous tutorials met the attention types one at a time. Here they all
run the same race: one GRU encoder-decoder (:class:`attnlib.seq2seq.Seq2Seq`
with a bidirectional encoder), one task with a known alignment (reverse a
sequence), one seed, one budget of
training steps, one hidden size; only the attention layer of the decoder
changes. A table then compares accuracy, parameter count, training time and
how often each model's attention lands where the known alignment says it
should, and a grid shows every learned alignment side by side.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnlib.attention import (
    AdditiveAttention,
    ContentBasedAttention,
    HardAttention,
    LocalAttention,
    LocationBasedAttention,
    LuongAttention,
    ScaledDotProductAttention,
)
from attnlib.capture import record_attention
from attnlib.decoding import greedy_decode
from attnlib.plotting import plot_attention_heads
from attnlib.report import key_figure
from attnlib.seq2seq import Seq2Seq
from attnlib.tasks import BOS, EOS, PAD, algorithmic_batch, decoded_correct
from attnlib.training import Trainer, seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, else 0

# %%
# The task: reverse a sequence
# ----------------------------
#
# A source of 4 to 8 letters must be written backwards, then an end token.
# The alignment is known exactly: output position :math:`t` of a source of
# length :math:`L` copies source position :math:`j = L - 1 - t`, an
# anti-diagonal. Reversal also *reorders*, so a layer that assumes a
# monotone alignment will be put to the test.
# :func:`attnlib.tasks.algorithmic_batch` draws the sources, the targets
# (``<s>``, the answer, ``</s>``) and that alignment.

LETTERS = "abcdefghij"
VOCAB = 3 + len(LETTERS)  # 13 token ids
MIN_LEN, MAX_LEN = 4, 8
NAMES = ["<pad>", "<s>", "</s>", *LETTERS]


def reversal_batch(n, generator):
    """Sources (n, S), targets (n, S + 2), alignment (n, S + 1): output t reads L - 1 - t."""
    return algorithmic_batch("reverse", n, MIN_LEN, MAX_LEN, len(LETTERS), generator=generator)


def words(ids):
    return [NAMES[i] for i in ids if i != PAD]


test_src, test_tgt, test_align = reversal_batch(500, seeded_generator(1234))
print("source:   ", " ".join(words(test_src[0].tolist())))
print("target:   ", " ".join(words(test_tgt[0].tolist())))
print("alignment:", test_align[0][test_align[0] >= 0].tolist())

# %%
# The contenders
# --------------
#
# Ten attention layers from :mod:`attnlib.attention`, plus a decoder with no
# attention at all (it sees the source only through the encoder's last state,
# the bottleneck attention was invented to remove). Every layer takes the
# decoder state as its query and the encoder states as keys and values. The
# encoder reads the source in both directions (``bidirectional=True``: two
# GRUs of half the width, :class:`attnlib.seq2seq.RecurrentEncoder`), as in
# Bahdanau et al., so that the state at position :math:`j` describes letter
# :math:`j` in its context on both sides.
# :class:`attnlib.attention.ScaledDotProductAttention` has no parameters and
# takes ``(query, key, value, mask)``, so it plugs into the decoder as it is.
# The sources: additive, Bahdanau, Cho and Bengio (2015, arXiv:1409.0473);
# dot, general, concat, location, local-m and local-p, Luong, Pham and
# Manning (2015, arXiv:1508.04025); scaled dot, Vaswani et al. (2017,
# arXiv:1706.03762); cosine, Graves, Wayne and Danihelka (2014,
# arXiv:1410.5401); hard, Xu et al. (2015, arXiv:1502.03044).

HIDDEN, EMB = 32, 16
WINDOW = 2  # half-width D of the local windows

CONTENDERS = {
    "none": ("(no attention)", lambda: None),
    "dot": ("q·k", lambda: LuongAttention(HIDDEN, method="dot")),
    "scaled dot": ("q·k / √d", lambda: ScaledDotProductAttention()),
    "general": ("qᵀ W k", lambda: LuongAttention(HIDDEN, method="general")),
    "concat": ("vᵀ tanh(W [q; k])", lambda: LuongAttention(HIDDEN, method="concat")),
    "additive": ("vᵀ tanh(W_q q + W_k k)", lambda: AdditiveAttention(HIDDEN)),
    "content (cosine)": ("β cos(q, k)", lambda: ContentBasedAttention(HIDDEN)),
    "location": ("W_a q (ignores k)", lambda: LocationBasedAttention(HIDDEN, MAX_LEN)),
    "local-m": ("qᵀ W k in [t-D, t+D]", lambda: LocalAttention(HIDDEN, WINDOW, mode="local-m")),
    "local-p": (
        "qᵀ W k × Gaussian at p_t",
        lambda: LocalAttention(HIDDEN, WINDOW, mode="local-p"),
    ),
    "hard": ("qᵀ W k, one key (straight-through)", lambda: HardAttention(HIDDEN)),
}

# %%
# Same seed, same steps, same width
# ---------------------------------
#
# Each model starts from the same seed (``seed_everything(offset=0)``, the
# run's base seed), sees the same 140 batches of 96 sequences in the same
# order (a generator reseeded per model) and is trained with Adam and teacher
# forcing (:class:`attnlib.training.Trainer`, gradients clipped at norm 1).
# Only the attention layer differs.

STEPS, BATCH, LR = 140, 96, 1e-2


def train(make_attention):
    seed_everything(offset=0)  # the same seed for every model
    data = seeded_generator(0)  # the same batches, in the same order
    attention = make_attention()
    model = Seq2Seq(VOCAB, VOCAB, EMB, HIDDEN, attention=attention, bidirectional=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    trainer = Trainer(model, optimiser, grad_clip=1.0, device="cpu", verbose=False)
    (epoch,) = trainer.fit((reversal_batch(BATCH, data)[:2] for _ in range(STEPS)), epochs=1)
    n_params = sum(p.numel() for p in attention.parameters()) if attention is not None else 0
    return model.eval(), n_params, epoch["time"]


models, n_params, seconds = {}, {}, {}
for name, (_, make_attention) in CONTENDERS.items():
    models[name], n_params[name], seconds[name] = train(make_attention)
    print(f"{name:>17}: {seconds[name]:4.1f} s")

# %%
# Accuracy and alignment, on held-out sequences
# ---------------------------------------------
#
# Accuracy is measured by *generating* the answer (greedy decoding, no
# teacher forcing) for 500 unseen sources: *exact match* is the fraction of
# sequences reproduced perfectly, end token included; *token accuracy* the
# fraction of correct target positions. Alignment is read from the weights of
# a teacher-forced pass: for each output letter, does the most-weighted source
# position equal the known :math:`j = L - 1 - t` (*alignment*), or lie at most
# one position from it (*alignment ±1*)? *Max weight* is the mean largest
# weight per output letter (1 = all the weight on one source position).


@torch.no_grad()
def evaluate(model):
    correct = decoded_correct(greedy_decode(model, test_src, MAX_LEN + 1, BOS, EOS), test_tgt)
    exact = correct.all(1).float().mean().item()
    token_acc = correct[test_tgt[:, 1:] != PAD].float().mean().item()
    with record_attention(model) as record:
        model(test_src, test_tgt[:, :-1])
    if len(record) == 0:  # no attention layer
        return exact, token_acc, np.nan, np.nan, np.nan
    weights = record.steps("decoder.attention")  # (B, T, S)
    letters = test_align >= 0  # output positions that copy a letter
    offset = (weights.argmax(-1) - test_align)[letters]  # > 0: right of the known position
    sharpness = weights.max(-1).values[letters].mean().item()
    agreement, near = (offset == 0).float().mean().item(), (offset.abs() <= 1).float().mean()
    return exact, token_acc, agreement, near.item(), sharpness


rows = []
for name, (score, _) in CONTENDERS.items():
    exact, token_acc, agreement, near, sharpness = evaluate(models[name])
    rows.append(
        {
            "attention": name,
            "score": score,
            "exact match": exact,
            "token acc.": token_acc,
            "alignment": agreement,
            "alignment ±1": near,
            "max weight": sharpness,
            "parameters": n_params[name],
            "train time (s)": seconds[name],
        }
    )
table = pd.DataFrame(rows).set_index("attention")
unscaled = ["dot", "general", "concat", "additive"]  # content-aware, global, not scaled
projected = ["general", "concat", "additive"]  # a learned matrix between query and keys
raw = ["dot", "scaled dot", "content (cosine)"]  # the encoder states as they are
for name in ("none", "scaled dot", "local-m", "local-p", "location"):
    key_figure(f"token acc., {name}", table.loc[name, "token acc."], show=False)
key_figure(
    "token acc., worst of dot, general, concat, additive", table.loc[unscaled, "token acc."].min()
)
key_figure("exact match, additive", table.loc["additive", "exact match"], show=False)
key_figure("alignment, local-m", table.loc["local-m", "alignment"], show=False)
key_figure(
    "alignment, worst of general, concat, additive", table.loc[projected, "alignment"].min()
)
key_figure("alignment, best of dot, scaled dot, cosine", table.loc[raw, "alignment"].max())
key_figure("alignment ±1, worst of dot, scaled dot, cosine", table.loc[raw, "alignment ±1"].min())
scaled_sharpness = key_figure("max weight, scaled dot", table.loc["scaled dot", "max weight"])
others = table.drop(["none", "scaled dot"])["max weight"].min()
key_figure("max weight, lowest of the other layers", others)
cosine_beta = key_figure(
    "learned cosine strength beta", models["content (cosine)"].decoder.attention.beta, fmt="{:.1f}"
)
table.round(3)

# %%
# The bar chart makes the ranking plain. The unscaled content-aware global
# scores (dot, general, concat, additive), location and local-p beat the
# bottleneck by a wide margin; scaled dot and *local-m* beat it by less.
# Local-m's window is centred on :math:`p_t = t`, the right place for a
# monotone alignment and the wrong one for a reversal, where the letter
# needed at step :math:`t` lies at :math:`L-1-t`; only the middle of the
# sequence falls inside the window. *local-p* predicts its centre instead and
# does far better. Over the robustness matrix (seeds 0-2, one thread) the
# token accuracy stayed at about 0.64 without attention and 0.74 for local-m,
# between 0.94 and 0.99 for local-p, 0.98 and 0.99 for location, at or above
# 0.95 for each of dot, general, concat and additive, and between 0.80 and
# 0.87 for scaled dot.
#
# Scaled dot is also the layer with the most diffuse weights (the *max
# weight* column; over the matrix 0.34-0.37 for scaled dot against at least
# 0.55 for every other layer, both printed with the table). Dividing by
# :math:`\sqrt{d}` is meant for wide vectors whose products grow with
# :math:`d`; the components of a GRU state lie in :math:`(-1, 1)`, so here the
# scaled product stays below :math:`\sqrt{32} \approx 5.7` and reaches that
# only when both states are saturated and point the same way. Its softmax
# stays soft, and the layer has no parameters of its own to sharpen it: only
# the encoder and decoder can, and within this budget they do not get far.
# The cosine score is bounded too, by :math:`\pm\beta`, but it learns
# :math:`\beta` (printed with the table; 6.2-6.4 over the matrix) and reaches
# the bound whenever two states point the same way, whatever their lengths.

order = table.sort_values("exact match").index
fig, ax = plt.subplots(figsize=(8, 4.8))
y = np.arange(len(order))
ax.barh(y - 0.2, table.loc[order, "exact match"], height=0.4, label="exact match")
ax.barh(y + 0.2, table.loc[order, "token acc."], height=0.4, label="token accuracy")
ax.set_yticks(y, order)
ax.set_xlim(0, 1)
ax.set_xlabel("accuracy on 500 held-out sequences (greedy decoding)")
ax.set_ylabel("attention type")
ax.set_title(f"Reversal, {STEPS} steps, hidden size {HIDDEN}: accuracy by attention type")
ax.legend(loc="lower right")
plt.show()

# %%
# The learned alignments
# ----------------------
#
# One held-out source of the longest length, and the weights each decoder put
# on it (teacher forced). Red squares mark the known alignment; the last row
# is the end token, which copies nothing. The location layer ignores the
# content and learns *where* to look from the step and the length; local-m
# can only look inside :math:`[t-2, t+2]`, which holds the right letter only
# in the middle of the sequence; hard attention picks exactly one cell per
# row.
#
# Why the bidirectional encoder? With a left-to-right encoder
# (``bidirectional=False``, try it) the state at :math:`j+1` has just read
# :math:`x_{j+1}`, the letter the decoder wrote at the previous step, and
# still remembers :math:`x_j` one step back. A layer can then match what was
# just written, which is easy to learn, and put its largest weight one
# position to the *right* of the red squares while that state's memory
# serves the next letter. Attention shows where a model reads, which need not
# be where the information came from; reading both ways lets the state at
# :math:`j` describe letter :math:`j` itself. The layers that compare the
# states through a learned matrix (general, concat, additive) then put their
# largest weight on the red square for most letters (over the matrix, at
# least 0.79 of them for the worst of the three). The three that take the
# encoder states as they are (dot, scaled dot, cosine) often land next to it
# instead: the forward half of the state at :math:`j+1` is the left-to-right
# state just described, and it too carries letter :math:`j`. The best of
# those three put its largest weight on the red square for 0.24-0.77 of the
# letters, yet each put it within one position for at least 0.92 (the
# *alignment ±1* column).

example = int(torch.nonzero(test_src[:, -1] != PAD)[0])  # a source of the longest length
length = MAX_LEN
attended = [name for name in CONTENDERS if name != "none"]
maps = []
one = slice(example, example + 1)
for name in attended:
    with torch.no_grad(), record_attention(models[name]) as record:
        models[name](test_src[one], test_tgt[one, :-1])
    maps.append(record.steps("decoder.attention")[0, : length + 1, :length])
fig = plot_attention_heads(
    torch.stack(maps),
    query_labels=words(test_tgt[example, 1:].tolist()),
    key_labels=words(test_src[example].tolist()),
    head_titles=attended,
    ncols=5,
    title="Learned alignments on one held-out sequence (red squares: the known alignment)",
    xlabel="source",
    ylabel="output",
)
fig.set_size_inches(12, 5.8)  # ten maps on a page-wide figure
for ax in fig.axes[: len(attended)]:
    ax.scatter(
        test_align[example, :length],  # the known source position of each output letter
        np.arange(length),
        marker="s",
        s=40,
        facecolors="none",
        edgecolors="red",
        linewidths=1.0,
    )
plt.show()

# %%
# Summary and checks
# ------------------
#
# On one task, with everything else fixed, the score function decides much:
#
# - Without attention the decoder must squeeze the source through one vector
#   and ends at or near the bottom of the table.
# - The unscaled content-aware global scores (dot, general, concat,
#   additive) solve the task, with or without parameters of their own. Scaled
#   dot, whose scores the division by :math:`\sqrt{d}` keeps small on these
#   narrow states, spreads its weights the most and lags behind them.
# - Location-based attention never looks at the keys, yet reaches the
#   accuracy of the content-aware scores (token accuracy 0.98-0.99 over the
#   matrix): for a reversal, *where* is a function of the step and the length
#   alone.
# - A layer's assumptions matter: local-m assumes a monotone alignment and
#   fails on a reversal, local-p learns its centre and succeeds.
# - Where attention looks depends on the encoder and the score too: a
#   recurrent state can carry its neighbour's letter, and only the scores with
#   a learned matrix reliably put the largest weight on the letter copied.
#
# The thresholds leave a margin around the ranges the robustness matrix measured
# (seeds 0-2, one thread), quoted in the comments.

assert len(table) == len(CONTENDERS) == 11 and table.index.is_unique
# Token accuracy of "none": 0.64, and at most one layer may fall below it (none did).
worse_than_none = (table["token acc."] < table.loc["none", "token acc."]).sum()
assert worse_than_none <= 1, worse_than_none
# The worst of dot, general, concat and additive: token accuracy 0.95-0.96.
assert (table.loc[unscaled, "token acc."] >= 0.88).all()
assert (table.loc[unscaled, "token acc."] > table.loc["none", "token acc."] + 0.2).all()
assert table.loc["location", "token acc."] >= 0.88  # measured 0.98-0.99
# Scaled dot: 0.80-0.87, at least 0.16 above "none" and 0.08 below the worst unscaled score.
assert table.loc["scaled dot", "token acc."] > table.loc["none", "token acc."] + 0.1
assert table.loc["scaled dot", "token acc."] < table.loc[unscaled, "token acc."].min()
# Additive: exact match 0.95-0.97.
assert table.loc["additive", "exact match"] >= 0.8
# Argmax on the known position: 0.79-0.90 for the worst of general, concat and
# additive; within one position 0.92-0.94 for the worst of dot, scaled dot and cosine.
assert (table.loc[projected, "alignment"] >= 0.65).all()
assert (table.loc[raw, "alignment ±1"] >= 0.8).all()
# local-m's window is in the wrong place: alignment 0.21-0.28, token accuracy 0.74
# against 0.94-0.99 for local-p.
assert table.loc["local-m", "alignment"] < 0.5
assert table.loc["local-m", "token acc."] < table.loc["local-p", "token acc."] - 0.1
# Mean max weight: 0.34-0.37 for scaled dot, 0.55-0.57 for the next most diffuse layer.
assert scaled_sharpness < others - 0.1
# Parameter-free layers really have no parameters.
assert table.loc[["none", "dot", "scaled dot"], "parameters"].eq(0).all()
