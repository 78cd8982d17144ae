"""Algorithmic sequence-to-sequence tasks whose correct alignment is known.

Each task maps a source sequence of symbols to a target sequence, and for
every target position records which source position it copies: the
cross-attention a model *should* learn. That makes the learned attention
checkable, not just viewable.

Token ids: ``0`` padding, ``1`` BOS, ``2`` EOS, symbols from ``3``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_choice, check_positive_int, check_rank

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "FIRST_SYMBOL",
    "TASKS",
    "RepeatedSegments",
    "algorithmic_batch",
    "decoded_correct",
    "exact_match",
    "repeated_segment_batch",
]

PAD, BOS, EOS, FIRST_SYMBOL = 0, 1, 2, 3

TASKS = ("copy", "reverse", "sort", "swap_pairs")
"""The names of the tasks (``copy`` = the source itself, ``reverse``, ``sort``
ascending with ties in their order, and ``swap_pairs``, which swaps positions
0-1, 2-3, ... and keeps an odd last symbol in place)."""


def _alignment(task: str, src: Tensor, length: int) -> Tensor:
    """Source position copied by each target position ``(L,)``."""
    positions = torch.arange(length)
    if task == "copy":
        return positions
    if task == "reverse":
        return length - 1 - positions
    if task == "sort":
        return torch.sort(src[:length], stable=True).indices
    swapped = positions ^ 1  # 0<->1, 2<->3, ...
    return torch.where(swapped < length, swapped, positions)


def algorithmic_batch(
    task: str,
    n: int,
    min_len: int,
    max_len: int,
    num_symbols: int = 10,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch of one algorithmic task, padded to ``max_len``.

    Parameters
    ----------
    task : {"copy", "reverse", "sort", "swap_pairs"}
    n : int
        Batch size.
    min_len, max_len : int
        Source lengths are drawn uniformly from ``[min_len, max_len]``.
    num_symbols : int
        Symbols are ids ``3 .. 3 + num_symbols - 1`` (vocabulary size
        ``3 + num_symbols``).
    generator : torch.Generator, optional

    Returns
    -------
    src : Tensor
        Source ids, padded with ``PAD``.
    tgt : Tensor
        ``BOS``, the answer, ``EOS``, then ``PAD``.
    alignment : Tensor
        For each answer position, the source position it copies; ``-1`` at
        the ``EOS`` and padding positions.

    Shape
    -----
    - src: ``(n, max_len)``; tgt: ``(n, max_len + 2)``; alignment: ``(n, max_len + 1)``
      (aligned with ``tgt[:, 1:]``, the positions a decoder predicts)
    """
    check_choice(task, "task", TASKS)
    check_positive_int(n, "n")
    check_positive_int(min_len, "min_len")
    if max_len < min_len:
        raise ValueError(f"max_len: expected at least min_len ({min_len}), got {max_len}")
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    symbols = torch.randint(
        FIRST_SYMBOL, FIRST_SYMBOL + num_symbols, (n, max_len), generator=generator
    )
    src = torch.full((n, max_len), PAD, dtype=torch.long)
    tgt = torch.full((n, max_len + 2), PAD, dtype=torch.long)
    alignment = torch.full((n, max_len + 1), -1, dtype=torch.long)
    tgt[:, 0] = BOS
    for i, length in enumerate(lengths.tolist()):
        src[i, :length] = symbols[i, :length]
        align = _alignment(task, src[i], length)
        tgt[i, 1 : length + 1] = src[i, align]
        tgt[i, length + 1] = EOS
        alignment[i, :length] = align
    return src, tgt, alignment


def exact_match(output: Tensor, target: Tensor) -> float:
    """The share of sequences decoded exactly: every symbol and the ``EOS``.

    ``decoded_correct(output, target).all(1).mean()``: a row counts only if
    every answer position is right (see :func:`decoded_correct`, which says
    how outputs shorter or longer than the target are read).

    Parameters
    ----------
    output : Tensor
        Decoded ids, ``BOS`` first, as :mod:`attnlib.decoding` returns them.
    target : Tensor
        ``BOS``, the answer, ``EOS``, then ``PAD``, as :func:`algorithmic_batch`
        returns it.

    Returns
    -------
    float
        In ``[0, 1]``.

    Shape
    -----
    - output: ``(B, 1 + G)`` (``G`` generated tokens); target: ``(B, 1 + T)`` (``G`` and
      ``T`` may differ)
    """
    return float(decoded_correct(output, target).all(1).double().mean())


def decoded_correct(output: Tensor, tgt: Tensor) -> Tensor:
    """Which answer positions a decoder got right.

    Parameters
    ----------
    output : Tensor
        What :mod:`attnlib.decoding` returns for the batch's sources: ``BOS``,
        then the generated tokens, filled with ``EOS`` after a row's ``EOS``.
        Output that stopped early counts as ``EOS`` from its end on; tokens
        past the target's width are not looked at.
    tgt : Tensor
        The batch's targets (``BOS``, answer, ``EOS``, ``PAD``), as
        :func:`algorithmic_batch` returns them.

    Returns
    -------
    Tensor
        Boolean, aligned with ``tgt[:, 1:]`` (and with ``alignment``):
        ``True`` where the generated token equals the target. Padding
        positions are ``True`` (there is nothing to get wrong), so
        ``correct.all(1)`` is the exact match of each row and
        ``correct[tgt[:, 1:] != PAD]`` the per-token results.

    Shape
    -----
    - output: ``(n, 1 + G)`` (``G`` generated tokens); tgt: ``(n, 1 + T)``;
      returns ``(n, T)``
    """
    check_rank(output, "output", (2,), "(batch, 1 + generated) token ids")
    check_rank(tgt, "tgt", (2,), "(batch, 1 + answer) token ids")
    if output.shape[0] != tgt.shape[0]:
        raise ValueError(
            f"output: expected batch size {tgt.shape[0]} like tgt, got {output.shape[0]}"
        )
    gold = tgt[:, 1:]
    generated = output[:, 1 : 1 + gold.shape[1]]
    missing = gold.shape[1] - generated.shape[1]
    generated = torch.nn.functional.pad(generated, (0, missing), value=EOS)
    return (generated == gold) | (gold == PAD)


@dataclass(frozen=True)
class RepeatedSegments:
    """A batch of :func:`repeated_segment_batch`.

    Attributes
    ----------
    tokens : Tensor
        Token ids ``(B, L)``.
    predictable : Tensor
        Boolean ``(B, L)``: the tokens of the second copy that an earlier token
        predicts (all but its first token, whose predecessor is random).
    first_copy : Tensor
        Boolean ``(B, L)``: the same tokens in the first copy (there they are
        random, unpredictable), to compare with ``predictable``.
    source : Tensor
        ``(B, L)``: for a predictable token, the position of the same token in
        the first copy, which is the key an induction head at the *previous*
        position should attend to; ``-1`` elsewhere.
    first, second, segment : Tensor
        ``(B,)``: the starts of the two copies and the segment length.
    """

    tokens: Tensor
    predictable: Tensor
    first_copy: Tensor
    source: Tensor
    first: Tensor
    second: Tensor
    segment: Tensor


def repeated_segment_batch(
    batch_size: int,
    length: int,
    vocab_size: int,
    *,
    min_segment: int = 4,
    max_segment: int | None = None,
    generator: torch.Generator | None = None,
) -> RepeatedSegments:
    """Random token sequences that contain one random segment twice, for
    in-context learning and induction heads (Olsson et al., 2022, "In-context
    Learning and Induction Heads", arXiv:2209.11895).

    Each row is uniform random tokens ``0 .. vocab_size - 1``; a segment of
    ``s`` tokens, ``s`` uniform in ``[min_segment, max_segment]``, starts at
    ``first`` (uniform in ``[0, length - 2 s]``) and is written again at
    ``second`` (uniform in ``[first + s, length - s]``). The segment length
    and both offsets vary from row to row, so no position can be memorised:
    the only way to predict a token of the second copy is to find the
    previous token earlier in the sequence and copy what followed it
    (``[A][B] ... [A] -> [B]``), which is what an induction head does.

    Parameters
    ----------
    batch_size, length, vocab_size : int
        ``B``, ``L`` and ``V``.
    min_segment : int
        At least 2 (one token to match and one to predict).
    max_segment : int, optional
        At most ``length // 2``, which is also the default.
    generator : torch.Generator, optional

    Returns
    -------
    RepeatedSegments
        ``tokens``, the masks ``predictable`` and ``first_copy``, the
        ``source`` position of each predictable token, and the ``first``,
        ``second`` and ``segment`` of each row.

    Shape
    -----
    - tokens, predictable, first_copy, source: ``(B, L)``
    - first, second, segment: ``(B,)``
    - a language model's logits ``(B, L, V)`` at position ``i`` predict token
      ``i + 1``: the loss on the predictable tokens is read at
      ``predictable[:, 1:]`` against ``logits[:, :-1]``
    """
    check_positive_int(batch_size, "batch_size")
    check_positive_int(length, "length")
    check_positive_int(vocab_size, "vocab_size")
    max_segment = length // 2 if max_segment is None else max_segment
    if min_segment < 2:
        raise ValueError(f"min_segment: expected at least 2, got {min_segment}")
    if not min_segment <= max_segment <= length // 2:
        raise ValueError(
            f"max_segment: expected between min_segment ({min_segment}) and "
            f"length // 2 ({length // 2}), got {max_segment}"
        )
    tokens = torch.randint(0, vocab_size, (batch_size, length), generator=generator)
    segment = torch.randint(min_segment, max_segment + 1, (batch_size,), generator=generator)
    u = torch.rand(batch_size, 2, generator=generator, dtype=torch.float64)
    first = (u[:, 0] * (length - 2 * segment + 1)).long()
    second = first + segment + (u[:, 1] * (length - 2 * segment - first + 1)).long()
    positions = torch.arange(length)
    in_second = (positions >= second[:, None]) & (positions < (second + segment)[:, None])
    rows, cols = in_second.nonzero(as_tuple=True)
    offset = second - first
    tokens[rows, cols] = tokens[rows, cols - offset[rows]]
    predictable = in_second & (positions > second[:, None])
    first_copy = (positions > first[:, None]) & (positions < (first + segment)[:, None])
    source = torch.where(predictable, positions - offset[:, None], -1)
    return RepeatedSegments(tokens, predictable, first_copy, source, first, second, segment)
