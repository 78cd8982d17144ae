"""Is attention explanation? Measurements, not opinions.

- :func:`rank_agreement` -- Kendall tau, Spearman and top-k overlap between
  two token scores;
- :func:`explanation_table` -- for each text, raw attention, rollout and
  gradient-weighted attention against gradient x input and leave-one-out
  (and gradient x input against leave-one-out, the reference);
- :func:`permutation_test` and :func:`uniform_attention_test` -- how much the
  output changes when attention is shuffled (Jain and Wallace, 2019,
  arXiv:1902.10186) or made uniform (Wiegreffe and Pinter, 2019,
  arXiv:1908.04626);
- :func:`evidence_scores` -- scores against ground truth (the evidence words
  of :func:`attnlib.data.synthetic.sentiment_corpus`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import pandas as pd
import torch
from torch import Tensor, nn

from .._checks import check_positive_int
from ..attention import MultiHeadAttention
from .maps import capture_attention
from .relevance import (
    attention_rollout,
    gradient_weighted_attention,
    gradient_x_input,
    leave_one_out,
    pooled_relevance,
)

__all__ = [
    "rank_agreement",
    "token_scores",
    "explanation_table",
    "intervene_attention",
    "permutation_test",
    "uniform_attention_test",
    "evidence_scores",
    "word_token_positions",
    "evidence_token_positions",
]


def _as_1d(x, name: str) -> Tensor:
    t = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    if t.numel() < 2:
        raise ValueError(f"{name}: expected at least 2 scores, got {t.numel()}")
    return t


def rank_agreement(a, b, *, k: int = 3) -> dict[str, float]:
    """How much two scorings of the same tokens agree.

    Returns
    -------
    dict
        ``kendall`` and ``spearman`` rank correlations (scipy; in [-1, 1],
        NaN when a scoring is constant) and ``top_k``: the share of the ``k``
        highest-scored tokens of ``a`` that are among the ``k`` highest of
        ``b``.
    """
    from scipy.stats import kendalltau, spearmanr

    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"b: expected {a.numel()} scores like a, got {b.numel()}")
    check_positive_int(k, "k")
    k = min(k, a.numel())
    top_a, top_b = set(a.topk(k).indices.tolist()), set(b.topk(k).indices.tolist())
    constant = bool((a == a[0]).all() or (b == b[0]).all())
    nan = float("nan")
    return {
        "kendall": nan if constant else float(kendalltau(a.numpy(), b.numpy()).statistic),
        "spearman": nan if constant else float(spearmanr(a.numpy(), b.numpy()).statistic),
        "top_k": len(top_a & top_b) / k,
    }


def token_scores(model: nn.Module, tokens: Tensor, *, pad_idx: int = 0) -> dict[str, Tensor]:
    """Every explanation of one classifier input, one score per real token.

    ``attention`` (last layer, heads averaged, pooled like the model),
    ``rollout``, ``gradient_attention``
    (:func:`~attnlib.interpret.relevance.gradient_weighted_attention`),
    ``gradient_x_input`` and ``leave_one_out``.

    Shape
    -----
    - tokens: ``(1, L)``; each score: ``(n,)`` for the ``n`` non-padding tokens
    """
    keep = tokens[0] != pad_idx
    pooling = getattr(model, "pooling", "mean")
    maps = capture_attention(model, tokens)
    last = maps["encoder"][-1].mean(0).double()  # (L, L)
    scores = {
        "attention": pooled_relevance(last, pooling=pooling, mask=keep),
        "rollout": pooled_relevance(attention_rollout(maps), pooling=pooling, mask=keep),
        "gradient_attention": pooled_relevance(
            gradient_weighted_attention(model, tokens), pooling=pooling, mask=keep
        ),
        "gradient_x_input": gradient_x_input(model, tokens),
        "leave_one_out": leave_one_out(model, tokens, pad_idx=pad_idx),
    }
    return {name: s[keep] for name, s in scores.items()}


#: (explanation, reference) pairs compared by :func:`explanation_table`.
COMPARISONS = tuple(
    (e, r)
    for r in ("gradient_x_input", "leave_one_out")
    for e in ("attention", "rollout", "gradient_attention")
) + (("gradient_x_input", "leave_one_out"),)


def explanation_table(
    model: nn.Module, tokenizer, texts: Sequence[str], *, k: int = 3
) -> pd.DataFrame:
    """Agreement of every explanation with the references, text by text.

    Returns
    -------
    pandas.DataFrame
        One row per (text, explanation, reference) with ``kendall``,
        ``spearman`` and ``top_k`` (see :func:`rank_agreement`); average it
        with ``groupby(["explanation", "reference"]).mean(numeric_only=True)``.
    """
    rows = []
    for t, text in enumerate(texts):
        tokens = torch.tensor([tokenizer.encode(text)])
        scores = token_scores(model, tokens, pad_idx=tokenizer.pad_idx)
        for explanation, reference in COMPARISONS:
            agreement = rank_agreement(scores[explanation], scores[reference], k=k)
            rows.append({"text": t, "explanation": explanation, "reference": reference})
            rows[-1].update(agreement)
    return pd.DataFrame(rows)


@contextmanager
def intervene_attention(model: nn.Module, fn: Callable[[Tensor], Tensor]):
    """Inside the block, every :class:`~attnlib.attention.MultiHeadAttention`
    of ``model`` attends with ``fn(weights)`` instead of its weights
    (``(B, H, Lq, Lk)`` -> same shape)."""
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not modules:
        raise TypeError(f"model: expected MultiHeadAttention layers in {type(model).__name__}")
    for m in modules:
        m.weights_hook = fn
    try:
        yield modules
    finally:
        for m in modules:
            m.weights_hook = None


def _shuffle_allowed(weights: Tensor, generator: torch.Generator) -> Tensor:
    """Permute each row's weights among the keys that carry weight (the
    allowed keys: masked keys have exactly zero)."""
    allowed = weights > 0
    n = weights.shape[-1]
    keys = torch.rand(weights.shape, generator=generator).to(weights.device)
    order = keys.masked_fill(~allowed, float("inf")).argsort(-1)  # allowed keys, shuffled
    positions = torch.arange(n, device=weights.device, dtype=weights.dtype).expand_as(weights)
    slots = positions.masked_fill(~allowed, float("inf")).argsort(-1)  # allowed keys, in order
    # the i-th allowed key (in order) receives the weight of the i-th shuffled one
    return torch.zeros_like(weights).scatter(-1, slots, weights.gather(-1, order))


def _uniform_allowed(weights: Tensor) -> Tensor:
    allowed = (weights > 0).to(weights.dtype)
    return allowed / allowed.sum(-1, keepdim=True).clamp_min(1)


@torch.no_grad()
def permutation_test(
    model: nn.Module, tokens: Tensor, *, permutations: int = 20, seed: int = 0
) -> pd.DataFrame:
    """Shuffle every attention row among its allowed keys (all layers and heads
    at once) and measure how the prediction changes (Jain and Wallace, 2019).

    Returns
    -------
    pandas.DataFrame
        One row per permutation: ``tvd`` (total variation distance between the
        original and the permuted output distributions, in [0, 1]) and
        ``flipped`` (the predicted class changed).

    Shape
    -----
    - tokens: ``(1, L)``
    """
    check_positive_int(permutations, "permutations")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        base = torch.softmax(model(tokens).double(), -1)
        rows = []
        with intervene_attention(model, lambda w: _shuffle_allowed(w, generator)):
            for _ in range(permutations):
                p = torch.softmax(model(tokens).double(), -1)
                tvd = 0.5 * float((p - base).abs().sum(-1).mean())
                flipped = bool((p.argmax(-1) != base.argmax(-1)).any())
                rows.append({"tvd": tvd, "flipped": flipped})
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


@torch.no_grad()
def uniform_attention_test(model: nn.Module, loader) -> dict[str, float]:
    """Accuracy with the learned attention and with every attention row made
    uniform over its allowed keys, at test time: if the two are close, the
    model does not need its learned weights. (Wiegreffe and Pinter, 2019,
    go further and train a model whose attention is frozen uniform.)

    Parameters
    ----------
    loader : iterable of batches
        ``(inputs, targets, ...)`` as from :func:`attnlib.data.datasets.make_loader`.

    Returns
    -------
    dict
        ``accuracy``, ``uniform_accuracy`` and ``agreement`` (share of
        identical predictions).
    """
    was_training = model.training
    model.eval()
    correct = uniform_correct = same = total = 0
    try:
        for batch in loader:
            inputs, targets = batch[0], batch[1]
            pred = model(inputs).argmax(-1)
            with intervene_attention(model, _uniform_allowed):
                upred = model(inputs).argmax(-1)
            correct += int((pred == targets).sum())
            uniform_correct += int((upred == targets).sum())
            same += int((pred == upred).sum())
            total += targets.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("loader: expected at least one batch, got none")
    return {
        "accuracy": correct / total,
        "uniform_accuracy": uniform_correct / total,
        "agreement": same / total,
    }


def evidence_scores(scores, evidence: Sequence[int]) -> dict[str, float]:
    """Compare token scores with the known evidence tokens.

    Returns
    -------
    dict
        ``precision``: the share of the ``len(evidence)`` top-scored tokens
        that are evidence (precision at k = recall at k); ``mass``: the share
        of the (non-negative part of the) total score on evidence tokens;
        ``chance``: the precision a random ranking gets on average
        (``len(evidence) / n``).
    """
    s = _as_1d(scores, "scores")
    ev = sorted(set(int(e) for e in evidence))
    if not ev:
        raise ValueError("evidence: expected at least one evidence position, got none")
    if ev[0] < 0 or ev[-1] >= s.numel():
        raise ValueError(f"evidence: expected positions in [0, {s.numel()}), got {ev}")
    top = set(s.topk(len(ev)).indices.tolist())
    positive = s.clamp_min(0)
    total = float(positive.sum())
    return {
        "precision": len(top & set(ev)) / len(ev),
        "mass": float(positive[ev].sum()) / total if total > 0 else float("nan"),
        "chance": len(ev) / s.numel(),
    }


def word_token_positions(text: str, tokenizer) -> list[list[int]]:
    """For each white-space word of ``text``, the positions of its tokens in
    ``tokenizer.encode(text)`` (a word such as ``"good,"`` gives two tokens).

    The tokenizers of :mod:`attnlib.data.text` never join across white space,
    so tokenizing the words one by one gives the same tokens in order; this
    is checked.
    """
    spans, start = [], 0
    for word in text.split():
        n = len(tokenizer.encode(word))
        spans.append(list(range(start, start + n)))
        start += n
    if start != len(tokenizer.encode(text)):
        raise ValueError(
            f"text: its words tokenize to {start} tokens one by one but to "
            f"{len(tokenizer.encode(text))} together; cannot map words to tokens"
        )
    return spans


def evidence_token_positions(text: str, word_positions: Sequence[int], tokenizer) -> list[int]:
    """Token positions of the evidence words (white-space word positions, as
    recorded by :func:`attnlib.data.synthetic.sentiment_corpus`), without
    attached punctuation tokens."""
    spans = word_token_positions(text, tokenizer)
    tokens = tokenizer.tokenize(text)
    out = []
    for w in word_positions:
        out += [p for p in spans[int(w)] if any(ch.isalnum() for ch in tokens[p])]
    return out
