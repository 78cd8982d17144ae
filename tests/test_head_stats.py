"""attnlib.interpret.stats: head statistics over a padded batch of sentences, checked
against loops over the sentences and scipy (scipy.stats.entropy,
scipy.spatial.distance.jensenshannon)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from attnlib.interpret.stats import (
    attention_entropy,
    attention_to_tokens,
    head_js_divergence,
    offset_attention,
)

LENGTHS = [5, 3, 7, 7]  # real tokens per sentence; the batch is padded to 7
LAYERS, HEADS = 2, 3


def _batch(seed: int = 0, peaked: bool = False):
    """Random attention ``(B, layers, H, L, L)`` whose rows are distributions over the
    real keys (zero on padding), and the padding mask ``(B, L)`` (ints, as a tokenizer's)."""
    g = torch.Generator().manual_seed(seed)
    b, length = len(LENGTHS), max(LENGTHS)
    scores = torch.randn(b, LAYERS, HEADS, length, length, generator=g, dtype=torch.float64)
    if peaked:
        scores = scores * 4
    mask = torch.zeros(b, length, dtype=torch.long)
    for s, n in enumerate(LENGTHS):
        mask[s, :n] = 1
    scores = scores.masked_fill(mask[:, None, None, None, :] == 0, -math.inf)
    weights = scores.softmax(-1)
    return weights, mask


def _rows(weights, mask, s):
    """The real rows and keys of sentence ``s``: ``(layers, H, n, n)`` as numpy."""
    n = int(mask[s].sum())
    return weights[s, :, :, :n, :n].numpy()


def test_attention_to_tokens_matches_a_loop():
    weights, mask = _batch()
    keys = torch.zeros_like(mask, dtype=torch.bool)
    keys[:, 0] = True  # the first token ("[CLS]")
    keys[0, 3] = keys[2, 5] = True  # and a few others
    got = attention_to_tokens(weights, keys, mask)
    per_sentence = []
    for s in range(len(LENGTHS)):
        a = _rows(weights, mask, s)
        sel = keys[s, : LENGTHS[s]].numpy()
        per_sentence.append(a[..., sel].sum(-1).mean(-1))  # mean over the sentence's queries
    want = np.mean(per_sentence, axis=0)
    assert got.shape == (LAYERS, HEADS)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    # all keys: every row sums to 1
    everything = attention_to_tokens(weights, mask.bool(), mask)
    np.testing.assert_allclose(everything.numpy(), 1.0, atol=1e-12)


def test_attention_to_tokens_only_some_queries():
    weights, mask = _batch(1)
    keys = mask.bool().clone()
    keys[:, 1:] = False  # key 0
    first_row = torch.zeros_like(keys)
    first_row[:, 0] = True
    got = attention_to_tokens(weights, keys, mask, queries=first_row)
    want = weights[:, :, :, 0, 0].mean(0)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("offset", [-1, 1, 2])
def test_offset_attention_matches_a_loop(offset):
    weights, mask = _batch(2, peaked=True)
    mean_w, share = offset_attention(weights, offset, mask)
    want_w, want_share = [], []
    for s, n in enumerate(LENGTHS):
        a = _rows(weights, mask, s)
        queries = [i for i in range(n) if 0 <= i + offset < n]
        want_w.append(np.mean([a[:, :, i, i + offset] for i in queries], axis=0))
        want_share.append(np.mean([a[:, :, i].argmax(-1) == i + offset for i in queries], axis=0))
    np.testing.assert_allclose(mean_w.numpy(), np.mean(want_w, axis=0), rtol=1e-12)
    np.testing.assert_allclose(share.numpy(), np.mean(want_share, axis=0), rtol=1e-12)
    assert share.max() > 0  # peaked maps: some rows hit the offset, so the test means something


def test_offset_attention_on_a_diagonal_head():
    weights, mask = _batch(3)
    length = weights.shape[-1]
    weights[:, 0, 0] = torch.eye(length, dtype=weights.dtype).roll(1, dims=0)  # i -> i - 1
    mean_w, share = offset_attention(weights, -1, mask)
    assert mean_w[0, 0] == pytest.approx(1.0) and share[0, 0] == pytest.approx(1.0)
    assert mean_w[1, 2] < 0.9


def test_attention_entropy_matches_scipy():
    weights, mask = _batch(4)
    got = attention_entropy(weights, mask)
    per_sentence = [
        scipy_entropy(_rows(weights, mask, s), axis=-1).mean(-1) for s in range(len(LENGTHS))
    ]
    np.testing.assert_allclose(got.numpy(), np.mean(per_sentence, axis=0), rtol=1e-10)
    uniform = torch.ones_like(weights) * mask[:, None, None, None, :]
    uniform = uniform / uniform.sum(-1, keepdim=True)
    expected = np.mean([math.log(n) for n in LENGTHS])
    np.testing.assert_allclose(attention_entropy(uniform, mask).numpy(), expected, rtol=1e-12)


def test_head_js_divergence_matches_scipy():
    weights, mask = _batch(5)
    got = head_js_divergence(weights, mask)
    n = LAYERS * HEADS
    assert got.shape == (n, n)
    flat = [_rows(weights, mask, s).reshape(n, LENGTHS[s], LENGTHS[s]) for s in range(4)]
    want = np.zeros((n, n))
    for a in flat:
        for h in range(n):
            for g in range(n):
                js = [jensenshannon(a[h, i], a[g, i]) ** 2 for i in range(a.shape[1])]
                want[h, g] += np.mean(js) / len(flat)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-8, atol=1e-12)
    assert (got.diagonal() == 0).all()
    assert got.max() <= math.log(2) and got[0, 1] > 0


def test_head_js_divergence_float32_and_without_mask():
    weights, mask = _batch(6)
    full = weights[2:]  # two sentences of 7 real tokens: no padding
    a = head_js_divergence(full)
    b = head_js_divergence(full, mask[2:])
    c = head_js_divergence(full.float(), mask[2:])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-6)


def test_head_js_divergence_identical_heads_are_at_zero():
    weights, mask = _batch(7)
    weights[:, 1, 2] = weights[:, 0, 1]
    d = head_js_divergence(weights, mask)
    assert d[1, HEADS + 2] == pytest.approx(0, abs=1e-12)
    assert d[0, HEADS + 2] > 1e-3


def test_checks_name_the_argument():
    weights, mask = _batch()
    with pytest.raises(ValueError, match="mask"):
        attention_entropy(weights, mask[:, :3])
    with pytest.raises(ValueError, match="weights"):
        attention_entropy(weights[..., :4], mask)
    with pytest.raises(ValueError, match="keys"):
        attention_to_tokens(weights, mask[:2].bool(), mask)
    with pytest.raises(TypeError, match="offset"):
        offset_attention(weights, 1.0, mask)
