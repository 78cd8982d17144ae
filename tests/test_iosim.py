"""The IO simulator: exact counts worked out by hand, the fast memory never exceeded,
the schedules compute attention, and the scaling of FlashAttention's Theorem 2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlib.efficient.iosim import (
    FastMemory,
    loglog_slope,
    naive_tiles,
    simulate_naive,
    simulate_tiled,
    tiled_blocks,
)


def reference(q, k, v, causal=False):
    s = q @ k.T / np.sqrt(q.shape[1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape, dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ v


def test_tiled_counts_by_hand():
    # n=4, d=2, M=40: the paper's B_c = ceil(40 / 8) = 5 (capped at n = 4), B_r = 2,
    # needs 2*4*2 + 2*2*2 + 2*4 + 6*2 = 44 > 40; B_c = 3: 12 + 8 + 6 + 12 = 38 fits.
    assert tiled_blocks(4, 2, 40) == (2, 3)
    r = simulate_tiled(4, 2, 40)
    # key blocks [0,3) and [3,4), query blocks [0,2) and [2,4): 4 pairs
    # reads: K and V once (16), per pair Q_i (4) O_i (4) l_i (2) m_i (2)
    assert r.reads == 16 + 4 * 12
    # writes: O = 0, l = 0, m = -inf (8 + 8), per pair O_i, l_i, m_i (8)
    assert r.writes == 16 + 4 * 8
    assert r.loads == 2 * 2 + 4 * 4
    # first key block (3 rows): K, V 12; Q, O 8; l, m 4; S 6; four row statistics 8
    assert r.peak == 38 <= r.sram
    assert r.accesses == 112 and r.bytes_moved == 448
    # causal: the pair (key block [3,4), query block [0,2)) is skipped
    c = simulate_tiled(4, 2, 40, causal=True)
    assert (c.reads, c.writes, c.loads) == (16 + 3 * 12, 16 + 3 * 8, 4 + 3 * 4)


def test_naive_counts_by_hand():
    # n=4, d=2, M=12: tiles of side b=2 (2*2*2 + 2*2 = 12)
    assert naive_tiles(4, 2, 12) == 2
    r = simulate_naive(4, 2, 12)
    # S = QK^T: Q blocks 2x4, K blocks 4x4, S tiles written 4x4
    # softmax: 3 rows fit, S read and P written once (16 + 16)
    # O = PV: P tiles 4x4, V blocks 4x4, O written 2x4
    assert r.reads == 8 + 16 + 16 + 32
    assert r.writes == 16 + 16 + 8
    assert r.loads == 6 + 2 + 8
    assert r.peak == 12


def test_naive_streams_rows_longer_than_the_fast_memory():
    # n=8 > M=5: every row of S is read twice (max and sum, then normalise)
    r = simulate_naive(8, 1, 5)
    assert r.reads == (8 + 64) + 8 * 16 + (64 + 64)
    assert r.writes == 64 + 64 + 8
    assert r.peak <= 5


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 23),
    d=st.integers(1, 6),
    extra=st.integers(0, 400),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_schedules_compute_attention_within_the_fast_memory(n, d, extra, causal, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((n, d)) for _ in range(3))
    want = reference(q, k, v, causal)
    sram = 4 * d + 8 + extra
    for simulate in (simulate_naive, simulate_tiled):
        r = simulate(n, d, sram, causal=causal, inputs=(q, k, v))
        np.testing.assert_allclose(r.output, want, atol=1e-12, rtol=0)
        assert 0 < r.peak <= sram
        # nothing is read less than once: Q, K, V in, O out
        assert r.reads >= 3 * n * d and r.writes >= n * d


def test_fast_memory_refuses_to_overflow():
    mem = FastMemory(10)
    mem.load("a", 6)
    with pytest.raises(MemoryError, match="sram"):
        mem.load("b", 5)
    with pytest.raises(ValueError, match="sram"):
        tiled_blocks(100, 64, 64)
    with pytest.raises(ValueError, match="n: expected a positive int"):
        simulate_tiled(0, 4, 100)


def test_blocks_follow_the_paper_when_the_scores_fit():
    # M = 16 d^2: B_c = ceil(M / 4d) = 4d, B_r = min(B_c, d) = d; footprint 8d^2 + 2d^2 + 4d^2 + 6d
    d, sram = 32, 16 * 32 * 32
    assert tiled_blocks(10_000, d, sram) == (d, 4 * d)
    assert tiled_blocks(50, d, sram) == (min(50, d), 50)  # capped at n


N_GRID = [1024, 2048, 4096]
M_GRID = [8192, 16384, 32768]  # d <= M <= N d for every N above (d = 64)


def test_tiled_io_scales_like_n2_d2_over_m():
    d = 64
    tiled = np.array([[simulate_tiled(n, d, m).accesses for m in M_GRID] for n in N_GRID])
    for j in range(len(M_GRID)):
        assert 1.85 < loglog_slope(N_GRID, tiled[:, j]) < 2.05
    for i in range(len(N_GRID)):
        assert -1.1 < loglog_slope(M_GRID, tiled[i]) < -0.9
    # and the constant in front of N^2 d^2 / M stays bounded
    bound = np.array([[n * n * d * d / m for m in M_GRID] for n in N_GRID])
    assert 5 < (tiled / bound).min() and (tiled / bound).max() < 20


def test_naive_io_scales_like_n2_and_hardly_depends_on_m():
    d = 64
    for m in M_GRID:
        naive = [simulate_naive(n, d, m).accesses for n in N_GRID]
        assert 1.95 < loglog_slope(N_GRID, naive) < 2.05
    for n in N_GRID:
        naive = np.array(
            [simulate_naive(n, d, m).accesses for m in [3 * d * d, 8 * d * d, 32 * d * d]]
        )
        # S and P: 4 N^2 whatever M; re-reading K and V adds at most 2 N^2 once M >= 3 d^2
        assert (naive >= 4 * n * n).all() and (naive <= 6 * n * n + 4 * n * d).all()
        # a fast memory 32/3 times larger: naive moves at most 1.4 times less, tiled ~10 times
        assert naive.max() / naive.min() < 1.4
        tiled = [simulate_tiled(n, d, m).accesses for m in [3 * d * d, 32 * d * d]]
        assert tiled[0] / tiled[1] > 7


def test_tiled_io_falls_as_the_fast_memory_grows_until_m_reaches_n_d():
    n, d = 2048, 64
    sizes = [2**k for k in range(13, 22)]  # 8K ... 2M elements
    io = [simulate_tiled(n, d, m).accesses for m in sizes]
    below = [a for a, m in zip(io, sizes, strict=True) if m <= n * d]
    assert all(a > b for a, b in zip(below, below[1:], strict=False))
    # once one key block holds the whole sequence: K, V, Q read once, O, l, m twice
    floor = 2 * n * d + (2 * n * d + 2 * n) + (n * d + 2 * n) + (n * d + 2 * n)
    assert io[-1] == floor
    assert simulate_naive(n, d, sizes[-1]).accesses > 10 * floor


def test_loglog_slope():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert abs(loglog_slope(x, 3 * x**-1.5) + 1.5) < 1e-12
