"""attnlib.functional: scores, masked softmax, scaled dot-product and multi-head attention,
hard and local attention, checked against PyTorch and against the formulas written by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck

import attnlib.functional as AF
from attnlib import masks

B, H, D, DV = 2, 3, 4, 3  # batch, heads, query/key features, value features (!= D)

MASK_KINDS = [
    "none",
    "bool_bhqk",  # full (B, H, Lq, Lk), with one fully masked row
    "bool_qk",  # (Lq, Lk), shared by every batch item and head
    "bool_padding",  # (B, 1, 1, Lk): padding-style
    "bool_b1qk",  # (B, 1, Lq, Lk): one mask per batch item, shared by heads
    "float_inf",  # additive, 0 / -inf, with one fully masked row
    "float_finite",  # additive, finite values only
]


def make_qkv(lq: int, lk: int, dtype: torch.dtype, requires_grad: bool = False):
    q = torch.randn(B, H, lq, D, dtype=dtype, requires_grad=requires_grad)
    k = torch.randn(B, H, lk, D, dtype=dtype, requires_grad=requires_grad)
    v = torch.randn(B, H, lk, DV, dtype=dtype, requires_grad=requires_grad)
    return q, k, v


def make_mask(kind: str, lq: int, lk: int, dtype: torch.dtype) -> torch.Tensor | None:
    if kind == "none":
        return None
    if kind == "bool_bhqk":
        m = torch.rand(B, H, lq, lk) < 0.6
        m[..., 0] |= torch.rand(B, H, lq) < 0.5  # make most rows non-empty
        m[1, 2, 1, :] = False  # one fully masked row
        return m
    if kind == "bool_qk":
        m = torch.rand(lq, lk) < 0.6
        m[:, -1] = True
        return m
    if kind == "bool_padding":
        m = torch.ones(B, 1, 1, lk, dtype=torch.bool)
        m[0, ..., -2:] = False  # the last two keys of item 0 are padding
        return m
    if kind == "bool_b1qk":
        m = torch.rand(B, 1, lq, lk) < 0.5
        m[..., 0] = True
        return m
    if kind == "float_inf":
        m = torch.zeros(B, H, lq, lk, dtype=dtype)
        m[torch.rand(B, H, lq, lk) < 0.4] = float("-inf")
        m[..., 0] = 0.0
        m[0, 1, -1, :] = float("-inf")  # one fully masked row
        return m
    if kind == "float_finite":
        return torch.randn(B, H, lq, lk, dtype=dtype) * 2.0
    raise AssertionError(kind)


def allowed_keys(mask: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """Boolean (B, H, Lq, Lk): which keys each query may attend."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    if mask.dtype == torch.bool:
        return mask.expand(shape)
    return ~torch.isneginf(mask).expand(shape)


def additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | float:
    """The mask as a float to add to the scores (0 / -inf for boolean masks)."""
    if mask is None:
        return 0.0
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, float("-inf"))
    return mask


def hand_weights(q, k, mask, scale=None) -> torch.Tensor:
    """softmax(Q K^T * scale + mask), written out (NaN on fully masked rows)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("...qd,...kd->...qk", q, k) * scale
    return torch.softmax(scores + additive(mask, q.dtype), dim=-1)


def compare_rows(ours, ref, row_ok, check) -> None:
    """Compare on rows with an allowed key; ours must be exactly 0 on the others."""
    check(ours[row_ok], ref[row_ok])
    assert torch.equal(ours[~row_ok], torch.zeros_like(ours[~row_ok]))


# -- scaled dot-product attention vs torch ---------------------------------------------


@pytest.mark.parametrize("scale", [None, 0.37], ids=["default_scale", "scale0.37"])
@pytest.mark.parametrize("lq, lk", [(4, 4), (3, 5)], ids=["square", "cross"])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_sdpa_matches_torch(kind, lq, lk, scale, dtype, assert_matches_torch):
    """Output equals torch's SDPA for every mask kind, shape and scale; the weights equal the
    hand-written softmax(QK^T * scale + mask); fully masked rows are exactly 0."""
    q, k, v = make_qkv(lq, lk, dtype)
    mask = make_mask(kind, lq, lk, dtype)
    out, w = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    assert out.shape == (B, H, lq, DV) and w.shape == (B, H, lq, lk)
    assert out.dtype == w.dtype == dtype
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    row_ok = allowed_keys(mask, w.shape).any(-1)
    if kind in ("bool_bhqk", "float_inf"):
        assert not row_ok.all()  # the fully masked row is really exercised
    compare_rows(out, ref, row_ok, assert_matches_torch)
    compare_rows(w, hand_weights(q, k, mask, scale), row_ok, assert_matches_torch)
    assert not out.isnan().any() and not w.isnan().any()


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_calculate_attention_weights_matches_torch(kind, dtype, assert_matches_torch):
    """The seed's calculate_attention_weights gives torch's output and the hand-written weights."""
    q, k, v = make_qkv(4, 5, dtype)
    mask = make_mask(kind, 4, 5, dtype)
    out, w = AF.calculate_attention_weights(q, k, v, mask)
    row_ok = allowed_keys(mask, w.shape).any(-1)
    compare_rows(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), row_ok, assert_matches_torch
    )
    compare_rows(w, hand_weights(q, k, mask), row_ok, assert_matches_torch)


@pytest.mark.parametrize("lq, lk", [(4, 4), (3, 5), (5, 3)])
def test_is_causal_matches_torch(lq, lk, dtype, assert_matches_torch):
    """is_causal=True equals torch's is_causal=True (top-left aligned), square or not."""
    q, k, v = make_qkv(lq, lk, dtype)
    out, w = AF.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_matches_torch(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    causal = torch.ones(lq, lk, dtype=torch.bool).tril()
    assert_matches_torch(w, hand_weights(q, k, causal))
    assert torch.equal(w[..., ~causal], torch.zeros_like(w[..., ~causal]))


@pytest.mark.parametrize("kind", ["bool_padding", "bool_b1qk", "float_finite", "float_inf"])
def test_is_causal_combines_with_attn_mask(kind, dtype, assert_matches_torch):
    """is_causal together with attn_mask is the intersection of both (torch refuses the
    combination, so the reference is torch given the combined mask explicitly)."""
    q, k, v = make_qkv(4, 4, dtype)
    mask = make_mask(kind, 4, 4, dtype)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    if mask.dtype == torch.bool:
        combined = mask & causal
    else:
        combined = mask.masked_fill(~causal, float("-inf"))
    out, w = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    row_ok = allowed_keys(combined, w.shape).any(-1)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=combined)
    compare_rows(out, ref, row_ok, assert_matches_torch)
    compare_rows(w, hand_weights(q, k, combined), row_ok, assert_matches_torch)


def test_output_is_weights_times_value(dtype, tol):
    """The output is exactly the returned weights applied to the values."""
    q, k, v = make_qkv(3, 5, dtype)
    mask = make_mask("bool_bhqk", 3, 5, dtype)
    out, w = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, w @ v, **tol)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_row_zero_output_and_zero_gradient(kind):
    """A query with every key masked gets zero weights, zero output, no NaN, and a zero
    (finite) gradient, while the other rows still get gradient."""
    q, k, v = make_qkv(3, 4, torch.float64, requires_grad=True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    if kind == "float":
        mask = masks.to_additive_mask(mask, torch.float64)
    out, w = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(w[:, :, 1], torch.zeros_like(w[:, :, 1]))
    assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1]))
    (out.sum() + (w * torch.randn_like(w)).sum()).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[:, :, 1], torch.zeros_like(q.grad[:, :, 1]))
    assert q.grad[:, :, 0].abs().sum() > 0


def test_all_masked_everywhere_is_zero_not_nan():
    """Even a mask that forbids everything gives zeros (a plain softmax gives NaN)."""
    q, k, v = make_qkv(2, 3, torch.float32)
    out, w = AF.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(2, 3, dtype=bool))
    assert torch.equal(out, torch.zeros_like(out)) and torch.equal(w, torch.zeros_like(w))


# -- dropout ------------------------------------------------------------------------


def test_dropout_training_changes_output_but_not_weights():
    """dropout_p > 0 in training changes the output; the returned weights are pre-dropout."""
    q, k, v = make_qkv(5, 6, torch.float64)
    ref_out, ref_w = AF.scaled_dot_product_attention(q, k, v)
    out, w = AF.scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    assert not torch.allclose(out, ref_out)
    torch.testing.assert_close(w, ref_w, atol=0, rtol=0)


def test_dropout_inactive_when_not_training():
    """training=False makes dropout a no-op: output and weights are bit-identical."""
    q, k, v = make_qkv(5, 6, torch.float64)
    ref_out, ref_w = AF.scaled_dot_product_attention(q, k, v)
    out, w = AF.scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False)
    assert torch.equal(out, ref_out) and torch.equal(w, ref_w)


def test_dropout_output_uses_dropped_weights():
    """With dropout the output is (dropped, rescaled weights) @ v: some weights are zeroed and
    the rest multiplied by 1 / (1 - p), reproduced here with the same seed."""
    q, k, v = make_qkv(5, 6, torch.float64)
    torch.manual_seed(123)
    out, w = AF.scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    torch.manual_seed(123)
    dropped = F.dropout(w, 0.5, training=True)
    torch.testing.assert_close(out, dropped @ v, atol=1e-12, rtol=1e-12)


# -- scores -------------------------------------------------------------------------


def test_dot_and_scaled_dot_scores():
    """dot = q.k; scaled_dot = q.k / sqrt(d) by default, or times the given scale."""
    q, k = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64)
    manual = torch.einsum("bqd,bkd->bqk", q, k)
    torch.testing.assert_close(AF.dot_score(q, k), manual, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        AF.scaled_dot_score(q, k), manual / math.sqrt(5), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(AF.scaled_dot_score(q, k, 0.25), manual * 0.25, atol=1e-12, rtol=0)


def test_general_score_is_bilinear():
    """general = q^T W k for queries and keys of different sizes."""
    q, k = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 4, 6, dtype=torch.float64)
    w = torch.randn(5, 6, dtype=torch.float64)
    manual = torch.einsum("bqi,ij,bkj->bqk", q, w, k)
    torch.testing.assert_close(AF.general_score(q, k, w), manual, atol=1e-12, rtol=0)


def test_additive_score_matches_loop():
    """additive = v^T tanh(W_q q_i + W_k k_j), computed pair by pair."""
    q, k = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 4, 6, dtype=torch.float64)
    wq, wk = torch.randn(5, 7, dtype=torch.float64), torch.randn(6, 7, dtype=torch.float64)
    v = torch.randn(7, dtype=torch.float64)
    got = AF.additive_score(q, k, wq, wk, v)
    manual = torch.empty(2, 3, 4, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                manual[b, i, j] = v @ torch.tanh(q[b, i] @ wq + k[b, j] @ wk)
    torch.testing.assert_close(got, manual, atol=1e-12, rtol=0)


def test_concat_score_equals_additive_with_stacked_weights():
    """concat with W = [W_q; W_k] is the additive score (as its docstring states)."""
    q, k = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 4, 6, dtype=torch.float64)
    wq, wk = torch.randn(5, 7, dtype=torch.float64), torch.randn(6, 7, dtype=torch.float64)
    v = torch.randn(7, dtype=torch.float64)
    got = AF.concat_score(q, k, torch.cat([wq, wk]), v)
    torch.testing.assert_close(got, AF.additive_score(q, k, wq, wk, v), atol=1e-12, rtol=0)


def test_cosine_score():
    """cosine = beta * cos(q, k): in [-beta, beta], independent of the vectors' norms."""
    q, k = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64)
    manual = 3.0 * F.cosine_similarity(q[:, :, None, :], k[:, None, :, :], dim=-1)
    got = AF.cosine_score(q, k, 3.0)
    torch.testing.assert_close(got, manual, atol=1e-12, rtol=0)
    torch.testing.assert_close(AF.cosine_score(7 * q, 0.1 * k, 3.0), got, atol=1e-12, rtol=0)


def test_location_score_uses_first_columns_only():
    """location = q W[:, :num_keys]; it never looks at the keys."""
    q = torch.randn(2, 3, 5, dtype=torch.float64)
    w = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(AF.location_score(q, w, 6), q @ w[:, :6], atol=1e-12, rtol=0)
    assert AF.location_score(q, w, 8).shape == (2, 3, 8)


# -- masked softmax and attend ----------------------------------------------------------


def test_masked_softmax_without_mask_is_softmax():
    s = torch.randn(2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(AF.masked_softmax(s), torch.softmax(s, -1), atol=0, rtol=0)


def test_masked_softmax_bool_mask_renormalises_over_allowed_keys():
    """Masked keys get exactly 0; the others equal a softmax over the allowed keys only."""
    s = torch.randn(5, dtype=torch.float64)
    mask = torch.tensor([True, False, True, True, False])
    w = AF.masked_softmax(s, mask)
    assert torch.equal(w[~mask], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(w[mask], torch.softmax(s[mask], -1), atol=1e-15, rtol=0)


def test_masked_softmax_float_mask_is_added():
    s = torch.randn(3, 5, dtype=torch.float64)
    m = torch.randn(3, 5, dtype=torch.float64)
    m[0, 2] = float("-inf")
    w = AF.masked_softmax(s, m)
    torch.testing.assert_close(w, torch.softmax(s + m, -1), atol=1e-15, rtol=0)
    assert w[0, 2] == 0


def test_masked_softmax_dim():
    """``dim`` picks the normalised dimension (the mask is applied the same way)."""
    s = torch.randn(4, 3, dtype=torch.float64)
    mask = torch.rand(4, 3) < 0.7
    mask[0] = True
    got = AF.masked_softmax(s, mask, dim=0)
    torch.testing.assert_close(got, AF.masked_softmax(s.T, mask.T).T, atol=1e-15, rtol=0)


def test_attend_is_masked_softmax_then_matmul():
    scores = torch.randn(2, 3, 4, dtype=torch.float64)
    value = torch.randn(2, 4, 5, dtype=torch.float64)
    mask = torch.rand(2, 3, 4) < 0.6
    out, w = AF.attend(scores, value, mask)
    torch.testing.assert_close(w, AF.masked_softmax(scores, mask), atol=0, rtol=0)
    torch.testing.assert_close(out, w @ value, atol=1e-14, rtol=0)


# -- multi-head attention (the function) ------------------------------------------------


def test_multi_head_attention_equals_per_head_computation(dtype, tol):
    """Head i attends with the i-th block of features; the outputs are concatenated."""
    heads, e, ev = 2, 6, 4
    q = torch.randn(B, 3, e, dtype=dtype)
    k = torch.randn(B, 5, e, dtype=dtype)
    v = torch.randn(B, 5, ev, dtype=dtype)
    mask = make_mask("bool_padding", 3, 5, dtype)
    out, w = AF.multi_head_attention(q, k, v, heads, mask)
    assert out.shape == (B, 3, ev) and w.shape == (B, heads, 3, 5)
    d, dv = e // heads, ev // heads
    for h in range(heads):
        qh, kh = q[..., h * d : (h + 1) * d], k[..., h * d : (h + 1) * d]
        vh = v[..., h * dv : (h + 1) * dv]
        wh = hand_weights(qh, kh, mask[:, 0])
        torch.testing.assert_close(w[:, h], wh, **tol)
        torch.testing.assert_close(out[..., h * dv : (h + 1) * dv], wh @ vh, **tol)


@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "padding_mask"])
def test_multi_head_attention_equals_torch_mha_with_identity_projections(
    with_mask, dtype, assert_matches_torch
):
    """With identity in/out projections and zero biases, nn.MultiheadAttention computes exactly
    multi_head_attention; per-head weights equal average_attn_weights=False."""
    e, heads = 6, 3
    mha = nn.MultiheadAttention(e, heads, batch_first=True, dtype=dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.eye(e, dtype=dtype).repeat(3, 1))
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(torch.eye(e, dtype=dtype))
        mha.out_proj.bias.zero_()
    q, k, v = (torch.randn(B, n, e, dtype=dtype) for n in (4, 5, 5))
    kpm = torch.zeros(B, 5, dtype=torch.bool)
    kpm[1, -2:] = True  # torch: True = padding
    ref_out, ref_w = mha(
        q, k, v, key_padding_mask=kpm if with_mask else None, average_attn_weights=False
    )
    mask = masks.from_key_padding_mask(kpm) if with_mask else None
    out, w = AF.multi_head_attention(q, k, v, heads, mask)
    assert_matches_torch(out, ref_out)
    assert_matches_torch(w, ref_w)


# -- hard attention -------------------------------------------------------------------


def test_hard_attention_argmax_is_one_hot_argmax():
    """argmax mode: one-hot rows at the argmax of the allowed scores; the output is the value
    of that key."""
    scores = torch.randn(2, 4, 6, dtype=torch.float64)
    value = torch.randn(2, 6, 3, dtype=torch.float64)
    mask = torch.rand(2, 4, 6) < 0.6
    mask[..., 5] = True
    out, w = AF.hard_attention(scores, value, mask, mode="argmax")
    idx = scores.masked_fill(~mask, float("-inf")).argmax(-1)
    assert torch.equal(w, F.one_hot(idx, 6).to(w.dtype))
    torch.testing.assert_close(
        out, torch.gather(value, 1, idx[..., None].expand(-1, -1, 3)), atol=0, rtol=0
    )


@pytest.mark.parametrize("mode", ["argmax", "sample"])
def test_hard_attention_straight_through_weights_are_exact(mode):
    """The documented forward of straight-through is the exact one-hot: weights are exactly 0/1
    and the output is exactly the chosen value row (float32)."""
    scores = torch.randn(4, 8, 6)
    value = torch.randn(4, 6, 3)
    out, w = AF.hard_attention(scores, value, mode=mode, estimator="straight_through")
    idx = w.argmax(-1)
    assert torch.equal(w, F.one_hot(idx, 6).to(w.dtype))
    assert torch.equal(out, torch.gather(value, 1, idx[..., None].expand(-1, -1, 3)))


def test_hard_attention_fully_masked_rows_are_zero():
    scores = torch.randn(2, 3, 4)
    value = torch.randn(2, 4, 5)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False
    for mode in ("argmax", "sample"):
        out, w = AF.hard_attention(scores, value, mask, mode=mode)
        assert torch.equal(w[0, 1], torch.zeros(4)) and torch.equal(out[0, 1], torch.zeros(5))
        torch.testing.assert_close(w.sum(-1)[mask.any(-1)], torch.ones(5), atol=1e-6, rtol=0)


def test_hard_attention_sample_is_one_hot_and_reproducible():
    """Sampling with a seeded generator gives one-hot rows, never a masked key, and the same
    choice for the same seed."""
    scores = torch.randn(3, 5, 6)
    value = torch.randn(3, 6, 2)
    mask = torch.rand(3, 5, 6) < 0.5
    mask[..., 2] = True

    def sample(seed):
        return AF.hard_attention(
            scores, value, mask, mode="sample", generator=torch.Generator().manual_seed(seed)
        )

    out, w = sample(7)
    # (up to float32 rounding: see test_hard_attention_straight_through_weights_are_exact)
    one_hot = F.one_hot(w.argmax(-1), 6).to(w.dtype)
    torch.testing.assert_close(w, one_hot, atol=1e-6, rtol=0)
    assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
    assert torch.equal(sample(7)[1], w)
    torch.testing.assert_close(out, w @ value, atol=0, rtol=0)
    # a different seed makes a different choice somewhere (the sampling uses the generator)
    assert not torch.equal(sample(8)[1].argmax(-1), w.argmax(-1))


def test_hard_attention_sample_frequencies_follow_softmax():
    """Over many draws the chosen keys follow softmax(scores): chi-square (3 degrees of
    freedom) below 16.3, its 0.1% critical value; a masked key is never drawn."""
    n = 4000
    row = torch.tensor([1.0, 0.0, -0.5, 2.0, 0.3], dtype=torch.float64)
    mask = torch.tensor([True, True, True, True, False])
    scores = row.expand(n, 1, 5)
    value = torch.eye(5, dtype=torch.float64).expand(n, 5, 5)
    gen = torch.Generator().manual_seed(1234)
    _, w = AF.hard_attention(scores, value, mask, mode="sample", generator=gen)
    counts = w[:, 0].sum(0)
    assert counts[4] == 0
    expected = n * torch.softmax(row[:4], -1)
    chi2 = ((counts[:4] - expected) ** 2 / expected).sum()
    assert chi2 < 16.27, (counts, expected)
    # and it is not argmax: every allowed key was drawn
    assert (counts[:4] > 0).all()


def test_hard_attention_log_prob_is_log_softmax_at_choice():
    scores = torch.randn(2, 3, 5, dtype=torch.float64)
    mask = torch.rand(2, 3, 5) < 0.7
    mask[..., 0] = True
    value = torch.randn(2, 5, 2, dtype=torch.float64)
    _, w = AF.hard_attention(
        scores, value, mask, mode="sample", generator=torch.Generator().manual_seed(3)
    )
    log_p = AF.hard_attention_log_prob(scores, w, mask)
    expected = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), -1)
    expected = expected.gather(-1, w.argmax(-1, keepdim=True))[..., 0]
    torch.testing.assert_close(log_p, expected, atol=1e-12, rtol=0)


def test_hard_attention_straight_through_gradient_is_softmax_gradient():
    """Straight-through: the forward is one-hot, the gradient w.r.t. the scores is that of
    softmax(scores) @ value (and it is not zero)."""
    scores = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    value = torch.randn(2, 5, 4, dtype=torch.float64)
    mask = torch.rand(2, 3, 5) < 0.7
    mask[..., 1] = True
    upstream = torch.randn(2, 3, 4, dtype=torch.float64)
    out, _ = AF.hard_attention(scores, value, mask, mode="argmax", estimator="straight_through")
    (out * upstream).sum().backward()
    soft_scores = scores.detach().clone().requires_grad_(True)
    ((AF.masked_softmax(soft_scores, mask) @ value) * upstream).sum().backward()
    assert scores.grad.abs().sum() > 0
    torch.testing.assert_close(scores.grad, soft_scores.grad, atol=1e-12, rtol=0)


def test_hard_attention_reinforce_blocks_gradient_to_scores():
    """REINFORCE: nothing flows through the discrete choice (train with log_prob instead)."""
    scores = torch.randn(2, 3, 5, requires_grad=True)
    value = torch.randn(2, 5, 4)
    out, w = AF.hard_attention(scores, value, mode="argmax", estimator="reinforce")
    assert not out.requires_grad and not w.requires_grad
    log_p = AF.hard_attention_log_prob(scores, w)
    log_p.sum().backward()
    assert scores.grad.abs().sum() > 0


# -- local attention -------------------------------------------------------------------


def test_local_attention_weights_zero_outside_window():
    """Keys with |s - p| > D get exactly 0 weight (local-m and local-p)."""
    scores = torch.randn(2, 4, 9, dtype=torch.float64)
    value = torch.randn(2, 9, 3, dtype=torch.float64)
    center = torch.tensor([[0.0, 2.5, 4.0, 8.0], [1.2, 3.0, 6.7, 7.5]], dtype=torch.float64)
    pos = torch.arange(9, dtype=torch.float64)
    outside = (pos - center[..., None]).abs() > 2
    for gaussian in (False, True):
        out, w = AF.local_attention(scores, value, center, 2, gaussian=gaussian)
        assert torch.equal(w[outside], torch.zeros_like(w[outside]))
        assert (w[~outside] > 0).all()
        torch.testing.assert_close(out, w @ value, atol=1e-14, rtol=0)


def test_local_m_is_softmax_inside_window():
    """Without the Gaussian (local-m), weights are the softmax over the window: sum to 1."""
    scores = torch.randn(1, 5, 7, dtype=torch.float64)
    center = torch.arange(5, dtype=torch.float64)[None]
    _, w = AF.local_attention(
        scores, torch.randn(1, 7, 2, dtype=torch.float64), center, 1, gaussian=False
    )
    band = masks.sliding_window_mask(5, 7, window=1)
    torch.testing.assert_close(w, AF.masked_softmax(scores, band), atol=1e-15, rtol=0)
    torch.testing.assert_close(
        w.sum(-1), torch.ones(1, 5, dtype=torch.float64), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("window", [1, 2, 3])
def test_local_p_weights_match_hand_formula(window):
    """local-p: softmax inside [p - D, p + D] times exp(-(s - p)^2 / (2 (D/2)^2))."""
    scores = torch.randn(2, 3, 8, dtype=torch.float64)
    value = torch.randn(2, 8, 2, dtype=torch.float64)
    center = torch.rand(2, 3, dtype=torch.float64) * 7
    mask = torch.ones(2, 3, 8, dtype=torch.bool)
    mask[1, :, -1] = False  # padding is combined with the window
    _, w = AF.local_attention(scores, value, center, window, mask, gaussian=True)
    s = torch.arange(8, dtype=torch.float64)
    dist = s - center[..., None]
    inside = (dist.abs() <= window) & mask
    soft = torch.softmax(scores.masked_fill(~inside, float("-inf")), -1)
    expected = soft * torch.exp(-(dist**2) / (2 * (window / 2) ** 2))
    torch.testing.assert_close(w, expected, atol=1e-14, rtol=0)
    assert torch.equal(w[1, :, -1], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("causal", [False, True], ids=["band", "causal_band"])
@pytest.mark.parametrize("lq, lk", [(6, 6), (4, 7)])
def test_sliding_window_attention_equals_sdpa_with_band(
    causal, lq, lk, dtype, assert_matches_torch
):
    """sliding_window_attention = SDPA with sliding_window_mask (ours and torch's)."""
    q, k, v = make_qkv(lq, lk, dtype)
    band = masks.sliding_window_mask(lq, lk, window=1, causal=causal)
    out, w = AF.sliding_window_attention(q, k, v, 1, causal=causal)
    ref_out, ref_w = AF.scaled_dot_product_attention(q, k, v, attn_mask=band)
    assert torch.equal(out, ref_out) and torch.equal(w, ref_w)
    row_ok = band.expand(w.shape).any(-1)
    compare_rows(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=band), row_ok, assert_matches_torch
    )


@pytest.mark.parametrize("kind", ["bool_padding", "float_finite"])
def test_sliding_window_attention_combines_mask(kind, dtype, assert_matches_torch):
    """An extra mask (boolean or additive) is intersected with the band."""
    q, k, v = make_qkv(5, 5, dtype)
    mask = make_mask(kind, 5, 5, dtype)
    band = masks.sliding_window_mask(5, window=2)
    combined = mask & band if mask.dtype == torch.bool else mask.masked_fill(~band, -math.inf)
    out, w = AF.sliding_window_attention(q, k, v, 2, mask=mask, scale=0.5)
    row_ok = allowed_keys(combined, w.shape).any(-1)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=combined, scale=0.5)
    compare_rows(out, ref, row_ok, assert_matches_torch)
    compare_rows(w, hand_weights(q, k, combined, 0.5), row_ok, assert_matches_torch)


def test_predictive_position_formula():
    """p_t = S * sigmoid(v_p^T tanh(W_p h_t)), with S a number or one per batch item."""
    h = torch.randn(2, 3, 4, dtype=torch.float64)
    w_p, v_p = torch.randn(4, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    manual = torch.sigmoid(torch.tanh(h @ w_p) @ v_p)
    torch.testing.assert_close(
        AF.predictive_position(h, w_p, v_p, 9), 9 * manual, atol=1e-14, rtol=0
    )
    lengths = torch.tensor([4, 9])
    torch.testing.assert_close(
        AF.predictive_position(h, w_p, v_p, lengths), lengths[:, None] * manual, atol=1e-14, rtol=0
    )


def test_split_and_merge_heads_round_trip():
    x = torch.randn(2, 5, 6)
    heads = AF.split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 2)
    assert torch.equal(heads[:, 1], x[..., 2:4])
    assert torch.equal(AF.merge_heads(heads), x)


# -- gradcheck (float64) -----------------------------------------------------------------


def _f64(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "bool_empty_row", "float"])
def test_gradcheck_sdpa(mask_kind):
    """Gradients of SDPA (with is_causal, a scale and masks, one fully masked row included)."""
    q, k, v = _f64(2, 1, 3, 2), _f64(2, 1, 4, 2), _f64(2, 1, 4, 3)
    mask = None
    if mask_kind.startswith("bool"):
        mask = torch.rand(2, 1, 3, 4) < 0.6
        mask[..., 0] = True
        if mask_kind == "bool_empty_row":
            mask[0, 0, 1] = False
    elif mask_kind == "float":
        mask = torch.randn(1, 3, 4, dtype=torch.float64)
        mask[0, 0, 2] = -math.inf
    assert gradcheck(lambda q, k, v: AF.scaled_dot_product_attention(q, k, v, mask), (q, k, v))
    assert gradcheck(
        lambda q, k, v: AF.scaled_dot_product_attention(q, k, v, mask, is_causal=True, scale=0.7),
        (q, k, v),
    )


def test_gradcheck_masked_softmax_and_attend():
    s, v = _f64(2, 3, 4), _f64(2, 4, 2)
    mask = torch.rand(2, 3, 4) < 0.6
    mask[0, 1] = False
    fmask = torch.randn(3, 4, dtype=torch.float64)
    assert gradcheck(lambda s: AF.masked_softmax(s, mask), (s,))
    assert gradcheck(lambda s: AF.masked_softmax(s, fmask), (s,))
    assert gradcheck(lambda s, v: AF.attend(s, v, mask), (s, v))


def test_gradcheck_calculate_attention_weights():
    q, k, v = _f64(1, 3, 2), _f64(1, 4, 2), _f64(1, 4, 2)
    mask = torch.tensor([[True, True, False, True]])
    assert gradcheck(lambda q, k, v: AF.calculate_attention_weights(q, k, v, mask), (q, k, v))


def test_gradcheck_multi_head_attention():
    q, k, v = _f64(2, 3, 4), _f64(2, 4, 4), _f64(2, 4, 2)
    mask = torch.ones(2, 1, 1, 4, dtype=torch.bool)
    mask[1, ..., -1] = False
    assert gradcheck(lambda q, k, v: AF.multi_head_attention(q, k, v, 2, mask), (q, k, v))


@pytest.mark.parametrize(
    "name", ["dot", "scaled_dot", "general", "additive", "concat", "cosine", "location"]
)
def test_gradcheck_scores(name):
    """Every score function is differentiable w.r.t. its inputs and its parameters."""
    q, k = _f64(2, 3, 3), _f64(2, 4, 3)
    if name == "dot":
        fn, inputs = AF.dot_score, (q, k)
    elif name == "scaled_dot":
        fn, inputs = (lambda q, k: AF.scaled_dot_score(q, k, 0.3)), (q, k)
    elif name == "general":
        fn, inputs = AF.general_score, (q, k, _f64(3, 3))
    elif name == "additive":
        fn, inputs = AF.additive_score, (q, k, _f64(3, 2), _f64(3, 2), _f64(2))
    elif name == "concat":
        fn, inputs = AF.concat_score, (q, k, _f64(6, 2), _f64(2))
    elif name == "cosine":
        fn, inputs = AF.cosine_score, (q, k, _f64(2, 3, 1))
    else:
        fn, inputs = (lambda q, w: AF.location_score(q, w, 3)), (q, _f64(3, 5))
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("gaussian", [False, True], ids=["local-m", "local-p"])
def test_gradcheck_local_attention(gaussian):
    """W.r.t. scores and value, the centre fixed (kept away from window edges)."""
    s, v = _f64(2, 3, 5), _f64(2, 5, 2)
    center = torch.tensor([[0.3, 1.6, 4.0], [2.2, 2.9, 3.4]], dtype=torch.float64)
    mask = torch.ones(2, 1, 5, dtype=torch.bool)
    mask[1, :, 0] = False
    assert gradcheck(
        lambda s, v: AF.local_attention(s, v, center, 1, mask, gaussian=gaussian), (s, v)
    )


def test_gradcheck_sliding_window_attention():
    q, k, v = _f64(1, 4, 2), _f64(1, 4, 2), _f64(1, 4, 3)
    assert gradcheck(lambda q, k, v: AF.sliding_window_attention(q, k, v, 1), (q, k, v))
    assert gradcheck(
        lambda q, k, v: AF.sliding_window_attention(q, k, v, 1, causal=True), (q, k, v)
    )


def test_gradcheck_hard_attention_straight_through():
    """The forward is piecewise constant in the scores, so gradcheck w.r.t. value only; the
    straight-through surrogate softmax(scores) @ value is gradchecked w.r.t. the scores."""
    scores = torch.randn(2, 3, 4, dtype=torch.float64)
    v = _f64(2, 4, 2)
    assert gradcheck(
        lambda v: AF.hard_attention(scores, v, mode="argmax", estimator="straight_through")[0],
        (v,),
    )
    s = scores.clone().requires_grad_(True)
    assert gradcheck(lambda s: AF.masked_softmax(s) @ v.detach(), (s,))
