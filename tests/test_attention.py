"""attnlib.attention: the attention layers, against their formulas, against
torch.nn.MultiheadAttention (through MultiHeadAttention.from_torch), and gradchecked."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck

import attnlib.functional as AF
from attnlib import masks
from attnlib.attention import (
    AdditiveAttention,
    AttentionModule,
    ContentBasedAttention,
    HardAttention,
    LocalAttention,
    LocationBasedAttention,
    LuongAttention,
    MultiHeadAttention,
    ScaledDotProductAttention,
)


def f64(*shape, requires_grad=False):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)


def hand_attend(scores, value, mask=None):
    """softmax over the allowed keys, then the weighted sum of the values."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, -1)
    return w @ value, w


PADDING = torch.tensor([[[True, True, True, True, True]], [[True, True, True, False, False]]])


# -- single-head layers against their formulas ---------------------------------------------


def test_every_layer_is_an_attention_module():
    """record_attention finds layers through this base class."""
    for layer in (
        ScaledDotProductAttention(),
        AdditiveAttention(4),
        LuongAttention(4),
        ContentBasedAttention(4),
        LocationBasedAttention(4, 5),
        LocalAttention(4, 1),
        HardAttention(4),
        MultiHeadAttention(4, 2),
    ):
        assert isinstance(layer, AttentionModule)


def test_scaled_dot_product_attention_module_equals_function():
    q, k, v = f64(2, 3, 4), f64(2, 5, 4), f64(2, 5, 2)
    mask = PADDING
    layer = ScaledDotProductAttention(scale=0.3)
    out, w = layer(q, k, v, mask, is_causal=True)
    ref_out, ref_w = AF.scaled_dot_product_attention(q, k, v, mask, is_causal=True, scale=0.3)
    assert torch.equal(out, ref_out) and torch.equal(w, ref_w)


def test_scaled_dot_product_attention_module_dropout_only_in_training():
    q, k, v = f64(2, 5, 4), f64(2, 6, 4), f64(2, 6, 3)
    layer = ScaledDotProductAttention(dropout=0.5)
    ref_out, ref_w = AF.scaled_dot_product_attention(q, k, v)
    out, w = layer.train()(q, k, v)
    assert not torch.allclose(out, ref_out) and torch.equal(w, ref_w)
    out, w = layer.eval()(q, k, v)
    assert torch.equal(out, ref_out)


def test_additive_attention_formula():
    """Bahdanau: score(q, k) = v^T tanh(W_q q + W_k k), with key_dim != query_dim."""
    layer = AdditiveAttention(4, key_dim=6, hidden_dim=5).double()
    q, k, v = f64(2, 3, 4), f64(2, 5, 6), f64(2, 5, 2)
    out, w = layer(q, k, v, PADDING)
    hidden = torch.tanh(
        layer.w_query(q)[:, :, None, :] + layer.w_key(k)[:, None, :, :]
    )  # (B, Lq, Lk, hidden)
    scores = (hidden * layer.v.weight[0]).sum(-1)
    ref_out, ref_w = hand_attend(scores, v, PADDING)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    assert torch.equal(w[1, :, 3:], torch.zeros(3, 2, dtype=torch.float64))


@pytest.mark.parametrize("method", ["dot", "general", "concat"])
def test_luong_attention_formulas(method):
    """dot: q.k; general: q^T W k; concat: v^T tanh(W [q; k])."""
    key_dim = 4 if method == "dot" else 6
    layer = LuongAttention(4, key_dim=key_dim, method=method, hidden_dim=3).double()
    q, k, v = f64(2, 3, 4), f64(2, 5, key_dim), f64(2, 5, 2)
    out, w = layer(q, k, v, PADDING)
    if method == "dot":
        scores = torch.einsum("bqd,bkd->bqk", q, k)
    elif method == "general":
        scores = torch.einsum("bqi,ij,bkj->bqk", q, layer.weight, k)
    else:
        wq, wk = layer.weight[:4], layer.weight[4:]
        hidden = torch.tanh((q @ wq)[:, :, None] + (k @ wk)[:, None])
        scores = hidden @ layer.v
    ref_out, ref_w = hand_attend(scores, v, PADDING)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)


def test_content_based_attention_formula_and_initial_beta():
    """NTM addressing: score = beta cos(q, k), beta initialised exactly to the given value."""
    layer = ContentBasedAttention(4, beta=3.0)
    # the parameter is stored in float32: exact up to float32 rounding
    torch.testing.assert_close(layer.beta, torch.tensor(3.0), atol=1e-6, rtol=0)
    layer.double()
    q, k, v = f64(2, 3, 4), f64(2, 5, 4), f64(2, 5, 2)
    out, w = layer(q, k, v, PADDING)
    scores = layer.beta * F.cosine_similarity(q[:, :, None], k[:, None], dim=-1)
    ref_out, ref_w = hand_attend(scores, v, PADDING)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    # the scores only depend on directions: rescaling the keys changes nothing
    torch.testing.assert_close(layer(q, 10 * k, v, PADDING)[1], w, atol=1e-12, rtol=0)


def test_location_based_attention_ignores_key_content():
    """softmax(W_a q) over positions: only the number of keys matters, not their content."""
    layer = LocationBasedAttention(4, max_keys=7).double()
    q, v = f64(2, 3, 4), f64(2, 5, 2)
    out, w = layer(q, f64(2, 5, 6), v, PADDING)
    out2, w2 = layer(q, f64(2, 5, 6), v, PADDING)
    assert torch.equal(w, w2) and torch.equal(out, out2)
    ref_out, ref_w = hand_attend(q @ layer.weight[:, :5], v, PADDING)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)


def test_local_m_centres_are_positions():
    """local-m: the centre of query t is t (or the positions given)."""
    layer = LocalAttention(4, window=1, mode="local-m").double()
    q, k = f64(2, 3, 4), f64(2, 6, 4)
    assert torch.equal(layer.centers(q, k, None, None), torch.tensor([[0.0, 1, 2]] * 2).double())
    pos = torch.tensor([[4, 0, 5], [1, 1, 3]])
    assert torch.equal(layer.centers(q, k, None, pos), pos.double())
    assert torch.equal(
        layer.centers(q, k, None, torch.tensor([2, 3, 4])),
        torch.tensor([[2.0, 3, 4]] * 2).double(),
    )


def test_local_m_weights_are_general_softmax_in_window():
    """local-m: zero outside [t - D, t + D], the general-score softmax inside."""
    layer = LocalAttention(4, window=1, mode="local-m").double()
    q, k, v = f64(2, 4, 4), f64(2, 6, 4), f64(2, 6, 3)
    pos = torch.tensor([[0, 2, 3, 5], [5, 4, 1, 0]])
    out, w = layer(q, k, v, positions=pos)
    band = (torch.arange(6)[None, None, :] - pos[..., None]).abs() <= 1
    scores = torch.einsum("bqi,ij,bkj->bqk", q, layer.score.weight, k)
    ref_out, ref_w = hand_attend(scores, v, band)
    assert torch.equal(w[~band], torch.zeros_like(w[~band]))
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)


def test_local_p_weights_match_hand_formula():
    """local-p: p_t = (S - 1) sigmoid(v_p^T tanh(W_p h_t)) with S the unpadded length (so the
    centre is a valid 0-based position), then softmax in [p - D, p + D] times the Gaussian
    exp(-(s - p)^2 / (2 (D/2)^2))."""
    window = 2
    layer = LocalAttention(4, window=window, mode="local-p", key_dim=5).double()
    q, k, v = f64(2, 3, 4), f64(2, 5, 5), f64(2, 5, 2)
    out, w = layer(q, k, v, PADDING)
    lengths = PADDING[:, 0].sum(-1).double()  # (5, 3)
    sig = torch.sigmoid(torch.tanh(layer.w_p(q)) @ layer.v_p.weight[0])
    center = (lengths[:, None] - 1) * sig
    torch.testing.assert_close(layer.centers(q, k, PADDING, None), center, atol=1e-12, rtol=0)
    assert (center >= 0).all() and (center <= lengths[:, None] - 1).all()
    dist = torch.arange(5, dtype=torch.float64) - center[..., None]
    inside = (dist.abs() <= window) & PADDING
    scores = torch.einsum("bqi,ij,bkj->bqk", q, layer.score.weight, k)
    soft = torch.softmax(scores.masked_fill(~inside, float("-inf")), -1)
    ref_w = soft * torch.exp(-(dist**2) / (2 * (window / 2) ** 2))
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, ref_w @ v, atol=1e-12, rtol=0)
    assert torch.equal(w[1, :, 3:], torch.zeros(3, 2, dtype=torch.float64))


def test_hard_attention_eval_is_deterministic_argmax():
    """In eval mode HardAttention takes the argmax of the general score, every time."""
    layer = HardAttention(4, mode="sample").double().eval()
    q, k, v = f64(2, 3, 4), f64(2, 5, 4), f64(2, 5, 2)
    _, w1 = layer(q, k, v, PADDING)
    _, w2 = layer(q, k, v, PADDING)
    assert torch.equal(w1, w2)
    scores = torch.einsum("bqi,ij,bkj->bqk", q, layer.score.weight, k)
    idx = scores.masked_fill(~PADDING, float("-inf")).argmax(-1)
    torch.testing.assert_close(w1, F.one_hot(idx, 5).double(), atol=1e-12, rtol=0)


def test_hard_attention_training_samples():
    """In training (mode="sample") the choice varies between calls but stays one-hot and
    never picks a padding key."""
    layer = HardAttention(4, mode="sample").train()
    with torch.no_grad():
        layer.score.weight.mul_(0.01)  # near-uniform distribution: draws differ
    q, k, v = torch.randn(2, 6, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 2)
    draws = [layer(q, k, v, PADDING)[1] for _ in range(4)]
    for w in draws:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 6), atol=1e-6, rtol=0)
        assert torch.equal(w[1, :, 3:], torch.zeros(6, 2))
    assert any(not torch.equal(draws[0].argmax(-1), d.argmax(-1)) for d in draws[1:])


# -- MultiHeadAttention vs torch.nn.MultiheadAttention ----------------------------------------

CONFIGS = {
    "self": dict(e=6, heads=2, lq=4, lk=4, kdim=None, vdim=None, bias=True, batch_first=True),
    "cross": dict(e=6, heads=3, lq=3, lk=5, kdim=None, vdim=None, bias=True, batch_first=True),
    "kdim_vdim": dict(e=4, heads=2, lq=3, lk=5, kdim=5, vdim=7, bias=True, batch_first=True),
    "no_bias": dict(e=6, heads=2, lq=3, lk=5, kdim=None, vdim=None, bias=False, batch_first=True),
    "seq_first": dict(e=6, heads=2, lq=3, lk=5, kdim=3, vdim=None, bias=True, batch_first=False),
}
MASKS = ["none", "key_padding", "bool_attn", "float_attn", "both"]
BATCH = 2


def build_pair(cfg: dict, dtype: torch.dtype):
    """A torch MHA with random (non-zero) biases, and its attnlib copy."""
    ref = nn.MultiheadAttention(
        cfg["e"],
        cfg["heads"],
        bias=cfg["bias"],
        kdim=cfg["kdim"],
        vdim=cfg["vdim"],
        batch_first=cfg["batch_first"],
        dtype=dtype,
    )
    if cfg["bias"]:
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    return ref, MultiHeadAttention.from_torch(ref)


def make_inputs(cfg: dict, dtype: torch.dtype, name: str):
    e, lq, lk = cfg["e"], cfg["lq"], cfg["lk"]
    kdim, vdim = cfg["kdim"] or e, cfg["vdim"] or e
    if name == "self":
        q = torch.randn(BATCH, lq, e, dtype=dtype)
        k = v = q
    else:
        q = torch.randn(BATCH, lq, e, dtype=dtype)
        k = torch.randn(BATCH, lk, kdim, dtype=dtype)
        v = torch.randn(BATCH, lk, vdim, dtype=dtype)
    if not cfg["batch_first"]:
        q, k, v = (x.transpose(0, 1) for x in (q, k, v))
    return q, k, v


def make_masks(kind: str, lq: int, lk: int, dtype: torch.dtype):
    """(attnlib mask, torch kwargs) for the same constraint; no row is fully masked."""
    kpm = torch.zeros(BATCH, lk, dtype=torch.bool)
    kpm[1, -1] = True  # torch: True = padding
    attn = torch.rand(lq, lk) < 0.6
    attn[:, 0] = True  # attnlib: True = may attend
    if kind == "none":
        return None, {}
    if kind == "key_padding":
        return masks.from_key_padding_mask(kpm), {"key_padding_mask": kpm}
    if kind == "bool_attn":
        return attn, {"attn_mask": masks.to_torch_attn_mask(attn)}
    if kind == "float_attn":
        add = torch.randn(lq, lk, dtype=dtype)
        add[~attn] = float("-inf")
        return add, {"attn_mask": add}
    if kind == "both":
        ours = masks.from_key_padding_mask(kpm) & attn
        return ours, {"key_padding_mask": kpm, "attn_mask": masks.to_torch_attn_mask(attn)}
    raise AssertionError(kind)


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_from_torch_matches_torch_forward(name, mask_kind, dtype, assert_matches_torch):
    """Same output and per-head weights as nn.MultiheadAttention (average_attn_weights=False)
    for self/cross attention, kdim/vdim, bias or not, batch_first or not, and every mask."""
    cfg = CONFIGS[name]
    ref, ours = build_pair(cfg, dtype)
    q, k, v = make_inputs(cfg, dtype, name)
    mask, torch_kwargs = make_masks(mask_kind, cfg["lq"], cfg["lk"], dtype)
    ref_out, ref_w = ref(q, k, v, average_attn_weights=False, **torch_kwargs)
    out, w = ours(q, k, v, mask)
    assert w.shape == (BATCH, cfg["heads"], cfg["lq"], cfg["lk"])
    assert_matches_torch(out, ref_out)
    assert_matches_torch(w, ref_w)


@pytest.mark.parametrize("how", ["is_causal", "mask"])
def test_causal_matches_torch_causal_attn_mask(how, dtype, assert_matches_torch):
    """is_causal=True (or mask=causal_mask(L)) equals torch given the causal attn_mask."""
    cfg = CONFIGS["self"]
    ref, ours = build_pair(cfg, dtype)
    q, k, v = make_inputs(cfg, dtype, "self")
    causal = masks.causal_mask(cfg["lq"])
    ref_out, ref_w = ref(
        q, k, v, attn_mask=masks.to_torch_attn_mask(causal), average_attn_weights=False
    )
    if how == "is_causal":
        out, w = ours(q, k, v, is_causal=True)
    else:
        out, w = ours(q, k, v, causal)
    assert_matches_torch(out, ref_out)
    assert_matches_torch(w, ref_w)


def _in_proj_grads(ref: nn.MultiheadAttention):
    e = ref.embed_dim
    if ref._qkv_same_embed_dim:
        return ref.in_proj_weight.grad.split(e)
    return ref.q_proj_weight.grad, ref.k_proj_weight.grad, ref.v_proj_weight.grad


@pytest.mark.parametrize("name", list(CONFIGS))
def test_from_torch_matches_torch_gradients(name, dtype, assert_matches_torch):
    """backward of sum(output) gives the same parameter and input gradients as torch."""
    cfg = CONFIGS[name]
    ref, ours = build_pair(cfg, dtype)
    q, k, v = (x.detach().requires_grad_(True) for x in make_inputs(cfg, dtype, "cross"))
    mask, torch_kwargs = make_masks("both", cfg["lq"], cfg["lk"], dtype)
    ref(q, k, v, **torch_kwargs)[0].sum().backward()
    ref_input_grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    ours(q, k, v, mask)[0].sum().backward()
    for proj, g in zip((ours.q_proj, ours.k_proj, ours.v_proj), _in_proj_grads(ref), strict=True):
        assert_matches_torch(proj.weight.grad, g)
    assert_matches_torch(ours.out_proj.weight.grad, ref.out_proj.weight.grad)
    if cfg["bias"]:
        ours_bias = torch.cat([p.bias.grad for p in (ours.q_proj, ours.k_proj, ours.v_proj)])
        assert_matches_torch(ours_bias, ref.in_proj_bias.grad)
        assert_matches_torch(ours.out_proj.bias.grad, ref.out_proj.bias.grad)
    else:
        assert ours.q_proj.bias is None and ours.out_proj.bias is None
    for x, g in zip((q, k, v), ref_input_grads, strict=True):
        assert_matches_torch(x.grad, g)


def test_from_torch_copies_settings():
    """dtype, dropout, batch_first and the training flag come from the torch module."""
    ref = nn.MultiheadAttention(8, 4, dropout=0.25, batch_first=False, dtype=torch.float64)
    ref.eval()
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.q_proj.weight.dtype == torch.float64
    assert ours.dropout == 0.25 and ours.batch_first is False and not ours.training
    assert (ours.embed_dim, ours.num_heads, ours.head_dim) == (8, 4, 2)
    # a copy, not a view: changing torch's weights afterwards changes nothing
    with torch.no_grad():
        ref.in_proj_weight.zero_()
    assert ours.q_proj.weight.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{"add_bias_kv": True}, {"add_zero_attn": True}])
def test_from_torch_rejects_unsupported_options(kwargs):
    with pytest.raises(ValueError, match="add_bias_kv and add_zero_attn are not supported"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, **kwargs))


def test_from_torch_rejects_other_modules():
    with pytest.raises(
        TypeError, match=r"module: expected torch\.nn\.MultiheadAttention, got Linear"
    ):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))


def test_multi_head_attention_module_is_projections_around_function():
    """MultiHeadAttention = out_proj(multi_head_attention(q_proj(q), k_proj(k), v_proj(v)))."""
    mha = MultiHeadAttention(6, 3, kdim=4, vdim=5).double()
    q, k, v = f64(2, 3, 6), f64(2, 4, 4), f64(2, 4, 5)
    mask = PADDING[:, :, None, 1:]  # (B, 1, 1, 4)
    out, w = mha(q, k, v, mask)
    ref_out, ref_w = AF.multi_head_attention(mha.q_proj(q), mha.k_proj(k), mha.v_proj(v), 3, mask)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, mha.out_proj(ref_out), atol=1e-12, rtol=0)


def test_multi_head_attention_dropout_only_in_training():
    mha = MultiHeadAttention(8, 2, dropout=0.5).double()
    x = f64(2, 5, 8)
    out_eval, w_eval = mha.eval()(x, x, x)
    out_train, w_train = mha.train()(x, x, x)
    assert not torch.allclose(out_train, out_eval)
    torch.testing.assert_close(w_train, w_eval, atol=0, rtol=0)


# -- gradcheck of every layer (float64, w.r.t. the inputs) -------------------------------------

LAYERS = {
    "additive": lambda: AdditiveAttention(3, key_dim=4, hidden_dim=2),
    "luong_dot": lambda: LuongAttention(4, method="dot"),
    "luong_general": lambda: LuongAttention(3, key_dim=4, method="general"),
    "luong_concat": lambda: LuongAttention(3, key_dim=4, method="concat", hidden_dim=2),
    "content": lambda: ContentBasedAttention(4, beta=2.0),
    "location": lambda: LocationBasedAttention(3, max_keys=5),
    "local_m": lambda: LocalAttention(3, window=1, mode="local-m", key_dim=4),
    "local_p": lambda: LocalAttention(3, window=2, mode="local-p", key_dim=4),
    "sdpa": lambda: ScaledDotProductAttention(scale=0.6),
}
QUERY_DIM = {"luong_dot": 4, "content": 4, "sdpa": 4}


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradcheck_layer(name):
    layer = LAYERS[name]().double()
    dq = QUERY_DIM.get(name, 3)
    q, k, v = (
        f64(2, 3, dq, requires_grad=True),
        f64(2, 4, 4, requires_grad=True),
        f64(2, 4, 2, requires_grad=True),
    )
    mask = torch.ones(2, 1, 4, dtype=torch.bool)
    mask[1, :, -1] = False
    assert gradcheck(lambda q, k, v: layer(q, k, v, mask), (q, k, v))


def test_gradcheck_multi_head_attention_module():
    mha = MultiHeadAttention(4, 2, kdim=3, vdim=2).double()
    q, k, v = (
        f64(2, 3, 4, requires_grad=True),
        f64(2, 4, 3, requires_grad=True),
        f64(2, 4, 2, requires_grad=True),
    )
    mask = torch.ones(2, 1, 1, 4, dtype=torch.bool)
    mask[0, ..., 0] = False
    assert gradcheck(lambda q, k, v: mha(q, k, v, mask), (q, k, v))
    # causal self-attention of one sequence, through all four projections
    x = f64(1, 3, 4, requires_grad=True)
    assert gradcheck(lambda x: mha(x, x[..., :3], x[..., :2], is_causal=True), (x,))


def test_gradcheck_hard_attention_layer_wrt_value():
    """The hard choice is piecewise constant: check the gradient w.r.t. the values."""
    layer = HardAttention(3, key_dim=4).double().eval()
    q, k = f64(2, 3, 3), f64(2, 4, 4)
    v = f64(2, 4, 2, requires_grad=True)
    assert gradcheck(lambda v: layer(q, k, v)[0], (v,))


def test_scaled_dot_product_default_scale():
    """The default scale is 1/sqrt(d_k)."""
    q, k, v = f64(1, 2, 9), f64(1, 3, 9), f64(1, 3, 1)
    _, w = ScaledDotProductAttention()(q, k, v)
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(9), -1)
    torch.testing.assert_close(w, ref, atol=1e-14, rtol=0)


# -- the fast path: need_weights=False runs PyTorch's fused kernel -------------------------


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_path_matches_torch_and_the_weighted_path(name, mask_kind, dtype, tol):
    """need_weights=False: no weights, and the same output and gradients as the path that
    computes them and as nn.MultiheadAttention(need_weights=False), for every mask."""
    cfg = CONFIGS[name]
    ref, ours = build_pair(cfg, dtype)
    q, k, v = (x.detach().requires_grad_(True) for x in make_inputs(cfg, dtype, "cross"))
    mask, torch_kwargs = make_masks(mask_kind, cfg["lq"], cfg["lk"], dtype)
    fast, none = ours(q, k, v, mask, need_weights=False)
    assert none is None
    fast_grads = torch.autograd.grad(fast.sum(), (q, k, v, ours.q_proj.weight))
    slow, w = ours(q, k, v, mask)
    assert w is not None
    slow_grads = torch.autograd.grad(slow.sum(), (q, k, v, ours.q_proj.weight))
    ref_out, _ = ref(q, k, v, need_weights=False, **torch_kwargs)
    torch.testing.assert_close(fast, slow, **tol)
    torch.testing.assert_close(fast, ref_out, **tol)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fast_path_fully_masked_rows_give_zeros_not_nan(kind):
    """A query with no allowed key: zero output and zero gradients on the fast path too."""
    mha = MultiHeadAttention(8, 2).double()
    x = f64(2, 4, 8, requires_grad=True)
    allowed = torch.ones(4, 4, dtype=torch.bool)
    allowed[1] = False  # query 1 may attend to nothing
    mask = (
        allowed if kind == "bool" else torch.zeros(4, 4).double().masked_fill(~allowed, -math.inf)
    )
    fast, _ = mha(x, x, x, mask, need_weights=False)
    slow, w = mha(x, x, x, mask)
    assert not fast.isnan().any()
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=0)
    (grad,) = torch.autograd.grad(fast.sum(), x)
    (slow_grad,) = torch.autograd.grad(slow.sum(), x)
    assert not grad.isnan().any()
    torch.testing.assert_close(grad, slow_grad, atol=1e-12, rtol=0)
    assert (w[:, :, 1] == 0).all()


@pytest.mark.parametrize("lk", [4, 6])
def test_fast_path_is_causal(lk):
    """is_causal on the fast path: torch's kernel when square, the top-left mask otherwise."""
    mha = MultiHeadAttention(8, 2).double()
    q, kv = f64(2, 4, 8), f64(2, lk, 8)
    fast, _ = mha(q, kv, kv, is_causal=True, need_weights=False)
    slow, _ = mha(q, kv, kv, is_causal=True)
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=0)


def test_transformer_layers_take_the_fast_path_and_recording_switches_weights_on():
    """EncoderLayer asks for no weights; inside record_attention the same layer computes them,
    and the output does not change."""
    from attnlib.capture import record_attention
    from attnlib.transformer import EncoderLayer

    layer = EncoderLayer(8, 2, 16, dropout=0.0).double().eval()
    seen = []
    layer.self_attn.register_forward_hook(lambda m, a, out: seen.append(out[1]))
    x = f64(2, 5, 8)
    plain = layer(x)
    assert seen == [None]
    with record_attention(layer) as record:
        recorded = layer(x)
    assert seen[-1] is not None and record["self_attn"].shape == (2, 2, 5, 5)
    torch.testing.assert_close(plain, recorded, atol=1e-12, rtol=0)


def test_weights_hook_disables_the_fast_path():
    """An intervention on the weights is applied even when the caller asks for none."""
    mha = MultiHeadAttention(8, 2).double()
    x = f64(1, 3, 8)
    mha.weights_hook = lambda w: torch.full_like(w, 1 / 3)  # uniform attention
    out, w = mha(x, x, x, need_weights=False)
    v = mha.v_proj(x).mean(1, keepdim=True).expand(1, 3, 8)
    torch.testing.assert_close(out, mha.out_proj(v), atol=1e-12, rtol=0)
    assert w is not None
