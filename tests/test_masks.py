"""attnlib.masks on small, hand-checked examples, and against PyTorch's own mask helpers.
(Random shapes are covered by tests/test_properties.py.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attnlib.functional as AF
from attnlib import masks

T, F_ = True, False


def test_causal_mask_example():
    assert torch.equal(masks.causal_mask(3), torch.tensor([[T, F_, F_], [T, T, F_], [T, T, T]]))


def test_causal_mask_rectangular_is_top_left_aligned():
    """Like torch SDPA's is_causal: query i sees keys 0..i, whatever the key length."""
    assert torch.equal(masks.causal_mask(2, 4), torch.tensor([[T, F_, F_, F_], [T, T, F_, F_]]))
    assert torch.equal(masks.causal_mask(3, 2), torch.tensor([[T, F_], [T, T], [T, T]]))


def test_causal_mask_matches_torch_square_subsequent_mask():
    """nn.Transformer's float causal mask is the additive form of ours."""
    ours = masks.to_additive_mask(masks.causal_mask(5))
    assert torch.equal(ours, nn.Transformer.generate_square_subsequent_mask(5))


def test_padding_mask_example():
    tokens = torch.tensor([[4, 5, 0, 0], [7, 0, 8, 9]])
    m = masks.padding_mask(tokens)
    assert m.shape == (2, 1, 1, 4) and m.dtype == torch.bool
    assert torch.equal(m[:, 0, 0], torch.tensor([[T, T, F_, F_], [T, F_, T, T]]))
    m9 = masks.padding_mask(tokens, pad_idx=9)
    assert torch.equal(m9[:, 0, 0], torch.tensor([[T, T, T, T], [T, T, T, F_]]))


def test_padded_keys_get_no_attention():
    """Used as an SDPA mask, a padding mask zeroes the weights of the padding keys."""
    tokens = torch.tensor([[4, 5, 0, 0], [7, 8, 9, 3]])
    q = torch.randn(2, 2, 3, 4)
    kv = torch.randn(2, 2, 4, 4)
    _, w = AF.scaled_dot_product_attention(q, kv, kv, masks.padding_mask(tokens))
    assert torch.equal(w[0, ..., 2:], torch.zeros(2, 3, 2))
    assert (w[1] > 0).all()


def test_mask_future_tokens_example():
    batch = torch.tensor([[1, 2, 3], [4, 0, 0]])
    m = masks.mask_future_tokens(batch)
    assert m.shape == (2, 1, 3, 3)
    for b in range(2):
        assert torch.equal(m[b, 0], masks.causal_mask(3))


def test_create_masks_example():
    """The target mask hides padding keys and future positions; the source mask padding only."""
    src = torch.tensor([[5, 6, 0]])
    tgt = torch.tensor([[1, 2, 0]])
    src_mask, tgt_mask = masks.create_masks(src, tgt)
    assert torch.equal(src_mask, torch.tensor([[[[T, T, F_]]]]))
    expected = torch.tensor([[T, F_, F_], [T, T, F_], [T, T, F_]])
    assert torch.equal(tgt_mask, expected[None, None])


def test_sliding_window_mask_example():
    expected = torch.tensor(
        [[T, T, F_, F_, F_], [T, T, T, F_, F_], [F_, T, T, T, F_], [F_, F_, T, T, T]]
    )
    assert torch.equal(masks.sliding_window_mask(4, 5, window=1), expected)
    causal = torch.tensor(
        [[T, F_, F_, F_, F_], [T, T, F_, F_, F_], [F_, T, T, F_, F_], [F_, F_, T, T, F_]]
    )
    assert torch.equal(masks.sliding_window_mask(4, 5, window=1, causal=True), causal)
    assert torch.equal(masks.sliding_window_mask(3, window=0), torch.eye(3, dtype=torch.bool))


def test_sliding_window_mask_wide_window_is_everything():
    assert masks.sliding_window_mask(4, 6, window=10).all()
    assert torch.equal(masks.sliding_window_mask(4, window=10, causal=True), masks.causal_mask(4))


def test_to_torch_attn_mask_inverts():
    m = torch.tensor([[T, F_], [F_, T]])
    assert torch.equal(masks.to_torch_attn_mask(m), torch.tensor([[F_, T], [T, F_]]))


@pytest.mark.parametrize("shape", [(2, 4), (2, 1, 1, 4)])
def test_to_key_padding_mask_accepts_both_layouts(shape):
    m = torch.tensor([[T, T, F_, F_], [T, T, T, T]]).view(shape)
    assert torch.equal(
        masks.to_key_padding_mask(m), torch.tensor([[F_, F_, T, T], [F_, F_, F_, F_]])
    )


def test_from_key_padding_mask_example():
    kpm = torch.tensor([[F_, T, T]])  # torch: True = padding
    assert torch.equal(masks.from_key_padding_mask(kpm), torch.tensor([[[[T, F_, F_]]]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_to_additive_mask_dtype_and_values(dtype):
    add = masks.to_additive_mask(torch.tensor([T, F_, T]), dtype)
    assert add.dtype == dtype
    assert add.tolist() == [0.0, float("-inf"), 0.0]


def test_to_additive_mask_default_dtype_is_float32():
    assert masks.to_additive_mask(torch.tensor([T, F_])).dtype == torch.float32


def test_masks_are_created_on_the_requested_device():
    meta = torch.device("meta")
    assert masks.causal_mask(3, device=meta).device == meta
    assert masks.sliding_window_mask(3, window=1, device=meta).device == meta
