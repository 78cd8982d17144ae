"""Attention as functions: scores, the masked softmax, and the attention variants.

Every public function checks its inputs once, at the boundary, and then calls
an unchecked core (the functions whose names start with ``_``), which reads
like the formula; the modules of :mod:`attnlib.attention` check their own
inputs and call the same cores. Every attention function returns
``(output, weights)``. Masks follow
:mod:`attnlib.masks`: boolean, ``True`` = may attend, or floating and added to
the scores. A query whose keys are all masked gets **zero weights and a zero
output**, never NaN (a plain softmax, and
:class:`torch.nn.MultiheadAttention`, give NaN there).

The scoring functions take queries ``(..., Lq, Dq)`` and keys ``(..., Lk, Dk)``
and return scores ``(..., Lq, Lk)``; :func:`attend` turns any scores into
weights and an output, so every attention type is "a score function, then
:func:`attend`".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    check_choice,
    check_mask,
    check_positive_int,
    check_rank,
    check_same_leading,
    check_size,
    check_tensor,
    shape_str,
)
from .masks import causal_mask, sliding_window_mask

__all__ = [
    "dot_score",
    "scaled_dot_score",
    "general_score",
    "additive_score",
    "concat_score",
    "cosine_score",
    "location_score",
    "masked_softmax",
    "attend",
    "scaled_dot_product_attention",
    "calculate_attention_weights",
    "split_heads",
    "merge_heads",
    "multi_head_attention",
    "hard_attention",
    "hard_attention_log_prob",
    "local_attention",
    "predictive_position",
    "sliding_window_attention",
]

_QK_LAYOUT = "(..., length, features)"


def _check_qk(query: Tensor, key: Tensor, same_features: bool = False) -> None:
    check_tensor(query, "query")
    check_tensor(key, "key")
    if query.dim() < 2:
        raise ValueError(
            f"query: expected at least 2 dimensions {_QK_LAYOUT}, "
            f"got shape {shape_str(query.shape)}"
        )
    if key.dim() != query.dim():
        raise ValueError(
            f"key: expected {query.dim()} dimensions like query {shape_str(query.shape)}, "
            f"got shape {shape_str(key.shape)}"
        )
    check_same_leading(query, "query", key, "key", "batch dimensions")
    if same_features and query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"key: expected feature size {query.shape[-1]} (the query's), "
            f"got shape {shape_str(key.shape)}"
        )


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    _check_qk(query, key)
    check_tensor(value, "value")
    if value.dim() != key.dim() or value.shape[:-1] != key.shape[:-1]:
        raise ValueError(
            f"value: expected shape (..., {key.shape[-2]}, d_v) matching key "
            f"{shape_str(key.shape)} in every dimension but the last, "
            f"got {shape_str(value.shape)}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"key: expected feature size {query.shape[-1]} (the query's), "
            f"got shape {shape_str(key.shape)}"
        )


def _check_values_for(scores: Tensor, value: Tensor) -> None:
    check_tensor(value, "value")
    if value.dim() != scores.dim() or value.shape[-2] != scores.shape[-1]:
        raise ValueError(
            f"value: expected shape (..., {scores.shape[-1]}, d_v) with one value per key "
            f"of scores {shape_str(scores.shape)}, got {shape_str(value.shape)}"
        )


# -- scores --------------------------------------------------------------------


def dot_score(query: Tensor, key: Tensor) -> Tensor:
    r"""Dot-product score :math:`q^\top k` (Luong et al., 2015, "dot").

    Shape
    -----
    - query: ``(..., Lq, D)``; key: ``(..., Lk, D)``
    - output: ``(..., Lq, Lk)``
    """
    _check_qk(query, key, same_features=True)
    return _dot(query, key)


def _dot(query: Tensor, key: Tensor) -> Tensor:
    return query @ key.transpose(-2, -1)  # (..., Lq, D) @ (..., D, Lk) -> (..., Lq, Lk)


def scaled_dot_score(query: Tensor, key: Tensor, scale: float | None = None) -> Tensor:
    r"""Scaled dot-product score :math:`q^\top k / \sqrt{d_k}` (Vaswani et al., 2017).

    Parameters
    ----------
    scale : float, optional
        Factor applied to the dot products; default :math:`1/\sqrt{d_k}`.

    Shape
    -----
    - query: ``(..., Lq, D)``; key: ``(..., Lk, D)``
    - output: ``(..., Lq, Lk)``
    """
    _check_qk(query, key, same_features=True)
    return _scaled_dot(query, key, scale)


def _scaled_dot(query: Tensor, key: Tensor, scale: float | None = None) -> Tensor:
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return _dot(query, key) * scale


def general_score(query: Tensor, key: Tensor, weight: Tensor) -> Tensor:
    r"""Bilinear ("general") score :math:`q^\top W k` (Luong et al., 2015).

    Shape
    -----
    - query: ``(..., Lq, Dq)``; key: ``(..., Lk, Dk)``; weight: ``(Dq, Dk)``
    - output: ``(..., Lq, Lk)``
    """
    _check_qk(query, key)
    check_rank(weight, "weight", (2,), "(query features, key features)")
    if weight.shape != (query.shape[-1], key.shape[-1]):
        raise ValueError(
            f"weight: expected shape ({query.shape[-1]}, {key.shape[-1]}) "
            f"(query features, key features), got {shape_str(weight.shape)}"
        )
    return _general(query, key, weight)


def _general(query: Tensor, key: Tensor, weight: Tensor) -> Tensor:
    return _dot(query @ weight, key)  # (..., Lq, Dk) @ (..., Dk, Lk)


def additive_score(
    query: Tensor, key: Tensor, w_query: Tensor, w_key: Tensor, v: Tensor
) -> Tensor:
    r"""Additive score :math:`v^\top \tanh(W_q q + W_k k)` (Bahdanau et al., 2015).

    A one-hidden-layer network scores every (query, key) pair, so queries and
    keys may have different sizes.

    Shape
    -----
    - query: ``(..., Lq, Dq)``; key: ``(..., Lk, Dk)``
    - w_query: ``(Dq, Dh)``; w_key: ``(Dk, Dh)``; v: ``(Dh,)``
    - output: ``(..., Lq, Lk)``
    """
    _check_qk(query, key)
    check_rank(v, "v", (1,), "(hidden,)")
    hidden = v.shape[0]
    for name, w, d in (("w_query", w_query, query.shape[-1]), ("w_key", w_key, key.shape[-1])):
        check_rank(w, name, (2,), "(features, hidden)")
        if w.shape != (d, hidden):
            raise ValueError(
                f"{name}: expected shape ({d}, {hidden}) (features, hidden), "
                f"got {shape_str(w.shape)}"
            )
    return _additive(query, key, w_query, w_key, v)


def _additive(query: Tensor, key: Tensor, w_query: Tensor, w_key: Tensor, v: Tensor) -> Tensor:
    q = (query @ w_query).unsqueeze(-2)  # (..., Lq, 1, H)
    k = (key @ w_key).unsqueeze(-3)  # (..., 1, Lk, H)
    return torch.tanh(q + k) @ v  # (..., Lq, Lk)


def concat_score(query: Tensor, key: Tensor, weight: Tensor, v: Tensor) -> Tensor:
    r"""Luong's "concat" score :math:`v^\top \tanh(W [q; k])` (Luong et al., 2015).

    The same function as :func:`additive_score` with ``W = [W_q, W_k]``
    stacked; written with the concatenation, as in the paper.

    Shape
    -----
    - query: ``(..., Lq, Dq)``; key: ``(..., Lk, Dk)``
    - weight: ``(Dq + Dk, Dh)``; v: ``(Dh,)``
    - output: ``(..., Lq, Lk)``
    """
    _check_qk(query, key)
    check_rank(weight, "weight", (2,), "(query features + key features, hidden)")
    dq, dk = query.shape[-1], key.shape[-1]
    check_size(weight, "weight", 0, dq + dk, "query features + key features")
    return _concat(query, key, weight, v)


def _concat(query: Tensor, key: Tensor, weight: Tensor, v: Tensor) -> Tensor:
    dq, dk = query.shape[-1], key.shape[-1]
    lq, lk = query.shape[-2], key.shape[-2]
    pairs = torch.cat(  # (..., Lq, Lk, Dq + Dk)
        [
            query.unsqueeze(-2).expand(*query.shape[:-1], lk, dq),
            key.unsqueeze(-3).expand(*key.shape[:-2], lq, lk, dk),
        ],
        dim=-1,
    )
    return torch.tanh(pairs @ weight) @ v


def cosine_score(query: Tensor, key: Tensor, beta: float | Tensor = 1.0) -> Tensor:
    r"""Content-based score :math:`\beta \cos(q, k)` (Graves et al., 2014).

    ``beta`` (the key strength) sharpens the distribution: cosine similarity
    alone lies in [-1, 1] and would give nearly uniform weights.

    Shape
    -----
    - query: ``(..., Lq, D)``; key: ``(..., Lk, D)``; beta: scalar or
      broadcastable to ``(..., Lq, 1)``
    - output: ``(..., Lq, Lk)``
    """
    _check_qk(query, key, same_features=True)
    return _cosine(query, key, beta)


def _cosine(query: Tensor, key: Tensor, beta: float | Tensor) -> Tensor:
    q = F.normalize(query, dim=-1, eps=1e-8)
    k = F.normalize(key, dim=-1, eps=1e-8)
    return beta * _dot(q, k)


def location_score(query: Tensor, weight: Tensor, num_keys: int) -> Tensor:
    r"""Location-based score :math:`W_a q` (Luong et al., 2015, "location").

    The scores depend only on the query (for example the decoder state), never
    on the keys' content: the model learns *where* to look.

    Shape
    -----
    - query: ``(..., Lq, D)``; weight: ``(D, max_keys)``
    - output: ``(..., Lq, num_keys)`` with ``num_keys <= max_keys``
    """
    check_tensor(query, "query")
    check_rank(weight, "weight", (2,), "(features, max_keys)")
    check_size(weight, "weight", 0, query.shape[-1], "query features")
    check_positive_int(num_keys, "num_keys")
    if num_keys > weight.shape[1]:
        raise ValueError(
            f"num_keys: expected at most {weight.shape[1]} (the weight's max_keys), got {num_keys}"
        )
    return _location(query, weight, num_keys)


def _location(query: Tensor, weight: Tensor, num_keys: int) -> Tensor:
    return query @ weight[:, :num_keys]  # (..., Lq, D) @ (D, Lk)


# -- from scores to weights and outputs -----------------------------------------


def masked_softmax(scores: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    r"""Softmax over the keys that may be attended.

    Masked keys get exactly zero weight. A row with no allowed key gets all
    zeros (not NaN), and its gradient is zero too.

    Parameters
    ----------
    scores : Tensor
        Unnormalised scores.
    mask : Tensor, optional
        Boolean (``True`` = may attend) or floating (added to the scores;
        ``-inf`` forbids), broadcastable to ``scores``.
    dim : int
        The key dimension.

    Shape
    -----
    - scores: ``(..., Lq, Lk)``; mask: broadcastable to it
    - output: same as ``scores``
    """
    check_tensor(scores, "scores")
    _check_scores_mask(scores, mask)
    return _masked_softmax(scores, mask, dim)


def _check_scores_mask(scores: Tensor, mask: Tensor | None) -> None:
    if mask is not None:
        check_mask(mask, "mask", scores.shape, "(the scores' shape)", scores.dtype)


def _masked_softmax(scores: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    if mask is None:
        return torch.softmax(scores, dim=dim)
    if mask.dtype == torch.bool:
        allowed = mask.expand_as(scores)
    else:
        scores = scores + mask
        allowed = ~torch.isneginf(scores)
    # A large finite negative instead of -inf keeps fully masked rows finite
    # (softmax of them is uniform, then multiplied by zero below).
    filled = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = torch.softmax(filled, dim=dim)
    return weights * allowed


def attend(
    scores: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Weights = masked softmax of the scores; output = weights times values.

    The common second half of every soft attention in this library.

    Parameters
    ----------
    scores : Tensor
        Scores from any scoring function.
    value : Tensor
        Values, one per key.
    mask : Tensor, optional
        See :func:`masked_softmax`.
    dropout_p : float
        Dropout on the weights used for the output (the returned weights are
        the ones before dropout).
    training : bool
        Apply dropout only when ``True``.

    Returns
    -------
    output : Tensor
    weights : Tensor

    Shape
    -----
    - scores: ``(..., Lq, Lk)``; value: ``(..., Lk, Dv)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``
    """
    _check_values_for(scores, value)
    check_tensor(scores, "scores")
    _check_scores_mask(scores, mask)
    return _attend(scores, value, mask, dropout_p, training)


def _attend(
    scores: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = True,
) -> tuple[Tensor, Tensor]:
    weights = _masked_softmax(scores, mask)  # (..., Lq, Lk)
    used = F.dropout(weights, dropout_p, training) if dropout_p > 0 else weights
    return used @ value, weights  # (..., Lq, Dv), (..., Lq, Lk)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    training: bool = True,
    *,
    need_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    r"""Scaled dot-product attention, returning the weights too.

    .. math::

        \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

    Same arguments and output as
    :func:`torch.nn.functional.scaled_dot_product_attention` (Vaswani et al.,
    2017, arXiv:1706.03762), plus the weights; rows with no allowed key give
    zeros instead of NaN.

    Parameters
    ----------
    query, key, value : Tensor
        Queries, keys and values with the same leading (batch, head) dims.
    attn_mask : Tensor, optional
        Boolean (``True`` = may attend) or floating additive mask,
        broadcastable to ``(..., Lq, Lk)``.
    dropout_p : float
        Dropout probability on the weights (only when ``training``).
    is_causal : bool
        Apply :func:`attnlib.masks.causal_mask` (combined with ``attn_mask``).
    scale : float, optional
        Score scale, default :math:`1/\sqrt{d_k}`.
    training : bool
        Whether dropout is active.
    need_weights : bool
        ``False``: skip the weights (returned as ``None``) and run PyTorch's
        fused kernel, which never stores the ``(Lq, Lk)`` matrix; the output
        is the same to float precision, and still zero for a query with no
        allowed key.

    Returns
    -------
    output : Tensor
    weights : Tensor or None

    Shape
    -----
    - query: ``(..., Lq, D)``; key: ``(..., Lk, D)``; value: ``(..., Lk, Dv)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``

    Examples
    --------
    >>> q = k = v = torch.randn(2, 4, 5, 8)
    >>> out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    >>> out.shape, w.shape
    (torch.Size([2, 4, 5, 8]), torch.Size([2, 4, 5, 5]))
    """
    _check_qkv(query, key, value)
    if attn_mask is not None:
        target = (*query.shape[:-1], key.shape[-2])
        check_mask(attn_mask, "attn_mask", target, "(..., query, key)", query.dtype)
    if not need_weights:
        out = _fused_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, training)
        return out, None
    return _sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, training)


def _with_causal(mask: Tensor | None, lq: int, lk: int, device) -> Tensor:
    """``mask`` combined with the causal mask ``(Lq, Lk)``."""
    causal = causal_mask(lq, lk, device=device)
    if mask is None:
        return causal
    if mask.dtype == torch.bool:
        return mask & causal
    return torch.where(causal, mask, float("-inf"))


def _sdpa(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    training: bool = True,
) -> tuple[Tensor, Tensor]:
    """The core of :func:`scaled_dot_product_attention`, unchecked: the formula."""
    scores = _scaled_dot(query, key, scale)  # (..., Lq, Lk)
    if is_causal:
        mask = _with_causal(mask, query.shape[-2], key.shape[-2], query.device)
    return _attend(scores, value, mask, dropout_p, training)


def _fused_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    training: bool = True,
) -> Tensor:
    """:func:`_sdpa`'s output from PyTorch's fused kernel (no weights), unchecked.

    A query with no allowed key gets a zero output (and zero gradients), as
    in :func:`_sdpa`: such rows are given one key for the kernel, whatever
    PyTorch's version does with empty rows, and their output is zeroed.
    """
    if is_causal and (mask is not None or query.shape[-2] != key.shape[-2]):
        mask, is_causal = _with_causal(mask, query.shape[-2], key.shape[-2], query.device), False
    empty = None
    if mask is not None:
        allowed = mask if mask.dtype == torch.bool else ~torch.isneginf(mask)
        empty = ~allowed.any(-1, keepdim=True)  # (..., Lq, 1): no key allowed
        if bool(empty.any()):
            first_key = torch.arange(mask.shape[-1], device=mask.device) == 0
            mask = (
                mask | (empty & first_key)
                if mask.dtype == torch.bool
                else mask.masked_fill(empty & first_key, 0.0)
            )
        else:
            empty = None
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=mask,
        dropout_p=dropout_p if training else 0.0,
        is_causal=is_causal,
        scale=scale,
    )
    return out if empty is None else out.masked_fill(empty, 0.0)


def calculate_attention_weights(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""The seed's scaled dot-product attention: ``(output, weights)``.

    :math:`\mathrm{softmax}(QK^\top/\sqrt{d_k})V`; ``mask`` is boolean
    (``True`` = may attend) or additive. See
    :func:`scaled_dot_product_attention` for the full version.

    Shape
    -----
    - query: ``(..., Lq, D)``; key: ``(..., Lk, D)``; value: ``(..., Lk, Dv)``
    - mask: broadcastable to ``(..., Lq, Lk)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``
    """
    return scaled_dot_product_attention(query, key, value, attn_mask=mask)


# -- multi-head ------------------------------------------------------------------


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, L, D)`` -> ``(B, H, L, D / H)``."""
    check_rank(x, "x", (3,), "(batch, length, features)")
    check_positive_int(num_heads, "num_heads")
    if x.shape[-1] % num_heads:
        raise ValueError(
            f"num_heads: expected a divisor of the feature size {x.shape[-1]}, got {num_heads}"
        )
    return _split_heads(x, num_heads)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    b, n, e = x.shape
    return x.view(b, n, num_heads, e // num_heads).transpose(1, 2)  # (B, H, L, D/H)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, H, L, D / H)`` -> ``(B, L, D)``."""
    check_rank(x, "x", (4,), "(batch, heads, length, head features)")
    return _merge_heads(x)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)  # (B, H, L, D/H) -> (B, L, D)


def multi_head_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Split already-projected inputs into heads, attend per head, concatenate.

    .. math::

        \mathrm{head}_i = \mathrm{Attention}(Q_i, K_i, V_i), \qquad
        \mathrm{MultiHead} = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)

    ``Q_i`` is the ``i``-th block of ``d_model / h`` features of ``query``.
    The projections :math:`W_i^Q, W_i^K, W_i^V, W^O` of Vaswani et al. (2017)
    are applied outside (see :class:`attnlib.attention.MultiHeadAttention`).

    Parameters
    ----------
    query, key, value : Tensor
        Projected inputs.
    num_heads : int
        Number of heads; must divide the feature sizes.
    mask : Tensor, optional
        Boolean or additive, broadcastable to ``(B, H, Lq, Lk)``.

    Returns
    -------
    output : Tensor
    weights : Tensor

    Shape
    -----
    - query: ``(B, Lq, D)``; key: ``(B, Lk, D)``; value: ``(B, Lk, Dv)``
    - output: ``(B, Lq, Dv)``; weights: ``(B, H, Lq, Lk)``
    """
    check_rank(query, "query", (3,), "(batch, query length, features)")
    check_rank(key, "key", (3,), "(batch, key length, features)")
    check_rank(value, "value", (3,), "(batch, key length, features)")
    _check_qkv(query, key, value)
    check_positive_int(num_heads, "num_heads")
    for name, x in (("query", query), ("value", value)):
        if x.shape[-1] % num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of the {name} feature size "
                f"{x.shape[-1]}, got {num_heads}"
            )
    if mask is not None:
        target = (query.shape[0], num_heads, query.shape[1], key.shape[1])
        check_mask(mask, "mask", target, "(batch, heads, query, key)", query.dtype)
    q = _split_heads(query, num_heads)  # (B, H, Lq, D/H)
    k = _split_heads(key, num_heads)  # (B, H, Lk, D/H)
    v = _split_heads(value, num_heads)  # (B, H, Lk, Dv/H)
    out, weights = _sdpa(q, k, v, mask)
    return _merge_heads(out), weights  # (B, Lq, Dv), (B, H, Lq, Lk)


# -- hard attention ----------------------------------------------------------------


def hard_attention(
    scores: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    *,
    mode: str = "argmax",
    estimator: str = "straight_through",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Attend to exactly one key per query (Xu et al., 2015).

    The forward pass uses one-hot weights: the highest-scoring key
    (``mode="argmax"``) or a key sampled from the softmax
    (``mode="sample"``). The choice is not differentiable, so training needs an
    estimator:

    - ``"straight_through"``: the one-hot weights in the forward pass, the
      softmax's gradient in the backward pass (Bengio et al., 2013).
    - ``"reinforce"``: no gradient flows through the choice; train the scores
      with the score-function estimator, using
      :func:`hard_attention_log_prob` times a reward (Williams, 1992).

    Returns
    -------
    output : Tensor
    weights : Tensor
        One-hot (exactly one ``1`` per row with an allowed key; all zeros if
        none is allowed).

    Shape
    -----
    - scores: ``(..., Lq, Lk)``; value: ``(..., Lk, Dv)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``
    """
    check_choice(mode, "mode", ("argmax", "sample"))
    check_choice(estimator, "estimator", ("straight_through", "reinforce"))
    check_tensor(scores, "scores")
    _check_scores_mask(scores, mask)
    _check_values_for(scores, value)
    return _hard_attention(scores, value, mask, mode, estimator, generator)


def _hard_attention(
    scores: Tensor,
    value: Tensor,
    mask: Tensor | None,
    mode: str,
    estimator: str,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    soft = _masked_softmax(scores, mask)  # (..., Lq, Lk)
    any_allowed = soft.sum(-1, keepdim=True) > 0
    if mode == "argmax":
        idx = soft.argmax(-1)
    else:
        flat = soft.detach().reshape(-1, soft.shape[-1])
        flat = torch.where(flat.sum(-1, keepdim=True) > 0, flat, torch.ones_like(flat))
        idx = torch.multinomial(flat, 1, generator=generator).view(soft.shape[:-1])
    hard = F.one_hot(idx, soft.shape[-1]).to(soft.dtype) * any_allowed
    if estimator == "straight_through":
        # (soft - soft.detach()) is exactly 0 in the forward pass, so the
        # weights stay exactly one-hot; its gradient is the softmax's.
        hard = (soft - soft.detach()) + hard
    return hard @ value, hard  # (..., Lq, Dv), (..., Lq, Lk)


def hard_attention_log_prob(scores: Tensor, weights: Tensor, mask: Tensor | None = None) -> Tensor:
    """Log-probability of the keys chosen by :func:`hard_attention`.

    Multiply by a (baseline-subtracted) reward and minimise the negative to
    train with REINFORCE (Williams, 1992).

    Shape
    -----
    - scores, weights: ``(..., Lq, Lk)``
    - output: ``(..., Lq)``
    """
    probs = masked_softmax(scores, mask)
    chosen = (probs * weights.detach()).sum(-1)
    return torch.log(chosen.clamp_min(torch.finfo(probs.dtype).tiny))


# -- local attention -----------------------------------------------------------------


def predictive_position(
    query: Tensor, w_p: Tensor, v_p: Tensor, source_len: int | Tensor
) -> Tensor:
    r"""Luong's predicted centre :math:`p_t = S \cdot \sigma(v_p^\top \tanh(W_p h_t))`.

    ``source_len`` is ``S`` (a number, or one per batch item). Luong et al.
    (2015) write :math:`S` for the source length; positions lie in ``[0, S]``.

    Shape
    -----
    - query: ``(B, Lq, D)``; w_p: ``(D, Dh)``; v_p: ``(Dh,)``
    - source_len: int or ``(B,)``
    - output: ``(B, Lq)``
    """
    check_rank(query, "query", (3,), "(batch, query length, features)")
    s = torch.as_tensor(source_len, dtype=query.dtype, device=query.device)
    if s.dim() == 1:
        s = s[:, None]
    return s * torch.sigmoid(torch.tanh(query @ w_p) @ v_p)  # (B, Lq)


def local_attention(
    scores: Tensor,
    value: Tensor,
    center: Tensor,
    window: int,
    mask: Tensor | None = None,
    *,
    gaussian: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Luong's local attention: attend inside ``[p_t - D, p_t + D]`` only.

    Weights are the softmax over the keys in the window; with ``gaussian=True``
    (local-p) they are then multiplied by
    :math:`\exp(-(s - p_t)^2 / 2\sigma^2)`, :math:`\sigma = D/2`, which favours
    keys near the centre (so they no longer sum to one, as in the paper).
    local-m is ``center = t`` and ``gaussian=False`` (Luong et al., 2015).

    Parameters
    ----------
    scores : Tensor
        Alignment scores.
    value : Tensor
        One value per key.
    center : Tensor
        Window centre :math:`p_t` per query (real-valued for local-p).
    window : int
        Half-width :math:`D`.
    mask : Tensor, optional
        Extra boolean mask (e.g. padding), combined with the window.
    gaussian : bool
        Multiply by the Gaussian (local-p).

    Shape
    -----
    - scores: ``(B, Lq, Lk)``; value: ``(B, Lk, Dv)``; center: ``(B, Lq)``
    - output: ``(B, Lq, Dv)``; weights: ``(B, Lq, Lk)``
    """
    check_rank(scores, "scores", (3,), "(batch, query, key)")
    check_rank(center, "center", (2,), "(batch, query)")
    if center.shape != scores.shape[:2]:
        raise ValueError(
            f"center: expected shape {shape_str(scores.shape[:2])} (batch, query), "
            f"got {shape_str(center.shape)}"
        )
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window: expected a non-negative integer, got {window!r}")
    if mask is not None:
        check_mask(mask, "mask", scores.shape, "(batch, query, key)")
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask: expected dtype torch.bool for local attention, got {mask.dtype}"
            )
    _check_values_for(scores, value)
    return _local_attention(scores, value, center, window, mask, gaussian)


def _local_attention(
    scores: Tensor,
    value: Tensor,
    center: Tensor,
    window: int,
    mask: Tensor | None,
    gaussian: bool,
) -> tuple[Tensor, Tensor]:
    positions = torch.arange(scores.shape[-1], device=scores.device, dtype=scores.dtype)
    distance = positions - center.to(scores.dtype)[..., None]  # (B, Lq, Lk)
    in_window = distance.abs() <= window
    if mask is not None:
        in_window = in_window & mask
    weights = _masked_softmax(scores, in_window)
    if gaussian:
        sigma = max(window, 1) / 2
        weights = weights * torch.exp(-(distance**2) / (2 * sigma**2))
    return weights @ value, weights  # (B, Lq, Dv), (B, Lq, Lk)


def sliding_window_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    window: int,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
    scale: float | None = None,
    need_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    r"""Scaled dot-product attention restricted to ``|i - j| <= window``.

    The band of :func:`attnlib.masks.sliding_window_mask` (Beltagy et al.,
    2020, arXiv:2004.05150), combined with ``mask`` (boolean or additive) if
    given. When queries and keys are one sequence (``Lq == Lk``) and there is
    no extra ``mask``, only the band is scored
    (:func:`attnlib.efficient.window.band_attention`: time and memory
    :math:`O(L w D)`), and the dense ``(L, L)`` weights are laid out from the
    band only when ``need_weights``; otherwise (``Lq != Lk`` or a ``mask``)
    the band is a mask on the full scores.

    Parameters
    ----------
    query, key, value : Tensor
        Same leading (batch, head) dimensions.
    window : int
        Half-width of the band (``0``: each query attends to the key at its
        own position).
    causal : bool
        Keep only ``0 <= i - j <= window``.
    mask : Tensor, optional
        Boolean (``True`` = may attend) or additive, broadcastable to
        ``(..., Lq, Lk)``, combined with the band.
    scale : float, optional
        Score scale, default :math:`1/\sqrt{d_k}`.
    need_weights : bool
        ``False``: return ``None`` for the weights, so that nothing of size
        ``(Lq, Lk)`` is built on the band-only path.

    Returns
    -------
    output : Tensor
    weights : Tensor or None

    Shape
    -----
    - query: ``(..., Lq, D)``; key: ``(..., Lk, D)``; value: ``(..., Lk, Dv)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``
    """
    from .efficient.window import _band_attention, _band_to_dense  # band-only core

    _check_qkv(query, key, value)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window: expected a non-negative integer, got {window!r}")
    if mask is not None:
        target = (*query.shape[:-1], key.shape[-2])
        check_mask(mask, "mask", target, "(..., query, key)", query.dtype)
    if mask is None and query.shape[-2] == key.shape[-2]:
        out, band_weights = _band_attention(query, key, value, window, causal, scale)
        if not need_weights:
            return out, None
        w = min(window, query.shape[-2] - 1)
        return out, _band_to_dense(band_weights, w)
    band = sliding_window_mask(
        query.shape[-2], key.shape[-2], window=window, causal=causal, device=query.device
    )
    if mask is None:
        mask = band
    elif mask.dtype == torch.bool:
        mask = band & mask
    else:
        mask = torch.where(band, mask, float("-inf"))
    out, weights = _sdpa(query, key, value, mask, scale=scale)
    return out, (weights if need_weights else None)
