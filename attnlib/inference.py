"""Inference on raw strings: class predictions and translations.

Both functions take the tokenizers of :mod:`attnlib.data.text` (or anything
with the same ``tokenize``/``encode``/``decode`` interface) and make two
behaviours explicit:

- **unknown words** become the ``<unk>`` token; they are reported (the
  ``unknown`` column of :func:`predict`), never silently dropped;
- **over-long input** (more tokens than ``max_length``, by default the
  model's number of positions) is cut to its first ``max_length`` tokens
  with ``overflow="truncate"`` (reported in the ``truncated`` column and by
  a warning), or rejected with ``overflow="error"``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from ._checks import check_choice, check_positive_int
from .data.datasets import pad_sequences
from .models import EncoderDecoderModel

__all__ = ["predict", "translate", "evaluate_translation", "encode_texts", "model_max_length"]


def _as_list(texts: str | Sequence[str]) -> list[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts: expected strings, got {type(t).__name__}")
    if not texts:
        raise ValueError("texts: expected at least one text, got none")
    return texts


def model_max_length(model: nn.Module) -> int | None:
    """The number of positions a model's positional tables hold (``None`` for
    a model without one, such as a recurrent :class:`~attnlib.seq2seq.Seq2Seq`)."""
    return getattr(model, "max_len", None)


def encode_texts(
    texts: Sequence[str],
    tokenizer,
    *,
    max_length: int | None,
    overflow: str = "truncate",
    add_bos: bool = False,
    add_eos: bool = False,
) -> tuple[list[list[int]], list[list[str]], list[bool]]:
    """Token ids of each text (cut to ``max_length``), its unknown words, and
    whether it was truncated. See the module docstring for ``overflow``."""
    check_choice(overflow, "overflow", ("truncate", "error"))
    ids, unknown, truncated = [], [], []
    for i, text in enumerate(texts):
        tokens = tokenizer.tokenize(text)
        core = tokenizer.encode(text)
        unknown.append([t for t, k in zip(tokens, core, strict=True) if k == tokenizer.unk_idx])
        room = None if max_length is None else max_length - add_bos - add_eos
        cut = room is not None and len(core) > room
        if cut and overflow == "error":
            raise ValueError(
                f"texts[{i}]: expected at most {room} tokens (max_length={max_length}), "
                f"got {len(core)}; pass overflow='truncate' to keep the first {room}"
            )
        core = core[:room] if cut else core
        ids.append([tokenizer.bos_idx] * add_bos + core + [tokenizer.eos_idx] * add_eos)
        truncated.append(cut)
    if any(truncated):
        warnings.warn(
            f"{sum(truncated)} text(s) longer than max_length={max_length} tokens were truncated",
            stacklevel=3,
        )
    return ids, unknown, truncated


@torch.no_grad()
def predict(
    model: nn.Module,
    tokenizer,
    texts: str | Sequence[str],
    *,
    classes: Sequence[str] | None = None,
    max_length: int | None = None,
    overflow: str = "truncate",
    batch_size: int = 64,
) -> pd.DataFrame:
    """Classify raw texts with a classifier such as
    :class:`~attnlib.transformer.EncoderClassifier`.

    Parameters
    ----------
    model : torch.nn.Module
        Maps token ids ``(B, L)`` to logits ``(B, num_classes)``.
    tokenizer
        The tokenizer the model was trained with.
    texts : str or sequence of str
    classes : sequence of str, optional
        Class names in id order (e.g. ``LabelEncoder().classes_``).
    max_length : int, optional
        Default: the model's number of positions.
    overflow : {"truncate", "error"}
    batch_size : int

    Returns
    -------
    pandas.DataFrame
        One row per text: ``text``, ``label``, ``confidence`` (its
        probability), one ``p(<class>)`` column per class, ``unknown`` (the
        unknown words) and ``truncated``.
    """
    texts = _as_list(texts)
    check_positive_int(batch_size, "batch_size")
    max_length = model_max_length(model) if max_length is None else max_length
    ids, unknown, truncated = encode_texts(
        texts, tokenizer, max_length=max_length, overflow=overflow
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs = []
    for start in range(0, len(ids), batch_size):
        batch = pad_sequences(ids[start : start + batch_size], tokenizer.pad_idx).to(device)
        probs.append(torch.softmax(model(batch).float(), -1).cpu())  # (B, C)
    model.train(was_training)
    p = torch.cat(probs)  # (N, C)
    if classes is None:
        classes = [str(c) for c in range(p.shape[1])]
    classes = [str(c) for c in classes]
    if len(classes) != p.shape[1]:
        raise ValueError(
            f"classes: expected {p.shape[1]} names (the model's outputs), got {len(classes)}"
        )
    conf, idx = p.max(-1)
    out = pd.DataFrame({"text": texts, "label": [classes[i] for i in idx.tolist()]})
    out["confidence"] = conf.numpy()
    for j, name in enumerate(classes):
        out[f"p({name})"] = p[:, j].numpy()
    out["unknown"] = [" ".join(u) for u in unknown]
    out["truncated"] = truncated
    return out


@torch.no_grad()
def translate(
    model: nn.Module,
    src_tokenizer,
    tgt_tokenizer,
    texts: str | Sequence[str],
    *,
    beam_size: int = 1,
    max_new_tokens: int | None = None,
    max_length: int | None = None,
    overflow: str = "truncate",
) -> list[str]:
    """Translate raw sentences with a :class:`~attnlib.transformer.Seq2SeqTransformer`
    or a recurrent :class:`~attnlib.seq2seq.Seq2Seq`.

    Parameters
    ----------
    beam_size : int
        1: greedy decoding (:func:`attnlib.decoding.greedy_decode`), more:
        :func:`attnlib.decoding.beam_search`.
    max_new_tokens : int, optional
        Output tokens at most; default twice the longest input plus 10.
    max_length, overflow
        For the source, as in :func:`predict`.

    Returns
    -------
    list of str
        One translation per text (unknown source words are translated as
        ``<unk>`` inputs; the output never contains padding).
    """
    from .decoding import beam_search, greedy_decode

    if not isinstance(model, EncoderDecoderModel):
        raise TypeError(
            f"model: expected a Seq2SeqTransformer or a Seq2Seq, got {type(model).__name__}"
        )
    texts = _as_list(texts)
    check_positive_int(beam_size, "beam_size")
    max_length = model_max_length(model) if max_length is None else max_length
    ids, _, _ = encode_texts(texts, src_tokenizer, max_length=max_length, overflow=overflow)
    if max_new_tokens is None:
        max_new_tokens = 2 * max(len(i) for i in ids) + 10
    tgt_max = model_max_length(model)
    if tgt_max is not None:
        max_new_tokens = min(max_new_tokens, tgt_max - 1)
    device = next(model.parameters()).device
    src = pad_sequences(ids, src_tokenizer.pad_idx).to(device)  # (N, S)
    was_training = model.training
    model.eval()
    bos, eos = tgt_tokenizer.bos_idx, tgt_tokenizer.eos_idx
    if beam_size == 1:
        out = greedy_decode(model, src, max_new_tokens, bos, eos)
    else:
        out, _ = beam_search(model, src, max_new_tokens, bos, eos, beam_size=beam_size)
    model.train(was_training)
    return [tgt_tokenizer.decode(row.tolist()) for row in out]


def evaluate_translation(
    model: nn.Module,
    src_tokenizer,
    tgt_tokenizer,
    sources: Sequence[str],
    references: Sequence[str],
    beam_sizes: Sequence[int] = (1, 4),
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Translate a test set with several decoders and score each one.

    Every beam size runs :func:`translate` on ``sources``; the outputs are
    scored against ``references`` with corpus BLEU (sacrebleu, through
    :func:`attnlib.metrics.corpus_bleu`) and the exact-match rate (the share of
    sentences translated without a single wrong word), and timed.

    Parameters
    ----------
    model, src_tokenizer, tgt_tokenizer
        As for :func:`translate`.
    sources, references : sequence of str
        The test sentences and their reference translations.
    beam_sizes : sequence of int
        1 is greedy decoding, more is beam search.

    Returns
    -------
    table : pandas.DataFrame
        One row per decoder (``"greedy"``, ``"beam search, k=4"``, ...), columns
        ``BLEU`` (0-100), ``exact match`` (0-1) and ``seconds``.
    outputs : dict of str to list of str
        Each decoder's translations, keyed like the table's rows.
    """
    from .metrics import corpus_bleu

    sources, references = _as_list(sources), _as_list(references)
    if len(sources) != len(references):
        raise ValueError(
            f"references: expected one per source ({len(sources)}), got {len(references)}"
        )
    rows, outputs = [], {}
    for beam_size in beam_sizes:
        name = "greedy" if beam_size == 1 else f"beam search, k={beam_size}"
        start = time.perf_counter()
        outputs[name] = translate(
            model, src_tokenizer, tgt_tokenizer, sources, beam_size=beam_size
        )
        seconds = time.perf_counter() - start
        exact = sum(o == r for o, r in zip(outputs[name], references, strict=True))
        rows.append(
            {
                "decoder": name,
                "BLEU": corpus_bleu(outputs[name], references),
                "exact match": exact / len(references),
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows).set_index("decoder"), outputs
