r"""Sliding-window attention that scores only the band :math:`|i - j| \le w`.

Masking an :math:`L \times L` score matrix down to a band still computes all
:math:`L^2` scores. :func:`band_attention` never does: the queries are cut into
blocks of ``c`` rows, each block is scored against the ``c + 2w`` keys its rows
can see (a strided ``unfold`` view of the zero-padded keys, so nothing is
copied per block), and the pairs outside the band are masked inside that small
tile. Time and memory are :math:`O(L (c + 2w) D)`, linear in :math:`L` for a
fixed window (Beltagy et al., 2020, arXiv:2004.05150; Child et al., 2019,
arXiv:1904.10509). :func:`band_to_dense` lays the band's weights out as the
usual ``(L, L)`` matrix, for plots and comparisons.

Band coordinates: column ``t`` of row ``i`` holds key ``j = i - w + t``
(``t = 0 .. 2w``, or ``0 .. w`` when causal, where the last column is the
query itself); columns whose key falls outside ``[0, L)`` hold zero weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_tensor, shape_str

__all__ = ["band_attention", "band_to_dense"]

_MIN_BLOCK = 16  # narrower query blocks make many tiny matmuls


def _check_window(window: object) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window: expected a non-negative integer, got {window!r}")
    return window


def _band_width(window: int, causal: bool) -> int:
    return window + 1 if causal else 2 * window + 1


def _check_band_args(query: Tensor, key: Tensor, value: Tensor) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_tensor(x, name)
        if x.dim() < 2:
            raise ValueError(
                f"{name}: expected at least 2 dimensions (..., L, features), "
                f"got shape {shape_str(x.shape)}"
            )
    if key.shape[:-1] != query.shape[:-1] or key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"key: expected the query's shape {shape_str(query.shape)} (self-attention over "
            f"one sequence: L keys of Dk features), got {shape_str(key.shape)}"
        )
    if value.shape[:-1] != query.shape[:-1]:
        raise ValueError(
            f"value: expected shape {shape_str((*query.shape[:-1], 'Dv'))} (one value per "
            f"key), got {shape_str(value.shape)}"
        )


def band_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    window: int,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Scaled dot-product attention over the band :math:`|i - j| \le w`, scoring only the band.

    Equal to :func:`torch.nn.functional.scaled_dot_product_attention` with
    :func:`attnlib.masks.sliding_window_mask` (to float precision, gradients
    included), without the :math:`L \times L` scores: queries are taken in
    blocks of :math:`c = \max(w, 16)` rows (at most :math:`L`), each block
    scored against the :math:`c + 2w` keys (:math:`c + w` causal) that an
    ``unfold`` view of the zero-padded keys gives it, the out-of-band and
    padded pairs masked in that tile, then softmax and a batched matmul with
    the values' view. Cost :math:`O(L (c + 2w) D)` in time and memory.
    Every query sees at least itself, so no row is empty. Sliding windows:
    Beltagy et al., 2020, arXiv:2004.05150.

    Parameters
    ----------
    query, key, value : Tensor
        One sequence (self-attention): the same leading dimensions and length.
    window : int
        Half-width :math:`w` of the band (``0``: each position attends to
        itself). A window of at least ``L - 1`` covers every key; it is
        clipped to ``L - 1``, so the band is never wider than the sequence.
    causal : bool
        Keep only :math:`0 \le i - j \le w`.
    scale : float, optional
        Score scale, default :math:`1/\sqrt{d_k}`.

    Returns
    -------
    output : Tensor
    band_weights : Tensor
        Column ``t`` of row ``i`` is the weight of key ``j = i - w + t``
        (:math:`w` after clipping); zero where ``j`` is outside ``[0, L)``.
        :func:`band_to_dense` gives the ``(L, L)`` matrix.

    Shape
    -----
    - query: ``(..., L, Dk)``; key: ``(..., L, Dk)``; value: ``(..., L, Dv)``,
      typically ``(B, H, L, Dh)``
    - output: ``(..., L, Dv)``; band_weights: ``(..., L, 2w + 1)``
      (``(..., L, w + 1)`` causal), with ``w = min(window, L - 1)``
    """
    _check_band_args(query, key, value)
    window = _check_window(window)
    return _band_attention(query, key, value, window, bool(causal), scale)


def _band_attention(
    query: Tensor, key: Tensor, value: Tensor, window: int, causal: bool, scale: float | None
) -> tuple[Tensor, Tensor]:
    """The core of :func:`band_attention`, unchecked."""
    n, dk = query.shape[-2], query.shape[-1]
    w = min(window, n - 1)
    scale = 1.0 / math.sqrt(dk) if scale is None else scale
    c = min(max(w, _MIN_BLOCK), n)  # queries per block
    nb = -(-n // c)  # blocks
    right = 0 if causal else w  # keys a block sees after its last query
    span = c + w + right  # keys a block sees
    pad_q = nb * c - n
    q_blocks = F.pad(query, (0, 0, 0, pad_q)).unflatten(-2, (nb, c))  # (..., nb, c, Dk)
    # keys j = b*c - w + u for u in [0, span): a strided view, block b starting at row b*c
    k_win = F.pad(key, (0, 0, w, pad_q + right)).unfold(-2, span, c)  # (..., nb, Dk, span)
    v_win = F.pad(value, (0, 0, w, pad_q + right)).unfold(-2, span, c)  # (..., nb, Dv, span)
    scores = (q_blocks @ k_win) * scale  # (..., nb, c, span): only the band's tiles

    r = torch.arange(c, device=query.device)[:, None]  # row in the block
    u = torch.arange(span, device=query.device)[None, :]  # key slot in the block's window
    t = u - r  # (c, span): band column, j - i + w
    in_band = (t >= 0) & (t < _band_width(w, causal))
    b = torch.arange(nb, device=query.device)[:, None, None] * c
    j = b - w + u  # (nb, 1, span): the key's position
    i = b + r  # (nb, c, 1): the query's position
    # a padded query row (i >= L) keeps its padded keys, so that no row is all -inf
    allowed = in_band & (((j >= 0) & (j < n)) | (i >= n))  # (nb, c, span)
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1)
    out = weights @ v_win.transpose(-2, -1)  # (..., nb, c, Dv)
    out = out.flatten(-3, -2)[..., :n, :]  # (..., L, Dv)
    # row r of a block holds its band in columns r .. r + width - 1: a strided view
    width = _band_width(w, causal)
    band = weights.flatten(-2).unfold(-1, width, span + 1)  # (..., nb, c, width)
    band = band.flatten(-3, -2)[..., :n, :]  # (..., L, width)
    return out, band


def band_to_dense(band_weights: Tensor, window: int, causal: bool = False) -> Tensor:
    r"""Lay band weights out as the ``(L, L)`` matrix (zeros outside the band).

    ``dense[..., i, j] = band_weights[..., i, j - i + w]`` for the keys of the
    band, zero elsewhere; the inverse of reading the band off a dense matrix.
    Differentiable. Builds :math:`L^2` entries: for plots and comparisons,
    not for the forward pass.

    Parameters
    ----------
    band_weights : Tensor
        As returned by :func:`band_attention`.
    window : int
        The window given to :func:`band_attention` (clipped to ``L - 1`` the
        same way).
    causal : bool
        Whether the band is causal (``w + 1`` columns) or not (``2w + 1``).

    Returns
    -------
    Tensor
        The dense weights.

    Shape
    -----
    - band_weights: ``(..., L, 2w + 1)`` (``(..., L, w + 1)`` causal),
      ``w = min(window, L - 1)``
    - output: ``(..., L, L)``
    """
    check_tensor(band_weights, "band_weights")
    window = _check_window(window)
    if band_weights.dim() < 2:
        raise ValueError(
            f"band_weights: expected at least 2 dimensions (..., L, band), "
            f"got shape {shape_str(band_weights.shape)}"
        )
    n = band_weights.shape[-2]
    w = min(window, max(n - 1, 0))
    width = _band_width(w, bool(causal))
    if band_weights.shape[-1] != width:
        kind = "w + 1 (causal)" if causal else "2w + 1"
        raise ValueError(
            f"band_weights: expected {width} columns ({kind}, w = min(window, L - 1) = {w}), "
            f"got shape {shape_str(band_weights.shape)}"
        )
    return _band_to_dense(band_weights, w)


def _band_to_dense(band_weights: Tensor, w: int) -> Tensor:
    """Unchecked: ``w`` already clipped. Row i's column t lands on dense column i - w + t."""
    n, width = band_weights.shape[-2], band_weights.shape[-1]
    wide = n + 2 * w  # dense columns j + w, j in [-w, L + w)
    # rows of wide + 1 entries, read back as rows of ``wide``: row i shifts right by i
    buffer = F.pad(band_weights, (0, wide + 1 - width))  # (..., L, wide + 1)
    shifted = buffer.flatten(-2)[..., : n * wide].unflatten(-1, (n, wide))  # (..., L, wide)
    return shifted[..., w : w + n]  # (..., L, L)
