"""Scores: classification (through scikit-learn), BLEU (through sacrebleu),
and how well attention agrees with a known word alignment.

Alignments are lists of ``(source, target)`` position pairs, as in the
Pharaoh format ``"0-0 1-2 2-1"`` (:func:`parse_alignment`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch
from torch import Tensor

from ._checks import check_choice, check_rank, shape_str

__all__ = [
    "classification_scores",
    "confusion_frame",
    "corpus_bleu",
    "parse_alignment",
    "alignment_matrix",
    "hard_alignment",
    "alignment_score",
    "alignment_error_rate",
]


def _same_length(y_true: Sequence, y_pred: Sequence) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_pred: expected one prediction per label ({len(y_true)}), got {len(y_pred)}"
        )


def classification_scores(
    y_true: Sequence, y_pred: Sequence, *, labels: Sequence | None = None
) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1.

    Macro averaging gives every class the same weight, so a rare class that
    is always missed pulls F1 down even when accuracy is high. Computed with
    scikit-learn (``accuracy_score``, ``precision_recall_fscore_support``);
    a class never predicted counts as precision 0.

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1``.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    _same_length(y_true, y_pred)
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    acc = accuracy_score(y_true, y_pred)
    return {"accuracy": float(acc), "precision": float(p), "recall": float(r), "f1": float(f)}


def confusion_frame(
    y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None
) -> pd.DataFrame:
    """The confusion matrix as a table: one row per true class, one column per
    predicted class (scikit-learn's ``confusion_matrix``)."""
    from sklearn.metrics import confusion_matrix

    _same_length(y_true, y_pred)
    if labels is None:
        labels = sorted(set(y_true) | set(y_pred))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    index = pd.Index(labels, name="true")
    return pd.DataFrame(matrix, index=index, columns=pd.Index(labels, name="predicted"))


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a"
) -> float:
    """Corpus BLEU (Papineni et al., 2002) with one reference per sentence,
    in [0, 100], computed by sacrebleu (Post, 2018, arXiv:1804.08771) so that
    the number is comparable with published ones."""
    import sacrebleu

    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses, references: expected lists of strings, got a str")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"references: expected one reference per hypothesis ({len(hypotheses)}), "
            f"got {len(references)}"
        )
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize)
    return float(bleu.score)


def parse_alignment(text: str) -> list[tuple[int, int]]:
    """``"0-0 1-2"`` -> ``[(0, 0), (1, 2)]`` (source, target) pairs.

    Examples
    --------
    >>> parse_alignment("0-0 2-1 1-2")
    [(0, 0), (2, 1), (1, 2)]
    """
    pairs = []
    for item in str(text).split():
        parts = item.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"text: expected pairs like '3-1' separated by spaces, got {item!r}")
        pairs.append((int(parts[0]), int(parts[1])))
    return pairs


def alignment_matrix(
    alignment: Iterable[tuple[int, int]], src_len: int, tgt_len: int, *, offset: tuple = (0, 0)
) -> Tensor:
    """A boolean ``(T, S)`` matrix, ``True`` at aligned pairs
    (the layout of cross-attention weights: one row per target position).

    ``offset = (source shift, target shift)`` moves word positions to token
    positions, for example ``(0, 1)`` when the target starts with BOS.
    """
    out = torch.zeros(tgt_len, src_len, dtype=torch.bool)
    for s, t in alignment:
        s, t = s + offset[0], t + offset[1]
        if not (0 <= s < src_len and 0 <= t < tgt_len):
            raise ValueError(
                f"alignment: pair ({s}, {t}) (after offset {offset}) is outside "
                f"source length {src_len} / target length {tgt_len}"
            )
        out[t, s] = True
    return out


def _check_weights(weights: Tensor, gold: Tensor, ranks=(2,)) -> None:
    check_rank(weights, "weights", ranks, "(target, source) attention weights")
    if weights.shape != gold.shape:
        raise ValueError(
            f"gold: expected the shape of weights {shape_str(weights.shape)}, "
            f"got {shape_str(gold.shape)}"
        )


def hard_alignment(weights: Tensor, rows: Tensor | None = None) -> Tensor:
    """Align every target position to the source position it attends most:
    a boolean ``(target, source)`` matrix with one ``True`` per row.

    ``rows`` (boolean, one per target position) limits the links to the rows
    that are real words: pass ``gold.any(-1)`` so that EOS and padding rows
    do not count as wrong links in :func:`alignment_error_rate`.
    """
    check_rank(weights, "weights", (2,), "(target, source) attention weights")
    out = torch.zeros(weights.shape, dtype=torch.bool)
    out[torch.arange(weights.shape[0]), weights.argmax(-1)] = True
    if rows is not None:
        if rows.shape != weights.shape[:1]:
            raise ValueError(
                f"rows: expected shape ({weights.shape[0]},) (one per target position), "
                f"got {shape_str(rows.shape)}"
            )
        out &= rows.bool()[:, None]
    return out


def alignment_score(weights: Tensor, gold: Tensor, *, method: str = "argmax") -> float:
    """How well attention weights agree with a known alignment.

    Only target positions that have a gold alignment count (a padding or EOS
    row does not).

    Parameters
    ----------
    weights : Tensor
        Attention of each target position over the source positions; leading
        batch dimensions are allowed (every row of every sentence counts).
    gold : Tensor
        Boolean, ``True`` at aligned pairs (:func:`alignment_matrix`), the
        shape of ``weights``.
    method : {"argmax", "mass"}
        ``"argmax"``: fraction of target positions whose most-attended source
        position is aligned to it (alignment accuracy). ``"mass"``: the mean
        attention weight that falls on aligned positions.

    Returns
    -------
    float
        In [0, 1]; uniform attention over ``S`` positions scores about
        ``1 / S`` on a one-to-one alignment.

    Shape
    -----
    - weights, gold: ``(..., target, source)``
    """
    check_choice(method, "method", ("argmax", "mass"))
    _check_weights(weights, gold, ranks=(2, 3, 4))
    weights = weights.reshape(-1, weights.shape[-1])
    gold = gold.reshape(-1, gold.shape[-1])
    rows = gold.any(-1)  # (N,) target positions with an alignment
    if not rows.any():
        raise ValueError("gold: expected at least one aligned pair, got none")
    w, g = weights[rows].float(), gold[rows]
    if method == "argmax":
        hit = g.gather(-1, w.argmax(-1, keepdim=True))[:, 0]
        return float(hit.float().mean())
    return float((w * g).sum(-1).mean())


def alignment_error_rate(predicted: Tensor, sure: Tensor, possible: Tensor | None = None) -> float:
    r"""Alignment error rate (Och and Ney, 2003):

    .. math:: \mathrm{AER} = 1 - \frac{|A \cap S| + |A \cap P|}{|A| + |S|}

    with predicted pairs :math:`A`, sure pairs :math:`S` and possible pairs
    :math:`P \supseteq S` (default :math:`P = S`). 0 is a perfect alignment.

    Shape
    -----
    - predicted, sure, possible: ``(target, source)`` boolean
    """
    possible = sure if possible is None else possible | sure
    _check_weights(predicted.float(), sure)
    a, s = predicted.bool(), sure.bool()
    total = int(a.sum() + s.sum())
    if total == 0:
        raise ValueError("predicted, sure: expected at least one pair, got none")
    return 1.0 - float((a & s).sum() + (a & possible).sum()) / total
