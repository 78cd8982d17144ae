"""Rotary positions inside :class:`~attnlib.attention.MultiHeadAttention` and
:class:`~attnlib.transformer.DecoderLM`, against Hugging Face's GPT-J attention
(which rotates interleaved feature pairs, as attnlib does)."""

from __future__ import annotations

import pytest
import torch

from attnlib.attention import KVCache, MultiHeadAttention
from attnlib.masks import causal_mask
from attnlib.transformer import DecoderLM, _causal_after

transformers = pytest.importorskip("transformers")
from transformers.models.gptj.modeling_gptj import GPTJAttention  # noqa: E402

D, H, L = 32, 4, 11


def _gptj_and_ours(dtype):
    torch.manual_seed(0)
    config = transformers.GPTJConfig(
        n_embd=D, n_head=H, rotary_dim=D // H, n_positions=64, attn_pdrop=0.0, resid_pdrop=0.0
    )
    config._attn_implementation = "eager"
    theirs = GPTJAttention(config, layer_idx=0).to(dtype).eval()
    ours = MultiHeadAttention(D, H, bias=False, rotary=True).to(dtype).eval()
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            getattr(ours, name).weight.copy_(getattr(theirs, name).weight)
    return theirs, ours


# GPT-J computes its angles in float32, hence 1e-7 in float64
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-7)])
def test_rotary_attention_equals_gptj(dtype, tol):
    theirs, ours = _gptj_and_ours(dtype)
    x = torch.randn(2, L, D, dtype=dtype)
    causal = causal_mask(L)  # (L, L), True = may attend
    additive = torch.zeros(L, L, dtype=dtype).masked_fill(~causal, torch.finfo(dtype).min)
    positions = torch.arange(L)[None].expand(2, L)
    with torch.no_grad():
        expected, expected_w = theirs(
            x, attention_mask=additive[None, None], position_ids=positions
        )[:2]
        out, weights = ours(x, x, x, causal)
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)
    torch.testing.assert_close(weights, expected_w, atol=tol, rtol=tol)


def test_rotary_changes_the_output():
    """The rotation is applied: without it the same weights give another output."""
    _, ours = _gptj_and_ours(torch.float64)
    plain = MultiHeadAttention(D, H, bias=False).double().eval()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(1, L, D, dtype=torch.float64)
    mask = causal_mask(L)
    assert (ours(x, x, x, mask)[0] - plain(x, x, x, mask)[0]).abs().max() > 1e-3


def test_rotary_decoder_with_cache_equals_without():
    """Tokens fed in chunks continue the positions after the cached ones."""
    torch.manual_seed(1)
    lm = DecoderLM(20, 16, 2, 2, 32, 0.0, 8, positions="rotary").double().eval()
    x = torch.randint(0, 20, (3, 30))  # longer than max_len: rotary has no table
    with torch.no_grad():
        full = lm(x)
        cache = lm.new_cache()
        chunks = [lm(x[:, i : i + 7], cache) for i in range(0, 30, 7)]
    torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-12, rtol=1e-12)


def test_rotary_scores_are_shift_invariant():
    """Rotary positions make scores depend on relative positions only: four
    tokens at positions 0-3, and the same four at 5-8 after a cached prefix,
    give the last query the same weights over them (renormalised)."""
    torch.manual_seed(2)
    attn = MultiHeadAttention(16, 2, rotary=True).double().eval()
    x = torch.randn(1, 4, 16, dtype=torch.float64)
    prefix = torch.randn(1, 5, 16, dtype=torch.float64)
    cache = KVCache()
    with torch.no_grad():
        _, w = attn(x, x, x, causal_mask(4))  # (1, H, 4, 4)
        attn(prefix, prefix, prefix, causal_mask(5), cache=cache)
        _, w_late = attn(x, x, x, _causal_after(4, 5, None), cache=cache)  # (1, H, 4, 9)
    shared = w_late[..., 5:] / w_late[..., 5:].sum(-1, keepdim=True)
    torch.testing.assert_close(shared, w, atol=1e-12, rtol=1e-12)


def test_learned_decoder_is_unchanged_and_embedding_starts_small():
    lm = DecoderLM(50, 16, 2, 1)
    assert lm.positions.embedding.weight.shape == (256, 16)
    assert 0.01 < float(lm.embedding.weight.detach().std()) < 0.03  # GPT-2's 0.02


def test_rotary_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"rotary: needs an even head size .* 6 / 2 = 3"):
        MultiHeadAttention(6, 2, rotary=True)
    attn = MultiHeadAttention(8, 2, rotary=True)
    with pytest.raises(ValueError, match="rotary: self-attention only"):
        attn(torch.randn(1, 3, 8), torch.randn(1, 5, 8), torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="positions: expected one of"):
        DecoderLM(10, positions="alibi")
