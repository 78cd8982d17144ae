"""attnlib's :class:`~attnlib.transformer.DecoderLM` against Hugging Face's GPT-2.

The check minGPT makes (``GPT.from_pretrained``): a copy of a ``GPT2LMHeadModel``
(Radford et al., 2019) gives the same logits, greedy continuations, attention
maps and gradients. Offline: small random configurations, nothing downloaded.
Also the attention-only layers (``attention_only=True``; Elhage et al., 2021;
Olsson et al., 2022, arXiv:2209.11895) and the ``"gelu_tanh"`` activation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlib.capture import record_attention
from attnlib.decoding import greedy_decode
from attnlib.transformer import DecoderLM, EncoderLayer

transformers = pytest.importorskip("transformers")

VOCAB, N_LAYER, N_HEAD, N_EMBD, N_POS = 97, 3, 4, 32, 64


def gpt2_config(**overrides):
    kw = dict(
        vocab_size=VOCAB,
        n_positions=N_POS,
        n_embd=N_EMBD,
        n_layer=N_LAYER,
        n_head=N_HEAD,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        attn_implementation="eager",
    )
    kw.update(overrides)
    return transformers.GPT2Config(**kw)


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random values for every parameter, LayerNorms and biases included (GPT-2's
    initialisation sets biases to 0 and LayerNorm gains to 1, which would hide
    a bias or gain copied to the wrong place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if ".ln_" in name or name.startswith("ln_"):
                p.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.2 * noise)
            else:
                p.copy_(0.2 * noise)
    return model


def hf_gpt2(dtype: torch.dtype = torch.float32, cls=None, **overrides):
    cls = cls or transformers.GPT2LMHeadModel
    model = cls(gpt2_config(**overrides))
    return randomize_(model).to(dtype).eval()


def tokens(batch: int = 3, length: int = 20, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=gen)


# -- logits ---------------------------------------------------------------------------


def test_logits_match_gpt2(dtype, tol, assert_matches_torch):
    hf = hf_gpt2(dtype)
    lm = DecoderLM.from_huggingface(hf)
    x = tokens()
    with torch.no_grad():
        ours, theirs = lm(x), hf(x).logits
    assert ours.shape == (3, 20, VOCAB)
    assert ours.dtype == dtype and not lm.training
    assert_matches_torch(ours, theirs)
    # the test can fail: the logits are far from constant
    assert theirs.std() > 0.1


def test_full_context_and_gpt2model(dtype, tol):
    """A GPT2Model (no head) copies too; a sequence of n_positions tokens works."""
    hf = hf_gpt2(dtype, transformers.GPT2Model)
    lm = DecoderLM.from_huggingface(hf)
    assert lm.max_len == N_POS
    x = tokens(2, N_POS)
    with torch.no_grad():
        hidden = hf(x).last_hidden_state
        expected = hidden @ hf.wte.weight.t()
        torch.testing.assert_close(lm(x), expected, **tol)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu_pytorch_tanh", "gelu", "relu"])
def test_activations_match(activation):
    hf = hf_gpt2(torch.float64, activation_function=activation)
    lm = DecoderLM.from_huggingface(hf)
    expected = {"gelu": "gelu", "relu": "relu"}.get(activation, "gelu_tanh")
    assert {layer.ff.activation for layer in lm.blocks.layers} == {expected}
    x = tokens(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(lm(x), hf(x).logits, atol=1e-10, rtol=1e-10)


def test_gelu_tanh_is_gpt2_gelu_new():
    """``"gelu_tanh"`` is GPT-2's formula 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = torch.linspace(-6, 6, 201, dtype=torch.float64)
    ours = EncoderLayer(4, 1, 8, 0.0, True, "gelu_tanh").ff
    ours.linear1 = nn.Identity()
    ours.linear2 = nn.Identity()
    expected = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(ours(x[None, :, None].expand(1, -1, 8))[0, :, 0], expected)
    # and it is not the exact GELU
    assert (expected - F.gelu(x)).abs().max() > 1e-4


# -- generation and the cache ---------------------------------------------------------


def _reference_greedy(hf, prompt: torch.Tensor, n: int) -> tuple[torch.Tensor, float]:
    """HF's greedy continuation, and the smallest top-1/top-2 logit gap along it."""
    out = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=False,
        max_new_tokens=n,
        min_new_tokens=n,
        pad_token_id=0,
    )
    with torch.no_grad():
        logits = hf(out).logits[:, prompt.shape[1] - 1 : -1]  # the logits of each pick
    top2 = logits.topk(2, dim=-1).values
    assert torch.equal(logits.argmax(-1), out[:, prompt.shape[1] :])
    return out, (top2[..., 0] - top2[..., 1]).min().item()


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_greedy_decode_matches_generate(dtype, use_cache):
    hf = hf_gpt2(dtype)
    lm = DecoderLM.from_huggingface(hf)
    prompt = tokens(2, 5, seed=3)
    expected, gap = _reference_greedy(hf, prompt, 20)
    assert gap > 1e-4, "near tie in the reference: pick another seed"
    got = greedy_decode(lm, None, 20, bos_idx=0, eos_idx=None, prompt=prompt, use_cache=use_cache)
    assert got.shape == (2, 25)
    assert torch.equal(got, expected)
    # not a trivial continuation (one token repeated)
    assert len(set(expected[:, 5:].flatten().tolist())) > 2


def test_incremental_logits_match_full_forward(dtype, tol):
    hf = hf_gpt2(dtype)
    lm = DecoderLM.from_huggingface(hf)
    x = tokens(2, 16, seed=4)
    cache = lm.new_cache()
    with torch.no_grad():
        parts = [lm(x[:, :6], cache)]  # a prompt, then one token at a time, then a chunk
        parts += [lm(x[:, i : i + 1], cache) for i in range(6, 13)]
        parts.append(lm(x[:, 13:], cache))
        stepped, full = torch.cat(parts, 1), lm(x)
        torch.testing.assert_close(stepped, full, **tol)
        torch.testing.assert_close(stepped, hf(x).logits, **tol)
    assert len(cache[0]) == 16


# -- attention maps and gradients -----------------------------------------------------


def test_attention_maps_match_output_attentions(dtype, tol):
    hf = hf_gpt2(dtype)
    lm = DecoderLM.from_huggingface(hf)
    x = tokens(2, 14, seed=5)
    with torch.no_grad(), record_attention(lm) as rec:
        lm(x)
    with torch.no_grad():
        theirs = hf(x, output_attentions=True).attentions
    assert len(rec) == len(theirs) == N_LAYER
    for name, expected in zip(rec.names(), theirs, strict=True):
        assert rec[name].shape == (2, N_HEAD, 14, 14)
        torch.testing.assert_close(rec[name], expected, **tol)
    # heads differ (a swapped head order would be seen)
    assert (theirs[0][:, 0] - theirs[0][:, 1]).abs().max() > 1e-2


def test_gradients_match_float64():
    hf = hf_gpt2(torch.float64)
    lm = DecoderLM.from_huggingface(hf)
    x = tokens(2, 12, seed=6)
    target = tokens(2, 12, seed=7)

    def loss(logits):
        return F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))

    loss(lm(x)).backward()
    loss(hf(x).logits).backward()
    tol = dict(atol=1e-10, rtol=1e-10)
    gpt, D = hf.transformer, N_EMBD
    torch.testing.assert_close(lm.embedding.weight.grad, gpt.wte.weight.grad, **tol)
    torch.testing.assert_close(lm.positions.embedding.weight.grad, gpt.wpe.weight.grad, **tol)
    for i in (0, N_LAYER - 1):
        ours, theirs = lm.blocks.layers[i], gpt.h[i]
        w = theirs.attn.c_attn.weight.grad
        for j, proj in enumerate((ours.self_attn.q_proj, ours.self_attn.k_proj)):
            torch.testing.assert_close(proj.weight.grad, w[:, j * D : (j + 1) * D].t(), **tol)
        torch.testing.assert_close(
            ours.ff.linear1.weight.grad, theirs.mlp.c_fc.weight.grad.t(), **tol
        )
        torch.testing.assert_close(ours.norm2.bias.grad, theirs.ln_2.bias.grad, **tol)
    torch.testing.assert_close(lm.blocks.norm.weight.grad, gpt.ln_f.weight.grad, **tol)
    assert gpt.h[0].attn.c_attn.weight.grad.abs().max() > 1e-6


# -- what is copied: dtype, mode, dropout, every tensor -------------------------------


def test_mode_dropout_and_independent_copy():
    hf = transformers.GPT2LMHeadModel(
        gpt2_config(embd_pdrop=0.1, attn_pdrop=0.2, resid_pdrop=0.3)
    ).to(torch.float64)
    hf.train()
    lm = DecoderLM.from_huggingface(hf)
    assert lm.training and lm.embedding.weight.dtype == torch.float64
    assert lm.positions.dropout.p == 0.1
    for layer in lm.blocks.layers:
        assert layer.self_attn.dropout == 0.2
        assert layer.dropout1.p == layer.dropout2.p == 0.3
        assert layer.ff.dropout.p == 0.0  # GPT-2 has no dropout inside its MLP
        assert layer.norm1.eps == layer.norm2.eps == hf.config.layer_norm_epsilon
    assert lm.lm_head.weight is lm.embedding.weight
    # a copy, not a view of the Hugging Face tensors
    before = lm.blocks.layers[0].self_attn.q_proj.weight.clone()
    with torch.no_grad():
        hf.transformer.h[0].attn.c_attn.weight.add_(1.0)
    assert torch.equal(lm.blocks.layers[0].self_attn.q_proj.weight, before)


def test_layer_norm_epsilon_is_copied():
    hf = hf_gpt2(torch.float64, layer_norm_epsilon=0.5)
    lm = DecoderLM.from_huggingface(hf)
    assert lm.blocks.norm.eps == 0.5
    x = tokens(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(lm(x), hf(x).logits, atol=1e-10, rtol=1e-10)


def test_n_inner_is_copied():
    hf = hf_gpt2(torch.float64, n_inner=24)
    lm = DecoderLM.from_huggingface(hf)
    assert lm.blocks.layers[0].ff.linear1.out_features == 24
    x = tokens(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(lm(x), hf(x).logits, atol=1e-10, rtol=1e-10)


# -- errors ---------------------------------------------------------------------------


def test_refuses_a_model_that_is_not_gpt2():
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    )
    with pytest.raises(ValueError, match="GPT2"):
        DecoderLM.from_huggingface(bert)
    with pytest.raises(ValueError, match="GPT2"):
        DecoderLM.from_huggingface(nn.Linear(3, 3))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"activation_function": "silu"}, "activation_function"),
        ({"activation_function": "quick_gelu"}, "activation_function"),
        ({"scale_attn_weights": False}, "scale_attn_weights"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
        ({"add_cross_attention": True}, "add_cross_attention"),
    ],
)
def test_refuses_what_it_cannot_represent(overrides, field):
    hf = transformers.GPT2LMHeadModel(gpt2_config(**overrides))
    with pytest.raises(ValueError, match=rf"model\.config\.{field}"):
        DecoderLM.from_huggingface(hf)


def test_refuses_an_untied_output_layer():
    hf = transformers.GPT2LMHeadModel(gpt2_config(tie_word_embeddings=False))
    with torch.no_grad():
        hf.lm_head.weight.copy_(torch.randn_like(hf.lm_head.weight))
    with pytest.raises(ValueError, match=r"model\.config\.tie_word_embeddings"):
        DecoderLM.from_huggingface(hf)


# -- attention-only Transformers ------------------------------------------------------


def test_attention_only_layers_have_no_feedforward():
    lm = DecoderLM(VOCAB, d_model=16, nhead=2, num_layers=2, attention_only=True)
    full = DecoderLM(VOCAB, d_model=16, nhead=2, num_layers=2)
    assert lm.attention_only and not full.attention_only
    for layer in lm.blocks.layers:
        assert layer.ff is None and layer.norm2 is None and not layer.feedforward
    names = {n for n, _ in lm.named_parameters()}
    assert not any(".ff." in n or ".norm2." in n for n in names)
    ff_params = sum(p.numel() for n, p in full.named_parameters() if ".ff." in n or ".norm2." in n)
    n_params = sum(p.numel() for p in lm.parameters())
    assert n_params == sum(p.numel() for p in full.parameters()) - ff_params
    assert all(layer.ff is not None for layer in full.blocks.layers)


def test_attention_only_matches_a_hand_computation(dtype, tol):
    """One layer: logits = LN_f(x + SA(LN_1(x))) E^T with x = E[t] + P[pos]."""
    lm = DecoderLM(VOCAB, d_model=16, nhead=2, num_layers=1, dropout=0.0, attention_only=True)
    lm = lm.to(dtype).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters
        for p in lm.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    x = tokens(2, 9, seed=8)
    layer = lm.blocks.layers[0]
    sa = layer.self_attn
    B, L, H, Dh = 2, 9, 2, 8
    h = lm.embedding.weight[x] + lm.positions.embedding.weight[:L]
    a = layer.norm1(h)

    def heads(t):
        return t.view(B, L, H, Dh).transpose(1, 2)

    q, k, v = heads(sa.q_proj(a)), heads(sa.k_proj(a)), heads(sa.v_proj(a))
    scores = q @ k.transpose(-1, -2) / math.sqrt(Dh)
    future = torch.ones(L, L, dtype=torch.bool).triu(1)
    weights = scores.masked_fill(future, float("-inf")).softmax(-1)
    out = sa.out_proj((weights @ v).transpose(1, 2).reshape(B, L, H * Dh))
    expected = lm.blocks.norm(h + out) @ lm.embedding.weight.t()
    with torch.no_grad():
        torch.testing.assert_close(lm(x), expected.detach(), **tol)
    # without the attention term the logits differ: the hand computation is not vacuous
    assert (lm.blocks.norm(h) @ lm.embedding.weight.t() - expected).abs().max() > 1e-2


def test_attention_only_cache_and_recording(dtype, tol):
    lm = DecoderLM(
        VOCAB, d_model=16, nhead=2, num_layers=3, dropout=0.0, attention_only=True, max_len=32
    )
    lm = lm.to(dtype).eval()
    x = tokens(2, 12, seed=9)
    cache = lm.new_cache()
    with torch.no_grad(), record_attention(lm) as rec:
        full = lm(x)
        stepped = torch.cat(
            [lm(x[:, :4], cache)] + [lm(x[:, i : i + 1], cache) for i in range(4, 12)], 1
        )
    torch.testing.assert_close(stepped, full, **tol)
    assert len(rec) == 3
    for name in rec.names():
        assert rec.calls[name][0].shape == (2, 2, 12, 12)
    expected = x[:, :3]
    with torch.no_grad():
        for _ in range(6):  # greedy by hand, with full forwards
            expected = torch.cat([expected, lm(expected)[:, -1:].argmax(-1)], 1)
    for use_cache in (True, False):
        out = greedy_decode(
            lm, None, 6, bos_idx=0, eos_idx=None, prompt=x[:, :3], use_cache=use_cache
        )
        assert torch.equal(out, expected)


def test_attention_only_post_norm_layer():
    layer = EncoderLayer(8, 2, 16, 0.0, norm_first=False, feedforward=False).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        expected = layer.norm1(x + layer.self_attn(x, x, x)[0])
        torch.testing.assert_close(layer(x), expected)
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer(8, 2, activation="tanh", feedforward=False)
