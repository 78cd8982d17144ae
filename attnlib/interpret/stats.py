"""Numbers that describe attention maps: what each token receives, and what
each head does (entropy, distance, special tokens, previous token, diagonal).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
from torch import Tensor

from .maps import AttentionMaps

__all__ = ["SPECIAL_TOKENS", "attention_stats", "head_stats"]

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
