"""Algorithmic sequence-to-sequence tasks whose correct alignment is known.

Each task maps a source sequence of symbols to a target sequence, and for
every target position records which source position it copies: the
cross-attention a model *should* learn. That makes the learned attention
checkable, not just viewable.

Token ids: ``0`` padding, ``1`` BOS, ``2`` EOS, symbols from ``3``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_choice, check_positive_int, check_rank

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "FIRST_SYMBOL",
    "TASKS",
    "algorithmic_batch",
    "decoded_correct",
    "exact_match",
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
