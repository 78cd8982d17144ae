"""Property-based tests (hypothesis): invariants of the weights, masks, permutation
equivariance and causality on random shapes and random boolean masks.

Tensors are drawn from a torch.Generator seeded by hypothesis, so every example is
reproducible; computations are in float64 so the invariants hold to ~1e-12.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import attnlib.functional as AF
from attnlib import masks
from attnlib.attention import MultiHeadAttention

DT = torch.float64
seeds = st.integers(0, 2**32 - 1)
MASK_LAYOUTS = ["bhqk", "qk", "b1qk", "b11k", "1hqk"]


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=DT)


@st.composite
def attention_inputs(draw):
    """q, k, v (B, H, Lq, D) etc. and a random boolean mask of a random broadcastable layout."""
    b, h = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    lq, lk = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    d, dv = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    layout = draw(st.sampled_from(MASK_LAYOUTS))
    p_allowed = draw(st.floats(0.0, 1.0))
    gen = torch.Generator().manual_seed(draw(seeds))
    q, k, v = randn(gen, b, h, lq, d), randn(gen, b, h, lk, d), randn(gen, b, h, lk, dv)
    shape = {
        "bhqk": (b, h, lq, lk),
        "qk": (lq, lk),
        "b1qk": (b, 1, lq, lk),
        "b11k": (b, 1, 1, lk),
        "1hqk": (1, h, lq, lk),
    }[layout]
    mask = torch.rand(*shape, generator=gen) < p_allowed
    return q, k, v, mask


def check_weights_invariants(out, w, allowed):
    """Weights in [0, 1], exactly 0 on masked keys, summing to 1 on rows with an allowed key;
    rows with none: all-zero weights and an all-zero output; never NaN."""
    assert not out.isnan().any() and not w.isnan().any()
    assert (w >= 0).all() and (w <= 1).all()
    assert torch.equal(w[~allowed], torch.zeros_like(w[~allowed]))
    row_ok = allowed.any(-1)
    sums = w.sum(-1)
    torch.testing.assert_close(sums[row_ok], torch.ones_like(sums[row_ok]), atol=1e-12, rtol=0)
    assert torch.equal(w[~row_ok], torch.zeros_like(w[~row_ok]))
    assert torch.equal(out[~row_ok], torch.zeros_like(out[~row_ok]))


@given(attention_inputs())
def test_sdpa_weights_are_distribution_over_allowed_keys(case):
    q, k, v, mask = case
    out, w = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    check_weights_invariants(out, w, mask.expand(w.shape))


@given(attention_inputs())
def test_additive_mask_behaves_like_boolean_mask(case):
    """to_additive_mask gives 0 / -inf, and as an SDPA mask it has the boolean mask's effect
    (in attnlib, and in torch on rows with at least one allowed key)."""
    q, k, v, mask = case
    add = masks.to_additive_mask(mask, DT)
    assert add.dtype == DT and add.shape == mask.shape
    assert torch.equal(add[mask], torch.zeros_like(add[mask]))
    assert torch.isneginf(add[~mask]).all()
    out_b, w_b = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out_f, w_f = AF.scaled_dot_product_attention(q, k, v, attn_mask=add)
    torch.testing.assert_close(out_f, out_b, atol=1e-12, rtol=0)
    torch.testing.assert_close(w_f, w_b, atol=1e-12, rtol=0)
    check_weights_invariants(out_f, w_f, mask.expand(w_f.shape))
    row_ok = mask.expand(w_b.shape).any(-1)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=add)
    torch.testing.assert_close(out_f[row_ok], ref[row_ok], atol=1e-10, rtol=1e-10)


@given(attention_inputs(), st.booleans())
def test_masked_softmax_invariants(case, as_float):
    _, _, _, mask = case
    gen = torch.Generator().manual_seed(mask.numel())
    scores = randn(gen, *mask.shape) * 5
    m = masks.to_additive_mask(mask, DT) if as_float else mask
    w = AF.masked_softmax(scores, m)
    check_weights_invariants(w[..., :1], w, mask)


@given(
    b=st.integers(1, 3),
    heads=st.integers(1, 3),
    length=st.integers(1, 6),
    d=st.integers(1, 4),
    seed=seeds,
)
def test_self_attention_is_permutation_equivariant(b, heads, length, d, seed):
    """Without positions, permuting the sequence permutes the outputs of self-attention the
    same way, and the weights' rows and columns (MultiHeadAttention and SDPA)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(length, generator=gen)
    x = randn(gen, b, length, heads * d)
    mha = MultiHeadAttention(heads * d, heads).double()
    out, w = mha(x, x, x)
    xp = x[:, perm]
    out_p, w_p = mha(xp, xp, xp)
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-12, rtol=0)
    torch.testing.assert_close(w_p, w[:, :, perm][:, :, :, perm], atol=1e-12, rtol=0)
    # SDPA directly, with a mask permuted along with the sequence
    q = randn(gen, b, heads, length, d)
    mask = torch.rand(b, 1, length, length, generator=gen) < 0.7
    out, w = AF.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    qp, mp = q[:, :, perm], mask[:, :, perm][:, :, :, perm]
    out_p, w_p = AF.scaled_dot_product_attention(qp, qp, qp, attn_mask=mp)
    torch.testing.assert_close(out_p, out[:, :, perm], atol=1e-12, rtol=0)
    torch.testing.assert_close(w_p, w[:, :, perm][:, :, :, perm], atol=1e-12, rtol=0)


@given(
    b=st.integers(1, 3),
    heads=st.integers(1, 3),
    length=st.integers(2, 6),
    d=st.integers(1, 4),
    data=st.data(),
    seed=seeds,
)
def test_causal_outputs_ignore_future_tokens(b, heads, length, d, data, seed):
    """Under a causal mask, changing the tokens after position t changes no output (and no
    weight) at positions <= t: with is_causal=True and with mask=causal_mask(L)."""
    t = data.draw(st.integers(0, length - 2), label="t")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mha = MultiHeadAttention(heads * d, heads).double()
    x = randn(gen, b, length, heads * d)
    y = x.clone()
    y[:, t + 1 :] = randn(gen, b, length - t - 1, heads * d)
    for kwargs in ({"is_causal": True}, {"mask": masks.causal_mask(length)}):
        out_x, w_x = mha(x, x, x, **kwargs)
        out_y, w_y = mha(y, y, y, **kwargs)
        torch.testing.assert_close(out_y[:, : t + 1], out_x[:, : t + 1], atol=1e-12, rtol=0)
        torch.testing.assert_close(w_y[:, :, : t + 1], w_x[:, :, : t + 1], atol=1e-12, rtol=0)
        # the change is visible after t (the test would notice a non-causal layer)
        assert not torch.allclose(out_y[:, t + 1 :], out_x[:, t + 1 :])


# -- masks -----------------------------------------------------------------------------------


@given(lq=st.integers(1, 8), lk=st.integers(1, 8))
def test_causal_mask_is_lower_triangular(lq, lk):
    m = masks.causal_mask(lq, lk)
    assert m.dtype == torch.bool and m.shape == (lq, lk)
    i, j = torch.meshgrid(torch.arange(lq), torch.arange(lk), indexing="ij")
    assert torch.equal(m, j <= i)
    assert torch.equal(masks.causal_mask(lq), masks.causal_mask(lq, lq))


@given(lq=st.integers(1, 8), lk=st.integers(1, 8), window=st.integers(0, 8))
def test_sliding_window_mask_band(lq, lk, window):
    """|i - j| <= w; causal: 0 <= i - j <= w (the past half of the band)."""
    i, j = torch.meshgrid(torch.arange(lq), torch.arange(lk), indexing="ij")
    band = masks.sliding_window_mask(lq, lk, window=window)
    assert band.dtype == torch.bool and band.shape == (lq, lk)
    assert torch.equal(band, (i - j).abs() <= window)
    causal = masks.sliding_window_mask(lq, lk, window=window, causal=True)
    assert torch.equal(causal, (i - j >= 0) & (i - j <= window))
    assert torch.equal(causal, band & masks.causal_mask(lq, lk))


@st.composite
def token_batches(draw, max_len=7):
    b = draw(st.integers(1, 3))
    s, t = draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    pad = draw(st.integers(0, 3))
    gen = torch.Generator().manual_seed(draw(seeds))
    src = torch.randint(0, 4, (b, s), generator=gen)
    tgt = torch.randint(0, 4, (b, t), generator=gen)
    return src, tgt, pad


@given(token_batches())
def test_create_masks_shapes_and_content(batch):
    """src mask (B, 1, 1, S): key is not padding; tgt mask (B, 1, T, T): key is not padding
    AND key position <= query position."""
    src, tgt, pad = batch
    src_mask, tgt_mask = masks.create_masks(src, tgt, pad)
    b, s = src.shape
    t = tgt.shape[1]
    assert src_mask.shape == (b, 1, 1, s) and tgt_mask.shape == (b, 1, t, t)
    assert src_mask.dtype == tgt_mask.dtype == torch.bool
    assert torch.equal(src_mask[:, 0, 0], src != pad)
    for bi in range(b):
        for i in range(t):
            for j in range(t):
                assert bool(tgt_mask[bi, 0, i, j]) == (bool(tgt[bi, j] != pad) and j <= i)
    assert torch.equal(masks.padding_mask(src, pad), src_mask)


@given(token_batches())
def test_mask_future_tokens_shape_and_content(batch):
    src, _, _ = batch
    b, s = src.shape
    m = masks.mask_future_tokens(src)
    assert m.shape == (b, 1, s, s) and m.dtype == torch.bool
    assert torch.equal(m, masks.causal_mask(s).expand(b, 1, s, s))


@given(b=st.integers(1, 3), s=st.integers(1, 7), seed=seeds)
def test_key_padding_round_trip(b, s, seed):
    """attnlib padding mask <-> torch key_padding_mask (opposite conventions) round trip."""
    gen = torch.Generator().manual_seed(seed)
    kpm = torch.rand(b, s, generator=gen) < 0.4  # torch: True = padding
    ours = masks.from_key_padding_mask(kpm)
    assert ours.shape == (b, 1, 1, s)
    assert torch.equal(ours[:, 0, 0], ~kpm)
    assert torch.equal(masks.to_key_padding_mask(ours), kpm)
    assert torch.equal(masks.to_key_padding_mask(ours[:, 0, 0]), kpm)
    assert torch.equal(masks.from_key_padding_mask(masks.to_key_padding_mask(ours)), ours)
    assert torch.equal(masks.to_torch_attn_mask(ours), ~ours)
