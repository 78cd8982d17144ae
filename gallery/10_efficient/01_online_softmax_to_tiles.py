"""
From the softmax to tiles
=========================

Attention computes an :math:`L_q \\times L_k` matrix of scores, normalises
each row with a softmax, and multiplies by the values. Written that way, the
whole matrix has to exist at once, and a training step keeps it for the
backward pass: memory grows with the square of the length. FlashAttention
(Dao et al., 2022, arXiv:2205.14135) never builds it. Its idea fits in one
line — the softmax can be normalised *while the row is being read* — and this
page builds it up in four steps, each checked against the one before and
against PyTorch's :func:`torch.nn.functional.scaled_dot_product_attention`:
the three-pass softmax, the online softmax, attention over blocks of keys,
and attention over tiles of queries x keys with the causal tiles skipped.
Then the backward pass by recomputation, and the memory it saves.
"""

# %%
# The softmax in three passes
# ---------------------------
#
# A numerically safe softmax of a row :math:`x_1, \dots, x_n` reads the row
# three times: once for its maximum :math:`m` (so that no exponential
# overflows), once for the sum :math:`\ell = \sum_j e^{x_j - m}`, once to
# write :math:`e^{x_j - m} / \ell`. Everything on this page runs in float64,
# so that "equal" can mean equal to about :math:`10^{-13}`.

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap

from attnlib.efficient.online import (
    naive_attention,
    online_logsumexp,
    online_softmax,
    tiled_attention,
)
from attnlib.report import key_figure
from attnlib.training import seed_everything, seeded_generator

SEED = seed_everything()  # $ATTNLIB_SEED, else 0
F64 = torch.float64  # every tensor of this page but the last section's
gen = seeded_generator(0)


def softmax_three_passes(x):
    """Row-wise softmax of x (..., n): max, then sum, then normalise."""
    m = x.max(dim=-1, keepdim=True).values  # pass 1
    total = torch.exp(x - m).sum(dim=-1, keepdim=True)  # pass 2
    return torch.exp(x - m) / total  # pass 3


x = torch.randn(8, 1000, generator=gen, dtype=F64) * 4
three = softmax_three_passes(x)
diff_three = (three - torch.softmax(x, dim=-1)).abs().max().item()
print(f"max |three passes - torch.softmax|: {diff_three:.1e}")

# %%
# The online softmax: maximum and sum in one pass
# -----------------------------------------------
#
# Milakov and Gimelshein (2018, arXiv:1805.02867) noticed that the first two
# passes can be one. Read the row in blocks and keep a *running* maximum
# :math:`m` and a running sum :math:`\ell` of :math:`e^{x_j - m}`. When a
# block raises the maximum to :math:`m'`, every term summed so far was
# computed against the old maximum and is too large by :math:`e^{m' - m}`,
# so the sum is rescaled once:
#
# .. math::
#
#     m' = \max\big(m, \max_{j \in \text{block}} x_j\big), \qquad
#     \ell' = \ell\, e^{m - m'} + \sum_{j \in \text{block}} e^{x_j - m'} .
#
# At the end :math:`m` is the maximum and :math:`\ell` the sum, exactly as
# after the first two passes. The loop below records both after every block,
# for the figure that follows.

BLOCK = 100


def softmax_online(x, block=BLOCK):
    """Running max and sum over blocks of the last dim, then one normalising pass."""
    m = torch.full(x.shape[:-1], -math.inf, dtype=x.dtype)
    total = torch.zeros(x.shape[:-1], dtype=x.dtype)
    history = []
    for start in range(0, x.shape[-1], block):
        chunk = x[..., start : start + block]
        m_new = torch.maximum(m, chunk.max(dim=-1).values)
        total = total * torch.exp(m - m_new) + torch.exp(chunk - m_new[..., None]).sum(dim=-1)
        m = m_new
        history.append((m.clone(), total.clone()))
    return torch.exp(x - m[..., None]) / total[..., None], history


# a row whose largest values come late, so that the maximum changes several times
row = torch.randn(1, 1000, generator=gen, dtype=F64) + torch.linspace(0, 6, 1000, dtype=F64)
online, history = softmax_online(torch.cat([x, row]))
diff_online = max(
    (online - softmax_three_passes(torch.cat([x, row]))).abs().max().item(),
    (online - online_softmax(torch.cat([x, row]), block=BLOCK)).abs().max().item(),
    (online - torch.softmax(torch.cat([x, row]), dim=-1)).abs().max().item(),
)
diff_online = key_figure(
    "max |online - three-pass, library, torch| softmax", diff_online, fmt="{:.1e}"
)
lse_diff = (online_logsumexp(x) - torch.logsumexp(x, dim=-1)).abs().max().item()
print(f"max |online log-sum-exp - torch.logsumexp|: {lse_diff:.1e}")

# %%
# The figure follows the last row as its ten blocks arrive. The running
# maximum (left) only goes up; the running sum (right, log scale) is
# multiplied by :math:`e^{m - m'} < 1` whenever the maximum grows, so it
# drops after a large jump of the maximum, and it grows when the maximum
# stays. :math:`m + \log \ell`, the log-sum-exp of what has been read,
# never moves down, and its last value is the row's :func:`torch.logsumexp`.

running_max = np.array([h[0][-1].item() for h in history])
running_sum = np.array([h[1][-1].item() for h in history])
blocks_seen = np.arange(1, len(history) + 1)
max_changes = int((np.diff(running_max) > 0).sum())
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
ax1.step(blocks_seen, running_max, where="post", marker="o", label="running max m")
ax1.plot(blocks_seen, running_max + np.log(running_sum), "s--", label="m + log ℓ (log-sum-exp)")
ax1.set_xlabel(f"blocks read ({BLOCK} entries each)")
ax1.set_ylabel("value")
ax1.set_title("Running maximum and log-sum-exp")
ax1.legend()
ax2.semilogy(blocks_seen, running_sum, "o-", color="C2")
ax2.set_xlabel(f"blocks read ({BLOCK} entries each)")
ax2.set_ylabel("running sum ℓ (relative to the current max)")
ax2.set_title("The sum is rescaled when the maximum grows")
plt.show()
print(f"the running maximum rose after {max_changes} of {len(history) - 1} blocks")

# %%
# Attention over blocks of keys
# -----------------------------
#
# Attention needs more than the weights: their product with the values. The
# same rescaling applies to it (Rabe and Staats, 2021, arXiv:2112.05682).
# Keep, for each query, the running maximum :math:`m`, the running sum
# :math:`\ell` and an *unnormalised* output :math:`o = \sum_j e^{s_j - m} v_j`;
# when a block of keys arrives with scores :math:`S`,
#
# .. math::
#
#     m' = \max(m, \mathrm{rowmax}\, S), \quad P = e^{S - m'}, \quad
#     \ell' = e^{m - m'} \ell + \mathrm{rowsum}\, P, \quad
#     o' = e^{m - m'} o + P V_{\text{block}},
#
# and divide by :math:`\ell` at the very end. Only a
# :math:`(L_q, \text{block})` slice of scores exists at any time. The
# reference is :func:`attnlib.efficient.online.naive_attention`, the textbook
# form that stores every score, and PyTorch's SDPA.

B, H, N, DH = 2, 4, 600, 32  # batch, heads, length, features per head
q, k, v = torch.randn(3, B, H, N, DH, generator=gen, dtype=F64).unbind(0)
scale = 1 / math.sqrt(DH)


def attention_key_blocks(q, k, v, block):
    """All queries at once; keys and values read block by block with the online softmax."""
    m = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype)  # (B, H, Lq)
    total = torch.zeros(q.shape[:-1], dtype=q.dtype)  # (B, H, Lq)
    o = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)  # (B, H, Lq, Dv), unnormalised
    for j0 in range(0, k.shape[-2], block):
        s = (q @ k[..., j0 : j0 + block, :].transpose(-2, -1)) * scale  # (B, H, Lq, block)
        m_new = torch.maximum(m, s.max(dim=-1).values)
        p = torch.exp(s - m_new[..., None])
        alpha = torch.exp(m - m_new)  # how much the old terms shrink
        total = alpha * total + p.sum(dim=-1)
        o = alpha[..., None] * o + p @ v[..., j0 : j0 + block, :]
        m = m_new
    return o / total[..., None]


reference = F.scaled_dot_product_attention(q, k, v)
naive_out, naive_weights = naive_attention(q, k, v)
by_key_blocks = attention_key_blocks(q, k, v, block=128)  # 600 is not a multiple of 128
print(f"max |naive - SDPA|:      {(naive_out - reference).abs().max().item():.1e}")
print(f"max |key blocks - naive|: {(by_key_blocks - naive_out).abs().max().item():.1e}")
print(f"max |key blocks - SDPA|:  {(by_key_blocks - reference).abs().max().item():.1e}")

# %%
# Tiles of queries x keys, and the causal tiles skipped
# -----------------------------------------------------
#
# Blocking the queries too gives FlashAttention's tiles: the outer loop takes
# ``BQ`` queries, whose :math:`m, \ell, o` fit in fast memory, the inner loop
# streams the keys past them. Queries are independent, so nothing changes in
# the formulas. The tiles also make causal attention cheaper than masking:
# a tile whose keys all come after its queries (entirely above the diagonal)
# holds only masked scores and is **skipped**; only the tiles that the
# diagonal crosses need the mask. The loop below also returns the
# log-sum-exp :math:`m + \log \ell` of each query, which the backward pass
# will need, and records which tiles it computed.

BQ, BK = 96, 64  # neither divides 600


def attention_tiles(q, k, v, bq, bk, causal):
    lq, lk = q.shape[-2], k.shape[-2]
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    lse = torch.empty(q.shape[:-1], dtype=q.dtype)
    computed = np.zeros((math.ceil(lq / bq), math.ceil(lk / bk)), dtype=int)  # 0 = skipped
    for bi, i0 in enumerate(range(0, lq, bq)):
        i1 = min(i0 + bq, lq)
        m = torch.full(q[..., i0:i1, 0].shape, -math.inf, dtype=q.dtype)  # (B, H, bq)
        total = torch.zeros_like(m)
        o = torch.zeros(*m.shape, v.shape[-1], dtype=q.dtype)  # (B, H, bq, Dv)
        for bj, j0 in enumerate(range(0, lk, bk)):
            j1 = min(j0 + bk, lk)
            if causal and j0 > i1 - 1:  # every key of the tile is after every query
                break  # ... and so are the tiles to its right
            s = (q[..., i0:i1, :] @ k[..., j0:j1, :].transpose(-2, -1)) * scale
            computed[bi, bj] = 1
            if causal and j1 - 1 > i0:  # the diagonal crosses this tile
                allowed = torch.arange(j0, j1)[None, :] <= torch.arange(i0, i1)[:, None]
                s = s.masked_fill(~allowed, -math.inf)
                computed[bi, bj] = 2
            m_new = torch.maximum(m, s.max(dim=-1).values)
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m - m_new)
            total = alpha * total + p.sum(dim=-1)
            o = alpha[..., None] * o + p @ v[..., j0:j1, :]
            m = m_new
        out[..., i0:i1, :] = o / total[..., None]
        lse[..., i0:i1] = m + torch.log(total)
    return out, lse, computed


rows = {}
for causal in (False, True):
    tiles_out, tiles_lse, computed = attention_tiles(q, k, v, BQ, BK, causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    lib_out, lib_lse = tiled_attention(q, k, v, is_causal=causal, block_q=BQ, block_k=BK)
    scores = (q @ k.transpose(-2, -1)) * scale
    if causal:
        scores = scores.masked_fill(~torch.ones(N, N, dtype=torch.bool).tril(), -math.inf)
    rows[causal] = {
        "tiles vs SDPA": (tiles_out - ref).abs().max().item(),
        "tiles vs key blocks" if not causal else "tiles vs naive": (
            (tiles_out - by_key_blocks).abs().max().item()
            if not causal
            else (tiles_out - naive_attention(q, k, v, is_causal=True)[0]).abs().max().item()
        ),
        "library vs tiles": (lib_out - tiles_out).abs().max().item(),
        "lse vs torch.logsumexp": (tiles_lse - scores.logsumexp(-1)).abs().max().item(),
        "computed": computed,
    }
    print(
        f"causal={causal}: "
        + ", ".join(
            f"max |{name}| {val:.1e}" for name, val in rows[causal].items() if name != "computed"
        )
    )
diff_tiles = key_figure(
    "max |tiles - SDPA| (full and causal)",
    max(rows[c]["tiles vs SDPA"] for c in rows),
    fmt="{:.1e}",
)
grid = rows[True]["computed"]
skipped_share = key_figure("share of causal tiles skipped", float((grid == 0).mean()))

# %%
# The grid of tiles for causal attention: each cell is one (query block, key
# block) pair. About half the tiles are never computed (the share printed
# above; it tends to one half as the tiles get small against the length), and
# only the tiles on the diagonal pay for a mask.

fig, ax = plt.subplots(figsize=(7, 4.6), layout="constrained")
cmap = ListedColormap(["0.6", "C0", "C1"])
image = ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=2.5, alpha=0.9)
bar = fig.colorbar(image, ax=ax, ticks=[0, 1, 2], shrink=0.6)
bar.ax.set_yticklabels(["skipped", "computed", "computed + mask"])
ax.set_xticks(range(grid.shape[1]), [f"{j * BK}-" for j in range(grid.shape[1])], rotation=45)
ax.set_yticks(range(grid.shape[0]), [f"{i * BQ}-" for i in range(grid.shape[0])])
ax.set_xlabel(f"key block (first key; {BK} keys per block)")
ax.set_ylabel(f"query block (first query; {BQ} per block)")
ax.set_title(f"Causal attention, L = {N}: which tiles run")
plt.show()

# %%
# The backward pass by recomputation
# ----------------------------------
#
# Autograd through the loops above would store every tile's :math:`P` — the
# whole matrix again, in pieces. FlashAttention's backward pass (written here
# in the form of FlashAttention-2, Dao, 2023, arXiv:2307.08691) stores only
# :math:`Q, K, V`, the output :math:`O` and the log-sum-exp, and rebuilds each
# tile's weights from the scores: :math:`P = e^{S - \mathrm{lse}}`, exact
# because the lse already holds the final maximum and sum. With
# :math:`dO` the gradient of the output and
# :math:`D_i = \sum_d dO_{id} O_{id}` (which equals :math:`\sum_j P_{ij} dP_{ij}`,
# the term the softmax's Jacobian subtracts), per tile:
#
# .. math::
#
#     dV \mathrel{+}= P^\top dO, \quad dP = dO\, V^\top, \quad
#     dS = P \odot (dP - D), \quad
#     dQ \mathrel{+}= s\, dS\, K, \quad dK \mathrel{+}= s\, dS^\top Q .
#
# Written out, for the causal case, and checked against the library's
# autograd function (:func:`attnlib.efficient.online.tiled_attention`) and
# against the gradients autograd computes through PyTorch's SDPA:


def backward_tiles(q, k, v, out, lse, d_out, bq, bk):
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    big_d = (d_out * out).sum(dim=-1)  # (B, H, Lq)
    for i0 in range(0, q.shape[-2], bq):
        i1 = min(i0 + bq, q.shape[-2])
        for j0 in range(0, min(k.shape[-2], i1), bk):  # causal: the same tiles as forward
            j1 = min(j0 + bk, k.shape[-2])
            s = (q[..., i0:i1, :] @ k[..., j0:j1, :].transpose(-2, -1)) * scale
            allowed = torch.arange(j0, j1)[None, :] <= torch.arange(i0, i1)[:, None]
            p = torch.exp(s.masked_fill(~allowed, -math.inf) - lse[..., i0:i1, None])
            dv[..., j0:j1, :] += p.transpose(-2, -1) @ d_out[..., i0:i1, :]
            dp = d_out[..., i0:i1, :] @ v[..., j0:j1, :].transpose(-2, -1)
            ds = p * (dp - big_d[..., i0:i1, None])
            dq[..., i0:i1, :] += scale * ds @ k[..., j0:j1, :]
            dk[..., j0:j1, :] += scale * ds.transpose(-2, -1) @ q[..., i0:i1, :]
    return dq, dk, dv


d_out = torch.randn(B, H, N, DH, generator=gen, dtype=F64)
out, lse, _ = attention_tiles(q, k, v, BQ, BK, causal=True)
ours = backward_tiles(q, k, v, out, lse, d_out, BQ, BK)
qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
lib = torch.autograd.grad(
    tiled_attention(qg, kg, vg, is_causal=True, block_q=BQ, block_k=BK)[0], (qg, kg, vg), d_out
)
sdpa = torch.autograd.grad(
    F.scaled_dot_product_attention(qg, kg, vg, is_causal=True), (qg, kg, vg), d_out
)
for name, a, b, c in zip(("dQ", "dK", "dV"), ours, lib, sdpa, strict=True):
    print(
        f"{name}: max |written out - library| {(a - b).abs().max().item():.1e}, "
        f"max |written out - SDPA's autograd| {(a - c).abs().max().item():.1e}"
    )
diff_grad = key_figure(
    "max |gradient by recomputation - SDPA's|",
    max((a - c).abs().max().item() for a, c in zip(ours, sdpa, strict=True)),
    fmt="{:.1e}",
)
diff_grad_lib = max((a - b).abs().max().item() for a, b in zip(ours, lib, strict=True))

# %%
# What the backward pass keeps
# ----------------------------
#
# :func:`torch.autograd.graph.saved_tensors_hooks` sees every tensor that
# autograd saves for the backward pass. Counting their elements (each storage
# once) for one head of :math:`D_h = 32` features: the textbook form keeps its
# :math:`L \times L` weights (and the scores' mask), so its count grows like
# :math:`L^2`; the tiled function keeps :math:`Q, K, V, O` and the lse,
# :math:`4 L D_h + L` elements, linear in :math:`L`. Counts, not timings: they
# are the same on every machine. How much time and peak memory this buys
# against PyTorch's own kernels is measured on
# :ref:`sphx_glr_auto_gallery_10_efficient_03_measured.py`.


def saved_elements(fn):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


lengths = [256, 512, 1024, 2048]
saved = {"naive": [], "tiled": []}
for n in lengths:
    qs, ks, vs = (
        torch.randn(1, 1, n, DH, generator=gen, dtype=torch.float32).requires_grad_()
        for _ in range(3)
    )
    for name, fn in (("naive", naive_attention), ("tiled", tiled_attention)):
        saved[name].append(saved_elements(lambda fn=fn, t=(qs, ks, vs): fn(*t, is_causal=True)))
for n, a, b in zip(lengths, saved["naive"], saved["tiled"], strict=True):
    print(f"L = {n:5d}: naive saves {a:>10,d} elements, tiled {b:>8,d} (L² = {n * n:>10,d})")
saved_ratio = key_figure(
    "saved elements, naive / tiled, L = 2048",
    saved["naive"][-1] / saved["tiled"][-1],
    fmt="{:.0f}",
)

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.loglog(lengths, saved["naive"], "o-", label="naive_attention (weights kept)")
ax.loglog(lengths, saved["tiled"], "s-", label="tiled_attention (recomputes)")
ax.loglog(lengths, [n * n for n in lengths], ":", color="C7", label="L²")
ax.set_xticks(lengths, [str(n) for n in lengths])
ax.minorticks_off()
ax.set_xlabel("sequence length L")
ax.set_ylabel("elements saved for the backward pass")
ax.set_title(f"What autograd keeps (one head, D_h = {DH}, causal)")
ax.legend()
plt.show()

# %%
# Checks
# ------
#
# Every step is float64 arithmetic in a different order, so the differences
# are rounding errors of order :math:`10^{-15}`; the bars (:math:`10^{-12}`)
# leave a thousandfold margin and would still catch a missing rescale
# (an error of order one). The counts are exact.

assert diff_three < 1e-12 and diff_online < 1e-12 and lse_diff < 1e-12
assert max_changes >= 1  # the rescaling was exercised
assert (by_key_blocks - reference).abs().max() < 1e-12
assert all(val < 1e-12 for r in rows.values() for name, val in r.items() if name != "computed")
assert diff_tiles < 1e-12 and diff_grad < 1e-12 and diff_grad_lib < 1e-12
n_bq, n_bk = grid.shape
expected_computed = sum(min(n_bk, math.ceil(min(N, (i + 1) * BQ) / BK)) for i in range(n_bq))
assert int((grid > 0).sum()) == expected_computed
assert (rows[False]["computed"] > 0).all()
assert 0.3 < skipped_share < 0.6
assert saved["tiled"] == [4 * n * DH + n for n in lengths]
assert all(a > n * n for a, n in zip(saved["naive"], lengths, strict=True))
assert saved_ratio > 10
print("all checks passed")
