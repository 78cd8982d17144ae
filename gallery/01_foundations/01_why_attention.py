"""
Why attention: the fixed-size bottleneck, measured
==================================================

A recurrent encoder-decoder without attention must pass everything it knows
about the input to the decoder through one hidden vector of fixed size. We
train two GRU encoder-decoders that differ only in that respect, one without
attention and one with Bahdanau's additive attention, on the same copying task
with the same budget, and measure how their accuracy changes as the sequences
grow. Without attention the accuracy falls steadily with the length, towards
chance; with attention it stays close to perfect at every length we try, and
the learned attention weights show how: at each output step the decoder looks at
the source token it is copying.
"""

# %%
# The bottleneck
# --------------
#
# The first neural machine translation systems (Sutskever, Vinyals and Le,
# 2014, arXiv:1409.3215; Cho et al., 2014, arXiv:1406.1078) read the source
# sentence with a recurrent encoder and kept only its **last** hidden state
# :math:`c = h_S`. The decoder then produced the translation from :math:`c`
# alone:
#
# .. math::
#
#    s_t = f(s_{t-1}, y_{t-1}, c), \qquad p(y_t \mid y_{<t}, x) = g(s_t, y_{t-1}, c).
#
# Whatever the length of the input, :math:`c` has the same number of floats.
# Cho et al. (2014, arXiv:1409.1259) found that the quality of these models
# dropped sharply as the sentences got longer. Bahdanau, Cho and Bengio (2015,
# arXiv:1409.0473) removed the bottleneck. They kept **every** encoder state
# :math:`h_1, \dots, h_S` and gave the decoder a different context vector at
# each step, a weighted average of those states:
#
# .. math::
#
#    c_t = \sum_{j=1}^{S} \alpha_{tj} h_j, \qquad
#    \alpha_{tj} = \frac{\exp e_{tj}}{\sum_{k} \exp e_{tk}}, \qquad
#    e_{tj} = v^\top \tanh(W_q s_{t-1} + W_k h_j).
#
# The weights :math:`\alpha_{tj}` are the *attention*: how much output step
# :math:`t` looks at input position :math:`j`. In this tutorial we measure
# what the change buys on a task small enough to train in seconds on a CPU.

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnlib.attention import AdditiveAttention
from attnlib.capture import record_attention
from attnlib.decoding import greedy_decode
from attnlib.plotting import plot_attention
from attnlib.report import key_figure
from attnlib.seq2seq import Seq2Seq
from attnlib.tasks import BOS, EOS, PAD, algorithmic_batch, decoded_correct
from attnlib.training import batch_loss, seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, default 0

# %%
# The task: copy a random sequence
# --------------------------------
#
# The source is a sequence of :math:`L` random symbols from an alphabet of 9
# letters, and the target is the same sequence followed by an end-of-sequence
# token. Since the symbols are independent, nothing can be guessed: every
# token of the output has to come from the input. Without attention the whole
# sequence must fit into one 64-dimensional state before the decoder starts
# writing; with attention the decoder can go back and read it.
#
# :func:`attnlib.tasks.algorithmic_batch` draws such batches (task
# ``"copy"``). Token ids: ``0`` is padding, ``1`` the beginning-of-sequence
# token (BOS) that starts the decoder, ``2`` the end-of-sequence token (EOS),
# and ``3..11`` the letters ``a..i``; the target is BOS, the answer, EOS. For
# training we use *teacher forcing*: the decoder reads the target without its
# last token and is trained to predict it without its first, so at step
# :math:`t` it sees the correct previous token and predicts the next one.

LETTERS = "abcdefghi"
VOCAB = 3 + len(LETTERS)  # 12 token ids
MIN_LEN, MAX_LEN = 4, 16  # training lengths
NAMES = ["<pad>", "<bos>", "<eos>", *LETTERS]


def copy_batch(n, length, generator=None):
    """n random sequences of one length: sources (n, L), targets (n, L + 2)."""
    src, tgt, _ = algorithmic_batch("copy", n, length, length, len(LETTERS), generator=generator)
    return src, tgt


def show(ids):
    return [NAMES[i] for i in ids.tolist()]


src, tgt = copy_batch(1, 6)
print("source        :", " ".join(show(src[0])))
print("decoder input :", " ".join(show(tgt[0, :-1])))
print("target        :", " ".join(show(tgt[0, 1:])))

# %%
# Two models, one difference
# --------------------------
#
# :class:`attnlib.seq2seq.Seq2Seq` is a GRU encoder and a GRU decoder that
# takes an optional attention layer. With ``attention=None`` the context
# given to the decoder at every step is the encoder's final state, which gives
# the Cho et al. model above. With an attention layer the decoder's previous
# state is the query, the encoder states are the keys and values, and the
# context is the attention output. We use
# :class:`attnlib.attention.AdditiveAttention`, Bahdanau's score
# :math:`v^\top \tanh(W_q q + W_k k)`. Everything else is identical: same
# embedding size (32), same state size (64), same output layer.

HIDDEN = 64


def make_model(attention):
    seed_everything(offset=1)  # same initialisation of the shared parts
    return Seq2Seq(VOCAB, VOCAB, emb_dim=32, hidden_dim=HIDDEN, attention=attention, pad_idx=PAD)


models = {
    "no attention": make_model(None),
    "additive attention": make_model(AdditiveAttention(HIDDEN)),
}
for name, model in models.items():
    print(f"{name:>18}: {sum(p.numel() for p in model.parameters()):,} parameters")

# %%
# The attention layer adds :math:`2 \times 64^2 + 64` parameters, about 16 %
# more. The two models do not differ in size so much as in what the decoder
# can see.
#
# Training
# --------
#
# Both models get the same training: 400 Adam steps on batches of 64
# sequences, each batch of one random length between 4 and 16, with the
# cross-entropy of the next token as the loss. The learning rate follows a
# one-cycle schedule (``torch.optim.lr_scheduler.OneCycleLR``): it rises to
# :math:`10^{-2}` over the first 30 % of the steps, then decays to almost
# zero, which lets a model this small converge in a few hundred steps.
# Gradients are clipped at norm 1, as is usual for recurrent networks.

STEPS, BATCH = 400, 64


def train(model, steps=STEPS):
    rng = np.random.default_rng(SEED)  # the same sequence of lengths for both models
    gen = seeded_generator(0)  # ... and the same training data
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    losses = []
    model.train()
    for _ in range(steps):
        length = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        loss, _, _ = batch_loss(model, copy_batch(BATCH, length, gen))  # next-token CE
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return np.array(losses)


losses = {}
for name, model in models.items():
    start = time.perf_counter()
    losses[name] = train(model)
    print(
        f"{name:>18}: trained in {time.perf_counter() - start:.1f} s, "
        f"final loss (mean of last 50 steps) {losses[name][-50:].mean():.3f}"
    )

final_loss = {name: curve[-50:].mean() for name, curve in losses.items()}
loss_ratio = key_figure(
    "final loss ratio, no attention / attention",
    final_loss["no attention"] / final_loss["additive attention"],
    fmt="{:.0f}",
)

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
for name, curve in losses.items():
    smooth = np.convolve(curve, np.ones(20) / 20, mode="valid")
    ax.plot(np.arange(len(smooth)) + 20, smooth, label=name)
ax.set_yscale("log")
ax.set_xlabel("optimizer step")
ax.set_ylabel("cross-entropy (moving average of 20 steps)")
ax.set_title("Training loss, same data and budget")
ax.legend()
plt.show()

# %%
# The attention model's loss falls close to zero. The loss of the model
# without attention levels off many times higher (the ratio is printed above):
# on most batches part of the sequence did not fit into its state.
#
# Accuracy against sequence length
# --------------------------------
#
# The evaluation is without teacher forcing: we give each model only the
# source and let it write its own output with
# :func:`attnlib.decoding.greedy_decode`, which feeds back its most likely
# token at each step and stops at EOS. For every length from 4 to 16 we
# decode 300 fresh random sequences and measure
#
# - **per-token accuracy**: the fraction of the :math:`L` output positions
#   holding the right letter;
# - **exact match**: the fraction of sequences copied perfectly, EOS included.
#
# With 9 letters, guessing gives a per-token accuracy of
# :math:`1/9 \approx 0.11`.

EVAL_LENGTHS = list(range(4, MAX_LEN + 1, 2))
N_EVAL = 300


def evaluate(model, length, n=N_EVAL):
    """Per-token accuracy, exact match, per-position accuracy and weights."""
    gen = seeded_generator(1000 + length)  # same test set for both models
    src, tgt = copy_batch(n, length, gen)
    model.eval()
    with record_attention(model) as record:  # the weights of every decoding step
        out = greedy_decode(model, src, max_new_tokens=length + 1, bos_idx=BOS, eos_idx=EOS)
    correct = decoded_correct(out, tgt)  # (n, L + 1): the L letters, then EOS
    return {
        "token_acc": correct[:, :length].float().mean().item(),
        "exact": correct.all(dim=1).float().mean().item(),
        "exact_per_seq": correct.all(dim=1).tolist(),
        "per_position": correct[:, :length].float().mean(dim=0).numpy(),
        "src": src,
        "weights": record.steps("decoder.attention") if len(record) else None,
    }


results = {name: {L: evaluate(m, L) for L in EVAL_LENGTHS} for name, m in models.items()}

table = pd.DataFrame(
    {
        (name, metric): [results[name][L][key] for L in EVAL_LENGTHS]
        for name in models
        for metric, key in (("token acc.", "token_acc"), ("exact match", "exact"))
    },
    index=pd.Index(EVAL_LENGTHS, name="length"),
).round(3)
table

# %%
# The table in a picture:

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
for (metric, key), ax in zip(
    (("per-token accuracy", "token_acc"), ("exact match", "exact")), axes, strict=True
):
    for name, marker in zip(models, ("o", "s"), strict=True):
        ax.plot(
            EVAL_LENGTHS, [results[name][L][key] for L in EVAL_LENGTHS], marker=marker, label=name
        )
    ax.set_xlabel("sequence length L")
    ax.set_ylabel(metric)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(EVAL_LENGTHS)
    ax.grid(alpha=0.3)
axes[0].axhline(1 / len(LETTERS), color="grey", ls=":", label="chance (1/9)")
axes[0].set_title("Per-token accuracy vs length")
axes[1].set_title("Exact match vs length")
axes[0].legend()
plt.show()

acc = {
    name: key_figure(
        f"token accuracy at L = {MAX_LEN}, {name}", results[name][MAX_LEN]["token_acc"]
    )
    for name in models
}
exact12 = key_figure("exact match at L = 12, no attention", results["no attention"][12]["exact"])

# %%
# Both models copy a 4-letter sequence (almost) perfectly. From there on the
# model without attention loses accuracy at every step of length. By
# :math:`L = 12` it rarely gets a whole sequence right, and at
# :math:`L = 16` it gets only a fraction of the letters, printed above: more
# than chance (:math:`1/9`), because it remembers the first few, but far from
# all. The attention model's curve stays flat near 1.
#
# *Where* in the output does the model without attention go wrong? The accuracy
# of each output position at :math:`L = 16` shows it:

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
positions = np.arange(1, MAX_LEN + 1)
for name, marker in zip(models, ("o", "s"), strict=True):
    ax.plot(positions, results[name][MAX_LEN]["per_position"], marker=marker, label=name)
ax.axhline(1 / len(LETTERS), color="grey", ls=":", label="chance (1/9)")
ax.set_xlabel("output position")
ax.set_ylabel("accuracy")
ax.set_ylim(-0.03, 1.03)
ax.set_xticks(positions)
ax.set_title(f"Accuracy of each output position, L = {MAX_LEN}")
ax.legend()
plt.show()

# %%
# The model without attention gets the first letters mostly right. Its
# accuracy then falls position by position and is close to guessing in the
# second half. Its state was asked to hold 16 letters and it held a few,
# blurred. More training or a wider state would move the cliff to longer
# sequences, but it would not remove it: a fixed-size vector fills up at some
# length. With attention the decoder does not have to remember the source
# at all, because the source is still there to read at every step. Its
# accuracy dips only over the last few positions, for a reason we will see
# below.
#
# What the attention model looks at
# ---------------------------------
#
# :func:`attnlib.capture.record_attention` records the attention weights
# :math:`\alpha_{tj}` while the model decodes, one row per output step and one
# column per source token. To copy, output step :math:`t` has to read source position
# :math:`t`, so we expect the weight to lie on the diagonal. Here is the first
# 12-letter test sequence, drawn with :func:`attnlib.plotting.plot_attention`:

src_ex = results["additive attention"][12]["src"][:1]  # (1, 12)
with record_attention(models["additive attention"]) as record:
    out_ex = greedy_decode(models["additive attention"], src_ex, 13, BOS, EOS)[:, 1:]
weights_ex = record.steps("decoder.attention")  # (1, steps, 12): one row per output token
print("source:", " ".join(show(src_ex[0])))
print("output:", " ".join(show(out_ex[0])))

ax = plot_attention(
    weights_ex[0],
    query_labels=show(out_ex[0]),
    key_labels=show(src_ex[0]),
    title="Additive attention while copying (one test sequence)",
    xlabel="source token (key)",
    ylabel="output token (query step)",
)
plt.show()

# %%
# The weight lies along the diagonal. Nothing in the model says that output
# :math:`t` goes with input :math:`t`: the alignment was learned from the
# copying loss alone. It is not one-hot, though. Each row spreads over two or
# three neighbouring source positions, because a GRU state :math:`h_j` also
# carries the letters just before :math:`j`, so a blend of neighbours still
# tells the decoder which letter comes next. The EOS row looks at the last
# letter, where the sequence ends.
#
# How often does the largest weight fall on the copied position, over all 300
# test sequences of length 16?

w16 = results["additive attention"][MAX_LEN]["weights"]  # (300, 17, 16)
argmax = w16[:, :MAX_LEN].argmax(dim=-1)  # the letter steps, not EOS
alignment = (argmax == torch.arange(MAX_LEN)).float().mean().item()
key_figure("largest weight on the copied position (fraction)", alignment, show=False)
print(f"largest weight on the copied position: {alignment:.1%} of output letters")
print(f"mean largest weight per output letter: {w16[:, :MAX_LEN].max(-1).values.mean():.2f}")

# %%
# The attention model's mistakes have a pattern too. Inside a run of the
# same letter (``e e e e``) the neighbouring encoder states look alike, the
# smeared attention cannot tell them apart, and the model may drop or repeat
# a letter of the run. Every later letter is then one position off, which is
# why the per-position accuracy dips towards the end. Sequences that contain
# a run of three or more equal letters are more common among the failures
# than in the test set as a whole:


def longest_run(seq):
    best = run = 1
    for a, b in zip(seq[:-1], seq[1:], strict=True):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


src16 = results["additive attention"][MAX_LEN]["src"]
has_run = torch.tensor([longest_run(s.tolist()) >= 3 for s in src16])
failed = ~torch.tensor(results["additive attention"][MAX_LEN]["exact_per_seq"])
print(f"L = {MAX_LEN}: {failed.sum()} of {N_EVAL} sequences not copied exactly")
print(
    f"run of >= 3 equal letters: in {has_run.float().mean():.0%} of all test sequences, "
    f"in {has_run[failed].float().mean():.0%} of the failed ones"
)
run_excess = key_figure(
    "share of runs among failures / among all sequences",
    has_run[failed].float().mean() / has_run.float().mean() if failed.any() else float("nan"),
    fmt="{:.1f}",
)

# %%
# Summary and checks
# ------------------
#
# The two models had the same budget, the same data and differed by 16 % in
# parameters. The one without attention forgets the source after a few tokens;
# the one with attention copies every length we tried. It does so by reading,
# at each step, the encoder state it needs, instead of carrying all of them
# in one vector. The rest of the site builds on this idea: attention is a
# learned, differentiable lookup into a memory of vectors. The next tutorial,
# :ref:`sphx_glr_auto_gallery_01_foundations_02_soft_lookup.py`, makes that
# precise.
#
# The checks below stop the build if the story stops being true. The numbers
# they test are printed above and below. Over seeds 0-2 (one thread each) of
# the robustness matrix, the per-token accuracy at :math:`L = 16` stayed
# between 0.97 and 0.99 with attention and between 0.36 and 0.38 without; the
# largest weight fell on the copied position for 90 % to 93 % of the output
# letters; the final loss without attention was 24 to 27 times that with
# attention; and runs of three equal letters were 1.7 to 2.6 times as common
# among the failed sequences as among all of them. The bars below leave room
# for other machines.

att_long = key_figure(
    "lowest token accuracy for L >= 12, attention",
    min(results["additive attention"][L]["token_acc"] for L in EVAL_LENGTHS if L >= 12),
)
short_acc = key_figure(
    "lowest token accuracy at L = 4", min(results[name][4]["token_acc"] for name in models)
)

# both models learn the task when it is short
assert short_acc > 0.95, short_acc
# without attention, accuracy falls with length
assert results["no attention"][4]["token_acc"] - acc["no attention"] > 0.4
# at the longest length attention wins by a wide margin
assert acc["additive attention"] - acc["no attention"] > 0.4, acc
# the attention model stays accurate on long sequences
assert att_long > 0.9, att_long
# the learned alignment is the diagonal for most output letters
assert alignment > 0.75, alignment
# the attention model's failures are enriched in runs of equal letters
assert run_excess > 1.3, run_excess
print("all checks passed")
