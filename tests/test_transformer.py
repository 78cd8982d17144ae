"""attnlib.transformer against torch.nn.Transformer* with copied weights."""

import pytest
import torch
from torch import nn

from attnlib.capture import record_attention
from attnlib.masks import causal_mask, create_masks, to_key_padding_mask, to_torch_attn_mask
from attnlib.transformer import DecoderLayer, EncoderLayer, Transformer

D, H, FF = 16, 4, 32
# torch warns that its nested-tensor fast path is off for these configurations.
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")


def _tokens(b, n, pad_from):
    tokens = torch.randint(1, 9, (b, n))
    for row, start in enumerate(pad_from):
        tokens[row, start:] = 0
    return tokens


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_equals_torch(norm_first, batch_first):
    ref = nn.Transformer(
        D, H, 2, 2, FF, dropout=0.0, batch_first=batch_first, norm_first=norm_first
    )
    ref.eval()
    ours = Transformer.from_torch(ref).eval()
    src, tgt = _tokens(3, 7, [5, 7, 2]), _tokens(3, 6, [6, 4, 6])
    src_emb, tgt_emb = torch.randn(3, 7, D), torch.randn(3, 6, D)
    src_mask, tgt_mask = create_masks(src, tgt)
    kpm = {
        "src_key_padding_mask": to_key_padding_mask(src_mask),
        "memory_key_padding_mask": to_key_padding_mask(src_mask),
        "tgt_key_padding_mask": tgt == 0,
        "tgt_mask": to_torch_attn_mask(causal_mask(6)),
    }
    if batch_first:
        expected = ref(src_emb, tgt_emb, **kpm)
    else:
        expected = ref(src_emb.transpose(0, 1), tgt_emb.transpose(0, 1), **kpm).transpose(0, 1)
    got = ours(src_emb, tgt_emb, src_mask, tgt_mask, src_mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_equals_torch_with_padding(norm_first):
    ref = nn.TransformerEncoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first).eval()
    ours = EncoderLayer.from_torch(ref).eval()
    src = _tokens(2, 5, [3, 5])
    x = torch.randn(2, 5, D)
    src_mask, _ = create_masks(src, src)
    expected = ref(x, src_key_padding_mask=src == 0)
    torch.testing.assert_close(ours(x, src_mask), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch_causal(norm_first):
    ref = nn.TransformerDecoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first)
    ref.eval()
    ours = DecoderLayer.from_torch(ref).eval()
    x, memory = torch.randn(2, 4, D), torch.randn(2, 6, D)
    expected = ref(x, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(4))
    torch.testing.assert_close(ours(x, memory, causal_mask(4)), expected, atol=1e-5, rtol=1e-5)


def test_decoder_has_no_causal_leak():
    """Changing target positions after t changes no decoder output at or before t."""
    model = Transformer(D, H, 1, 2, FF, dropout=0.0).eval()
    src, tgt = torch.randn(1, 5, D), torch.randn(1, 6, D)
    out = model(src, tgt, tgt_mask=causal_mask(6))
    for t in range(5):
        changed = tgt.clone()
        changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
        out2 = model(src, changed, tgt_mask=causal_mask(6))
        torch.testing.assert_close(out2[:, : t + 1], out[:, : t + 1], atol=1e-6, rtol=0)
        assert not torch.allclose(out2[:, t + 1 :], out[:, t + 1 :])


def test_every_layer_and_head_is_captured():
    model = Transformer(D, H, 2, 3, FF, dropout=0.0).eval()
    with record_attention(model) as record:
        model(torch.randn(2, 5, D), torch.randn(2, 4, D))
    assert len(record) == 2 + 3 * 2
    assert record["encoder.layers.1.self_attn"].shape == (2, H, 5, 5)
    assert record["decoder.layers.2.cross_attn"].shape == (2, H, 4, 5)


def test_stacked_layers_start_with_different_weights():
    model = Transformer(D, H, 2, 2, FF)
    for stack in (model.encoder, model.decoder):
        first, second = (dict(layer.named_parameters()) for layer in stack.layers)
        different = [
            n for n in first if n.endswith("weight") and not torch.equal(first[n], second[n])
        ]
        # every matrix differs; only the LayerNorms (ones) start equal
        assert all(n in different for n in first if first[n].dim() == 2), different
