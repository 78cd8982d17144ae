r"""The online softmax and tiled (FlashAttention-style) attention, in plain PyTorch.

The softmax of a row needs its maximum (for stability) and its sum of
exponentials before any weight can be written: three passes over the row
(max, sum, normalise). Milakov and Gimelshein (2018, arXiv:1805.02867) merge
the first two into one pass that keeps a *running* maximum :math:`m` and a
running sum :math:`\ell` and rescales the sum whenever the maximum grows:

.. math::

    m' = \max(m, \max_j x_j), \qquad
    \ell' = \ell\, e^{m - m'} + \sum_j e^{x_j - m'} .

Attention can apply the same rescaling to its output accumulator, so that the
keys are read block by block and the :math:`(L_q, L_k)` matrix of weights never
exists (Rabe and Staats, 2021, arXiv:2112.05682; Dao et al., 2022,
arXiv:2205.14135): :func:`tiled_attention` does that over tiles of queries x
keys and returns the output and the log-sum-exp of each query's scores, from
which its backward pass recomputes the weights tile by tile (FlashAttention-2's
backward, Dao, 2023, arXiv:2307.08691) instead of storing them.
:func:`naive_attention` is the textbook form that stores every score, the
baseline of the benchmarks.

Masks are boolean, ``True`` = may attend, broadcastable to ``(..., Lq, Lk)``;
``is_causal`` is aligned at the top left (query ``i`` sees keys ``j <= i``),
like :func:`torch.nn.functional.scaled_dot_product_attention`. A query with no
allowed key gets a zero output (and a log-sum-exp of ``-inf``), never NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_mask, check_positive_int, check_tensor, shape_str

__all__ = ["online_softmax", "online_logsumexp", "naive_attention", "tiled_attention"]


# -- the online softmax ------------------------------------------------------------


def _running_max_and_sum(x: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """One pass over the last dim in blocks: the running max ``m`` and sum ``l``."""
    m = torch.full(x.shape[:-1], -math.inf, dtype=x.dtype, device=x.device)
    total = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[-1], block):
        chunk = x[..., start : start + block]  # (..., block)
        m_new = torch.maximum(m, chunk.amax(-1))
        shift = torch.nan_to_num(m_new, neginf=0.0)  # an all -inf row so far: shift by 0
        total = total * torch.exp(m - shift) + torch.exp(chunk - shift[..., None]).sum(-1)
        m = m_new
    return m, total


def _check_softmax_args(x: Tensor, dim: int, block: int) -> None:
    check_tensor(x, "x")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating tensor, got dtype {x.dtype}")
    if x.dim() == 0:
        raise ValueError("x: expected at least 1 dimension, got shape ()")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim: expected an integer in [{-x.dim()}, {x.dim() - 1}], got {dim!r}")
    check_positive_int(block, "block")


def online_softmax(x: Tensor, dim: int = -1, block: int = 128) -> Tensor:
    r"""Softmax with the maximum and the sum found in one pass (online normaliser).

    The entries along ``dim`` are read in blocks of ``block``; after each block
    the running maximum :math:`m` and the running sum :math:`\ell` of
    :math:`e^{x_j - m}` are updated, the sum rescaled by :math:`e^{m - m'}`
    when the maximum grows (Milakov and Gimelshein, 2018, arXiv:1805.02867).
    A second pass writes :math:`e^{x_j - m} / \ell`. Equal to
    :func:`torch.softmax` to float precision; a row that is ``-inf``
    everywhere (fully masked) gives zeros, not NaN.

    Parameters
    ----------
    x : Tensor
        Scores (floating).
    dim : int
        The dimension to normalise.
    block : int
        How many entries are read per step.

    Returns
    -------
    Tensor
        Same shape as ``x``; sums to 1 along ``dim`` (0 for a fully masked row).

    Shape
    -----
    - x: ``(..., Lk)`` (any shape; ``dim`` is the key dimension)
    - output: same as ``x``
    """
    _check_softmax_args(x, dim, block)
    moved = x.movedim(dim, -1)
    m, total = _running_max_and_sum(moved, block)
    shift = torch.nan_to_num(m, neginf=0.0)[..., None]
    empty = (total == 0)[..., None]
    out = torch.exp(moved - shift) / torch.where(empty, 1.0, total[..., None])
    return out.movedim(-1, dim)


def online_logsumexp(x: Tensor, dim: int = -1, block: int = 128) -> Tensor:
    r""":math:`\log \sum_j e^{x_j}` in one pass over blocks (running max and sum).

    Equal to :func:`torch.logsumexp`; ``-inf`` for a row that is ``-inf``
    everywhere. See :func:`online_softmax` (Milakov and Gimelshein, 2018,
    arXiv:1805.02867).

    Shape
    -----
    - x: ``(..., Lk)`` (``dim`` is the key dimension)
    - output: ``x``'s shape without ``dim``
    """
    _check_softmax_args(x, dim, block)
    m, total = _running_max_and_sum(x.movedim(dim, -1), block)
    return torch.nan_to_num(m, neginf=0.0) + torch.log(total)


# -- checks shared by the two attention functions ----------------------------------


def _check_attention_args(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float | None
) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_tensor(x, name)
        if x.dim() < 2:
            raise ValueError(
                f"{name}: expected at least 2 dimensions (..., length, features), "
                f"got shape {shape_str(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating tensor, got dtype {x.dtype}")
    for name, x in (("key", key), ("value", value)):
        if x.dim() != query.dim() or x.shape[:-2] != query.shape[:-2]:
            raise ValueError(
                f"{name}: expected the batch dimensions {shape_str(query.shape[:-2])} of "
                f"query {shape_str(query.shape)}, got shape {shape_str(x.shape)}"
            )
        if x.dtype != query.dtype:
            raise TypeError(f"{name}: expected dtype {query.dtype} (the query's), got {x.dtype}")
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"key: expected feature size Dk = {query.shape[-1]} (the query's), "
            f"got shape {shape_str(key.shape)}"
        )
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"value: expected {key.shape[-2]} rows (one per key), got shape "
            f"{shape_str(value.shape)}"
        )
    if mask is not None:
        check_tensor(mask, "mask")
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask: expected dtype torch.bool (True = may attend), got dtype {mask.dtype}"
            )
        target = (*query.shape[:-1], key.shape[-2])
        check_mask(mask, "mask", target, "(..., Lq, Lk)")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise TypeError(f"scale: expected a number or None, got {type(scale).__name__}")


# -- the textbook form -------------------------------------------------------------


def naive_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Textbook attention: every score stored, softmax, weights times values.

    .. math::

        \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

    The ``(Lq, Lk)`` scores and weights are materialised (and kept by autograd
    for the backward pass): the baseline that :func:`tiled_attention` avoids
    (Vaswani et al., 2017, arXiv:1706.03762).

    Parameters
    ----------
    query, key, value : Tensor
        Same leading (batch, head) dimensions.
    mask : Tensor, optional
        Boolean, ``True`` = may attend, broadcastable to ``(..., Lq, Lk)``.
    is_causal : bool
        Query ``i`` sees keys ``j <= i`` (top-left aligned, as in
        :func:`torch.nn.functional.scaled_dot_product_attention`), combined
        with ``mask``.
    scale : float, optional
        Score scale, default :math:`1/\sqrt{d_k}`.

    Returns
    -------
    output : Tensor
    weights : Tensor
        Zero for masked keys; a query with no allowed key has zero weights and
        a zero output.

    Shape
    -----
    - query: ``(..., Lq, Dk)``; key: ``(..., Lk, Dk)``; value: ``(..., Lk, Dv)``,
      typically ``(B, H, L, Dh)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``
    """
    _check_attention_args(query, key, value, mask, scale)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    lq, lk = query.shape[-2], key.shape[-2]
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., Lq, Lk)
    allowed = mask
    if is_causal:
        causal = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril()
        allowed = causal if allowed is None else allowed & causal
    if allowed is None:
        weights = torch.softmax(scores, dim=-1)
    else:
        allowed = allowed.expand(scores.shape)
        weights = torch.softmax(scores.masked_fill(~allowed, torch.finfo(scores.dtype).min), -1)
        weights = weights * allowed  # a fully masked row: uniform * 0 = 0
    return weights @ value, weights  # (..., Lq, Dv), (..., Lq, Lk)


# -- tiled attention -----------------------------------------------------------------


def _tile_allowed(
    mask: Tensor | None, is_causal: bool, i0: int, i1: int, j0: int, j1: int, device
) -> Tensor | None:
    """The boolean mask of tile ``[i0, i1) x [j0, j1)`` (None: everything allowed)."""
    allowed = None
    if mask is not None:
        rows = slice(i0, i1) if mask.dim() >= 2 and mask.shape[-2] > 1 else slice(None)
        cols = slice(j0, j1) if mask.shape[-1] > 1 else slice(None)
        allowed = mask[..., rows, cols]
    if is_causal and j1 - 1 > i0:  # the tile crosses the diagonal
        i = torch.arange(i0, i1, device=device)[:, None]
        j = torch.arange(j0, j1, device=device)[None, :]
        causal = j <= i  # (bq, bk)
        allowed = causal if allowed is None else allowed & causal
    return allowed


def _key_blocks(lk: int, block_k: int, is_causal: bool, i1: int) -> range:
    """Start of every key block that query rows ``< i1`` can see (causal: skip the rest)."""
    stop = min(lk, i1) if is_causal else lk
    return range(0, stop, block_k)


def _tiled_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    is_causal: bool,
    scale: float,
    block_q: int,
    block_k: int,
) -> tuple[Tensor, Tensor]:
    lq, lk = q.shape[-2], k.shape[-2]
    out = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)
    lse = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype, device=q.device)
    for i0 in range(0, lq, block_q):
        i1 = min(i0 + block_q, lq)
        q_blk = q[..., i0:i1, :] * scale  # (..., bq, Dk)
        m = torch.full(q_blk.shape[:-1], -math.inf, dtype=q.dtype, device=q.device)
        total = torch.zeros_like(m)  # (..., bq)
        acc = torch.zeros((*q_blk.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)
        for j0 in _key_blocks(lk, block_k, is_causal, i1):
            j1 = min(j0 + block_k, lk)
            s = q_blk @ k[..., j0:j1, :].transpose(-2, -1)  # (..., bq, bk)
            allowed = _tile_allowed(mask, is_causal, i0, i1, j0, j1, q.device)
            if allowed is not None:
                s = s.masked_fill(~allowed, -math.inf)
            m_new = torch.maximum(m, s.amax(-1))  # (..., bq)
            shift = torch.nan_to_num(m_new, neginf=0.0)  # rows with nothing allowed yet
            p = torch.exp(s - shift[..., None])  # (..., bq, bk); masked -> 0
            alpha = torch.exp(m - shift)  # rescales what was summed before
            total = total * alpha + p.sum(-1)
            acc = acc * alpha[..., None] + p @ v[..., j0:j1, :]  # (..., bq, Dv)
            m = m_new
        empty = total == 0  # (..., bq): no allowed key
        out[..., i0:i1, :] = acc / torch.where(empty, 1.0, total)[..., None]
        lse[..., i0:i1] = torch.where(empty, -math.inf, m + torch.log(total))
    return out, lse


class _TiledAttention(torch.autograd.Function):
    """Forward over tiles; backward recomputes every tile from q, k, v, out, lse."""

    @staticmethod
    def forward(ctx, q, k, v, mask, is_causal, scale, block_q, block_k):
        out, lse = _tiled_forward(q, k, v, mask, is_causal, scale, block_q, block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.mask = mask  # the caller's tensor (or None); nothing of size (Lq, Lk) is created
        ctx.options = (is_causal, scale, block_q, block_k)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_lse):
        q, k, v, out, lse = ctx.saved_tensors
        mask = ctx.mask
        is_causal, scale, block_q, block_k = ctx.options
        lq, lk = q.shape[-2], k.shape[-2]
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        # D_i = sum_d dO_id O_id = sum_j P_ij dP_ij: the softmax's correction term
        delta = (grad_out * out).sum(-1)  # (..., Lq)
        lse_shift = torch.nan_to_num(lse, neginf=0.0)  # fully masked rows: P = 0 anyway
        for i0 in range(0, lq, block_q):
            i1 = min(i0 + block_q, lq)
            q_blk = q[..., i0:i1, :]
            do_blk = grad_out[..., i0:i1, :]  # (..., bq, Dv)
            for j0 in _key_blocks(lk, block_k, is_causal, i1):
                j1 = min(j0 + block_k, lk)
                k_blk, v_blk = k[..., j0:j1, :], v[..., j0:j1, :]
                s = (q_blk @ k_blk.transpose(-2, -1)) * scale  # (..., bq, bk)
                allowed = _tile_allowed(mask, is_causal, i0, i1, j0, j1, q.device)
                if allowed is not None:
                    s = s.masked_fill(~allowed, -math.inf)
                p = torch.exp(s - lse_shift[..., i0:i1, None])  # the weights, recomputed
                dv[..., j0:j1, :] += p.transpose(-2, -1) @ do_blk
                dp = do_blk @ v_blk.transpose(-2, -1)  # (..., bq, bk)
                ds = p * (dp - delta[..., i0:i1, None]) * scale
                dq[..., i0:i1, :] += ds @ k_blk
                dk[..., j0:j1, :] += ds.transpose(-2, -1) @ q_blk
        return dq, dk, dv, None, None, None, None, None


def tiled_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    block_q: int = 128,
    block_k: int = 128,
) -> tuple[Tensor, Tensor]:
    r"""Attention over tiles of queries x keys with the online softmax (FlashAttention's idea).

    For each block of ``block_q`` queries, the keys are read in blocks of
    ``block_k``; a running maximum :math:`m`, a running sum :math:`\ell` and
    an output accumulator :math:`O` are rescaled as each block arrives:

    .. math::

        m' = \max(m, \mathrm{rowmax}(S)), \quad
        P = e^{S - m'}, \quad
        \ell' = e^{m - m'} \ell + \mathrm{rowsum}(P), \quad
        O' = e^{m - m'} O + P V,

    and the output is :math:`O / \ell`. Only a ``(block_q, block_k)`` tile of
    scores exists at a time (Rabe and Staats, 2021, arXiv:2112.05682; Dao et
    al., 2022, arXiv:2205.14135). With ``is_causal`` the key blocks entirely
    above the diagonal are skipped, not masked.

    The backward pass saves only the inputs, the output and the log-sum-exp
    (``O(L)`` extra memory, not ``O(Lq Lk)``) and recomputes each tile's
    weights :math:`P = e^{S - \mathrm{lse}}`, then
    :math:`dV \mathrel{+}= P^\top dO`, :math:`dP = dO\,V^\top`,
    :math:`dS = P \odot (dP - D)` with :math:`D = \mathrm{rowsum}(dO \odot O)`,
    :math:`dQ \mathrel{+}= dS\,K \cdot s`, :math:`dK \mathrel{+}= dS^\top Q \cdot s`
    (FlashAttention-2, Dao, 2023, arXiv:2307.08691). Double backward is not
    supported.

    Parameters
    ----------
    query, key, value : Tensor
        Same leading (batch, head) dimensions and dtype.
    mask : Tensor, optional
        Boolean, ``True`` = may attend, broadcastable to ``(..., Lq, Lk)``;
        each tile reads its slice.
    is_causal : bool
        Query ``i`` sees keys ``j <= i`` (top-left aligned, as in
        :func:`torch.nn.functional.scaled_dot_product_attention`), combined
        with ``mask``.
    scale : float, optional
        Score scale, default :math:`1/\sqrt{d_k}`.
    block_q, block_k : int
        Tile size; need not divide the lengths, may exceed them.

    Returns
    -------
    output : Tensor
        Equal to :func:`torch.nn.functional.scaled_dot_product_attention`'s;
        zero for a query with no allowed key.
    lse : Tensor
        :math:`\log \sum_j e^{s_{ij}}` over each query's allowed, scaled scores
        (``-inf`` for a query with no allowed key); not differentiable.

    Shape
    -----
    - query: ``(..., Lq, Dk)``; key: ``(..., Lk, Dk)``; value: ``(..., Lk, Dv)``,
      typically ``(B, H, L, Dh)``
    - mask: broadcastable to ``(..., Lq, Lk)``
    - output: ``(..., Lq, Dv)``; lse: ``(..., Lq)``

    Examples
    --------
    >>> q = k = v = torch.randn(2, 4, 100, 8, dtype=torch.float64)
    >>> out, lse = tiled_attention(q, k, v, is_causal=True, block_q=32, block_k=48)
    >>> ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    >>> bool((out - ref).abs().max() < 1e-12)
    True
    """
    _check_attention_args(query, key, value, mask, scale)
    check_positive_int(block_q, "block_q")
    check_positive_int(block_k, "block_k")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if mask is not None and mask.dim() == 1:
        mask = mask[None]  # (Lk,) -> (1, Lk): every tile slices rows and columns
    return _TiledAttention.apply(query, key, value, mask, bool(is_causal), scale, block_q, block_k)
