r"""Count the data moved between a slow and a fast memory by standard and tiled attention.

FlashAttention's argument (Dao et al., 2022, "FlashAttention: Fast and
Memory-Efficient Exact Attention with IO-Awareness", arXiv:2205.14135) is not
about arithmetic: both algorithms do the same :math:`O(N^2 d)` operations. It
is about the traffic between the large, slow memory (a GPU's HBM) and the
small, fast one (its on-chip SRAM) of :math:`M` elements:

- standard attention writes the scores :math:`S = QK^\top` to slow memory,
  reads them back for the softmax, writes :math:`P`, reads it back for
  :math:`PV`: :math:`\Theta(Nd + N^2)` accesses (Theorem 2);
- tiled attention (Algorithm 1) keeps a block of :math:`K, V` in fast memory
  and streams the blocks of :math:`Q, O` and the row statistics
  :math:`\ell, m` past it: :math:`\Theta(N^2 d^2 / M)` accesses for
  :math:`d \le M \le Nd`, and no algorithm does asymptotically better over
  that whole range (Proposition 3).

This module *simulates* both schedules: a :class:`FastMemory` of ``sram``
elements whose every allocation is checked against its capacity (so a
schedule that would not fit raises instead of counting), reads and writes
counted element by element, and optionally the arithmetic itself on NumPy
arrays, so that a test can check on small sizes that the counted schedule is
the one that computes attention.

Sizes are in **elements**; :attr:`IOResult.bytes_moved` multiplies by
``bytes_per_element`` (4 for float32, 2 for the paper's half precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FastMemory",
    "IOResult",
    "loglog_slope",
    "naive_tiles",
    "simulate_naive",
    "simulate_tiled",
    "tiled_blocks",
]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


class FastMemory:
    """A fast memory of ``capacity`` elements and the traffic to the slow one.

    Every buffer held on chip is registered with :meth:`hold` (and released
    with :meth:`free`); holding more than ``capacity`` elements at once raises
    ``MemoryError``. :meth:`load` counts a read from slow memory into a new
    buffer, :meth:`store` a write back; on-chip temporaries (scores, row
    statistics) are held without traffic.

    Attributes
    ----------
    reads, writes : int
        Elements read from / written to slow memory.
    loads : int
        Number of :meth:`load` calls (blocks brought on chip).
    peak : int
        Largest number of elements held at once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = _positive_int(capacity, "sram")
        self.held: dict[str, int] = {}
        self.reads = self.writes = self.loads = self.peak = 0

    @property
    def used(self) -> int:
        """Elements held now."""
        return sum(self.held.values())

    def hold(self, name: str, size: int) -> None:
        """Allocate ``size`` elements on chip under ``name`` (no traffic)."""
        self.held[name] = int(size)
        used = self.used
        if used > self.capacity:
            raise MemoryError(
                f"sram: expected at most {self.capacity} elements on chip, "
                f"got {used} ({self.held})"
            )
        self.peak = max(self.peak, used)

    def load(self, name: str, size: int) -> None:
        """Read ``size`` elements from slow memory into a buffer ``name``."""
        self.hold(name, size)
        self.reads += int(size)
        self.loads += 1

    def store(self, size: int) -> None:
        """Write ``size`` elements of a held buffer back to slow memory."""
        self.writes += int(size)

    def free(self, *names: str) -> None:
        """Release the held buffers ``names`` (their space is free again)."""
        for name in names:
            del self.held[name]


@dataclass
class IOResult:
    """Traffic of one simulated schedule.

    Attributes
    ----------
    method : str
        ``"naive"`` or ``"tiled"``.
    n, d, sram : int
        Sequence length :math:`N`, head dimension :math:`d`, fast-memory size
        :math:`M` (elements).
    reads, writes : int
        Elements moved from and to slow memory.
    loads : int
        Blocks brought into fast memory.
    peak : int
        Largest number of elements held in fast memory at once (``<= sram``).
    block_r, block_c : int
        Query-block rows and key-block rows (tiled) or the GEMM tile side
        (naive, both equal).
    bytes_per_element : int
    output : numpy.ndarray or None
        The attention output ``(N, d)`` when the simulation computed it.
    """

    method: str
    n: int
    d: int
    sram: int
    reads: int
    writes: int
    loads: int
    peak: int
    block_r: int
    block_c: int
    causal: bool = False
    bytes_per_element: int = 4
    output: np.ndarray | None = field(default=None, repr=False)

    @property
    def accesses(self) -> int:
        """Elements read plus elements written (the paper's "HBM accesses")."""
        return self.reads + self.writes

    @property
    def bytes_moved(self) -> int:
        """:attr:`accesses` in bytes."""
        return self.accesses * self.bytes_per_element

    def as_dict(self) -> dict:
        """The counts as a plain dict (without the output)."""
        keys = ("method", "n", "d", "sram", "reads", "writes", "loads", "peak")
        row = {k: getattr(self, k) for k in keys}
        row |= {"block_r": self.block_r, "block_c": self.block_c, "causal": self.causal}
        return row | {"accesses": self.accesses, "bytes_moved": self.bytes_moved}


def _footprint(block_r: int, block_c: int, d: int) -> int:
    # K_j, V_j; Q_i, O_i; the scores S_ij (overwritten by P_ij in place);
    # six row statistics: l_i, m_i, the block's rowmax and rowsum, the new l and m
    return 2 * block_c * d + 2 * block_r * d + block_r * block_c + 6 * block_r


def tiled_blocks(n: int, d: int, sram: int) -> tuple[int, int]:
    r"""Block sizes of tiled attention for a fast memory of ``sram`` elements.

    FlashAttention's Algorithm 1 sets :math:`B_c = \lceil M / 4d \rceil` and
    :math:`B_r = \min(B_c, d)`, so that each of the four blocks
    :math:`K_j, V_j, Q_i, O_i` takes at most about :math:`M/4`. The scores
    block :math:`S_{ij}` (:math:`B_r \times B_c`, up to another :math:`M/4`)
    and the row statistics come on top, which the paper's :math:`O(M)`
    absorbs; to stay *within* ``sram`` we start from the paper's
    :math:`B_c` and lower it until everything fits. Both are capped at ``n``.

    Returns
    -------
    (block_r, block_c) : tuple of int
    """
    n, d, sram = (_positive_int(v, k) for v, k in ((n, "n"), (d, "d"), (sram, "sram")))
    if _footprint(1, 1, d) > sram:
        raise ValueError(
            f"sram: expected at least {_footprint(1, 1, d)} elements for d={d}, got {sram}"
        )
    block_c = min(math.ceil(sram / (4 * d)), n)
    while _footprint(min(block_c, d, n), block_c, d) > sram:
        block_c -= 1
    return min(block_c, d, n), block_c


def naive_tiles(n: int, d: int, sram: int) -> int:
    """Tile side ``b`` of the matrix products of standard attention: the largest
    with ``2 b d + b**2 <= sram`` (two ``(b, d)`` input tiles and a ``(b, b)``
    output tile), capped at ``n``."""
    n, d, sram = (_positive_int(v, k) for v, k in ((n, "n"), (d, "d"), (sram, "sram")))
    b = int(math.isqrt(d * d + sram)) - d  # positive root of b^2 + 2 d b - sram
    if b < 1:
        raise ValueError(f"sram: expected at least {2 * d + 1} elements for d={d}, got {sram}")
    return min(b, n)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _check_inputs(inputs, n: int, d: int):
    if inputs is None:
        return None
    q, k, v = (np.asarray(x, dtype=np.float64) for x in inputs)
    for name, x in zip(("query", "key", "value"), (q, k, v), strict=True):
        if x.shape != (n, d):
            raise ValueError(f"{name}: expected shape ({n}, {d}), got {x.shape}")
    return q, k, v


def simulate_naive(
    n: int,
    d: int,
    sram: int,
    *,
    causal: bool = False,
    bytes_per_element: int = 4,
    inputs: tuple | None = None,
) -> IOResult:
    r"""Simulate standard attention (FlashAttention's Algorithm 0) with a fast memory of ``sram``.

    Three passes through slow memory:

    1. :math:`S = QK^\top / \sqrt d` by tiles of side ``b``
       (:func:`naive_tiles`): a block of :math:`Q` stays on chip while the
       blocks of :math:`K` stream past; every tile of :math:`S` is written.
    2. :math:`P = \mathrm{softmax}(S)` row by row: as many whole rows as fit
       are read and :math:`P` written; a row longer than the fast memory is
       read twice (running maximum and sum, then normalise).
    3. :math:`O = PV` by tiles: an output block :math:`O_i` accumulates on
       chip while the tiles :math:`P_{ij}` and blocks :math:`V_j` stream.

    That is :math:`4N^2` accesses for :math:`S` and :math:`P` whatever
    :math:`M`, plus :math:`2N^2 d / b` for re-reading :math:`K` and :math:`V`
    — at most :math:`2N^2` once :math:`M \ge 3d^2` (then :math:`b \ge d`):
    :math:`\Theta(Nd + N^2)`, Theorem 2 of Dao et al. (2022, arXiv:2205.14135).

    Parameters
    ----------
    n, d : int
        Sequence length and head dimension.
    sram : int
        Fast-memory size in elements.
    causal : bool
        Mask the future (the traffic is the same: standard attention writes
        the whole :math:`S`).
    bytes_per_element : int
        For :attr:`IOResult.bytes_moved`.
    inputs : tuple, optional
        ``(query, key, value)``, each ``(n, d)``: compute the output too (float64).

    Returns
    -------
    IOResult

    Shape
    -----
    - query, key, value, output: ``(N, d)``
    """
    b = naive_tiles(n, d, sram)
    qkv = _check_inputs(inputs, n, d)
    mem = FastMemory(sram)
    scale = 1 / math.sqrt(d)
    S = np.empty((n, n)) if qkv else None
    # 1. S = Q K^T
    for r0, r1 in _blocks(n, b):
        mem.load("Q_i", (r1 - r0) * d)
        for c0, c1 in _blocks(n, b):
            mem.load("K_j", (c1 - c0) * d)
            mem.hold("S_ij", (r1 - r0) * (c1 - c0))
            if qkv:
                S[r0:r1, c0:c1] = qkv[0][r0:r1] @ qkv[1][c0:c1].T * scale
            mem.store((r1 - r0) * (c1 - c0))
            mem.free("K_j", "S_ij")
        mem.free("Q_i")
    # 2. P = softmax(S), in place in slow memory
    rows = sram // n
    if rows >= 1:
        for r0, r1 in _blocks(n, rows):
            mem.load("S_rows", (r1 - r0) * n)
            if qkv:
                S[r0:r1] = _softmax_rows(S[r0:r1], r0, causal)
            mem.store((r1 - r0) * n)
            mem.free("S_rows")
    else:  # a row does not fit: one pass for the maximum and the sum, one to normalise
        chunk = sram - 2
        for r in range(n):
            mem.hold("m, l", 2)
            for _ in range(2):
                for c0, c1 in _blocks(n, chunk):
                    mem.load("S_chunk", c1 - c0)
                    mem.free("S_chunk")
            mem.writes += n
            if qkv:
                S[r : r + 1] = _softmax_rows(S[r : r + 1], r, causal)
            mem.free("m, l")
    # 3. O = P V
    out = np.zeros((n, d)) if qkv else None
    for r0, r1 in _blocks(n, b):
        mem.hold("O_i", (r1 - r0) * d)
        for c0, c1 in _blocks(n, b):
            mem.load("P_ij", (r1 - r0) * (c1 - c0))
            mem.load("V_j", (c1 - c0) * d)
            if qkv:
                out[r0:r1] += S[r0:r1, c0:c1] @ qkv[2][c0:c1]
            mem.free("P_ij", "V_j")
        mem.store((r1 - r0) * d)
        mem.free("O_i")
    return IOResult(
        "naive",
        n,
        d,
        sram,
        mem.reads,
        mem.writes,
        mem.loads,
        mem.peak,
        b,
        b,
        causal,
        bytes_per_element,
        out,
    )


def _softmax_rows(s: np.ndarray, row0: int, causal: bool) -> np.ndarray:
    if causal:
        rows = np.arange(row0, row0 + s.shape[0])[:, None]
        s = np.where(np.arange(s.shape[1])[None, :] <= rows, s, -np.inf)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simulate_tiled(
    n: int,
    d: int,
    sram: int,
    *,
    causal: bool = False,
    bytes_per_element: int = 4,
    inputs: tuple | None = None,
) -> IOResult:
    r"""Simulate tiled attention (FlashAttention's Algorithm 1) with a fast memory of ``sram``.

    Block sizes from :func:`tiled_blocks`. The outer loop brings a block
    :math:`K_j, V_j` (:math:`B_c` rows) on chip once; the inner loop loads
    :math:`Q_i, O_i, \ell_i, m_i` (:math:`B_r` rows), computes the block's
    scores, its row maximum and sum on chip, rescales :math:`O_i` by the
    online-softmax update and writes :math:`O_i, \ell_i, m_i` back. Before
    the loops :math:`O = 0, \ell = 0, m = -\infty` are written to slow
    memory (Algorithm 1, line 2). With ``causal=True`` the blocks entirely
    above the diagonal are skipped.

    With :math:`T_c = \lceil N / B_c \rceil` the traffic is
    :math:`2Nd` (reading :math:`K, V`) plus :math:`T_c (3Nd + 4N)` (reading
    and writing :math:`O, \ell, m`, reading :math:`Q`) plus the
    initialisation: :math:`\Theta(N^2 d^2 / M)` since
    :math:`B_c = \Theta(M/d)` (Theorem 2 of Dao et al., 2022,
    arXiv:2205.14135).

    Parameters
    ----------
    n, d, sram, causal, bytes_per_element, inputs
        As in :func:`simulate_naive`.

    Returns
    -------
    IOResult

    Shape
    -----
    - query, key, value, output: ``(N, d)``
    """
    block_r, block_c = tiled_blocks(n, d, sram)
    qkv = _check_inputs(inputs, n, d)
    mem = FastMemory(sram)
    scale = 1 / math.sqrt(d)
    mem.writes += n * d + 2 * n  # O = 0, l = 0, m = -inf in slow memory
    if qkv:
        out, l_all, m_all = np.zeros((n, d)), np.zeros(n), np.full(n, -np.inf)
    for c0, c1 in _blocks(n, block_c):
        mem.load("K_j", (c1 - c0) * d)
        mem.load("V_j", (c1 - c0) * d)
        for r0, r1 in _blocks(n, block_r):
            if causal and c0 > r1 - 1:  # every key of the block is after every query
                continue
            rows = r1 - r0
            mem.load("Q_i", rows * d)
            mem.load("O_i", rows * d)
            mem.load("l_i", rows)
            mem.load("m_i", rows)
            mem.hold("S_ij", rows * (c1 - c0))  # then P_ij, in place
            mem.hold("rowmax, rowsum, new l, new m", 4 * rows)
            if qkv:
                _tile_update(qkv, out, l_all, m_all, (r0, r1), (c0, c1), scale, causal)
            mem.store(rows * d + 2 * rows)  # O_i, l_i, m_i
            mem.free("Q_i", "O_i", "l_i", "m_i", "S_ij", "rowmax, rowsum, new l, new m")
        mem.free("K_j", "V_j")
    return IOResult(
        "tiled",
        n,
        d,
        sram,
        mem.reads,
        mem.writes,
        mem.loads,
        mem.peak,
        block_r,
        block_c,
        causal,
        bytes_per_element,
        out if qkv else None,
    )


def _tile_update(qkv, out, l_all, m_all, rows, cols, scale, causal) -> None:
    """Algorithm 1, lines 9-12, on one (query block, key block) pair."""
    (r0, r1), (c0, c1) = rows, cols
    q, k, v = qkv
    s = q[r0:r1] @ k[c0:c1].T * scale  # (B_r, B_c)
    if causal:
        s = np.where(np.arange(c0, c1)[None, :] <= np.arange(r0, r1)[:, None], s, -np.inf)
    m_blk = s.max(axis=1)
    safe_blk = np.where(np.isfinite(m_blk), m_blk, 0.0)
    p = np.exp(s - safe_blk[:, None])  # exp(-inf) = 0 for masked scores
    l_blk = p.sum(axis=1)
    m_old, l_old = m_all[r0:r1], l_all[r0:r1]
    m_new = np.maximum(m_old, m_blk)
    safe_new = np.where(np.isfinite(m_new), m_new, 0.0)
    a_old = np.where(np.isfinite(m_old), np.exp(m_old - safe_new), 0.0)
    a_blk = np.where(np.isfinite(m_blk), np.exp(m_blk - safe_new), 0.0)
    l_new = a_old * l_old + a_blk * l_blk
    with np.errstate(invalid="ignore", divide="ignore"):
        o = (l_old * a_old)[:, None] * out[r0:r1] + a_blk[:, None] * (p @ v[c0:c1])
        out[r0:r1] = np.where(l_new[:, None] > 0, o / l_new[:, None], 0.0)
    l_all[r0:r1], m_all[r0:r1] = l_new, m_new


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the exponent ``a`` of ``y ~ x**a``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
