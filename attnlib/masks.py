"""Attention masks: one convention for the whole library.

A mask is a boolean tensor in which ``True`` means *may attend*, the convention
of :func:`torch.nn.functional.scaled_dot_product_attention`. It broadcasts to
the scores it is applied to: ``(B, H, Lq, Lk)`` for multi-head
attention, ``(B, Lq, Lk)`` for single-head attention.

Some PyTorch APIs use the opposite convention (``key_padding_mask`` and boolean
``attn_mask`` of :class:`torch.nn.MultiheadAttention` and
:class:`torch.nn.Transformer` mean *ignore* where ``True``); the converters at
the end of this module translate at that boundary and nowhere else.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_positive_int, check_rank, shape_str

__all__ = [
    "causal_mask",
    "padding_mask",
    "mask_future_tokens",
    "create_masks",
    "sliding_window_mask",
    "to_torch_attn_mask",
    "to_key_padding_mask",
    "from_key_padding_mask",
    "to_additive_mask",
]


def causal_mask(
    query_len: int, key_len: int | None = None, *, device: torch.device | str | None = None
) -> Tensor:
    """Lower-triangular mask: query ``i`` may attend to keys ``0..i``.

    Aligned at the top left, like ``is_causal=True`` in
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Parameters
    ----------
    query_len : int
        Number of queries.
    key_len : int, optional
        Number of keys (default ``query_len``).
    device : torch.device or str, optional
        Where to create the mask.

    Returns
    -------
    Tensor
        Boolean mask, ``True`` = may attend.

    Shape
    -----
    - output: ``(query_len, key_len)``

    Examples
    --------
    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    check_positive_int(query_len, "query_len")
    key_len = query_len if key_len is None else check_positive_int(key_len, "key_len")
    return torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril()


def padding_mask(tokens: Tensor, pad_idx: int = 0) -> Tensor:
    """Mask that lets every query attend to the non-padding keys of its sequence.

    Parameters
    ----------
    tokens : Tensor
        Integer token ids, ``pad_idx`` marking padding.
    pad_idx : int
        The padding id.

    Returns
    -------
    Tensor
        Boolean mask, ``True`` where the key is a real token.

    Shape
    -----
    - tokens: ``(B, L)``
    - output: ``(B, 1, 1, L)``, broadcastable to ``(B, H, Lq, L)``
    """
    check_rank(tokens, "tokens", (2,), "(batch, seq) of token ids")
    return (tokens != pad_idx)[:, None, None, :]  # (B, 1, 1, S)


def mask_future_tokens(batch: Tensor) -> Tensor:
    """Mask that stops each position of a batch attending to later positions.

    The seed's name for a causal ("look-ahead") mask built from a batch of
    token ids, as used in the decoder of the Transformer
    (Vaswani et al., 2017, section 3.2.3).

    Parameters
    ----------
    batch : Tensor
        Token ids (only the shape is used).

    Returns
    -------
    Tensor
        Boolean mask, ``True`` = may attend.

    Shape
    -----
    - batch: ``(B, L)``
    - output: ``(B, 1, L, L)``
    """
    check_rank(batch, "batch", (2,), "(batch, seq) of token ids")
    b, s = batch.shape
    return causal_mask(s, device=batch.device).expand(b, 1, s, s)


def create_masks(src: Tensor, tgt: Tensor, pad_idx: int = 0) -> tuple[Tensor, Tensor]:
    """Source and target masks for an encoder-decoder Transformer.

    The source mask hides padding keys; the target mask hides padding keys
    *and* future positions.

    Parameters
    ----------
    src : Tensor
        Source token ids.
    tgt : Tensor
        Target (decoder input) token ids.
    pad_idx : int
        The padding id.

    Returns
    -------
    src_mask : Tensor
        ``True`` where a source key may be attended (encoder self-attention and
        decoder cross-attention).
    tgt_mask : Tensor
        ``True`` where a target key may be attended (decoder self-attention).

    Shape
    -----
    - src: ``(B, S)``; tgt: ``(B, T)``
    - src_mask: ``(B, 1, 1, S)``
    - tgt_mask: ``(B, 1, T, T)``
    """
    check_rank(src, "src", (2,), "(batch, src_len) of token ids")
    check_rank(tgt, "tgt", (2,), "(batch, tgt_len) of token ids")
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(
            f"tgt: expected the same batch size as src ({src.shape[0]}), "
            f"got shape {shape_str(tgt.shape)}"
        )
    src_mask = padding_mask(src, pad_idx)  # (B, 1, 1, S)
    tgt_mask = padding_mask(tgt, pad_idx) & mask_future_tokens(tgt)  # (B, 1, T, T)
    return src_mask, tgt_mask


def sliding_window_mask(
    query_len: int,
    key_len: int | None = None,
    *,
    window: int,
    causal: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """Banded mask: query ``i`` may attend to keys ``j`` with ``|i - j| <= window``.

    With ``causal=True`` only ``i - window <= j <= i``. Used by sliding-window
    (local) attention, e.g. Longformer (Beltagy et al., 2020).

    Parameters
    ----------
    query_len, key_len : int
        Numbers of queries and keys (``key_len`` defaults to ``query_len``).
    window : int
        Half-width of the band (``0`` = attend to the same position only).
    causal : bool
        Keep only the past half of the band.
    device : torch.device or str, optional
        Where to create the mask.

    Shape
    -----
    - output: ``(query_len, key_len)``
    """
    check_positive_int(query_len, "query_len")
    key_len = query_len if key_len is None else check_positive_int(key_len, "key_len")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window: expected a non-negative integer, got {window!r}")
    i = torch.arange(query_len, device=device)[:, None]
    j = torch.arange(key_len, device=device)[None, :]
    offset = i - j  # (Lq, Lk)
    lower = 0 if causal else -window
    return (offset <= window) & (offset >= lower)


# -- converters at the boundary with PyTorch's opposite conventions -----------


def to_torch_attn_mask(mask: Tensor) -> Tensor:
    """Boolean ``attn_mask`` for :class:`torch.nn.MultiheadAttention` or
    :class:`torch.nn.Transformer`, where ``True`` means *not allowed*.

    (:func:`torch.nn.functional.scaled_dot_product_attention` uses attnlib's
    convention and needs no conversion.)
    """
    _check_bool(mask, "mask")
    return ~mask


def to_key_padding_mask(mask: Tensor) -> Tensor:
    """PyTorch's ``key_padding_mask`` (``True`` = padding, ignore) from an
    attnlib padding mask.

    Shape
    -----
    - mask: ``(B, L)`` or ``(B, 1, 1, L)``
    - output: ``(B, L)``
    """
    _check_bool(mask, "mask")
    if mask.dim() == 4 and mask.shape[1] == 1 and mask.shape[2] == 1:
        mask = mask[:, 0, 0, :]
    check_rank(mask, "mask", (2,), "(batch, seq) or (batch, 1, 1, seq)")
    return ~mask


def from_key_padding_mask(key_padding_mask: Tensor) -> Tensor:
    """attnlib padding mask ``(B, 1, 1, L)`` from PyTorch's
    ``key_padding_mask`` ``(B, L)`` (``True`` = padding)."""
    _check_bool(key_padding_mask, "key_padding_mask")
    check_rank(key_padding_mask, "key_padding_mask", (2,), "(batch, seq)")
    return ~key_padding_mask[:, None, None, :]


def to_additive_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Float mask to add to the scores: ``0`` where allowed, ``-inf`` where not."""
    _check_bool(mask, "mask")
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))


def _check_bool(mask: Tensor, name: str) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name}: expected a torch.bool tensor (True = may attend), got {got}")
