"""Grouped-query and multi-query attention (``MultiHeadAttention(num_kv_heads=...)``)
and the size of the key/value cache.

The reference is ordinary multi-head attention whose key and value projections
repeat each key/value head for its group of query heads (Ainslie et al., 2023,
arXiv:2305.13245, section 2), with the weights copied; and PyTorch's
``scaled_dot_product_attention(..., enable_gqa=True)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlib.attention import KVCache, MultiHeadAttention
from attnlib.decoding import greedy_decode
from attnlib.masks import causal_mask
from attnlib.transformer import DecoderLM, EncoderLayer

D, H = 24, 6
TOL = 1e-12


def _pair(num_kv_heads: int, *, seed: int = 0, rotary: bool = False, **kw):
    """A grouped-query layer and the multi-head layer with its k/v heads repeated."""
    torch.manual_seed(seed)
    gqa = MultiHeadAttention(D, H, num_kv_heads=num_kv_heads, rotary=rotary, **kw).double()
    for p in gqa.parameters():  # non-zero biases too
        torch.nn.init.normal_(p, std=0.3)
    mha = MultiHeadAttention(D, H, rotary=rotary, **kw).double()
    group, dh = H // num_kv_heads, D // H
    with torch.no_grad():
        for name in ("q_proj", "out_proj"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(gqa, name), getattr(mha, name)
            # rows of kv head j: j*dh .. (j+1)*dh; query head i reads kv head i // group
            w = src.weight.view(num_kv_heads, dh, -1).repeat_interleave(group, 0)
            dst.weight.copy_(w.reshape(D, -1))
            if src.bias is not None:
                dst.bias.copy_(src.bias.view(num_kv_heads, dh).repeat_interleave(group, 0).ravel())
    return gqa, mha


def _inputs(b=3, lq=5, lk=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, lq, D, generator=g, dtype=torch.float64)
    kv = torch.randn(b, lk, D, generator=g, dtype=torch.float64)
    return q, kv


@pytest.mark.parametrize("num_kv_heads", [1, 2, 3, 6])
@pytest.mark.parametrize("need_weights", [True, False])
def test_equals_multi_head_with_repeated_heads(num_kv_heads, need_weights):
    gqa, mha = _pair(num_kv_heads)
    q, kv = _inputs()
    mask = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(2)) > 0.3
    mask[0, 0, 1] = False  # a query with no key: zeros, not NaN
    outs = []
    for layer in (gqa, mha):
        x, m = q.clone().requires_grad_(True), kv.clone().requires_grad_(True)
        out, w = layer(x, m, m, mask, need_weights=need_weights)
        (out * torch.linspace(-1, 1, D, dtype=out.dtype)).sum().backward()
        outs.append((out, w, x.grad, m.grad))
    (o1, w1, gx1, gm1), (o2, w2, gx2, gm2) = outs
    assert o1.isfinite().all()
    assert torch.allclose(o1, o2, rtol=0, atol=TOL)
    assert torch.allclose(gx1, gx2, rtol=0, atol=TOL)
    assert torch.allclose(gm1, gm2, rtol=0, atol=TOL)
    if need_weights:
        assert w1.shape == (3, H, 5, 7)
        assert torch.allclose(w1, w2, rtol=0, atol=TOL)
    else:
        assert w1 is None and w2 is None
    # the gradient of a shared k/v weight is the sum over its group of the repeated ones
    group, dh = H // num_kv_heads, D // H
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        a, b = getattr(gqa, name), getattr(mha, name)
        if name in ("k_proj", "v_proj"):
            gw = b.weight.grad.view(num_kv_heads, group, dh, D).sum(1).reshape(-1, D)
            gb = b.bias.grad.view(num_kv_heads, group, dh).sum(1).ravel()
        else:
            gw, gb = b.weight.grad, b.bias.grad
        assert torch.allclose(a.weight.grad, gw, rtol=0, atol=TOL), name
        assert torch.allclose(a.bias.grad, gb, rtol=0, atol=TOL), name


@pytest.mark.parametrize("num_kv_heads", [1, 2, 3])
@pytest.mark.parametrize(
    "mask_kind", ["none", "causal", "is_causal", "padding", "per_head", "additive", "2d"]
)
def test_fast_path_masks(num_kv_heads, mask_kind):
    """The fused path stacks a group's queries; every mask layout gives the
    repeated-heads result."""
    gqa, mha = _pair(num_kv_heads, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, D, generator=g, dtype=torch.float64)
    mask, is_causal = None, False
    if mask_kind == "causal":
        mask = causal_mask(6)[None, None]
    elif mask_kind == "is_causal":
        is_causal = True
    elif mask_kind == "padding":
        mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6], dtype=torch.bool)[:, None, None, :]
    elif mask_kind == "per_head":
        mask = torch.rand(2, H, 6, 6, generator=g) > 0.4
    elif mask_kind == "additive":
        mask = torch.randn(1, 1, 6, 6, generator=g, dtype=torch.float64)
    elif mask_kind == "2d":
        mask = torch.rand(6, 6, generator=g) > 0.5
    for need_weights in (False, True):
        a, _ = gqa(x, x, x, mask, is_causal=is_causal, need_weights=need_weights)
        b, _ = mha(x, x, x, mask, is_causal=is_causal, need_weights=need_weights)
        assert torch.allclose(a, b, rtol=0, atol=TOL), need_weights
        assert a.isfinite().all()


def test_against_torch_enable_gqa():
    """The heads by hand and PyTorch's own grouped-query SDPA."""
    if "enable_gqa" not in F.scaled_dot_product_attention.__doc__:
        pytest.skip("this torch's scaled_dot_product_attention has no enable_gqa")
    gqa, _ = _pair(2, seed=5)
    q_in, kv_in = _inputs(seed=6)
    mask = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(7)) > 0.2
    mask[..., 0] = True  # no empty rows: PyTorch's kernel gives NaN there
    dh = D // H
    q = gqa.q_proj(q_in).view(3, 5, H, dh).transpose(1, 2)  # (B, H, Lq, Dh)
    k = gqa.k_proj(kv_in).view(3, 7, 2, dh).transpose(1, 2)  # (B, Hkv, Lk, Dh)
    v = gqa.v_proj(kv_in).view(3, 7, 2, dh).transpose(1, 2)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    ref = gqa.out_proj(ref.transpose(1, 2).reshape(3, 5, D))
    for need_weights in (True, False):
        out, _ = gqa(q_in, kv_in, kv_in, mask, need_weights=need_weights)
        assert torch.allclose(out, ref, rtol=0, atol=TOL)


def test_multi_query_shapes_and_parameters():
    mqa = MultiHeadAttention(D, H, num_kv_heads=1)
    assert mqa.k_proj.weight.shape == (D // H, D)
    assert mqa.v_proj.weight.shape == (D // H, D)
    assert mqa.q_proj.weight.shape == (D, D)
    x = torch.randn(2, 4, D)
    out, w = mqa(x, x, x)
    assert out.shape == (2, 4, D) and w.shape == (2, H, 4, 4)
    assert "num_kv_heads=1" in repr(mqa)
    assert "num_kv_heads" not in repr(MultiHeadAttention(D, H))
    assert MultiHeadAttention(D, H).num_kv_heads == H
    # every query head of the single kv head sees the same keys: with equal
    # query projections per head the heads' weights are equal
    with torch.no_grad():
        mqa.q_proj.weight.copy_(mqa.q_proj.weight[: D // H].repeat(H, 1))
        mqa.q_proj.bias.zero_()
    _, w = mqa(x, x, x)
    assert torch.allclose(w, w[:, :1].expand_as(w))


@pytest.mark.parametrize("num_kv_heads", [1, 2, 6])
def test_cache_holds_kv_heads_only(num_kv_heads):
    layer = MultiHeadAttention(D, H, num_kv_heads=num_kv_heads).double().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    cache = KVCache()
    assert cache.nbytes == 0
    full, _ = layer(x, x, x, causal_mask(5))
    steps = [
        layer(x[:, i : i + 1], x[:, i : i + 1], x[:, i : i + 1], cache=cache)[0] for i in range(5)
    ]
    assert torch.allclose(torch.cat(steps, 1), full, rtol=0, atol=TOL)
    assert cache.key.shape == (2, num_kv_heads, 5, D // H)
    assert cache.nbytes == 2 * 2 * num_kv_heads * 5 * (D // H) * 8
    half = KVCache(key=cache.key.float(), value=cache.value.float())
    assert half.nbytes == cache.nbytes // 2


def test_static_cross_attention_cache():
    layer = MultiHeadAttention(D, H, num_kv_heads=2, kdim=10, vdim=10).double().eval()
    memory = torch.randn(2, 7, 10, dtype=torch.float64)
    tgt = torch.randn(2, 3, D, dtype=torch.float64)
    full, _ = layer(tgt, memory, memory)
    cache = KVCache(static=True)
    steps = [layer(tgt[:, i : i + 1], memory, memory, cache=cache)[0] for i in range(3)]
    assert torch.allclose(torch.cat(steps, 1), full, rtol=0, atol=TOL)
    assert cache.key.shape == (2, 2, 7, D // H) and len(cache) == 7


@pytest.mark.parametrize("num_kv_heads", [1, 3])
def test_rotary_with_cache(num_kv_heads):
    gqa, mha = _pair(num_kv_heads, seed=8, rotary=True)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    a, wa = gqa(x, x, x, is_causal=True)
    b, wb = mha(x, x, x, is_causal=True)
    assert torch.allclose(a, b, rtol=0, atol=TOL) and torch.allclose(wa, wb, rtol=0, atol=TOL)
    cache = KVCache()
    first, _ = gqa(x[:, :4], x[:, :4], x[:, :4], is_causal=True, cache=cache)
    rest = [gqa(x[:, i : i + 1], x[:, i : i + 1], x[:, i : i + 1], cache=cache)[0] for i in (4, 5)]
    assert torch.allclose(torch.cat([first, *rest], 1), a, rtol=0, atol=TOL)
    assert cache.key.shape[1] == num_kv_heads


def test_weights_hook_sees_all_query_heads():
    gqa, mha = _pair(2, seed=9)
    x = torch.randn(2, 4, D, dtype=torch.float64)
    seen = []

    def hook(w):
        seen.append(w.shape)
        return torch.flip(w, (-1,))

    gqa.weights_hook = mha.weights_hook = hook
    a, _ = gqa(x, x, x, need_weights=False)
    b, _ = mha(x, x, x, need_weights=False)
    assert seen == [(2, H, 4, 4)] * 2
    assert torch.allclose(a, b, rtol=0, atol=TOL)


def test_errors():
    with pytest.raises(
        ValueError, match=r"num_kv_heads: expected a divisor of num_heads \(6\), got 4"
    ):
        MultiHeadAttention(D, H, num_kv_heads=4)
    with pytest.raises(ValueError, match="num_kv_heads"):
        MultiHeadAttention(D, H, num_kv_heads=0)
    with pytest.raises((TypeError, ValueError), match="num_kv_heads"):
        MultiHeadAttention(D, H, num_kv_heads=2.0)
    with pytest.raises(ValueError, match="num_kv_heads"):
        DecoderLM(11, d_model=24, nhead=6, num_kv_heads=5)
    layer = MultiHeadAttention(D, H, num_kv_heads=2)
    x = torch.randn(2, 4, D)
    with pytest.raises(ValueError, match="mask"):
        layer(x, x, x, torch.ones(2, 2, 4, 4, dtype=torch.bool))  # kv heads, not query heads


def test_encoder_layer_and_defaults_pass_through():
    layer = EncoderLayer(D, H, 32, 0.0, num_kv_heads=3)
    assert layer.self_attn.num_kv_heads == 3
    assert EncoderLayer(D, H, 32).self_attn.num_kv_heads == H
    lm = DecoderLM(11, d_model=D, nhead=H, num_layers=3, num_kv_heads=2)
    assert all(b.self_attn.num_kv_heads == 2 for b in lm.blocks.layers)
    assert all(b.self_attn.k_proj.out_features == 2 * D // H for b in lm.blocks.layers)
    # the layers are freshly initialised, not copies of one another
    w = [b.self_attn.k_proj.weight for b in lm.blocks.layers]
    assert not torch.equal(w[0], w[1])
    assert DecoderLM(11, d_model=D, nhead=H).blocks.layers[0].self_attn.num_kv_heads == H


@pytest.mark.parametrize("num_kv_heads", [2, 1])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_decoder_lm_cached_generation_equals_uncached(num_kv_heads, positions):
    torch.manual_seed(10)
    lm = DecoderLM(
        23, d_model=D, nhead=H, num_layers=2, dropout=0.0, num_kv_heads=num_kv_heads,
        positions=positions, max_len=64,
    ).double().eval()  # fmt: skip
    prompt = torch.randint(3, 23, (3, 4), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        fast = greedy_decode(lm, prompt=prompt, max_new_tokens=20, eos_idx=None, use_cache=True)
        slow = greedy_decode(lm, prompt=prompt, max_new_tokens=20, eos_idx=None, use_cache=False)
        assert torch.equal(fast, slow)
        # the logits too, step by step
        cache = lm.new_cache()
        logits = [lm(fast[:, :4], cache)[:, -1]]
        logits += [lm(fast[:, i : i + 1], cache)[:, -1] for i in range(4, fast.shape[1] - 1)]
        full = lm(fast[:, :-1])[:, 3:]
    assert torch.allclose(torch.stack(logits, 1), full, rtol=0, atol=1e-10)
    length = fast.shape[1] - 1
    per_layer = 2 * 3 * num_kv_heads * length * (D // H) * 8
    assert [c.nbytes for c in cache] == [per_layer, per_layer]
