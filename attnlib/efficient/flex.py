"""attnlib's masks and score modifications written for PyTorch's ``flex_attention``.

:func:`torch.nn.attention.flex_attention.flex_attention` takes attention
variants as two small functions of the indices instead of dense tensors
(Dong, Feng, Guessous, Liang and He, 2024, "Flex Attention: A Programming
Model for Generating Optimized Attention Kernels", arXiv:2412.05496):

- a ``mask_mod(b, h, q_idx, kv_idx) -> bool`` says whether query ``q_idx``
  of batch row ``b`` and head ``h`` may attend to key ``kv_idx`` (attnlib's
  convention: ``True`` = may attend); it is turned into a *block mask* that
  lets a compiled kernel skip whole blocks of keys;
- a ``score_mod(score, b, h, q_idx, kv_idx) -> score`` changes one scaled
  score, e.g. adds ALiBi's bias.

This module writes :mod:`attnlib.masks`' causal, sliding-window and padding
masks and :mod:`attnlib.positional`'s ALiBi bias in that form, and
:func:`flex_attention` runs them. Without :func:`torch.compile` PyTorch runs
flex_attention eagerly: the ``(Lq, Lk)`` scores are materialised (no saving
of memory or time), but the result is the same, which is what the tests and
the tutorial check; the helpers silence PyTorch's warning about it.
:data:`FLEX_AVAILABLE` is ``False`` on a PyTorch without flex_attention.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_positive_int, check_rank, shape_str
from ..positional import alibi_slopes

try:  # PyTorch >= 2.5
    from torch.nn.attention import flex_attention as _flex
except ImportError:  # pragma: no cover - depends on the installed PyTorch
    _flex = None

__all__ = [
    "FLEX_AVAILABLE",
    "causal_mask_mod",
    "sliding_window_mask_mod",
    "padding_mask_mod",
    "alibi_score_mod",
    "and_masks",
    "mask_from_mod",
    "flex_attention",
]

FLEX_AVAILABLE: bool = _flex is not None
"""Whether this PyTorch has :mod:`torch.nn.attention.flex_attention`."""

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
ScoreMod = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]

_EAGER_WARNING = "flex_attention called without torch.compile"


def _require_flex() -> None:
    if _flex is None:
        raise RuntimeError(
            "flex_attention: expected torch.nn.attention.flex_attention (PyTorch >= 2.5), "
            f"got PyTorch {torch.__version__} without it"
        )


def causal_mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    """Query ``i`` may attend to keys ``0..i``: :func:`attnlib.masks.causal_mask`
    (aligned at the top left) as a ``mask_mod``."""
    return q_idx >= kv_idx


def sliding_window_mask_mod(window: int, *, causal: bool = False) -> MaskMod:
    """:func:`attnlib.masks.sliding_window_mask` as a ``mask_mod``.

    Query ``i`` may attend to key ``j`` when ``|i - j| <= window``
    (``causal``: ``0 <= i - j <= window``); Beltagy, Peters and Cohan (2020),
    "Longformer", arXiv:2004.05150.

    Parameters
    ----------
    window : int
        Half-width of the band (``0``: each query sees its own position only).
    causal : bool
        Keep only the past half of the band.

    Returns
    -------
    callable
        ``mask_mod(b, h, q_idx, kv_idx) -> bool``.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window: expected a non-negative integer, got {window!r}")
    lower = 0 if causal else -window

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        offset = q_idx - kv_idx
        return (offset <= window) & (offset >= lower)

    return mask_mod


def padding_mask_mod(keep: Tensor) -> MaskMod:
    """Padding as a ``mask_mod``: every query of row ``b`` may attend to the keys
    ``j`` with ``keep[b, j]``, as :func:`attnlib.masks.padding_mask` (whose
    output is ``keep[:, None, None, :]``).

    Parameters
    ----------
    keep : Tensor
        Boolean, ``True`` for a real key (``tokens != pad_idx``).

    Returns
    -------
    callable
        ``mask_mod(b, h, q_idx, kv_idx) -> bool``.

    Shape
    -----
    - keep: ``(B, Lk)``
    """
    check_rank(keep, "keep", (2,), "(batch, key length), True for a real key")
    if keep.dtype != torch.bool:
        raise TypeError(f"keep: expected dtype torch.bool (True = real key), got {keep.dtype}")

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return keep[b, kv_idx]

    return mask_mod


def alibi_score_mod(num_heads: int, *, offset: int = 0) -> ScoreMod:
    r"""ALiBi as a ``score_mod``: adds :math:`-m_h \, |i + \text{offset} - j|` to the scores.

    The same bias as :func:`attnlib.positional.alibi_bias` (Press, Smith and
    Lewis, 2022, arXiv:2108.12409), with the slopes :math:`m_h` of
    :func:`attnlib.positional.alibi_slopes`. Query ``i`` sits at key position
    ``i + offset``: ``alibi_bias(H, Lq, Lk)`` corresponds to ``offset = Lk - Lq``
    (0 when queries and keys are one sequence).

    Parameters
    ----------
    num_heads : int
        Number of heads :math:`h` (the slopes depend on it).
    offset : int
        Key position of the first query.

    Returns
    -------
    callable
        ``score_mod(score, b, h, q_idx, kv_idx) -> score``.
    """
    slopes = alibi_slopes(num_heads)  # (H,)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset: expected a non-negative integer, got {offset!r}")

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        distance = (q_idx + offset - kv_idx).abs().to(score.dtype)
        return score - slopes.to(device=score.device, dtype=score.dtype)[h] * distance

    return score_mod


def and_masks(*mask_mods: MaskMod) -> MaskMod:
    """The ``mask_mod`` allowing a pair when every one of ``mask_mods`` does
    (``&`` of the dense masks)."""
    _require_flex()
    if not mask_mods:
        raise ValueError("mask_mods: expected at least one mask_mod, got none")
    return _flex.and_masks(*mask_mods)


def mask_from_mod(
    mask_mod: MaskMod,
    batch: int,
    num_heads: int,
    query_len: int,
    key_len: int | None = None,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """The dense boolean mask (``True`` = may attend) that ``mask_mod`` describes.

    Shape
    -----
    - output: ``(batch, num_heads, query_len, key_len)``
    """
    _require_flex()
    for name, n in (("batch", batch), ("num_heads", num_heads), ("query_len", query_len)):
        check_positive_int(n, name)
    key_len = query_len if key_len is None else check_positive_int(key_len, "key_len")
    return _flex.create_mask(mask_mod, batch, num_heads, query_len, key_len, device=device)


def flex_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    mask_mod: MaskMod | None = None,
    score_mod: ScoreMod | None = None,
    scale: float | None = None,
    enable_gqa: bool = False,
    block_size: int = 128,
) -> tuple[Tensor, Tensor]:
    r"""Scaled dot-product attention through PyTorch's ``flex_attention``.

    :math:`\mathrm{softmax}(\mathrm{score\_mod}(QK^\top \cdot \text{scale}) +
    \text{mask})V`, the mask built from ``mask_mod`` (as a block mask of
    ``block_size`` x ``block_size`` tiles). Runs eagerly unless called inside
    :func:`torch.compile`; the eager warning is silenced here.

    Parameters
    ----------
    query, key, value : Tensor
        Per-head queries, keys and values.
    mask_mod : callable, optional
        ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (``True`` = may attend), e.g.
        :func:`causal_mask_mod`, :func:`sliding_window_mask_mod`,
        :func:`padding_mask_mod`, combined with :func:`and_masks`.
    score_mod : callable, optional
        ``score_mod(score, b, h, q_idx, kv_idx) -> score``, e.g.
        :func:`alibi_score_mod`.
    scale : float, optional
        Score scale, default :math:`1/\sqrt{D_k}`.
    enable_gqa : bool
        Keys and values with fewer heads than the queries (grouped-query
        attention; query head ``i`` reads key/value head ``i // (H / Hkv)``).
    block_size : int
        Tile size of the block mask.

    Returns
    -------
    output : Tensor
        Zero for a query with no allowed key.
    lse : Tensor
        The log-sum-exp (natural log) of each query's modified, masked scores;
        ``-inf`` for a query with no allowed key.

    Shape
    -----
    - query: ``(B, H, Lq, Dk)``; key: ``(B, Hkv, Lk, Dk)``; value: ``(B, Hkv, Lk, Dv)``
      (``Hkv = H`` unless ``enable_gqa``)
    - output: ``(B, H, Lq, Dv)``; lse: ``(B, H, Lq)``
    """
    _require_flex()
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_rank(x, name, (4,), "(batch, heads, length, features)")
    b, h, lq, dk = query.shape
    if key.shape[0] != b or value.shape[:3] != key.shape[:3] or key.shape[-1] != dk:
        raise ValueError(
            f"key, value: expected (B, Hkv, Lk, {dk}) and (B, Hkv, Lk, Dv) with B = {b} "
            f"like query {shape_str(query.shape)}, got {shape_str(key.shape)} and "
            f"{shape_str(value.shape)}"
        )
    hkv = key.shape[1]
    if (hkv != h and not enable_gqa) or h % hkv:
        want = f"{h}" if not enable_gqa else f"a divisor of {h}"
        raise ValueError(
            f"key: expected {want} heads (query has {h}; enable_gqa={enable_gqa}), got {hkv}"
        )
    check_positive_int(block_size, "block_size")
    lk = key.shape[2]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EAGER_WARNING)
        block_mask = None
        if mask_mod is not None:
            block_mask = _flex.create_block_mask(
                mask_mod, b, h, lq, lk, device=query.device, BLOCK_SIZE=block_size
            )
        kw = dict(score_mod=score_mod, block_mask=block_mask, scale=scale, enable_gqa=enable_gqa)
        if hasattr(_flex, "AuxRequest"):  # PyTorch >= 2.9
            out, aux = _flex.flex_attention(
                query, key, value, return_aux=_flex.AuxRequest(lse=True), **kw
            )
            return out, aux.lse
        return _flex.flex_attention(query, key, value, return_lse=True, **kw)
