"""Attention layers as :class:`torch.nn.Module`.

Every module subclasses :class:`AttentionModule` and its ``forward`` returns
``(output, weights)``; that shared base is what :func:`attnlib.capture.record_attention`
looks for. ``forward`` checks its inputs once and then calls the unchecked cores
of :mod:`attnlib.functional`. Single-head modules take ``query (B, Lq, Dq)``,
``key (B, Lk, Dk)``, ``value (B, Lk, Dv)`` and return weights ``(B, Lq, Lk)``;
:class:`MultiHeadAttention` returns weights ``(B, H, Lq, Lk)``.
Masks are boolean, ``True`` = may attend (see :mod:`attnlib.masks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import functional as AF
from ._checks import (
    check_choice,
    check_mask,
    check_positive_int,
    check_rank,
    check_size,
    shape_str,
)
from .positional import RotaryEmbedding

__all__ = [
    "AttentionModule",
    "ScaledDotProductAttention",
    "AdditiveAttention",
    "LuongAttention",
    "ContentBasedAttention",
    "LocationBasedAttention",
    "LocalAttention",
    "HardAttention",
    "MultiHeadAttention",
    "KVCache",
]

_LAYOUT = {
    "query": "(batch, query length, query features)",
    "key": "(batch, key length, key features)",
    "value": "(batch, key length, value features)",
}


def _check_inputs(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    dq: int,
    dk: int | None,
    mask: Tensor | None = None,
) -> None:
    """The checks of a single-head layer's ``forward``: shapes, and the mask
    against the scores ``(B, Lq, Lk)``."""
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_rank(x, name, (3,), _LAYOUT[name])
    check_size(query, "query", -1, dq, "query features")
    if dk is not None:
        check_size(key, "key", -1, dk, "key features")
    if key.shape[:2] != value.shape[:2]:
        raise ValueError(
            f"value: expected batch and length {shape_str(key.shape[:2])} like key, "
            f"got shape {shape_str(value.shape)}"
        )
    if query.shape[0] != key.shape[0]:
        raise ValueError(
            f"key: expected batch size {query.shape[0]} like query, "
            f"got shape {shape_str(key.shape)}"
        )
    if mask is not None:
        scores = (query.shape[0], query.shape[1], key.shape[1])
        check_mask(mask, "mask", scores, "(the scores' shape)", query.dtype)


class AttentionModule(nn.Module):
    """Base class of the attention layers: ``forward`` returns ``(output, weights)``.

    Subclass it to make a new layer visible to
    :func:`attnlib.capture.record_attention`.
    """


class ScaledDotProductAttention(AttentionModule):
    r"""Scaled dot-product attention :math:`\mathrm{softmax}(QK^\top/\sqrt{d_k})V`.

    No parameters; see :func:`attnlib.functional.scaled_dot_product_attention`
    (Vaswani et al., 2017, arXiv:1706.03762).

    Parameters
    ----------
    dropout : float
        Dropout on the attention weights during training.
    scale : float, optional
        Score scale, default :math:`1/\sqrt{d_k}`.

    Shape
    -----
    - query: ``(..., Lq, D)``; key: ``(..., Lk, D)``; value: ``(..., Lk, Dv)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``
    """

    def __init__(self, dropout: float = 0.0, scale: float | None = None) -> None:
        super().__init__()
        self.dropout = dropout
        self.scale = scale

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor]:
        return AF.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.dropout,
            is_causal=is_causal,
            scale=self.scale,
            training=self.training,
        )


class AdditiveAttention(AttentionModule):
    r"""Bahdanau (additive) attention: :math:`\mathrm{score}(q, k) = v^\top\tanh(W_q q + W_k k)`.

    Bahdanau, Cho and Bengio (2015), "Neural Machine Translation by Jointly
    Learning to Align and Translate", arXiv:1409.0473.

    Parameters
    ----------
    query_dim : int
        Query features (the decoder state).
    key_dim : int, optional
        Key features (the encoder states); default ``query_dim``.
    hidden_dim : int, optional
        Width of the scoring network; default ``query_dim``.
    dropout : float
        Dropout on the weights during training.

    Shape
    -----
    - query: ``(B, Lq, query_dim)``; key: ``(B, Lk, key_dim)``;
      value: ``(B, Lk, Dv)``; mask: broadcastable to ``(B, Lq, Lk)``
    - output: ``(B, Lq, Dv)``; weights: ``(B, Lq, Lk)``
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        hidden_dim: int | None = None,
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        key_dim = key_dim or query_dim
        hidden_dim = hidden_dim or query_dim
        self.query_dim, self.key_dim = query_dim, key_dim
        self.w_query = nn.Linear(query_dim, hidden_dim, bias=False)
        self.w_key = nn.Linear(key_dim, hidden_dim, bias=False)
        self.v = nn.Linear(hidden_dim, 1, bias=False)
        self.dropout = dropout

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        """Scores ``(B, Lq, Lk)``."""
        return AF.additive_score(*self._score_args(query, key))

    def _score_args(self, query: Tensor, key: Tensor) -> tuple[Tensor, ...]:
        return query, key, self.w_query.weight.T, self.w_key.weight.T, self.v.weight[0]

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_inputs(query, key, value, self.query_dim, self.key_dim, mask)
        scores = AF._additive(*self._score_args(query, key))  # (B, Lq, Lk)
        return AF._attend(scores, value, mask, self.dropout, self.training)


class LuongAttention(AttentionModule):
    r"""Luong (multiplicative) attention with the ``dot``, ``general`` or ``concat`` score.

    - ``dot``: :math:`q^\top k` (needs ``query_dim == key_dim``)
    - ``general``: :math:`q^\top W k`
    - ``concat``: :math:`v^\top \tanh(W[q; k])`

    Luong, Pham and Manning (2015), "Effective Approaches to Attention-based
    Neural Machine Translation", arXiv:1508.04025.

    Parameters
    ----------
    query_dim : int
    key_dim : int, optional
        Default ``query_dim``.
    hidden_dim : int, optional
        Width of the ``concat`` network; default ``query_dim``.
    method : {"dot", "general", "concat"}
        The score function (keyword-only).
    dropout : float

    Shape
    -----
    - query: ``(B, Lq, query_dim)``; key: ``(B, Lk, key_dim)``;
      value: ``(B, Lk, Dv)``
    - output: ``(B, Lq, Dv)``; weights: ``(B, Lq, Lk)``
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        hidden_dim: int | None = None,
        *,
        method: str = "general",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        key_dim = key_dim or query_dim
        self.method = check_choice(method, "method", ("dot", "general", "concat"))
        if method == "dot" and key_dim != query_dim:
            raise ValueError(
                f"key_dim: the dot score needs key_dim == query_dim ({query_dim}), got {key_dim}"
            )
        self.query_dim, self.key_dim = query_dim, key_dim
        self.dropout = dropout
        if method == "general":
            self.weight = nn.Parameter(torch.empty(query_dim, key_dim))
            nn.init.xavier_uniform_(self.weight)
        elif method == "concat":
            hidden_dim = hidden_dim or query_dim
            self.weight = nn.Parameter(torch.empty(query_dim + key_dim, hidden_dim))
            self.v = nn.Parameter(torch.empty(hidden_dim))
            nn.init.xavier_uniform_(self.weight)
            nn.init.uniform_(self.v, -1 / math.sqrt(hidden_dim), 1 / math.sqrt(hidden_dim))

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        """Scores ``(B, Lq, Lk)``."""
        if self.method == "dot":
            return AF.dot_score(query, key)
        if self.method == "general":
            return AF.general_score(query, key, self.weight)
        return AF.concat_score(query, key, self.weight, self.v)

    def _scores(self, query: Tensor, key: Tensor) -> Tensor:
        """:meth:`scores` for inputs already checked."""
        if self.method == "dot":
            return AF._dot(query, key)
        if self.method == "general":
            return AF._general(query, key, self.weight)
        return AF._concat(query, key, self.weight, self.v)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_inputs(query, key, value, self.query_dim, self.key_dim, mask)
        scores = self._scores(query, key)  # (B, Lq, Lk)
        return AF._attend(scores, value, mask, self.dropout, self.training)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, method={self.method!r}"


class ContentBasedAttention(AttentionModule):
    r"""Content-based attention: :math:`\mathrm{score}(q, k) = \beta \cos(q, k)`.

    The addressing of the Neural Turing Machine (Graves, Wayne and Danihelka,
    2014, arXiv:1410.5401); ``beta`` is learned (kept positive through a
    softplus).

    Parameters
    ----------
    query_dim : int
        Query and key features.
    beta : float
        Initial key strength.

    Shape
    -----
    - query: ``(B, Lq, query_dim)``; key: ``(B, Lk, query_dim)``; value: ``(B, Lk, Dv)``
    - output: ``(B, Lq, Dv)``; weights: ``(B, Lq, Lk)``
    """

    def __init__(self, query_dim: int, *, beta: float = 5.0) -> None:
        super().__init__()
        self.query_dim = query_dim
        # softplus^{-1}(beta), so that the initial strength is exactly beta
        self.raw_beta = nn.Parameter(torch.tensor(math.log(math.expm1(beta))))

    @property
    def beta(self) -> Tensor:
        return nn.functional.softplus(self.raw_beta)

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        """Scores ``(B, Lq, Lk)``."""
        return AF.cosine_score(query, key, self.beta)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_inputs(query, key, value, self.query_dim, self.query_dim, mask)
        return AF._attend(AF._cosine(query, key, self.beta), value, mask)


class LocationBasedAttention(AttentionModule):
    r"""Location-based attention: :math:`a = \mathrm{softmax}(W_a q)` over key positions.

    The weights depend on the query only, never on the keys' content
    (Luong et al., 2015, arXiv:1508.04025).

    Parameters
    ----------
    query_dim : int
    max_keys : int
        Longest key sequence the layer can address.

    Shape
    -----
    - query: ``(B, Lq, query_dim)``; key, value: ``(B, Lk, ...)`` with
      ``Lk <= max_keys`` (``key`` only gives the length)
    - output: ``(B, Lq, Dv)``; weights: ``(B, Lq, Lk)``
    """

    def __init__(self, query_dim: int, max_keys: int) -> None:
        super().__init__()
        self.query_dim = query_dim
        self.weight = nn.Parameter(torch.empty(query_dim, max_keys))
        nn.init.xavier_uniform_(self.weight)

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        """Scores ``(B, Lq, Lk)``."""
        return AF.location_score(query, self.weight, key.shape[-2])

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_inputs(query, key, value, self.query_dim, None, mask)
        check_positive_int(key.shape[-2], "num_keys")
        if key.shape[-2] > self.weight.shape[1]:
            raise ValueError(
                f"num_keys: expected at most {self.weight.shape[1]} (the weight's max_keys), "
                f"got {key.shape[-2]}"
            )
        return AF._attend(AF._location(query, self.weight, key.shape[-2]), value, mask)


class LocalAttention(AttentionModule):
    r"""Luong's local attention: a window of :math:`2D+1` keys around a centre :math:`p_t`.

    - ``local-m`` (monotonic): :math:`p_t = t`, the query's position.
    - ``local-p`` (predictive): :math:`p_t = (S-1)\,\sigma(v_p^\top\tanh(W_p h_t))`
      for ``S`` unmasked keys (Luong's :math:`S\,\sigma(\cdot)` with 0-based
      positions), and the weights are multiplied by a Gaussian
      :math:`\exp(-(s-p_t)^2/2\sigma^2)`, :math:`\sigma = D/2`.

    Scores inside the window use Luong's ``general`` score :math:`q^\top W k`.
    Luong, Pham and Manning (2015), arXiv:1508.04025.

    Parameters
    ----------
    query_dim : int
    window : int
        Half-width :math:`D`.
    key_dim : int, optional
        Default ``query_dim``.
    hidden_dim : int, optional
        Width of the position predictor; default ``query_dim``.
    mode : {"local-m", "local-p"}
        Keyword-only.

    Shape
    -----
    - query: ``(B, Lq, query_dim)``; key: ``(B, Lk, key_dim)``;
      value: ``(B, Lk, Dv)``; mask: boolean, broadcastable to ``(B, Lq, Lk)``;
      positions: ``(B, Lq)`` or ``(Lq,)`` (local-m centres, default ``0..Lq-1``)
    - output: ``(B, Lq, Dv)``; weights: ``(B, Lq, Lk)``
    """

    uses_positions = True

    def __init__(
        self,
        query_dim: int,
        window: int,
        key_dim: int | None = None,
        hidden_dim: int | None = None,
        *,
        mode: str = "local-p",
    ) -> None:
        super().__init__()
        self.mode = check_choice(mode, "mode", ("local-m", "local-p"))
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise ValueError(f"window: expected a non-negative integer, got {window!r}")
        self.window = window
        self.score = LuongAttention(query_dim, key_dim, method="general")
        self.query_dim = query_dim
        hidden_dim = hidden_dim or query_dim
        if mode == "local-p":
            self.w_p = nn.Linear(query_dim, hidden_dim, bias=False)
            self.v_p = nn.Linear(hidden_dim, 1, bias=False)

    def centers(
        self, query: Tensor, key: Tensor, mask: Tensor | None, positions: Tensor | None
    ) -> Tensor:
        """Window centres ``(B, Lq)``."""
        b, lq = query.shape[:2]
        if self.mode == "local-m":
            if positions is None:
                positions = torch.arange(lq, device=query.device)
            return positions.to(query.dtype).expand(b, lq)
        if mask is not None and mask.dtype == torch.bool:
            lengths = mask.expand(b, lq, key.shape[1])[:, 0, :].sum(-1)  # (B,)
        else:
            lengths = torch.full((b,), key.shape[1], device=query.device)
        return AF.predictive_position(query, self.w_p.weight.T, self.v_p.weight[0], lengths - 1)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        _check_inputs(query, key, value, self.query_dim, self.score.key_dim)
        if mask is not None:
            check_mask(mask, "mask", (*query.shape[:2], key.shape[1]), "(batch, query, key)")
            if mask.dtype != torch.bool:
                raise TypeError(
                    f"mask: expected dtype torch.bool for local attention, got {mask.dtype}"
                )
        scores = self.score._scores(query, key)  # (B, Lq, Lk)
        center = self.centers(query, key, mask, positions)  # (B, Lq)
        return AF._local_attention(
            scores, value, center, self.window, mask, gaussian=self.mode == "local-p"
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, window={self.window}"


class HardAttention(AttentionModule):
    r"""Hard attention: one key per query, chosen by argmax or sampling.

    Scores with Luong's ``general`` score; see
    :func:`attnlib.functional.hard_attention` for the estimators. In
    evaluation mode it always takes the argmax. Xu et al. (2015), "Show,
    Attend and Tell", arXiv:1502.03044.

    Parameters
    ----------
    query_dim : int
    key_dim : int, optional
    mode : {"sample", "argmax"}
        How keys are chosen during training.
    estimator : {"straight_through", "reinforce"}

    Shape
    -----
    - query: ``(B, Lq, query_dim)``; key: ``(B, Lk, key_dim)``;
      value: ``(B, Lk, Dv)``
    - output: ``(B, Lq, Dv)``; weights: ``(B, Lq, Lk)``, one-hot rows
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        *,
        mode: str = "sample",
        estimator: str = "straight_through",
    ) -> None:
        super().__init__()
        self.mode = check_choice(mode, "mode", ("argmax", "sample"))
        self.estimator = check_choice(estimator, "estimator", ("straight_through", "reinforce"))
        self.score = LuongAttention(query_dim, key_dim, method="general")

    def scores(self, query: Tensor, key: Tensor) -> Tensor:
        """Scores ``(B, Lq, Lk)``, for
        :func:`~attnlib.functional.hard_attention_log_prob`."""
        return self.score.scores(query, key)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_inputs(query, key, value, self.score.query_dim, self.score.key_dim, mask)
        mode = self.mode if self.training else "argmax"
        scores = self.score._scores(query, key)  # (B, Lq, Lk)
        return AF._hard_attention(scores, value, mask, mode, self.estimator)


@dataclass
class KVCache:
    """Keys and values already projected, for incremental decoding.

    Passed to :class:`MultiHeadAttention` as ``cache=``. A self-attention
    cache (``static=False``) appends the new tokens' keys and values at every
    step, so each step projects one token instead of the whole prefix; a
    cross-attention cache (``static=True``) projects the encoder memory once
    and reuses it.

    With grouped-query attention (:class:`MultiHeadAttention` with
    ``num_kv_heads`` < ``num_heads``) the cache holds the ``num_kv_heads``
    key/value heads, not their copies for every query head: it is
    ``num_heads / num_kv_heads`` times smaller (see :attr:`~attnlib.attention.KVCache.nbytes`).

    Shape
    -----
    - key, value: ``(B, Hkv, Lk, Dk)``, ``Lk`` the tokens so far and ``Hkv``
      the layer's ``num_kv_heads`` (``H`` for ordinary multi-head attention)
    """

    static: bool = False
    key: Tensor | None = None
    value: Tensor | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the stored keys and values (0 when empty):
        ``2 * B * Hkv * Lk * Dk * itemsize`` when keys and values have the same size."""
        if self.key is None:
            return 0
        return self.key.nelement() * self.key.element_size() + (
            self.value.nelement() * self.value.element_size()
        )

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Store (static) or append (self-attention) and return all keys and values."""
        if self.key is not None and not self.static:
            key = torch.cat([self.key, key], dim=2)
            value = torch.cat([self.value, value], dim=2)
        self.key, self.value = key, value
        return key, value

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[2]

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows ``index`` (beam search reorders its hypotheses)."""
        if self.key is not None:
            self.key, self.value = self.key[index], self.value[index]


class MultiHeadAttention(AttentionModule):
    r"""Multi-head attention (Vaswani et al., 2017, arXiv:1706.03762).

    .. math::

        \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots,
        \mathrm{head}_h) W^O, \quad
        \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q, K W_i^K, V W_i^V)

    The same computation and parameters as :class:`torch.nn.MultiheadAttention`
    (use :meth:`from_torch` to copy them), with attnlib's mask convention and
    per-head weights.

    **Fast path.** With ``need_weights=False`` the layer returns ``(output,
    None)`` and runs PyTorch's fused kernel
    (:func:`torch.nn.functional.scaled_dot_product_attention`), which never
    stores the ``(Lq, Lk)`` weights: the same output to float precision, less
    time and memory. The Transformer layers of :mod:`attnlib.transformer` ask
    for no weights; :func:`attnlib.capture.record_attention` and a
    ``weights_hook`` switch the weights back on, so every tool still sees them.

    Parameters
    ----------
    embed_dim : int
        Model width :math:`d_{model}`.
    num_heads : int
        Number of heads :math:`h`; must divide ``embed_dim``.
    dropout : float
        Dropout on the attention weights during training.
    bias : bool
        Biases in the four projections.
    kdim, vdim : int, optional
        Features of ``key`` and ``value`` (default ``embed_dim``), for
        cross-attention to a memory of another width.
    batch_first : bool
        ``True``: inputs are ``(B, L, features)``; ``False``:
        ``(L, B, features)`` as in PyTorch's default.
    rotary : bool
        Keyword-only. Rotate each head's queries and keys by their positions
        (:class:`~attnlib.positional.RotaryEmbedding`; Su et al., 2021,
        arXiv:2104.09864) after the projections, so that scores depend on
        relative positions; with a self-attention :class:`KVCache` the new
        tokens' positions continue after the cached ones. For self-attention
        only (queries and keys of one sequence); needs an even head size.
    num_kv_heads : int, optional
        Keyword-only. Number of key/value heads :math:`h_{kv}`, a divisor of
        ``num_heads`` (default ``num_heads``: ordinary multi-head attention).
        Fewer key/value heads than query heads is *grouped-query attention*
        (Ainslie et al., 2023, arXiv:2305.13245); one is *multi-query
        attention* (Shazeer, 2019, arXiv:1911.02150). ``k_proj`` and
        ``v_proj`` then output ``num_kv_heads * head_dim`` features, a
        :class:`KVCache` stores only those heads, and query head ``i`` reads
        key/value head ``i // (num_heads // num_kv_heads)``: the same as
        multi-head attention whose key and value projections repeat each
        key/value head for its group of query heads.

    Shape
    -----
    - query: ``(B, Lq, embed_dim)``; key: ``(B, Lk, kdim)``;
      value: ``(B, Lk, vdim)`` (length first if not ``batch_first``)
    - mask: boolean or additive, broadcastable to ``(B, H, Lq, Lk)``
    - output: ``(B, Lq, embed_dim)``; weights: ``(B, H, Lq, Lk)``
    - cached keys and values: ``(B, Hkv, Lk, embed_dim / H)``, ``Hkv = num_kv_heads``
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = True,
        *,
        rotary: bool = False,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(embed_dim, "embed_dim")
        check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of embed_dim ({embed_dim}), got {num_heads}"
            )
        if num_kv_heads is None:
            num_kv_heads = num_heads
        check_positive_int(num_kv_heads, "num_kv_heads")
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_kv_heads: expected a divisor of num_heads ({num_heads}), got {num_kv_heads}"
            )
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.head_dim = embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        if rotary and self.head_dim % 2:
            raise ValueError(
                "rotary: needs an even head size (embed_dim / num_heads), got "
                f"{embed_dim} / {num_heads} = {self.head_dim}"
            )
        # queries and keys rotated by their positions (None: no rotary positions)
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        kv_dim = num_kv_heads * self.head_dim  # embed_dim unless grouped-query
        self.k_proj = nn.Linear(self.kdim, kv_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, kv_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        # an intervention (attnlib.interpret): weights (B, H, Lq, Lk) -> new weights
        self.weights_hook: Callable[[Tensor], Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as :class:`torch.nn.MultiheadAttention` does: Xavier-uniform
        input projections, default output projection, zero biases."""
        self.out_proj.reset_parameters()
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
        if self.q_proj.bias is not None:
            for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
                nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        *,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend; with a :class:`KVCache`, reuse the keys and values already
        projected (see :class:`KVCache`). ``need_weights=False``: the fast
        path, weights ``None`` (see the class docstring)."""
        if not self.batch_first:
            for name, x in (("query", query), ("key", key), ("value", value)):
                check_rank(x, name, (3,), "(length, batch, features)")
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        _check_inputs(query, key, value, self.embed_dim, self.kdim)
        check_size(value, "value", -1, self.vdim, "value features (vdim)")
        if mask is not None:
            past = len(cache) if cache is not None and not cache.static else 0  # cached keys
            target = (query.shape[0], self.num_heads, query.shape[1], past + key.shape[1])
            check_mask(mask, "mask", target, "(batch, heads, query, key)", query.dtype)
        q = AF._split_heads(self.q_proj(query), self.num_heads)  # (B, H, Lq, D/H)
        if cache is not None and cache.static and cache.key is not None:
            k, v = cache.key, cache.value  # cross-attention: the memory's projections
        else:
            k = AF._split_heads(self.k_proj(key), self.num_kv_heads)  # (B, Hkv, Lk, D/H)
            v = AF._split_heads(self.v_proj(value), self.num_kv_heads)  # (B, Hkv, Lk, D/H)
            if self.rotary is not None:  # the new tokens come after the cached ones
                if key.shape[1] != query.shape[1]:
                    raise ValueError(
                        "rotary: self-attention only, expected key of the query's length "
                        f"{query.shape[1]}, got {key.shape[1]}"
                    )
                past = len(cache) if cache is not None else 0
                q, k = self.rotary(q, k, q_offset=past, k_offset=past)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, Hkv, past + Lk, D/H)
        dropout = self.dropout if self.training else 0.0
        group = self.num_heads // self.num_kv_heads  # query heads per key/value head
        if need_weights or self.weights_hook is not None:
            if group > 1:  # query head i reads key/value head i // group
                k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
            out, weights = AF._sdpa(q, k, v, mask, dropout, is_causal)  # k, v: (B, H, Lk, D/H)
        elif group > 1:
            out, weights = _grouped_fused_attention(q, k, v, mask, dropout, is_causal), None
        else:
            out, weights = AF._fused_attention(q, k, v, mask, dropout, is_causal), None
        if self.weights_hook is not None:  # replace the weights, then attend with them
            weights = self.weights_hook(weights)
            out = weights.to(v.dtype) @ v  # (B, H, Lq, D/H)
        out = self.out_proj(AF._merge_heads(out))  # (B, Lq, D)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights  # weights: (B, H, Lq, Lk) or None

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of a :class:`torch.nn.MultiheadAttention` with the same weights.

        ``add_bias_kv`` and ``add_zero_attn`` are not supported.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(
                f"module: expected torch.nn.MultiheadAttention, got {type(module).__name__}"
            )
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("module: add_bias_kv and add_zero_attn are not supported")
        bias = module.in_proj_bias is not None
        new = cls(
            module.embed_dim,
            module.num_heads,
            dropout=module.dropout,
            bias=bias,
            kdim=module.kdim,
            vdim=module.vdim,
            batch_first=module.batch_first,
        )
        e = module.embed_dim
        if module._qkv_same_embed_dim:
            w_q, w_k, w_v = module.in_proj_weight.split(e)
        else:
            w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        ref = module.out_proj.weight
        new = new.to(dtype=ref.dtype, device=ref.device)
        with torch.no_grad():
            for proj, w in ((new.q_proj, w_q), (new.k_proj, w_k), (new.v_proj, w_v)):
                proj.weight.copy_(w)
            new.out_proj.weight.copy_(module.out_proj.weight)
            if bias:
                for proj, b in zip(
                    (new.q_proj, new.k_proj, new.v_proj), module.in_proj_bias.split(e), strict=True
                ):
                    proj.bias.copy_(b)
                new.out_proj.bias.copy_(module.out_proj.bias)
        new.train(module.training)
        return new

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{kv}, kdim={self.kdim}, "
            f"vdim={self.vdim}, batch_first={self.batch_first}"
        )


def _grouped_fused_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float, is_causal: bool
) -> Tensor:
    """Grouped-query attention through the fused kernel, without copying the
    keys and values for every query head.

    The ``G = H / Hkv`` query heads of a group share one key/value head, so
    they are stacked as ``G * Lq`` queries of that head (and the mask's rows
    with them). A mask that differs between heads falls back to repeating the
    keys and values.

    Shape
    -----
    - q: ``(B, H, Lq, Dk)``; k: ``(B, Hkv, Lk, Dk)``; v: ``(B, Hkv, Lk, Dv)``
    - mask: broadcastable to ``(B, H, Lq, Lk)``
    - output: ``(B, H, Lq, Dv)``
    """
    b, h, lq, dk = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    group = h // hkv
    if is_causal:
        mask = AF._with_causal(mask, lq, lk, q.device)  # (..., Lq, Lk)
    if mask is not None and mask.dim() >= 3 and mask.shape[-3] != 1:  # one mask per head
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        return AF._fused_attention(q, k, v, mask, dropout)
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, 1, Lq|1, Lk)
        if mask.shape[-2] != 1:  # the same rows for every query head of a group
            mask = mask[:, :, None].expand(mask.shape[0], 1, group, lq, lk)
            mask = mask.reshape(mask.shape[0], 1, group * lq, lk)  # (B|1, 1, G * Lq, Lk)
    stacked = q.reshape(b, hkv, group * lq, dk)  # heads i*G .. i*G+G-1 -> kv head i
    out = AF._fused_attention(stacked, k, v, mask, dropout)  # (B, Hkv, G * Lq, Dv)
    return out.reshape(b, h, lq, v.shape[-1])  # (B, H, Lq, Dv)
