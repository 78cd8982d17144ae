"""
Multi-head attention: several looks at once
===========================================

One attention head gives each query *one* weighted average of the values: if
a query needs two different things from two different places, a single
softmax has to blend them or choose. Multi-head attention (Vaswani et al.,
2017, arXiv:1706.03762) runs :math:`h` smaller attentions side by side, each
with its own projections, and concatenates their results. This tutorial
builds it from the library's two seed functions, adds the projections in a
fifteen-line module, proves the whole equal to ``torch.nn.MultiheadAttention``
and to :class:`attnlib.attention.MultiHeadAttention`, and then trains a task
that needs two relations at once: one head fails, several heads split the work.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from attnlib.attention import MultiHeadAttention
from attnlib.functional import calculate_attention_weights, multi_head_attention
from attnlib.masks import causal_mask, to_torch_attn_mask
from attnlib.plotting import plot_attention_heads
from attnlib.report import key_figure
from attnlib.training import seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, else 0

# %%
# One head: ``calculate_attention_weights``
# -----------------------------------------
#
# The seed function :func:`attnlib.functional.calculate_attention_weights`
# is scaled dot-product attention,
# :math:`\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V`, returning the output and
# the weights. Written out, it is three lines:

q = torch.randn(2, 5, 8)  # (B, Lq, Dk)
k = torch.randn(2, 7, 8)  # (B, Lk, Dk)
v = torch.randn(2, 7, 8)
out_one, weights_one = calculate_attention_weights(q, k, v)
weights_hand = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
out_hand = weights_hand @ v
print("output", tuple(out_one.shape), "weights", tuple(weights_one.shape))
print(f"max |hand - library|: {(out_hand - out_one).abs().max():.1e}")

# %%
# Many heads: split, attend per head, concatenate
# -----------------------------------------------
#
# :func:`attnlib.functional.multi_head_attention` takes inputs that are
# *already projected*, cuts their :math:`d_{model}` features into :math:`h`
# blocks of :math:`d_{model}/h`, lets each block attend on its own, and
# concatenates the :math:`h` outputs back to :math:`d_{model}` features:
#
# .. math::
#
#    \mathrm{head}_i = \mathrm{Attention}(Q_i, K_i, V_i), \qquad
#    \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)
#
# Here is the same thing with a loop over the heads, and the shapes at each
# step.

H = 4
d_model = 16
q, k, v = torch.randn(2, 5, d_model), torch.randn(2, 7, d_model), torch.randn(2, 7, d_model)
d_head = d_model // H
outs, maps = [], []
for i in range(H):
    block = slice(i * d_head, (i + 1) * d_head)  # head i owns features block
    out_i, w_i = calculate_attention_weights(q[..., block], k[..., block], v[..., block])
    outs.append(out_i)  # (2, 5, d_head)
    maps.append(w_i)  # (2, 5, 7)
out_loop = torch.cat(outs, dim=-1)  # (2, 5, d_model)
weights_loop = torch.stack(maps, dim=1)  # (2, H, 5, 7)

out_mh, weights_mh = multi_head_attention(q, k, v, num_heads=H)
print(f"inputs {tuple(q.shape)} -> {H} heads of {tuple(outs[0].shape)}", end=" ")
print(f"-> concatenated {tuple(out_loop.shape)}")
print("per-head weights", tuple(weights_mh.shape), "(batch, heads, queries, keys)")
loop_diff = max((out_loop - out_mh).abs().max(), (weights_loop - weights_mh).abs().max()).item()
print(f"max |loop - multi_head_attention|: {loop_diff:.1e}")

# %%
# Adding the projections
# ----------------------
#
# Cutting the raw inputs into blocks would give every head a fixed slice of
# the features. Vaswani et al. instead give head :math:`i` its own learned
# projections :math:`W_i^Q, W_i^K, W_i^V` (:math:`d_{model} \times d_{model}/h`
# each) and mix the concatenated heads with :math:`W^O`:
#
# .. math::
#
#    \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q, K W_i^K, V W_i^V), \qquad
#    \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots,
#    \mathrm{head}_h)\, W^O.
#
# Stacking the :math:`h` matrices :math:`W_i^Q` side by side gives one
# :math:`d_{model} \times d_{model}` matrix :math:`W^Q`, so the projections
# are one ``nn.Linear`` each, applied *before* the split. That is the whole
# module:


class MyMultiHead(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model)  # [W_1^Q ... W_h^Q], with a bias
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)  # W^O

    def forward(self, query, key, value, mask=None):
        q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
        heads, weights = multi_head_attention(q, k, v, self.num_heads, mask)
        return self.w_o(heads), weights  # (B, Lq, d_model), (B, h, Lq, Lk)


# %%
# The same numbers as PyTorch
# ---------------------------
#
# ``torch.nn.MultiheadAttention`` stores :math:`W^Q, W^K, W^V` stacked in one
# ``in_proj_weight`` of shape :math:`(3 d_{model}, d_{model})` (and the biases
# in ``in_proj_bias``); splitting it into three blocks gives our three
# matrices. Its biases start at zero, so we randomise them first to make the
# comparison meaningful. ``average_attn_weights=False`` asks for the weights
# of each head instead of their mean. Masks need care at this boundary:
# attnlib's masks say ``True`` = *may attend*, PyTorch's boolean
# ``attn_mask`` says ``True`` = *may not*;
# :func:`attnlib.masks.to_torch_attn_mask` translates.

torch_mha = nn.MultiheadAttention(d_model, H, batch_first=True)
with torch.no_grad():
    nn.init.normal_(torch_mha.in_proj_bias, std=0.1)
    nn.init.normal_(torch_mha.out_proj.bias, std=0.1)

mine = MyMultiHead(d_model, H)
with torch.no_grad():
    w_q, w_k, w_v = torch_mha.in_proj_weight.split(d_model)  # three (d_model, d_model) blocks
    b_q, b_k, b_v = torch_mha.in_proj_bias.split(d_model)
    for layer, weight, bias in ((mine.w_q, w_q, b_q), (mine.w_k, w_k, b_k), (mine.w_v, w_v, b_v)):
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    mine.w_o.weight.copy_(torch_mha.out_proj.weight)
    mine.w_o.bias.copy_(torch_mha.out_proj.bias)
from_torch = MultiHeadAttention.from_torch(torch_mha)

x = torch.randn(3, 6, d_model)  # a sequence: self-attention
y = torch.randn(3, 4, d_model)  # queries from another sequence: cross-attention
allowed = causal_mask(6)  # attnlib convention: True = may attend
cases = {
    "self-attention": ((x, x, x), None),
    "cross-attention": ((y, x, x), None),
    "self, causal mask": ((x, x, x), allowed),
}
rows = []
torch_mha.eval()
with torch.no_grad():
    for case, (args, mask) in cases.items():
        torch_mask = None if mask is None else to_torch_attn_mask(mask)
        ref_out, ref_w = torch_mha(*args, attn_mask=torch_mask, average_attn_weights=False)
        for name, module in (("MyMultiHead", mine), ("MultiHeadAttention.from_torch", from_torch)):
            out, w = module(*args, mask=mask)
            rows.append(
                {
                    "case": case,
                    "module": name,
                    "max |Δ output|": (out - ref_out).abs().max().item(),
                    "max |Δ per-head weights|": (w - ref_w).abs().max().item(),
                    "weights shape": tuple(w.shape),
                }
            )
diffs = pd.DataFrame(rows)
diffs

# %%
# A task that needs two heads
# ---------------------------
#
# Every position of a sequence of 10 letters (from an alphabet of 20) must
# output two things: the letter *before* it and the letter *after* it (or a
# boundary symbol at the ends). Two relations, two different places to look.
# The model is the smallest that can do it: letter plus learned position
# embeddings, one multi-head self-attention layer, and two linear readouts
# (previous, next). We train it with 1, 2 and 4 heads at the same
# :math:`d_{model} = 32`. The parameter count does not change with :math:`h`:
# the four projections are :math:`d_{model} \times d_{model}` whatever the
# number of heads; only how their columns are grouped changes.

LETTERS = "abcdefghijklmnopqrst"
N, V, D_MODEL = 10, len(LETTERS), 32
EDGE = V  # the boundary class: "no letter before/after"
STEPS, BATCH = 300, 128


def neighbour_batch(b, generator):
    tokens = torch.randint(0, V, (b, N), generator=generator)
    edge = torch.full((b, 1), EDGE)
    before = torch.cat([edge, tokens[:, :-1]], dim=1)
    after = torch.cat([tokens[:, 1:], edge], dim=1)
    return tokens, before, after


class Neighbours(nn.Module):
    def __init__(self, num_heads):
        super().__init__()
        self.letter = nn.Embedding(V, D_MODEL)
        self.position = nn.Embedding(N, D_MODEL)
        self.attn = MultiHeadAttention(D_MODEL, num_heads)
        self.before = nn.Linear(D_MODEL, V + 1)
        self.after = nn.Linear(D_MODEL, V + 1)

    def forward(self, tokens):
        h = self.letter(tokens) + self.position.weight
        out, weights = self.attn(h, h, h)
        return self.before(out), self.after(out), weights  # weights: (B, heads, N, N)


def train(num_heads):
    seed_everything(offset=0)  # every model: the same seed and the same batches
    data = seeded_generator(0)
    model = Neighbours(num_heads)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(STEPS):
        tokens, before, after = neighbour_batch(BATCH, data)
        logits_b, logits_a, _ = model(tokens)
        loss = F.cross_entropy(logits_b.reshape(-1, V + 1), before.reshape(-1))
        loss = loss + F.cross_entropy(logits_a.reshape(-1, V + 1), after.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


models = {f"{h} head{'s' if h > 1 else ''}": train(h) for h in (1, 2, 4)}
n_params = {name: sum(p.numel() for p in m.attn.parameters()) for name, m in models.items()}
print("attention-layer parameters:", n_params)

# %%
# Do the heads differ?
# --------------------
#
# To measure how differently two heads look at the same sequence, compare
# their weight rows (probability distributions over the keys) with the
# Jensen-Shannon distance, :math:`\sqrt{\mathrm{JS}(p, q)}` with
#
# .. math::
#
#    \mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m),
#    \qquad m = \tfrac12 (p + q),
#
# in bits: 0 for identical rows, 1 for rows with no key in common. *Head
# diversity* is its mean over all pairs of heads, queries and test sequences.


def js_distance(p, q):
    """Jensen-Shannon distance (base 2) between distributions along the last dim."""
    m = (p + q) / 2

    def kl(a, b):
        return (a * (torch.log2(a.clamp_min(1e-12)) - torch.log2(b.clamp_min(1e-12)))).sum(-1)

    return (0.5 * kl(p, m) + 0.5 * kl(q, m)).clamp_min(0).sqrt()


same, disjoint = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.0, 1.0])
print(f"JS distance: same rows {js_distance(same, same):.3f},", end=" ")
print(f"disjoint rows {js_distance(same, disjoint):.3f}")

test_tokens, test_before, test_after = neighbour_batch(2000, seeded_generator(1234))
rows = []
weights_of = {}
for name, model in models.items():
    with torch.no_grad():
        logits_b, logits_a, weights = model(test_tokens)
    weights_of[name] = weights
    right_b = logits_b.argmax(-1) == test_before
    right_a = logits_a.argmax(-1) == test_after
    h = weights.shape[1]
    pairs = [(i, j) for i in range(h) for j in range(i + 1, h)]
    diversity = (
        torch.stack([js_distance(weights[:, i], weights[:, j]) for i, j in pairs]).mean().item()
        if pairs
        else np.nan
    )
    rows.append(
        {
            "model": name,
            "heads": h,
            "parameters": n_params[name],
            "letter before": right_b.float().mean().item(),
            "letter after": right_a.float().mean().item(),
            "both right": (right_b & right_a).float().mean().item(),
            "head diversity (JS)": diversity,
        }
    )
results = pd.DataFrame(rows).set_index("model")
for name in models:
    key_figure(f"both right, {name}", results.loc[name, "both right"], show=False)
    if results.loc[name, "heads"] > 1:
        key_figure(f"head diversity, {name}", results.loc[name, "head diversity (JS)"], show=False)
results.round(3)

# %%
# Read "both right" first. A single head of width 32 gives each query *one*
# weighted average of the values, and it learns one of the two relations and
# gets the other right far less often. The same 32 features cut into heads give each query
# several averages, one per head. Which relation does each head serve? The
# share of its weight that lands on the letter before (:math:`i-1`) and after
# (:math:`i+1`), averaged over the test queries that have both neighbours:

per_head = []
for name, weights in weights_of.items():
    for head in range(weights.shape[1]):
        w = weights[:, head, 1 : N - 1]  # (B, N-2, N): the queries with two neighbours
        per_head.append(
            {
                "model": name,
                "head": head,
                "weight on i-1": w.diagonal(offset=0, dim1=1, dim2=2).mean().item(),
                "weight on i+1": w.diagonal(offset=2, dim1=1, dim2=2).mean().item(),
            }
        )
relations = pd.DataFrame(per_head).set_index(["model", "head"])
best = results.loc[["2 heads", "4 heads"], "both right"].idxmax()  # the better multi-head model
split = relations.loc[best]
print(f"best multi-head model: {best}")
key_figure("best multi-head: largest weight on i-1", split["weight on i-1"].max(), show=False)
key_figure("best multi-head: largest weight on i+1", split["weight on i+1"].max(), show=False)
relations.round(3)

# %%
# The two readouts are the same at every position, so a head must serve the
# *same* relation at every position for them to tell easily which letter
# came from where. Usually the two-head model finds such a split: one head near
# :math:`i-1`, the other near :math:`i+1`. Nothing forces it, though:
# training can settle with a head that looks left at some positions and
# right at others, which shows above as a head whose weight is split
# between :math:`i-1` and :math:`i+1`, and as a low "both right" for two
# heads. Over the robustness matrix (seeds 0-2 with one thread, seed 0 with
# two) this happened for seed 2, where two heads got 0.48 of the test
# positions both right while four heads, with heads to spare, got 1.00 in
# every run. The checks at the end therefore claim that the better of the
# two- and four-head models solves the task with one head per relation, not
# that two heads always do.
#
# The maps below, on one held-out sequence and one shared colour scale: the
# single head's weight goes to one neighbour (one off-diagonal), and when
# the two heads have split the work they take one off-diagonal each.

letters = [LETTERS[t] for t in test_tokens[0].tolist()]
labels = [f"{i}:{c}" for i, c in enumerate(letters)]
maps = torch.stack(
    [
        weights_of["1 head"][0, 0],
        weights_of["2 heads"][0, 0],
        weights_of["2 heads"][0, 1],
    ]
)
fig = plot_attention_heads(
    maps,
    labels,
    labels,
    head_titles=["1 head (d=32)", "2 heads: head 0 (d=16)", "2 heads: head 1 (d=16)"],
    ncols=3,
    title="One head must choose; two heads can split the work (position:letter)",
)
fig.set_size_inches(12, 4.4)  # three 10 x 10 maps across the page
plt.show()

# %%
# With four heads there are more heads than relations. Each head still
# looks at a neighbour, but now several heads cover the same relation, or
# switch between the two depending on the position (see the table above), so
# the mean distance between heads drops below the two-head model's (over the
# matrix, 0.58-0.64 for four heads against 0.81-0.87 for two): more heads is
# not automatically more variety.

fig = plot_attention_heads(
    weights_of["4 heads"][0],
    labels,
    labels,
    head_titles=[f"4 heads: head {i} (d=8)" for i in range(4)],
    ncols=4,
    title="Four heads, two relations: heads overlap",
)
fig.set_size_inches(12, 3.8)
plt.show()

# %%
# Summary and checks
# ------------------
#
# - Multi-head attention = project (:math:`W^Q, W^K, W^V`), split the
#   features into :math:`h` heads, attend per head, concatenate, project
#   (:math:`W^O`); our fifteen-line module matches ``torch.nn.MultiheadAttention``
#   and :class:`attnlib.attention.MultiHeadAttention` to float precision.
# - Heads cost no extra parameters at a fixed :math:`d_{model}`; what they buy
#   is several independent weightings per query.
# - On a task with two relations, one head served only one; with two or
#   four heads, different heads learned the two relations, although training
#   can leave two heads with their roles swapped at some positions.

assert (out_hand - out_one).abs().max() < 1e-6 and loop_diff < 1e-6
assert (diffs["max |Δ output|"] < 1e-6).all() and (diffs["max |Δ per-head weights|"] < 1e-6).all()
assert js_distance(same, same) < 1e-6 and abs(js_distance(same, disjoint) - 1) < 1e-6
assert len(set(n_params.values())) == 1  # 1, 2 and 4 heads: the same parameter count
# Over the robustness matrix (seeds 0-2 with one thread, seed 0 with two), "both
# right": 1 head 0.14-0.42, 2 heads 0.48-1.00 (stuck at seed 2, see above), 4 heads
# 1.00; head diversity 0.81-0.87 for 2 heads, 0.58-0.64 for 4.
assert results.loc["1 head", "both right"] < 0.6
assert results.loc[best, "both right"] > 0.95
assert results.loc["2 heads", "head diversity (JS)"] > 0.7
# In the better multi-head model, different heads serve the two relations.
assert split["weight on i-1"].idxmax() != split["weight on i+1"].idxmax()
assert split["weight on i-1"].max() > 0.8 and split["weight on i+1"].max() > 0.8
