"""attnlib.efficient.linear: linear attention (Katharopoulos et al., 2020) against the explicit
quadratic form phi(Q) phi(K)^T (causally masked, row-normalised) @ V, in float64 to 1e-12,
gradients included."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

from attnlib.efficient.linear import elu_feature_map, linear_attention

F64 = torch.float64
TOL = {"atol": 1e-12, "rtol": 0}


def quadratic(q, k, v, causal, eps=1e-6):
    """The reference, written out: A = phi(Q) phi(K)^T, masked, divided by its row sums."""
    a = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-2, -1)
    if causal:
        a = a * torch.ones(a.shape[-2:], dtype=torch.bool).tril()
    w = a / (a.sum(-1, keepdim=True) + eps)
    return w @ v, w


def qkv(lq, lk, *, batch=(2, 3), dk=5, dv=4, grad=False):
    q = torch.randn(*batch, lq, dk, dtype=F64, requires_grad=grad)
    k = torch.randn(*batch, lk, dk, dtype=F64, requires_grad=grad)
    v = torch.randn(*batch, lk, dv, dtype=F64, requires_grad=grad)
    return q, k, v


def check(lq, lk, causal, chunk=64, eps=1e-6, **kw):
    q, k, v = qkv(lq, lk, grad=True, **kw)
    out, w = linear_attention(q, k, v, causal=causal, eps=eps, need_weights=True, chunk_size=chunk)
    ref, ref_w = quadratic(q, k, v, causal, eps)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(w, ref_w, **TOL)
    g = torch.randn(out.shape, dtype=F64)
    for a, b in zip(
        torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g), strict=True
    ):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("lq, lk", [(16, 16), (13, 29), (29, 13), (1, 1)])
def test_noncausal_equals_quadratic_form(lq, lk):
    check(lq, lk, False)


@pytest.mark.parametrize("n, chunk", [(16, 4), (37, 5), (37, 64), (64, 64), (1, 3), (50, 1)])
def test_causal_prefix_sums_equal_quadratic_form(n, chunk):
    check(n, n, True, chunk=chunk)


def test_eps_zero_and_shapes():
    check(11, 11, True, chunk=4, eps=0.0, batch=())
    check(11, 7, False, eps=0.0, batch=(2, 2, 1), dk=1, dv=3)


@given(n=st.integers(1, 40), chunk=st.integers(1, 20), causal=st.booleans())
def test_linear_property(n, chunk, causal):
    torch.manual_seed(n * 50 + chunk)
    check(n, n, causal, chunk=chunk, batch=(2,), dk=3, dv=2)


def test_gradcheck():
    for causal in (False, True):
        q, k, v = qkv(9, 9, batch=(2,), dk=3, dv=2, grad=True)
        assert gradcheck(
            lambda q, k, v, c=causal: linear_attention(q, k, v, causal=c, chunk_size=4)[0],
            (q, k, v),
        )


def test_causal_output_does_not_see_the_future():
    q, k, v = qkv(20, 20)
    out, _ = linear_attention(q, k, v, causal=True, chunk_size=6)
    k2, v2 = k.clone(), v.clone()
    k2[..., 12:, :] += 5.0
    v2[..., 12:, :] -= 3.0
    out2, _ = linear_attention(q, k2, v2, causal=True, chunk_size=6)
    torch.testing.assert_close(out2[..., :12, :], out[..., :12, :], **TOL)
    assert (out2[..., 12:, :] - out[..., 12:, :]).abs().max() > 0.1


def test_weights_none_by_default_and_rows_sum_to_one():
    q, k, v = qkv(8, 8)
    out, w = linear_attention(q, k, v)
    assert w is None
    _, w = linear_attention(q, k, v, causal=True, need_weights=True, eps=0.0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 8, dtype=F64), **TOL)
    assert (w >= 0).all() and torch.equal(w.triu(1), torch.zeros_like(w))


def test_feature_map_is_elu_plus_one_and_positive():
    x = torch.linspace(-30, 5, 101, dtype=F64)
    phi = elu_feature_map(x)
    torch.testing.assert_close(phi, torch.where(x > 0, x + 1, torch.exp(x)), **TOL)
    assert (phi > 0).all()


def r(*shape):
    return torch.randn(*shape, dtype=F64)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: linear_attention(r(4, 2), r(5, 3), r(5, 2)), "key: expected feature size Dk = 2"),
        (lambda: linear_attention(r(4, 2), r(5, 2), r(6, 2)), "value: expected shape (5, Dv)"),
        (lambda: linear_attention(r(4, 2), r(5, 2), r(5, 2), causal=True), "key: expected 4 keys"),
        (lambda: linear_attention(r(4), r(4), r(4)), "query: expected at least 2 dimensions"),
        (
            lambda: linear_attention(r(4, 2), r(4, 2), r(4, 2), chunk_size=0),
            "chunk_size: expected a positive",
        ),
        (
            lambda: linear_attention(r(4, 2), r(4, 2), r(4, 2), eps=-1.0),
            "eps: expected a non-negative",
        ),
        (lambda: linear_attention(r(1, 4, 2), r(4, 2), r(4, 2)), "key: expected the batch"),
    ],
)
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
