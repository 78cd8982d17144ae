"""
Counting bytes: the IO argument
===============================

Tiled attention does exactly the arithmetic of the textbook form — every
score :math:`q_i \\cdot k_j` is computed once (and the backward pass even
computes them twice). Why is it faster on a GPU? FlashAttention's answer
(Dao et al., 2022, "FlashAttention: Fast and Memory-Efficient Exact Attention
with IO-Awareness", arXiv:2205.14135) is that attention is limited by
*memory traffic*, not by arithmetic: a GPU's large memory (HBM) is an order
of magnitude slower than its small on-chip SRAM, and the textbook form sends
the whole :math:`N \\times N` score matrix back and forth between them.

This page does not time anything: it **counts**. The
:mod:`attnlib.efficient.iosim` simulator gives both algorithms a fast memory
of :math:`M` elements, checks that they never hold more, and counts every
element read from or written to the slow memory. It reproduces the paper's
Theorem 2 — standard attention moves :math:`\\Theta(Nd + N^2)` elements,
tiled attention :math:`\\Theta(N^2 d^2 / M)` — and shows where tiling stops
helping.
"""

# %%
# Two memories, two schedules
# ---------------------------
#
# The model has a slow memory that holds everything and a fast memory of
# :math:`M` elements where the arithmetic happens. Standard attention
# (the paper's Algorithm 0) makes three passes through the slow memory:
#
# 1. :math:`S = QK^\top/\sqrt d`, by tiles; each tile of :math:`S` is
#    written out (:math:`N^2` writes);
# 2. :math:`P = \mathrm{softmax}(S)`, row by row: :math:`S` is read back and
#    :math:`P` written (:math:`2N^2`);
# 3. :math:`O = PV`: :math:`P` is read back (:math:`N^2`).
#
# Tiled attention (Algorithm 1, the schedule of
# :ref:`sphx_glr_auto_gallery_10_efficient_01_online_softmax_to_tiles.py`)
# keeps a block of :math:`B_c` keys and values in fast memory, streams the
# blocks of :math:`B_r` queries past it, and for each updates the output
# block :math:`O_i` and the row statistics :math:`\ell_i, m_i` (the running
# sum and maximum of the online softmax) — read and written back once per
# key block. The paper's block sizes are
#
# .. math::
#
#     B_c = \left\lceil \frac{M}{4d} \right\rceil, \qquad B_r = \min(B_c, d),
#
# so that the four blocks :math:`K_j, V_j, Q_i, O_i` each take about
# :math:`M/4`; the scores tile :math:`S_{ij}` comes on top, and
# :func:`attnlib.efficient.iosim.tiled_blocks` lowers :math:`B_c` until
# everything fits in :math:`M` — the simulator's fast memory *refuses* an
# allocation beyond its size.
#
# First, the schedules must compute attention. On a small case the
# simulator also does the arithmetic (float64), and both outputs are
# compared with :func:`attnlib.efficient.online.naive_attention`, causal
# included.

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnlib.efficient.iosim import (
    loglog_slope,
    naive_tiles,
    simulate_naive,
    simulate_tiled,
    tiled_blocks,
)
from attnlib.efficient.online import naive_attention
from attnlib.report import key_figure
from attnlib.training import seed_everything

SEED = seed_everything()  # $ATTNLIB_SEED, else 0
rng = np.random.default_rng(SEED)

n_small, d_small, sram_small = 150, 16, 1200
q, k, v = (rng.standard_normal((n_small, d_small)) for _ in range(3))
max_error = 0.0
for causal in (False, True):
    want = naive_attention(*(torch.from_numpy(x) for x in (q, k, v)), is_causal=causal)[0]
    for simulate in (simulate_naive, simulate_tiled):
        run = simulate(n_small, d_small, sram_small, causal=causal, inputs=(q, k, v))
        max_error = max(max_error, float(np.abs(run.output - want.numpy()).max()))
        assert run.peak <= sram_small
blocks = tiled_blocks(n_small, d_small, sram_small)
side = naive_tiles(n_small, d_small, sram_small)
print(f"N={n_small}, d={d_small}, M={sram_small}: tiled (B_r, B_c) = {blocks}, naive tiles {side}")
max_error = key_figure("largest |simulated - naive_attention| (float64)", max_error, fmt="{:.1e}")

# %%
# One configuration, counted
# --------------------------
#
# A head dimension :math:`d = 64` and a fast memory of :math:`M = 2^{15}`
# elements (64 KiB in half precision: of the order of one streaming
# multiprocessor's SRAM on an A100, 192 KB, of which a kernel gets part).
# The table breaks the traffic down; ``bytes_moved`` counts 4 bytes per
# element (float32).

D, M0 = 64, 2**15
N0 = 4096
naive0, tiled0 = simulate_naive(N0, D, M0), simulate_tiled(N0, D, M0)
table = pd.DataFrame([naive0.as_dict(), tiled0.as_dict()]).set_index("method")
columns = [
    "n",
    "d",
    "sram",
    "block_r",
    "block_c",
    "reads",
    "writes",
    "loads",
    "peak",
    "bytes_moved",
]
print(table[columns].to_string())
print(
    f"4 N^2 (S written, read, P written, read) = {4 * N0 * N0}; "
    f"N^2 d^2 / M = {N0 * N0 * D * D // M0}"
)
saving = key_figure(
    f"naive / tiled elements moved, N={N0}, d={D}, M=2^15", naive0.accesses / tiled0.accesses
)

# %%
# Standard attention's traffic is dominated by the :math:`4N^2` of the
# score and weight matrices, whatever the fast memory. Tiled attention reads
# :math:`K` and :math:`V` once, and :math:`Q, O, \ell, m` once per key block:
# with :math:`T_c = \lceil N/B_c \rceil` key blocks that is about
# :math:`3Nd\,T_c \approx 12 N^2 d^2 / M` — the :math:`N^2` is still there,
# but divided by :math:`M/d^2` (here the printed ratio).
#
# The shape of the bound
# ----------------------
#
# Now a grid: lengths from 512 to 8192 and fast memories from :math:`2^{13}`
# to :math:`2^{17}` elements. On log-log axes a power law is a straight
# line, and its slope is the exponent; the slopes are fitted on the points
# with :math:`M \le Nd/2`, inside the range :math:`d \le M \le Nd` of the
# paper's theorem (the next section shows what happens beyond).

LENGTHS = [512, 1024, 2048, 4096, 8192]
SRAMS = [2**13, 2**14, 2**15, 2**16, 2**17]
rows = []
for n in LENGTHS:
    for m in SRAMS:
        for run in (simulate_naive(n, D, m), simulate_tiled(n, D, m)):
            rows.append(run.as_dict())
grid = pd.DataFrame(rows)
assert (grid["peak"] <= grid["sram"]).all()  # the fast memory is never exceeded
acc = grid.pivot_table(index=["method", "sram"], columns="n", values="accesses")


def inside(n, m):
    return m <= n * D / 2


slopes_n = {
    (method, m): loglog_slope(
        [n for n in LENGTHS if inside(n, m)],
        [acc.loc[(method, m)][n] for n in LENGTHS if inside(n, m)],
    )
    for method in ("naive", "tiled")
    for m in SRAMS
}
slopes_m = {
    (method, n): loglog_slope(
        [m for m in SRAMS if inside(n, m)],
        [acc.loc[(method, m)][n] for m in SRAMS if inside(n, m)],
    )
    for method in ("naive", "tiled")
    for n in LENGTHS
    if sum(inside(n, m) for m in SRAMS) >= 3
}
slope_table = pd.DataFrame(
    {
        "slope in N (over M)": [
            np.mean([slopes_n[(k, m)] for m in SRAMS]) for k in ("naive", "tiled")
        ],
        "slope in M (over N)": [
            np.mean([v for (key, _), v in slopes_m.items() if key == k])
            for k in ("naive", "tiled")
        ],
    },
    index=["naive", "tiled"],
)
print(slope_table.round(3))
tiled_n = key_figure("tiled: slope of elements moved against N", slope_table.loc["tiled"].iloc[0])
tiled_m = key_figure("tiled: slope of elements moved against M", slope_table.loc["tiled"].iloc[1])
naive_n = key_figure("naive: slope of elements moved against N", slope_table.loc["naive"].iloc[0])
naive_m = key_figure("naive: slope of elements moved against M", slope_table.loc["naive"].iloc[1])

fig, (ax_n, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
for i, m in enumerate([2**13, 2**15, 2**17]):
    ax_n.loglog(
        LENGTHS,
        acc.loc[("tiled", m)],
        "o-",
        color=colours[i],
        label=f"tiled, M = 2^{int(np.log2(m))}",
    )
    ax_n.loglog(
        LENGTHS,
        acc.loc[("naive", m)],
        "s--",
        color=colours[i],
        alpha=0.6,
        label=f"naive, M = 2^{int(np.log2(m))}",
    )
ax_n.set(
    title="Elements moved against the length (d = 64)",
    xlabel="sequence length N",
    ylabel="elements read + written (slow memory)",
)
ax_n.set_xscale("log", base=2)
ax_n.legend(fontsize=8)
for i, n in enumerate([1024, 4096]):
    ax_m.loglog(SRAMS, acc.loc["tiled"][n], "o-", color=colours[i], label=f"tiled, N = {n}")
    ax_m.loglog(
        SRAMS, acc.loc["naive"][n], "s--", color=colours[i], alpha=0.6, label=f"naive, N = {n}"
    )
ax_m.set(
    title="... and against the fast memory",
    xlabel="fast memory M (elements)",
    ylabel="elements read + written (slow memory)",
)
ax_m.set_xscale("log", base=2)
ax_m.legend(fontsize=8)
plt.show()

# %%
# The tiled lines have slope 2 in :math:`N` and :math:`-1` in :math:`M`
# (the printed table): :math:`N^2 d^2 / M`, the paper's bound. The naive
# ones have slope 2 in :math:`N` too, but are nearly flat in :math:`M` —
# a larger fast memory only saves the re-reading of :math:`K` and :math:`V`
# inside the matrix products, not the :math:`4N^2` of :math:`S` and
# :math:`P`. Both are quadratic in :math:`N`; tiling wins by the factor
# :math:`M / d^2` (up to a constant), which is why it pays most with a small
# head dimension and a large SRAM — and why it loses when :math:`M` is below
# a few :math:`d^2` (next section): the blocks are then so thin that
# :math:`Q` and :math:`O` are re-read more often than :math:`S` would have
# been. Proposition 3 of the paper shows that
# no exact attention algorithm does asymptotically better than
# :math:`N^2 d^2 / M` for every :math:`M` in :math:`[d, Nd]`.
#
# Where tiling stops helping
# --------------------------
#
# Once one key block holds the whole sequence (:math:`B_c \ge N`, that is
# :math:`M \gtrsim 4Nd` with the paper's block sizes), there is a single
# pass: :math:`K, V, Q` are read once, :math:`O, \ell, m` written twice
# (initialised, then final) — a floor of about :math:`6Nd` elements that no
# larger memory lowers. We sweep :math:`M` far beyond :math:`Nd` for one
# length.

N1 = 2048
sweep = [2**k for k in range(12, 23)]
tiled_sweep = np.array([simulate_tiled(N1, D, m).accesses for m in sweep])
naive_sweep = np.array([simulate_naive(N1, D, m).accesses for m in sweep])
floor = 2 * N1 * D + (2 * N1 * D + 2 * N1) + 2 * (N1 * D + 2 * N1)
first_flat = next(m for m, a in zip(sweep, tiled_sweep, strict=True) if a == floor)
print(
    pd.DataFrame(
        {
            "M": sweep,
            "M / (N d)": np.array(sweep) / (N1 * D),
            "naive": naive_sweep,
            "tiled": tiled_sweep,
            "naive / tiled": naive_sweep / tiled_sweep,
        }
    ).to_string(index=False)
)
flat_over_nd = key_figure(
    "smallest M (of the sweep) at the tiled floor, in units of N d", first_flat / (N1 * D)
)

fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
ax.loglog(sweep, naive_sweep, "s--", label="naive")
ax.loglog(sweep, tiled_sweep, "o-", label="tiled")
ax.axhline(floor, color="gray", ls=":", label="floor: one pass (about 6 N d)")
ax.axvline(N1 * D, color="gray", ls="-.", label="M = N d")
ax.set(
    title=f"Tiling helps until the whole sequence fits (N = {N1}, d = {D})",
    xlabel="fast memory M (elements)",
    ylabel="elements read + written",
)
ax.set_xscale("log", base=2)
ax.legend()
plt.show()

# %%
# Below a few :math:`d^2` the naive schedule is the cheaper one; from
# there to :math:`M \approx 4Nd` the tiled traffic falls as :math:`1/M`;
# beyond, it sits on the floor. Real GPUs live in the middle of that range:
# :math:`d` between 64 and 128, SRAM of a few hundred KB per multiprocessor,
# :math:`N` in the thousands — which is where the paper measures its
# speed-ups. The causal case halves the tiled traffic (the blocks above the
# diagonal are skipped) but not the naive one, which writes the whole
# :math:`S` anyway.

causal_ratio = key_figure(
    f"tiled causal / tiled full, elements moved, N={N0}, M=2^15",
    simulate_tiled(N0, D, M0, causal=True).accesses / tiled0.accesses,
)

# %%
# On a CPU the two memories are the caches and the RAM, and the "fast
# memory" is not under the program's control the way shared memory is on a
# GPU; :ref:`sphx_glr_auto_gallery_10_efficient_03_measured.py` measures what
# tiling buys there (time and peak memory).
#
# Checks
# ------
#
# The counts are exact, so the bars are tight: the simulated schedules
# compute attention; the fast memory is never exceeded; tiled traffic scales
# with exponent 2 in :math:`N` and :math:`-1` in :math:`M` (within 0.1),
# naive traffic with exponent 2 in :math:`N` and nearly 0 in :math:`M`; the
# tiled floor is reached only beyond :math:`M = Nd`; causal tiling moves
# about half.

assert max_error < 1e-12, max_error
assert (grid["peak"] <= grid["sram"]).all()
assert 1.9 < tiled_n < 2.1 and -1.1 < tiled_m < -0.9, slope_table
assert 1.95 < naive_n < 2.05 and -0.25 < naive_m < 0.0, slope_table
assert saving > 2, saving
assert 1 < flat_over_nd <= 8, flat_over_nd
assert all(a > b for a, b in zip(tiled_sweep, tiled_sweep[1:], strict=False) if a > floor)
assert 0.45 < causal_ratio < 0.6, causal_ratio
print("all checks passed")
