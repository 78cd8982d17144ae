"""attnlib.efficient.online: the online softmax and tiled attention against torch.softmax,
torch.logsumexp and torch.nn.functional.scaled_dot_product_attention (float64, 1e-12),
gradients included (gradcheck and SDPA's autograd); the backward saves O(L) tensors."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import attnlib.functional as AF
from attnlib.efficient.online import (
    naive_attention,
    online_logsumexp,
    online_softmax,
    tiled_attention,
)

F64 = torch.float64
TOL = {"atol": 1e-12, "rtol": 0}


def qkv(lq, lk, *, batch=(2, 3), dk=5, dv=4, grad=False, dtype=F64):
    q = torch.randn(*batch, lq, dk, dtype=dtype, requires_grad=grad)
    k = torch.randn(*batch, lk, dk, dtype=dtype, requires_grad=grad)
    v = torch.randn(*batch, lk, dv, dtype=dtype, requires_grad=grad)
    return q, k, v


def grads(out, inputs, seed=1):
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad(out, inputs, g)


def assert_same_as_sdpa(lq, lk, *, mask=None, is_causal=False, scale=None, bq=7, bk=5, **kw):
    """Output and gradients of tiled_attention equal SDPA's to 1e-12 (float64)."""
    q, k, v = qkv(lq, lk, grad=True, **kw)
    out, _ = tiled_attention(q, k, v, mask, is_causal, scale, block_q=bq, block_k=bk)
    ref_mask, ref_causal = mask, is_causal
    if mask is not None:  # SDPA takes no 1-D mask, nor a mask together with is_causal
        ref_mask = mask if mask.dim() >= 2 else mask[None]
        if is_causal:
            ref_mask, ref_causal = ref_mask & torch.ones(lq, lk, dtype=torch.bool).tril(), False
    ref = F.scaled_dot_product_attention(
        q, k, v, attn_mask=ref_mask, is_causal=ref_causal, scale=scale
    )
    torch.testing.assert_close(out, ref, **TOL)
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b, **TOL)


# -- online softmax -------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 3, 8, 50, 1000])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_online_softmax_equals_torch(block, dim):
    x = torch.randn(6, 37, 5, dtype=F64) * 10
    torch.testing.assert_close(online_softmax(x, dim=dim, block=block), x.softmax(dim), **TOL)
    torch.testing.assert_close(
        online_logsumexp(x, dim=dim, block=block), x.logsumexp(dim), atol=1e-12, rtol=1e-14
    )


def test_online_softmax_masked_entries_and_fully_masked_rows():
    x = torch.randn(4, 20, dtype=F64)
    x[0, ::3] = -math.inf  # partly masked row
    x[1] = -math.inf  # fully masked row
    x[2, :10] = -math.inf  # the first blocks see only -inf
    out = online_softmax(x, block=4)
    rows = [0, 2, 3]
    torch.testing.assert_close(out[rows], x[rows].softmax(-1), **TOL)
    assert torch.equal(out[1], torch.zeros(20, dtype=F64))
    assert not out.isnan().any()
    lse = online_logsumexp(x, block=4)
    assert lse[1].item() == -math.inf
    torch.testing.assert_close(lse[rows], x[rows].logsumexp(-1), **TOL)


def test_online_softmax_large_scores_do_not_overflow():
    """The running maximum is what keeps exp finite: scores of 1e4 would overflow without it."""
    x = torch.tensor([[1e4, 1e4 - 1.0, 0.0, 1e4 + 2.0]], dtype=F64)
    torch.testing.assert_close(online_softmax(x, block=1), x.softmax(-1), **TOL)


def test_online_softmax_gradcheck():
    x = torch.randn(3, 11, dtype=F64, requires_grad=True)
    assert gradcheck(lambda x: online_softmax(x, block=4), (x,))


# -- tiled attention against SDPA ---------------------------------------------------


@pytest.mark.parametrize(
    "lq, lk, bq, bk",
    [
        (16, 16, 4, 4),  # blocks divide the lengths
        (13, 17, 5, 3),  # odd lengths, blocks that do not divide them
        (9, 21, 64, 128),  # blocks larger than the lengths
        (1, 1, 1, 1),
        (31, 8, 1, 7),
    ],
)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_tiled_equals_sdpa(lq, lk, bq, bk, is_causal):
    assert_same_as_sdpa(lq, lk, is_causal=is_causal, bq=bq, bk=bk)


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 12, 15), (12, 15), (2, 1, 12, 15), (1, 3, 1, 15), (2, 1, 1, 15), (15,), (12, 1)],
    ids=lambda s: "x".join(map(str, s)),
)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_tiled_equals_sdpa_with_boolean_masks(shape, is_causal):
    """Masks broadcast to (B, H, Lq, Lk); every row keeps at least key 0 (SDPA: NaN otherwise)."""
    mask = torch.rand(shape) < 0.6
    mask[..., 0] = True
    assert_same_as_sdpa(12, 15, mask=mask, is_causal=is_causal, bq=5, bk=4)


def test_tiled_scale_and_batch_shapes():
    assert_same_as_sdpa(10, 9, scale=0.3, batch=(), bq=3, bk=4)
    assert_same_as_sdpa(10, 9, scale=2.0, batch=(2, 2, 2), bq=4, bk=3)
    assert_same_as_sdpa(10, 9, batch=(3,), dk=1, dv=1, bq=10, bk=9)


@pytest.mark.parametrize("lq, lk", [(7, 7), (5, 9), (9, 5)])
def test_tiled_gradcheck(lq, lk):
    mask = torch.rand(1, lq, lk) < 0.7
    mask[..., 0] = True
    for kw in ({}, {"is_causal": True}, {"mask": mask}, {"mask": mask, "is_causal": True}):
        q, k, v = qkv(lq, lk, batch=(2,), dk=3, dv=2, grad=True)
        assert gradcheck(
            lambda q, k, v, kw=kw: tiled_attention(q, k, v, **kw, block_q=3, block_k=2)[0],
            (q, k, v),
            fast_mode=True,
        )


def test_lse_is_logsumexp_of_scaled_masked_scores():
    q, k, v = qkv(11, 13)
    mask = torch.rand(2, 1, 11, 13) < 0.5
    mask[..., 0] = True
    scale = 0.7
    for is_causal in (False, True):
        _, lse = tiled_attention(q, k, v, mask, is_causal, scale, block_q=4, block_k=5)
        allowed = mask & torch.ones(11, 13, dtype=torch.bool).tril() if is_causal else mask
        scores = (q @ k.transpose(-2, -1) * scale).masked_fill(~allowed, -math.inf)
        torch.testing.assert_close(lse, scores.logsumexp(-1), **TOL)


def test_fully_masked_rows_give_zeros_not_nan():
    """As attnlib.functional.scaled_dot_product_attention: zero output, lse -inf, zero grads."""
    q, k, v = qkv(8, 10, grad=True)
    mask = torch.rand(2, 3, 8, 10) < 0.6
    mask[..., 0] = True
    mask[0, 1, 3] = False  # one query sees nothing
    mask[1, :, 6] = False  # one query of item 1 sees nothing in any head
    out, lse = tiled_attention(q, k, v, mask, block_q=3, block_k=4)
    ref, _ = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, **TOL)
    assert torch.equal(out[0, 1, 3], torch.zeros(4, dtype=F64))
    assert lse[0, 1, 3].item() == -math.inf and torch.isneginf(lse[1, :, 6]).all()
    assert torch.isfinite(lse[mask.any(-1)]).all()
    ours, theirs = grads(out, (q, k, v)), grads(ref, (q, k, v))
    for a, b in zip(ours, theirs, strict=True):
        assert not a.isnan().any()
        torch.testing.assert_close(a, b, **TOL)
    assert torch.equal(ours[0][0, 1, 3], torch.zeros(5, dtype=F64))  # dq of the empty query


def test_causal_with_more_queries_than_keys_has_empty_rows_past_nothing():
    """Top-left causal with Lq > Lk: every query still sees key 0, so no row is empty."""
    assert_same_as_sdpa(20, 6, is_causal=True, bq=4, bk=4)


def test_causal_skips_blocks_above_the_diagonal():
    """Tiles above the diagonal are never computed: NaN keys there cannot reach the output."""
    q, k, v = qkv(16, 16)
    k_bad, v_bad = k.clone(), v.clone()
    k_bad[..., 8:, :] = math.nan  # keys only the queries 8.. may see
    v_bad[..., 8:, :] = math.nan
    out, _ = tiled_attention(q, k_bad, v_bad, is_causal=True, block_q=8, block_k=8)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out[..., :8, :], ref[..., :8, :], **TOL)


def test_float32_close_to_sdpa():
    q, k, v = qkv(40, 33, dtype=torch.float32)
    out, _ = tiled_attention(q, k, v, is_causal=True, block_q=16, block_k=8)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@given(
    lq=st.integers(1, 24),
    lk=st.integers(1, 24),
    bq=st.integers(1, 30),
    bk=st.integers(1, 30),
    is_causal=st.booleans(),
    masked=st.booleans(),
)
def test_tiled_property(lq, lk, bq, bk, is_causal, masked):
    torch.manual_seed(lq * 1000 + lk)
    mask = None
    if masked:
        mask = torch.rand(2, 1, lq, lk) < 0.5
        mask[..., 0] = True
    assert_same_as_sdpa(lq, lk, mask=mask, is_causal=is_causal, bq=bq, bk=bk, dk=3, dv=2)


# -- naive attention -------------------------------------------------------------------


@pytest.mark.parametrize("is_causal", [False, True])
def test_naive_equals_attnlib_sdpa(is_causal):
    q, k, v = qkv(9, 12)
    mask = torch.rand(2, 3, 9, 12) < 0.5
    mask[0, 0, 2] = False
    out, w = naive_attention(q, k, v, mask, is_causal, 0.4)
    ref, ref_w = AF.scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, scale=0.4)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(w, ref_w, **TOL)
    assert torch.equal(w[0, 0, 2], torch.zeros(12, dtype=F64))


def test_naive_gradients_equal_sdpa():
    q, k, v = qkv(9, 12, grad=True)
    out, _ = naive_attention(q, k, v, is_causal=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, **TOL)
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b, **TOL)


# -- memory of the backward -------------------------------------------------------------


def saved_elements(fn) -> int:
    """Elements of every tensor autograd saves while ``fn`` runs (counting each storage once)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_backward_saves_O_L_not_L_squared():
    n, d = 512, 16
    q, k, v = qkv(n, n, batch=(1, 1), dk=d, dv=d, grad=True, dtype=torch.float32)
    tiled = saved_elements(
        lambda: tiled_attention(q, k, v, is_causal=True, block_q=64, block_k=64)
    )
    naive = saved_elements(lambda: naive_attention(q, k, v, is_causal=True))
    assert tiled < n * n, tiled  # q, k, v, out, lse: 4 n d + n
    assert tiled == 4 * n * d + n
    assert naive > n * n  # the textbook form keeps the weights


# -- errors name the argument -----------------------------------------------------------


def r(*shape, dtype=F64):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: tiled_attention(r(4), r(4, 2), r(4, 2)),
            ValueError,
            "query: expected at least 2",
        ),
        (
            lambda: tiled_attention(r(1, 4, 2), r(4, 2), r(4, 2)),
            ValueError,
            "key: expected the batch",
        ),
        (
            lambda: tiled_attention(r(4, 2), r(5, 3), r(5, 2)),
            ValueError,
            "key: expected feature size Dk = 2",
        ),
        (lambda: tiled_attention(r(4, 2), r(5, 2), r(6, 2)), ValueError, "value: expected 5 rows"),
        (
            lambda: tiled_attention(r(4, 2), r(5, 2), r(5, 2), torch.zeros(4, 5)),
            TypeError,
            "mask: expected dtype torch.bool",
        ),
        (
            lambda: tiled_attention(r(4, 2), r(5, 2), r(5, 2), torch.ones(3, 5, dtype=torch.bool)),
            ValueError,
            "mask: expected a shape broadcastable to (4, 5)",
        ),
        (
            lambda: tiled_attention(r(4, 2), r(5, 2), r(5, 2), block_q=0),
            ValueError,
            "block_q: expected a positive integer, got 0",
        ),
        (
            lambda: tiled_attention(r(4, 2), r(5, 2), r(5, 2), block_k=-3),
            ValueError,
            "block_k: expected a positive integer, got -3",
        ),
        (
            lambda: tiled_attention(r(4, 2), r(5, 2, dtype=torch.float32), r(5, 2)),
            TypeError,
            "key: expected dtype torch.float64",
        ),
        (
            lambda: naive_attention(r(4, 2), "k", r(5, 2)),
            TypeError,
            "key: expected a torch.Tensor",
        ),
        (
            lambda: online_softmax(r(3, 4), block=0),
            ValueError,
            "block: expected a positive integer",
        ),
        (
            lambda: online_softmax(r(3, 4), dim=2),
            ValueError,
            "dim: expected an integer in [-2, 1], got 2",
        ),
        (
            lambda: online_softmax(torch.ones(3, dtype=torch.long)),
            TypeError,
            "x: expected a floating tensor",
        ),
    ],
)
def test_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
