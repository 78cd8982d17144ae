"""Numbers that describe attention maps: what each token receives, and what
each head does (entropy, distance, special tokens, previous token, diagonal).

:func:`attention_stats` and :func:`head_stats` describe one input's
:class:`~attnlib.interpret.maps.AttentionMaps`; :func:`attention_to_tokens`,
:func:`offset_attention`, :func:`attention_entropy` and
:func:`head_js_divergence` describe every head over a padded batch of
sentences, the statistics of Clark et al. (2019, "What Does BERT Look At? An
Analysis of BERT's Attention", arXiv:1906.04341).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
from torch import Tensor

from .._checks import check_rank, check_tensor, shape_str
from .maps import AttentionMaps

__all__ = [
    "SPECIAL_TOKENS",
    "attention_stats",
    "head_stats",
    "attention_to_tokens",
    "offset_attention",
    "attention_entropy",
    "head_js_divergence",
]

#: Labels counted as special tokens by :func:`head_stats` (attnlib's and
#: Hugging Face's usual ones).
SPECIAL_TOKENS = frozenset({"<pad>", "<bos>", "<eos>", "[CLS]", "[SEP]", "[PAD]", "<s>", "</s>"})


def _select(maps: AttentionMaps, kind, layer, head) -> tuple[Tensor, Tensor]:
    """Weights ``(n, Lq, Lk)`` of the selected maps and the mask ``(Lq, Lk)``."""
    w = maps[kind]  # (layers, heads, Lq, Lk)
    if layer is not None:
        w = w[layer : layer + 1] if layer != -1 else w[-1:]
    if head is not None:
        w = w[:, head : head + 1] if head != -1 else w[:, -1:]
    mask = maps.mask(kind)
    if mask is None:
        mask = torch.ones(w.shape[-2:], dtype=torch.bool)
    return w.reshape(-1, *w.shape[-2:]), mask


def attention_stats(
    maps: AttentionMaps,
    *,
    kind: str | None = None,
    layer: int | None = None,
    head: int | None = None,
) -> pd.DataFrame:
    """How much attention each key token receives: mean, standard deviation,
    minimum and maximum over the queries that may attend to it (and over
    every selected layer and head).

    Parameters
    ----------
    maps : attnlib.interpret.maps.AttentionMaps
    kind : str, optional
        Default: the first kind present.
    layer, head : int, optional
        Restrict to one layer and/or head (``None``: all of them).

    Returns
    -------
    pandas.DataFrame
        One row per key position: ``token``, ``mean``, ``std`` (population),
        ``min``, ``max``, ``count`` (the weights summarised). Keys no query
        may attend (padding) are left out.
    """
    kind = maps._kind(kind)
    w, mask = _select(maps, kind, layer, head)  # (n, Lq, Lk), (Lq, Lk)
    rows = []
    for j, token in enumerate(maps.labels(kind)[1]):
        allowed = mask[:, j]
        if not allowed.any():
            continue
        values = w[:, allowed, j].reshape(-1).double()
        rows.append(
            {
                "position": j,
                "token": token,
                "mean": float(values.mean()),
                "std": float(values.std(unbiased=False)),
                "min": float(values.min()),
                "max": float(values.max()),
                "count": values.numel(),
            }
        )
    return pd.DataFrame(rows).set_index("position")


def _entropy(rows: Tensor) -> Tensor:
    p = rows.clamp_min(0)
    return -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)


def head_stats(
    maps: AttentionMaps,
    *,
    kind: str | None = None,
    special_tokens: Iterable[str] = SPECIAL_TOKENS,
) -> pd.DataFrame:
    r"""What each head does, one row per (layer, head).

    Averages over the query rows that may attend somewhere (padding queries
    excluded) of:

    - ``entropy``: :math:`-\sum_j a_{ij} \log a_{ij}` in nats (0: all weight
      on one key; :math:`\log n`: uniform over :math:`n` keys);
    - ``distance``: :math:`\sum_j a_{ij} |i - j|`, the mean attended distance;
    - ``special``: the weight on special tokens (``special_tokens``);
    - ``previous``: :math:`a_{i,i-1}` (rows :math:`i \ge 1`), the
      previous-token mass;
    - ``diagonal``: :math:`a_{ii}`, attention to itself;
    - ``max``: :math:`\max_j a_{ij}`, how peaked the rows are.

    The position-based columns (distance, previous, diagonal) compare query
    and key positions, which only means something for self-attention.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(layer, head)``.
    """
    kind = maps._kind(kind)
    w = maps[kind].double()  # (layers, heads, Lq, Lk)
    mask = maps.mask(kind)
    lq, lk = w.shape[-2:]
    valid = torch.ones(lq, dtype=torch.bool) if mask is None else mask.any(-1)  # (Lq,)
    keys = maps.labels(kind)[1]
    special = torch.tensor([t in set(special_tokens) for t in keys], dtype=torch.double)
    i = torch.arange(lq, dtype=torch.double)[:, None]
    j = torch.arange(lk, dtype=torch.double)[None, :]
    dist = (i - j).abs()  # (Lq, Lk)
    prev_rows = valid.clone()
    prev_rows[0] = False
    out = []
    for layer in range(w.shape[0]):
        for head in range(w.shape[1]):
            a = w[layer, head]  # (Lq, Lk)
            diag = torch.diagonal(a) if lq == lk else torch.zeros(lq, dtype=torch.double)
            prev = torch.cat([a.new_zeros(1), torch.diagonal(a, -1)]) if lq == lk else None
            out.append(
                {
                    "layer": layer,
                    "head": head,
                    "entropy": float(_entropy(a[valid]).mean()),
                    "distance": float((a * dist).sum(-1)[valid].mean()),
                    "special": float((a @ special)[valid].mean()),
                    "previous": float(prev[prev_rows].mean())
                    if prev is not None and prev_rows.any()
                    else float("nan"),
                    "diagonal": float(diag[valid].mean()),
                    "max": float(a.max(-1).values[valid].mean()),
                }
            )
    return pd.DataFrame(out).set_index(["layer", "head"])


# -- statistics of heads over a corpus -----------------------------------------------------
#
# The functions below take the attention of a whole batch of sentences at once, as a
# Hugging Face model returns it (``torch.stack(out.attentions, 1)``) or as
# :func:`attnlib.capture.record_attention` records it (``record.stack().transpose(0, 1)``),
# with the padding mask of the batch. Each statistic is averaged over the real query
# tokens of each sentence, then over the sentences, the averaging of Clark et al. (2019,
# arXiv:1906.04341).


_JS_GROUPS = 4  # head_js_divergence: groups of sentences by length


def _row_entropy(p: Tensor) -> Tensor:
    """Entropy (nats) of each row of non-negative weights ``(..., Lk)``: ``(...)``."""
    return -torch.xlogy(p, p).sum(-1)


def _corpus_inputs(
    weights: Tensor, mask: Tensor | None, queries: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, tuple[int, ...]]:
    """Checked inputs: weights ``(B, N, L, L)``, the real keys ``(B, L)``, the
    query rows to average ``(B, L)`` and the head shape ``(*heads)``."""
    check_rank(weights, "weights", range(3, 9), "(B, *heads, L, L)")
    if weights.shape[-1] != weights.shape[-2]:
        raise ValueError(
            "weights: expected self-attention maps (query length = key length), "
            f"got shape {shape_str(weights.shape)}"
        )
    b, length = weights.shape[0], weights.shape[-1]
    heads = tuple(weights.shape[1:-2])
    real = []
    for name, m in (("mask", mask), ("queries", queries)):
        if m is None:
            real.append(torch.ones(b, length, dtype=torch.bool, device=weights.device))
            continue
        check_tensor(m, name)
        if tuple(m.shape) != (b, length):
            raise ValueError(
                f"{name}: expected shape (B, L) = {shape_str((b, length))}, "
                f"got {shape_str(m.shape)}"
            )
        real.append(m.bool() if m.dtype != torch.bool else m)
    keys, rows = real[0], real[0] & real[1]
    return weights.reshape(b, -1, length, length), keys, rows, heads


def _sentence_mean(values: Tensor, rows: Tensor) -> Tensor:
    """``values (B, N, L)`` averaged over the ``rows (B, L)`` of each sentence, then over
    the sentences that have at least one row: ``(N,)`` (float64)."""
    counts = rows.sum(-1)  # (B,)
    used = counts > 0
    if not used.any():
        raise ValueError("no query row to average: every row is masked out")
    values = values.double() * rows[:, None, :]
    per_sentence = values.sum(-1)[used] / counts[used, None]  # (B', N)
    return per_sentence.mean(0)


def attention_to_tokens(
    weights: Tensor,
    keys: Tensor,
    mask: Tensor | None = None,
    *,
    queries: Tensor | None = None,
) -> Tensor:
    r"""The attention each head gives to a set of key tokens ([CLS], [SEP],
    punctuation...), averaged over a corpus.

    For each query row :math:`i` the mass :math:`\sum_{j \in K} a_{ij}` on the
    selected keys :math:`K`; averaged over the real query rows of each sentence,
    then over the sentences (Clark et al., 2019, "What Does BERT Look At? An
    Analysis of BERT's Attention", arXiv:1906.04341, section 3.2).

    Parameters
    ----------
    weights : Tensor
        Self-attention weights of a batch, any number of head dimensions
        (e.g. ``(B, layers, H, L, L)``).
    keys : Tensor
        Boolean, ``True`` at the selected key positions of each sentence.
    mask : Tensor, optional
        ``True`` (or 1) at the real tokens, ``False`` (0) at padding, as a
        tokenizer's ``attention_mask``; ``None``: every position is real.
    queries : Tensor, optional
        Average only over these query rows (e.g. the [CLS] row), among the real ones.

    Returns
    -------
    Tensor
        The mean mass on the selected keys per head (float64).

    Shape
    -----
    - weights: ``(B, *heads, L, L)``; keys, mask, queries: ``(B, L)``; output: ``(*heads)``
    """
    w, _, rows, heads = _corpus_inputs(weights, mask, queries)
    check_tensor(keys, "keys")
    if tuple(keys.shape) != tuple(rows.shape):
        raise ValueError(
            f"keys: expected shape (B, L) = {shape_str(rows.shape)}, got {shape_str(keys.shape)}"
        )
    mass = (w @ keys.to(w.dtype)[:, None, :, None]).squeeze(-1)  # (B, N, L)
    return _sentence_mean(mass, rows).reshape(heads)


def offset_attention(
    weights: Tensor, offset: int, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""How much each head attends to the token at a fixed offset (``-1``: the
    previous token, ``+1``: the next one), averaged over a corpus.

    Over the real query rows :math:`i` whose key :math:`i + \text{offset}` is a
    real token: the mean weight :math:`a_{i, i+\text{offset}}`, and the share of
    rows whose most-attended key is :math:`i + \text{offset}` (the head as a
    zero-parameter classifier of Clark et al., 2019, arXiv:1906.04341, sections
    3.1 and 4.1). Averaged per sentence, then over sentences.

    Parameters
    ----------
    weights : Tensor
        Self-attention weights of a batch, e.g. ``(B, layers, H, L, L)``.
    offset : int
        Key position minus query position (non-zero values give other diagonals;
        0 is attention to the token itself).
    mask : Tensor, optional
        ``True`` (or 1) at the real tokens; ``None``: every position is real.

    Returns
    -------
    mean_weight, argmax_share : Tensor
        Both float64.

    Shape
    -----
    - weights: ``(B, *heads, L, L)``; mask: ``(B, L)``; outputs: ``(*heads)``
    """
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise TypeError(f"offset: expected an int, got {type(offset).__name__}")
    w, keys, rows, heads = _corpus_inputs(weights, mask)
    length = w.shape[-1]
    i = torch.arange(length, device=w.device)
    j = i + offset
    inside = (j >= 0) & (j < length)  # (L,)
    jc = j.clamp(0, length - 1)
    target_real = keys[:, jc] & inside  # (B, L): the key i + offset is a real token
    rows = rows & target_real
    at_offset = w[:, :, i, jc]  # (B, N, L)
    hit = w.argmax(-1) == jc  # (B, N, L)
    return (
        _sentence_mean(at_offset, rows).reshape(heads),
        _sentence_mean(hit, rows).reshape(heads),
    )


def attention_entropy(
    weights: Tensor, mask: Tensor | None = None, *, queries: Tensor | None = None
) -> Tensor:
    r"""The mean entropy of each head's attention rows over a corpus, in nats.

    :math:`-\sum_j a_{ij} \log a_{ij}` (with :math:`0 \log 0 = 0`) for each real
    query row, averaged per sentence, then over sentences: 0 when a head puts all
    its weight on one key, :math:`\log n` when it spreads it evenly over the
    :math:`n` tokens of the sentence (Clark et al., 2019, arXiv:1906.04341,
    section 3.3, who also measure the rows of [CLS] alone: pass ``queries``).

    Parameters
    ----------
    weights : Tensor
        Self-attention weights of a batch, e.g. ``(B, layers, H, L, L)``.
    mask : Tensor, optional
        ``True`` (or 1) at the real tokens; ``None``: every position is real.
    queries : Tensor, optional
        Average only over these query rows, among the real ones.

    Returns
    -------
    Tensor
        float64.

    Shape
    -----
    - weights: ``(B, *heads, L, L)``; mask, queries: ``(B, L)``; output: ``(*heads)``
    """
    w, _, rows, heads = _corpus_inputs(weights, mask, queries)
    return _sentence_mean(_row_entropy(w), rows).reshape(heads)  # (B, N, L) -> (*heads)


def head_js_divergence(weights: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""The Jensen-Shannon divergence between the attention of every pair of heads,
    averaged over the query tokens of a corpus: a distance matrix of heads.

    For heads :math:`h, g` and a query row :math:`i` with attention
    distributions :math:`P = a^h_{i\cdot}`, :math:`Q = a^g_{i\cdot}` and
    :math:`M = (P + Q)/2`,

    .. math::

        \mathrm{JS}(P, Q) = \tfrac12 \mathrm{KL}(P \,\|\, M)
        + \tfrac12 \mathrm{KL}(Q \,\|\, M)
        = H(M) - \tfrac12 \big(H(P) + H(Q)\big)

    in nats (between 0 and :math:`\log 2`), averaged over the real query rows of
    each sentence, then over the sentences. Clark et al. (2019, "What Does BERT
    Look At? An Analysis of BERT's Attention", arXiv:1906.04341, section 6) sum
    the same divergence over the tokens of their corpus (so their matrix is this
    one times the number of tokens, up to the weighting of sentences) and embed
    the heads in two dimensions with multidimensional scaling. The square root
    is the Jensen-Shannon *distance* (``scipy.spatial.distance.jensenshannon``),
    a metric.

    Parameters
    ----------
    weights : Tensor
        Self-attention weights of a batch, e.g. ``(B, layers, H, L, L)``; the
        head dimensions are flattened in order (layer-major for that layout).
    mask : Tensor, optional
        ``True`` (or 1) at the real tokens; ``None``: every position is real.
        Keys beyond a sentence's last real token are dropped (padding carries no
        weight).

    Returns
    -------
    Tensor
        Symmetric, zero diagonal, float64.

    Shape
    -----
    - weights: ``(B, *heads, L, L)``; mask: ``(B, L)``; output: ``(N, N)`` with
      ``N`` the number of heads (e.g. ``layers * H``)
    """
    w, keys, rows, _ = _corpus_inputs(weights, mask)
    b, n, length, _ = w.shape
    counts = rows.sum(-1)  # (B,)
    used = counts > 0
    if not used.any():
        raise ValueError("no query row to average: every row is masked out")
    # every query row weighs 1 / (its sentence's rows x the number of sentences)
    row_weight = torch.where(rows, 1.0 / counts.clamp_min(1)[:, None].double(), 0.0)
    row_weight = row_weight / int(used.sum())  # (B, L)
    last = torch.where(keys, torch.arange(length, device=w.device), -1).max(-1).values + 1
    out = torch.zeros(n, n, dtype=torch.float64, device=w.device)
    # a few groups of sentences of similar length, each cut to its longest: less padding
    # to compute on, and few (large) tensor operations
    order = torch.nonzero(used).flatten()
    order = order[last[order].argsort(stable=True)]
    for group in torch.tensor_split(order, min(_JS_GROUPS, len(order))):
        size = int(last[group].max())
        x = w[group][..., :size].transpose(1, 2)  # (b', L, N, size)
        r = rows[group]
        x, wt = x[r].transpose(0, 1).contiguous(), row_weight[group][r]  # (N, R, size), (R,)
        h = _row_entropy(x)  # (N, R)
        for head in range(n - 1):
            m = 0.5 * (x[head : head + 1] + x[head + 1 :])  # (N - head - 1, R, size)
            js = _row_entropy(m) - 0.5 * (h[head : head + 1] + h[head + 1 :])
            out[head, head + 1 :] += js.double().clamp_min(0) @ wt
    return out + out.T
