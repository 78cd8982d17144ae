"""From tables to batches: stratified splits, datasets of token ids, dynamic
padding with masks, and data loaders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .._checks import check_positive_int
from ..masks import padding_mask

__all__ = [
    "stratified_split",
    "pad_sequences",
    "Batch",
    "Collate",
    "TextClassificationDataset",
    "TranslationDataset",
    "make_loader",
]


def stratified_split(
    df: pd.DataFrame,
    *,
    label_column: str | None = "label",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle and split into train, validation and test tables.

    With ``label_column``, every split keeps the class proportions of ``df``
    (scikit-learn's ``train_test_split`` with ``stratify``); ``None`` splits
    without stratification (for example for translation pairs).

    Returns
    -------
    train, validation, test : pandas.DataFrame
        Each with a fresh 0..n-1 index (the rows keep their own columns, such
        as an ``id``).
    """
    from sklearn.model_selection import train_test_split

    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"fractions: expected three positive numbers summing to 1 (train, validation, "
            f"test), got {tuple(fractions)}"
        )
    if label_column is not None and label_column not in df.columns:
        raise ValueError(
            f"label_column: expected a column of df ({list(df.columns)}), got {label_column!r}"
        )
    train_f, val_f, test_f = fractions
    strat = None if label_column is None else df[label_column]
    train, rest = train_test_split(df, train_size=train_f, stratify=strat, random_state=seed)
    strat = None if label_column is None else rest[label_column]
    val, test = train_test_split(
        rest, train_size=val_f / (val_f + test_f), stratify=strat, random_state=seed
    )
    return tuple(part.reset_index(drop=True) for part in (train, val, test))


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_idx: int = 0, length: int | None = None
) -> Tensor:
    """Stack sequences of ids into one tensor, padded on the right with
    ``pad_idx`` to the longest one (dynamic padding) or to ``length``.

    Shape
    -----
    - output: ``(len(sequences), max(len(s)))`` or ``(len(sequences), length)``
    """
    if len(sequences) == 0:
        raise ValueError("sequences: expected at least one sequence, got none")
    longest = max(len(s) for s in sequences)
    if length is None:
        length = longest
    elif length < longest:
        raise ValueError(
            f"length: expected at least the longest sequence ({longest}), got {length}"
        )
    out = torch.full((len(sequences), length), pad_idx, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


class Batch(NamedTuple):
    """One padded batch. :class:`attnlib.training.Trainer` reads ``inputs`` and
    ``targets``; ``mask`` and ``lengths`` are there to look at and to pass to
    attention.

    Shape
    -----
    - inputs: ``(B, L)`` token ids, padded
    - targets: ``(B,)`` class ids, or ``(B, T)`` target ids (BOS ... EOS)
    - mask: ``(B, 1, 1, L)`` boolean, ``True`` at real tokens (keys that may
      be attended, :func:`attnlib.masks.padding_mask`)
    - lengths: ``(B,)`` number of real tokens per input
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor
    lengths: Tensor


class Collate:
    """The ``collate_fn`` of a :class:`~torch.utils.data.DataLoader`: pads
    every batch to its own longest input (and target), and builds the mask.

    Parameters
    ----------
    pad_idx : int
    """

    def __init__(self, pad_idx: int = 0) -> None:
        self.pad_idx = pad_idx

    def __call__(self, items: Sequence[tuple[Sequence[int], object]]) -> Batch:
        inputs = pad_sequences([x for x, _ in items], self.pad_idx)  # (B, L)
        ys = [y for _, y in items]
        if isinstance(ys[0], int):
            targets = torch.tensor(ys, dtype=torch.long)  # (B,)
        else:
            targets = pad_sequences(ys, self.pad_idx)  # (B, T)
        lengths = torch.tensor([len(x) for x, _ in items])
        return Batch(inputs, targets, padding_mask(inputs, self.pad_idx), lengths)


def _truncate(ids: list[int], max_length: int | None, keep_last: bool) -> list[int]:
    if max_length is None or len(ids) <= max_length:
        return ids
    return ids[: max_length - 1] + ids[-1:] if keep_last else ids[:max_length]


class TextClassificationDataset(Dataset):
    """Texts and their class ids, tokenized once.

    Parameters
    ----------
    texts : sequence of str
    labels : sequence of int
        Class ids (see scikit-learn's ``LabelEncoder``).
    tokenizer : attnlib.data.text.WordTokenizer or attnlib.data.text.SubwordTokenizer
    max_length : int, optional
        Longer texts are truncated to their first ``max_length`` tokens.
    """

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        tokenizer,
        *,
        max_length: int | None = None,
    ) -> None:
        texts, labels = list(texts), [int(y) for y in labels]
        if len(texts) != len(labels):
            raise ValueError(
                f"labels: expected one label per text ({len(texts)}), got {len(labels)}"
            )
        if max_length is not None:
            check_positive_int(max_length, "max_length")
        self.tokenizer, self.pad_idx = tokenizer, tokenizer.pad_idx
        self.ids = [_truncate(tokenizer.encode(t), max_length, False) for t in texts]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.labels[i]


class TranslationDataset(Dataset):
    """Source and target sentences as ids; targets get BOS and EOS (the
    decoder reads ``target[:-1]`` and predicts ``target[1:]``).

    Parameters
    ----------
    sources, targets : sequence of str
    src_tokenizer, tgt_tokenizer : object
        Tokenizers of :mod:`attnlib.data.text`.
    max_length : int, optional
        Truncate longer sources (and targets, keeping their EOS).
    """

    def __init__(
        self,
        sources: Sequence[str],
        targets: Sequence[str],
        src_tokenizer,
        tgt_tokenizer,
        *,
        max_length: int | None = None,
    ) -> None:
        sources, targets = list(sources), list(targets)
        if len(sources) != len(targets):
            raise ValueError(
                f"targets: expected one target per source ({len(sources)}), got {len(targets)}"
            )
        self.pad_idx = src_tokenizer.pad_idx
        self.src = [_truncate(src_tokenizer.encode(s), max_length, False) for s in sources]
        self.tgt = [
            _truncate(tgt_tokenizer.encode(t, add_bos=True, add_eos=True), max_length, True)
            for t in targets
        ]

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.src[i], self.tgt[i]


def make_loader(
    dataset: TextClassificationDataset | TranslationDataset,
    batch_size: int = 32,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A :class:`~torch.utils.data.DataLoader` of :class:`Batch` objects, with
    dynamic padding; with ``shuffle``, the order is drawn from its own
    generator seeded with ``seed`` (reproducible, independent of the global
    seed)."""
    check_positive_int(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=Collate(dataset.pad_idx),
        generator=generator,
    )
