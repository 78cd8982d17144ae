"""attnlib.efficient.window: band-only sliding-window attention against
torch.nn.functional.scaled_dot_product_attention with attnlib.masks.sliding_window_mask
(float64, 1e-12, gradients included), band_to_dense, and
attnlib.functional.sliding_window_attention on its band-only path."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

import attnlib.functional as AF
from attnlib.efficient.window import band_attention, band_to_dense
from attnlib.masks import sliding_window_mask

F64 = torch.float64
TOL = {"atol": 1e-12, "rtol": 0}


def qkv(n, *, batch=(2, 3), dk=5, dv=4, grad=False):
    return tuple(torch.randn(*batch, n, d, dtype=F64, requires_grad=grad) for d in (dk, dk, dv))


def grads(out, inputs):
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    return torch.autograd.grad(out, inputs, g)


def check_band(n, window, causal, scale=None, **kw):
    q, k, v = qkv(n, grad=True, **kw)
    out, band = band_attention(q, k, v, window, causal=causal, scale=scale)
    mask = sliding_window_mask(n, window=window, causal=causal)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    torch.testing.assert_close(out, ref, **TOL)
    w = min(window, n - 1)
    assert band.shape == (*q.shape[:-1], w + 1 if causal else 2 * w + 1)
    _, ref_weights = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    torch.testing.assert_close(band_to_dense(band, window, causal), ref_weights, **TOL)
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("causal", [False, True], ids=["band", "causal"])
@pytest.mark.parametrize(
    "n, window",
    [(40, 3), (37, 5), (50, 16), (53, 20), (100, 17), (9, 0), (1, 0), (1, 4), (12, 11), (12, 30)],
)
def test_band_equals_sdpa_with_window_mask(n, window, causal):
    check_band(n, window, causal)


def test_band_scale_and_shapes():
    check_band(23, 4, False, scale=0.25, batch=())
    check_band(23, 4, True, scale=2.0, batch=(2, 1, 2), dk=1, dv=3)


@given(n=st.integers(1, 70), window=st.integers(0, 40), causal=st.booleans())
def test_band_property(n, window, causal):
    torch.manual_seed(n * 100 + window)
    check_band(n, window, causal, batch=(2,), dk=3, dv=2)


def test_band_gradcheck():
    for causal in (False, True):
        q, k, v = qkv(19, batch=(2,), dk=3, dv=2, grad=True)
        assert gradcheck(lambda q, k, v, c=causal: band_attention(q, k, v, 2, causal=c), (q, k, v))


def test_band_weights_layout():
    """Column t of row i is key i - w + t; keys outside [0, L) have weight 0; rows sum to 1."""
    q, k, v = qkv(10, batch=())
    _, band = band_attention(q, k, v, 3)
    assert torch.equal(band[0, :3], torch.zeros(3, dtype=F64))  # keys -3, -2, -1
    assert torch.equal(band[-1, -3:], torch.zeros(3, dtype=F64))  # keys 10, 11, 12
    torch.testing.assert_close(band.sum(-1), torch.ones(10, dtype=F64), **TOL)
    scores = q @ k.T / 5**0.5
    i = 6
    expected = scores[i, i - 3 : i + 4].softmax(-1)
    torch.testing.assert_close(band[i], expected, **TOL)


def test_band_scores_only_the_band():
    """Queries come in tiles of c = max(w, 16) rows that read keys [start - w, end + w) only:
    a NaN key at 50 (w = 4) never reaches the tiles of queries 0-15 and 16-31."""
    q, k, v = qkv(64, batch=(1,))
    k_bad, v_bad = k.clone(), v.clone()
    k_bad[:, 50], v_bad[:, 50] = float("nan"), float("nan")
    out, _ = band_attention(q, k_bad, v_bad, 4)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(64, window=4))
    torch.testing.assert_close(out[:, :32], ref[:, :32], **TOL)
    assert out[:, 46:55].isnan().all()  # the band of key 50 does see it


def test_band_memory_is_linear_in_the_length():
    """Autograd saves O(L (c + 2w)) elements, not L^2: 512 x 48 at most here, not 512^2."""
    n, w = 512, 16
    q, k, v = qkv(n, batch=(1,), dk=8, dv=8, grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        band_attention(q, k, v, w)
    assert max(sizes) <= n * (16 + 2 * w), max(sizes)
    assert max(sizes) >= n * (2 * w + 1)  # the band's weights are kept, of course


def test_band_to_dense_inverse_of_reading_the_band():
    dense = torch.randn(3, 9, 9, dtype=F64) * sliding_window_mask(9, window=2)
    idx = torch.arange(9)[:, None] + torch.arange(-2, 3)[None, :]  # (9, 5) key of each slot
    band = dense.gather(-1, idx.clamp(0, 8).expand(3, 9, 5)) * ((idx >= 0) & (idx < 9))
    assert torch.equal(band_to_dense(band, 2), dense)


# -- attnlib.functional.sliding_window_attention ---------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, window", [(33, 4), (20, 0), (15, 40)])
def test_sliding_window_attention_band_path(n, window, causal):
    q, k, v = qkv(n, grad=True)
    out, w = AF.sliding_window_attention(q, k, v, window, causal=causal)
    mask = sliding_window_mask(n, window=window, causal=causal)
    ref, ref_w = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(w, ref_w, **TOL)
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    out2, none = AF.sliding_window_attention(q, k, v, window, causal=causal, need_weights=False)
    assert none is None
    torch.testing.assert_close(out2, out, atol=0, rtol=0)


def test_sliding_window_attention_need_weights_false_builds_nothing_quadratic():
    """With need_weights=False no tensor of L x L elements is saved for the backward."""
    n = 256
    q, k, v = qkv(n, batch=(1,), dk=8, dv=8, grad=True)
    largest = 0

    def pack(t):
        nonlocal largest
        largest = max(largest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        AF.sliding_window_attention(q, k, v, 8, need_weights=False)
    assert 0 < largest < n * n // 4, largest


def test_sliding_window_attention_other_lengths_and_masks_still_dense():
    q = torch.randn(2, 5, 3, dtype=F64)
    k, v = torch.randn(2, 8, 3, dtype=F64), torch.randn(2, 8, 2, dtype=F64)
    mask = sliding_window_mask(5, 8, window=2)
    out, w = AF.sliding_window_attention(q, k, v, 2)
    ref, ref_w = AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(w, ref_w, **TOL)
    _, none = AF.sliding_window_attention(q, k, v, 2, need_weights=False)
    assert none is None


# -- errors ------------------------------------------------------------------------------


def r(*shape):
    return torch.randn(*shape, dtype=F64)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: band_attention(r(4, 2), r(4, 2), r(4, 2), -1),
            ValueError,
            "window: expected a non-negative integer, got -1",
        ),
        (
            lambda: band_attention(r(4, 2), r(4, 2), r(4, 2), 1.5),
            ValueError,
            "window: expected a non-negative integer, got 1.5",
        ),
        (
            lambda: band_attention(r(4, 2), r(5, 2), r(5, 2), 1),
            ValueError,
            "key: expected the query's shape (4, 2)",
        ),
        (
            lambda: band_attention(r(4, 2), r(4, 2), r(5, 2), 1),
            ValueError,
            "value: expected shape (4, Dv)",
        ),
        (
            lambda: band_attention(r(4), r(4), r(4), 1),
            ValueError,
            "query: expected at least 2 dimensions",
        ),
        (lambda: band_to_dense(r(4, 4), 1), ValueError, "band_weights: expected 3 columns"),
        (lambda: band_to_dense(r(4, 2), 1, causal=True), ValueError, None),
        (
            lambda: band_to_dense(r(4, 3), -2),
            ValueError,
            "window: expected a non-negative integer",
        ),
    ],
)
def test_errors_name_the_argument(call, error, message):
    if message is None:
        call()  # a valid call: w + 1 = 2 columns, causal
        return
    with pytest.raises(error, match=re.escape(message)):
        call()
