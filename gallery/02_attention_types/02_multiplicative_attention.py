"""
Multiplicative (Luong) attention: dot, general and concat
=========================================================

Luong, Pham and Manning (2015, arXiv:1508.04025) compared three ways of
scoring a decoder state against an encoder state: a plain dot product, a
bilinear form with one learned matrix (*general*), and a small network over
the concatenated pair (*concat*). This tutorial writes the three out, checks
them against :func:`attnlib.functional.dot_score`,
:func:`attnlib.functional.general_score`,
:func:`attnlib.functional.concat_score` and
:class:`attnlib.attention.LuongAttention`, shows that *concat* is Bahdanau's
additive score in disguise, and trains all three on the same toy translation
to compare what they cost and what they learn.
"""

import time

import matplotlib.pyplot as plt
import pandas as pd
import torch

from attnlib.attention import LuongAttention
from attnlib.capture import record_attention
from attnlib.decoding import greedy_decode
from attnlib.functional import additive_score, concat_score, dot_score, general_score
from attnlib.plotting import plot_attention_heads
from attnlib.report import key_figure
from attnlib.seq2seq import Seq2Seq
from attnlib.tasks import BOS, EOS, PAD, algorithmic_batch, decoded_correct
from attnlib.training import Trainer, seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, default 0

# %%
# Three scores
# ------------
#
# With :math:`q` the decoder state (Luong writes :math:`h_t`) and :math:`k`
# an encoder state (:math:`\bar h_s`):
#
# .. math::
#
#    \mathrm{score}(q, k) =
#    \begin{cases}
#      q^\top k & \textit{dot} \\
#      q^\top W k & \textit{general} \\
#      v^\top \tanh\!\big(W [q; k]\big) & \textit{concat}
#    \end{cases}
#
# *dot* has no parameters and needs :math:`q` and :math:`k` of the same size
# and in the same space: the encoder and decoder must learn to make matching
# states point the same way. *general* learns a :math:`D_q \times D_k` matrix
# that maps one space onto the other. *concat* is a one-hidden-layer network
# on the pair. *dot* and *general* are called multiplicative because query and
# key meet in a product, and for a whole sequence they are one or two matrix
# multiplications. Written out for a batch of queries ``(B, Lq, Dq)`` and keys
# ``(B, Lk, Dk)``:


def my_dot(q, k):
    return q @ k.transpose(-2, -1)  # (B, Lq, Lk)


def my_general(q, k, W):  # W: (Dq, Dk)
    return q @ W @ k.transpose(-2, -1)


def my_concat(q, k, W, v):  # W: (Dq + Dk, H), v: (H,)
    lq, lk = q.shape[1], k.shape[1]
    pairs = torch.cat(  # every (query, key) pair, concatenated: (B, Lq, Lk, Dq + Dk)
        [q[:, :, None, :].expand(-1, -1, lk, -1), k[:, None, :, :].expand(-1, lq, -1, -1)], -1
    )
    return torch.tanh(pairs @ W) @ v


def my_attention(scores, value):
    weights = torch.softmax(scores, -1)
    return weights @ value, weights


# %%
# Each is compared with the library's function and with
# :class:`attnlib.attention.LuongAttention` holding the same parameters. For
# *general* and *concat* the queries and keys have different sizes (6 and 4),
# which *dot* cannot handle.

B, LQ, LK, DQ, DK, H = 2, 3, 5, 6, 4, 7
q6, k6, k4 = torch.randn(B, LQ, DQ), torch.randn(B, LK, DQ), torch.randn(B, LK, DK)
value = torch.randn(B, LK, 8)

layers = {
    "dot": LuongAttention(DQ, method="dot"),
    "general": LuongAttention(DQ, DK, method="general"),
    "concat": LuongAttention(DQ, DK, method="concat", hidden_dim=H),
}
W_gen, W_cat, v_cat = torch.randn(DQ, DK), torch.randn(DQ + DK, H), torch.randn(H)
with torch.no_grad():
    layers["general"].weight.copy_(W_gen)
    layers["concat"].weight.copy_(W_cat)
    layers["concat"].v.copy_(v_cat)

cases = {  # name: (mine, library function, keys)
    "dot": (my_dot(q6, k6), dot_score(q6, k6), k6),
    "general": (my_general(q6, k4, W_gen), general_score(q6, k4, W_gen), k4),
    "concat": (my_concat(q6, k4, W_cat, v_cat), concat_score(q6, k4, W_cat, v_cat), k4),
}
rows = {}
for name, (mine, lib_scores, keys) in cases.items():
    out_mine, w_mine = my_attention(mine, value)
    out_lib, w_lib = layers[name](q6, keys, value)
    rows[name] = {
        "scores vs functional": (mine - lib_scores).abs().max().item(),
        "weights vs LuongAttention": (w_mine - w_lib).abs().max().item(),
        "output vs LuongAttention": (out_mine - out_lib).abs().max().item(),
    }
checks = pd.DataFrame(rows).T
checks

# %%
# *concat* is additive attention
# ------------------------------
#
# Split :math:`W` by columns into the part that multiplies :math:`q` and the
# part that multiplies :math:`k`: :math:`W[q; k] = W_q q + W_k k`. So Luong's
# *concat* is exactly Bahdanau's :math:`v^\top\tanh(W_q q + W_k k)` (see the
# previous tutorial) with :math:`W = [W_q, W_k]` stacked. In our row-vector
# convention (:math:`W` is ``(Dq + Dk, H)``), the first :math:`D_q` rows are
# :math:`W_q` and the rest :math:`W_k`:

as_additive = additive_score(q6, k4, W_cat[:DQ], W_cat[DQ:], v_cat)
concat_vs_additive = (cases["concat"][1] - as_additive).abs().max().item()
print(f"max |concat_score - additive_score| = {concat_vs_additive:.2e}")

# %%
# The two are the same function but not the same computation. *concat* as
# written builds the :math:`L_q \times L_k` concatenated pairs and multiplies
# each by :math:`W`; the additive form projects each query and each key once
# and only *adds* per pair. For 300 queries and 300 keys of 64 features:

big_q, big_k = torch.randn(1, 300, 64), torch.randn(1, 300, 64)
big_W, big_v = torch.randn(128, 64) / 8, torch.randn(64)
timings = {}
for name, fn in {
    "concat (project every pair)": lambda: concat_score(big_q, big_k, big_W, big_v),
    "additive (project once, add)": lambda: additive_score(
        big_q, big_k, big_W[:64], big_W[64:], big_v
    ),
}.items():
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(5):
        fn()
    timings[name] = (time.perf_counter() - start) / 5 * 1000
pd.Series(timings, name="ms per call").round(1).to_frame()

# %%
# The toy translation
# -------------------
#
# As in the additive tutorial: reverse a sentence of 5 to 10 words (letters
# ``a``-``z``, drawn by :func:`attnlib.tasks.algorithmic_batch`), so output
# word :math:`t` comes from source word :math:`L-1-t`. The model is
# :class:`attnlib.seq2seq.Seq2Seq` with Bahdanau's bidirectional GRU encoder
# (``bidirectional=True``, see :class:`attnlib.seq2seq.RecurrentEncoder`).
# One difference from Luong's paper: this decoder
# queries with its *previous* state :math:`s_{t-1}` (Bahdanau's order), where
# Luong's attends with the current one; the score functions, which are what we
# compare, are the same.

LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOCAB = 3 + len(LETTERS)
MIN_LEN, MAX_LEN = 5, 10
NAMES = ["<pad>", "<bos>", "<eos>", *LETTERS]
EMB, HIDDEN, STEPS = 16, 32, 400


def train(attention, steps=STEPS):
    """Adam, batch 64, a fresh random batch every step, teacher forcing."""
    model = Seq2Seq(VOCAB, VOCAB, EMB, HIDDEN, attention=attention, bidirectional=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    trainer = Trainer(model, optimizer, grad_clip=1.0, device="cpu", verbose=False)
    batches = (algorithmic_batch("reverse", 64, MIN_LEN, MAX_LEN, 26)[:2] for _ in range(steps))
    (epoch,) = trainer.fit(batches, epochs=1)
    return model.eval(), epoch["time"]


@torch.no_grad()
def evaluate(model, batch):
    """Greedy-decoding token accuracy, argmax alignment agreement, teacher-forced maps."""
    src, tgt, alignment = batch
    with record_attention(model) as record:
        model(src, tgt[:, :-1])
    weights = record.steps("decoder.attention")  # (B, S + 1, S)
    agreement = (weights.argmax(-1) == alignment)[alignment >= 0].float().mean().item()
    correct = decoded_correct(greedy_decode(model, src, MAX_LEN + 1, BOS, EOS), tgt)
    return correct[tgt[:, 1:] != PAD].float().mean().item(), agreement, weights


# %%
# Training the three
# ------------------
#
# Same model, same initialisation of the shared parts, same training batches,
# 400 Adam steps each; only the score differs.
# The parameter count is that of the attention layer alone (the rest of the
# model has the same parameters in all three runs).

test = algorithmic_batch("reverse", 500, MIN_LEN, MAX_LEN, 26, generator=seeded_generator(1234))
results, maps = {}, {}
for method in ["dot", "general", "concat"]:
    attention = LuongAttention(HIDDEN, method=method)
    seed_everything(offset=1)  # the same seed for every model: same encoder, decoder, data
    model, seconds = train(attention)
    accuracy, agreement, weights = evaluate(model, test)
    maps[method] = weights
    results[method] = {
        "token accuracy": accuracy,
        "alignment agreement": agreement,
        "attention parameters": sum(p.numel() for p in attention.parameters()),
        "train time (s)": seconds,
    }
    print(f"{method:8s} accuracy {accuracy:.3f}  agreement {agreement:.3f}  {seconds:.1f} s")
table = pd.DataFrame(results).T
table["attention parameters"] = table["attention parameters"].astype(int)
table.round(3)

# %%
# All three learn the reversal, and all three find the anti-diagonal: on this
# task the extra parameters of *general* (:math:`32 \times 32`) and *concat*
# (:math:`64 \times 32 + 32`) buy little, because the encoder and decoder are
# trained together and can learn to put matching states along the same
# directions, which is all *dot* needs. Luong et al. likewise found the plain
# *dot* score to work well for global attention in translation (and *general*
# for their local attention), while their *concat* score did not give good
# results.
# The maps of one test sentence, on one shared colour scale:

i = 0
n = int((test[0][i] != PAD).sum())
stacked = torch.stack([maps[m][i, : n + 1, :n] for m in ["dot", "general", "concat"]])
fig = plot_attention_heads(
    stacked,
    [NAMES[t] for t in test[1][i, 1 : n + 2].tolist()],
    [NAMES[t] for t in test[0][i, :n].tolist()],
    ncols=3,
    head_titles=[f"{m} (acc {results[m]['token accuracy']:.2f})" for m in maps],
    title=f"Luong scores on one {n}-word reversal (rows: output words, columns: source words)",
    cell_size=0.32,
    xlabel="source word",
    ylabel="output word",
)
plt.show()

# %%
# Checks
# ------
#
# Every written-out score equals the library's; *concat* equals *additive* with
# stacked weights; and every score learns the task and its alignment. Over
# seeds 0-2 (one thread each) of the robustness matrix, the three scores
# reached token accuracies between 0.94 and 1.00 and alignment agreements
# between 0.93 and 0.98; chance agreement is about 0.13.

for method, row in results.items():
    key_figure(f"token accuracy, {method}", row["token accuracy"])
key_figure("lowest alignment agreement", min(r["alignment agreement"] for r in results.values()))
assert checks.to_numpy().max() < 1e-6, checks
assert concat_vs_additive < 1e-6
for method, row in results.items():
    assert row["token accuracy"] > 0.9, (method, row)
    assert row["alignment agreement"] > 0.9, (method, row)
assert [results[m]["attention parameters"] for m in results] == [0, 32 * 32, 64 * 32 + 32]
