"""attnlib's masks and ALiBi written for PyTorch's flex_attention
(:mod:`attnlib.efficient.flex`), against attnlib's own dense forms
(:func:`attnlib.functional.scaled_dot_product_attention` with the masks of
:mod:`attnlib.masks` and the bias of :func:`attnlib.positional.alibi_bias`)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import attnlib.functional as AF
from attnlib.efficient import flex as X
from attnlib.masks import causal_mask, padding_mask, sliding_window_mask
from attnlib.positional import alibi_bias

pytestmark = pytest.mark.skipif(
    not X.FLEX_AVAILABLE, reason="this PyTorch has no torch.nn.attention.flex_attention"
)

TOL = {torch.float32: 2e-6, torch.float64: 1e-12}
DTYPES = [torch.float32, torch.float64]


def _qkv(dtype, b=2, h=4, lq=37, lk=None, d=16, hkv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    lk = lq if lk is None else lk
    hkv = h if hkv is None else hkv
    q = torch.randn(b, h, lq, d, generator=g, dtype=dtype)
    k = torch.randn(b, hkv, lk, d, generator=g, dtype=dtype)
    v = torch.randn(b, hkv, lk, d + 3, generator=g, dtype=dtype)
    return q, k, v


def _close(a, b, dtype):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= TOL[dtype]


def _lse(q, k, mask=None, bias=None, scale=None):
    scores = q @ k.transpose(-2, -1) * (scale or q.shape[-1] ** -0.5)  # (B, H, Lq, Lk)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.logsumexp(scores, -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_mask_equals_sdpa_and_lse(dtype):
    q, k, v = _qkv(dtype, lk=29)
    out, lse = X.flex_attention(q, k, v, scale=0.3)
    ref, _ = AF.scaled_dot_product_attention(q, k, v, scale=0.3)
    _close(out, ref, dtype)
    _close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), dtype)
    _close(lse, _lse(q, k, scale=0.3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_size", [8, 128])
def test_causal(dtype, block_size):
    q, k, v = _qkv(dtype)
    out, lse = X.flex_attention(q, k, v, mask_mod=X.causal_mask_mod, block_size=block_size)
    ref, _ = AF.scaled_dot_product_attention(q, k, v, is_causal=True)
    _close(out, ref, dtype)
    _close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), dtype)
    _close(lse, _lse(q, k, causal_mask(37)), dtype)
    dense = X.mask_from_mod(X.causal_mask_mod, 1, 1, 37)
    assert torch.equal(dense[0, 0], causal_mask(37))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [0, 3, 50])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window(dtype, window, causal):
    q, k, v = _qkv(dtype, lk=41, seed=1)
    mod = X.sliding_window_mask_mod(window, causal=causal)
    out, _ = X.flex_attention(q, k, v, mask_mod=mod, block_size=16)
    band = sliding_window_mask(37, 41, window=window, causal=causal)
    assert torch.equal(X.mask_from_mod(mod, 1, 1, 37, 41)[0, 0], band)
    ref, _ = AF.scaled_dot_product_attention(q, k, v, attn_mask=band)
    _close(out, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_padding_and_causal_with_empty_rows(dtype):
    q, k, v = _qkv(dtype, seed=2)
    tokens = torch.randint(1, 9, (2, 37), generator=torch.Generator().manual_seed(3))
    tokens[0, 30:] = 0  # padding at the end
    tokens[1, :2] = 0  # padding first: queries 0 and 1 have no allowed causal key
    keep = tokens != 0
    mod = X.and_masks(X.padding_mask_mod(keep), X.causal_mask_mod)
    out, lse = X.flex_attention(q, k, v, mask_mod=mod)
    ref, _ = AF.scaled_dot_product_attention(
        q, k, v, attn_mask=padding_mask(tokens), is_causal=True
    )
    _close(out, ref, dtype)
    assert (out[1, :, :2] == 0).all()  # attnlib's convention: zeros, not NaN
    assert torch.isneginf(lse[1, :, :2]).all() and lse[:, :, 2:].isfinite().all()
    dense = X.mask_from_mod(mod, 2, 1, 37)
    assert torch.equal(dense, padding_mask(tokens) & causal_mask(37))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_heads", [4, 6])
def test_alibi(dtype, num_heads):
    q, k, v = _qkv(dtype, h=num_heads, seed=4)
    out, lse = X.flex_attention(q, k, v, score_mod=X.alibi_score_mod(num_heads))
    bias = alibi_bias(num_heads, 37, dtype=dtype)  # (H, Lq, Lk)
    ref, _ = AF.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    _close(out, ref, dtype)
    _close(lse, _lse(q, k, bias=bias), dtype)
    # with the causal mask, as in a decoder
    out, _ = X.flex_attention(
        q, k, v, score_mod=X.alibi_score_mod(num_heads), mask_mod=X.causal_mask_mod
    )
    ref, _ = AF.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=True)
    _close(out, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_alibi_offset_for_queries_after_cached_keys(dtype):
    """Fewer queries than keys: queries are the last key positions, as in
    ``alibi_bias(H, Lq, Lk)``."""
    q, k, v = _qkv(dtype, lq=5, lk=23, seed=5)
    out, _ = X.flex_attention(q, k, v, score_mod=X.alibi_score_mod(4, offset=18))
    ref, _ = AF.scaled_dot_product_attention(q, k, v, attn_mask=alibi_bias(4, 5, 23, dtype=dtype))
    _close(out, ref, dtype)
    wrong, _ = X.flex_attention(q, k, v, score_mod=X.alibi_score_mod(4))
    assert (wrong - ref).abs().max() > 1e-3  # the offset matters


@pytest.mark.parametrize("dtype", DTYPES)
def test_grouped_query(dtype):
    q, k, v = _qkv(dtype, h=6, hkv=2, seed=6)
    out, _ = X.flex_attention(q, k, v, mask_mod=X.causal_mask_mod, enable_gqa=True)
    rep = [x.repeat_interleave(3, 1) for x in (k, v)]
    ref, _ = AF.scaled_dot_product_attention(q, *rep, is_causal=True)
    _close(out, ref, dtype)


def test_no_eager_warning_escapes():
    q, k, v = _qkv(torch.float32, lq=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X.flex_attention(q, k, v, mask_mod=X.causal_mask_mod, score_mod=X.alibi_score_mod(4))


def test_errors():
    q, k, v = _qkv(torch.float32, lq=8)
    with pytest.raises(ValueError, match="query: expected a 4-D tensor"):
        X.flex_attention(q[0], k, v)
    with pytest.raises(ValueError, match="key: expected 4 heads"):
        X.flex_attention(q, k[:, :2], v[:, :2])
    with pytest.raises(ValueError, match="key: expected a divisor of 4"):
        X.flex_attention(q, k[:, :3], v[:, :3], enable_gqa=True)
    with pytest.raises(ValueError, match="key, value"):
        X.flex_attention(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match="window: expected a non-negative integer, got -1"):
        X.sliding_window_mask_mod(-1)
    with pytest.raises(TypeError, match="keep: expected dtype torch.bool"):
        X.padding_mask_mod(torch.ones(2, 8))
    with pytest.raises(ValueError, match="offset"):
        X.alibi_score_mod(4, offset=-2)
    with pytest.raises(ValueError, match="num_heads"):
        X.alibi_score_mod(0)
    with pytest.raises(ValueError, match="mask_mods"):
        X.and_masks()
