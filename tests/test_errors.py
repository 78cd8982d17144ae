"""Every error names the argument, what was expected and what was given (shape or dtype)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import attnlib.functional as AF
from attnlib import masks, plotting
from attnlib.attention import (
    AdditiveAttention,
    HardAttention,
    LocalAttention,
    LocationBasedAttention,
    LuongAttention,
    MultiHeadAttention,
)
from attnlib.seq2seq import Seq2Seq


def r(*shape) -> torch.Tensor:
    return torch.randn(*shape)


def esc(text: str) -> str:
    return re.escape(text)


def sdpa(q, k, v, **kw):
    return lambda: AF.scaled_dot_product_attention(r(*q), r(*k), r(*v), **kw)


def layer_call(layer, q, k, v, mask=None):
    return lambda: layer(r(*q), r(*k), r(*v), mask)


INT_MASK = torch.ones(3, 5, dtype=torch.int64)

CASES = [
    # -- scaled dot-product attention: ranks, sizes, masks
    pytest.param(
        sdpa((5,), (5,), (5,)),
        ValueError,
        esc("query: expected at least 2 dimensions (..., length, features), got shape (5)"),
        id="sdpa-query-rank",
    ),
    pytest.param(
        sdpa((2, 3, 4), (5, 4), (5, 4)),
        ValueError,
        esc("key: expected 3 dimensions like query (2, 3, 4), got shape (5, 4)"),
        id="sdpa-key-rank",
    ),
    pytest.param(
        sdpa((2, 3, 4), (2, 5, 4), (5, 3)),
        ValueError,
        esc("value: expected shape (..., 5, d_v) matching key (2, 5, 4)")
        + ".*got "
        + esc("(5, 3)"),
        id="sdpa-value-rank",
    ),
    pytest.param(
        sdpa((2, 3, 4), (2, 5, 6), (2, 5, 3)),
        ValueError,
        esc("key: expected feature size 4 (the query's), got shape (2, 5, 6)"),
        id="sdpa-key-features",
    ),
    pytest.param(
        sdpa((2, 3, 4), (2, 5, 4), (2, 6, 3)),
        ValueError,
        esc("value: expected shape (..., 5, d_v) matching key (2, 5, 4)")
        + ".*got "
        + esc("(2, 6, 3)"),
        id="sdpa-value-length",
    ),
    pytest.param(
        sdpa((2, 3, 4), (3, 5, 4), (3, 5, 4)),
        ValueError,
        esc("key: expected the same batch dimensions as query (2), got (3)"),
        id="sdpa-batch",
    ),
    pytest.param(
        sdpa((2, 3, 4), (2, 5, 4), (2, 5, 4), attn_mask=torch.ones(3, 5, dtype=torch.int64)),
        TypeError,
        esc("attn_mask: expected dtype torch.bool") + ".*" + esc("got dtype torch.int64"),
        id="sdpa-mask-dtype",
    ),
    pytest.param(
        sdpa((2, 4, 5, 3), (2, 4, 7, 3), (2, 4, 7, 3), attn_mask=torch.ones(2, 5, 6, dtype=bool)),
        ValueError,
        esc("attn_mask: expected a shape broadcastable to (2, 4, 5, 7)")
        + ".*"
        + esc("got (2, 5, 6)"),
        id="sdpa-mask-shape",
    ),
    pytest.param(
        sdpa((2, 3, 4), (2, 5, 4), (2, 5, 4), attn_mask=torch.ones(1, 2, 3, 5, dtype=bool)),
        ValueError,
        esc("attn_mask: expected a shape broadcastable to (2, 3, 5)")
        + ".*"
        + esc("got (1, 2, 3, 5)"),
        id="sdpa-mask-rank",
    ),
    pytest.param(
        lambda: AF.scaled_dot_product_attention([1.0], r(2, 3), r(2, 3)),
        TypeError,
        esc("query: expected a torch.Tensor, got list"),
        id="sdpa-not-a-tensor",
    ),
    pytest.param(
        lambda: AF.masked_softmax(r(3, 5), INT_MASK),
        TypeError,
        esc("mask: expected dtype torch.bool") + ".*" + esc("got dtype torch.int64"),
        id="masked_softmax-mask-dtype",
    ),
    pytest.param(
        lambda: AF.calculate_attention_weights(r(2, 3, 4), r(2, 5, 4), r(2, 5, 4), INT_MASK),
        TypeError,
        esc("attn_mask: expected dtype torch.bool") + ".*" + esc("got dtype torch.int64"),
        id="calculate_attention_weights-mask-dtype",
    ),
    pytest.param(
        lambda: AF.attend(r(2, 3, 5), r(2, 4, 2)),
        ValueError,
        esc("value: expected shape (..., 5, d_v) with one value per key of scores (2, 3, 5), ")
        + esc("got (2, 4, 2)"),
        id="attend-value",
    ),
    # -- scores
    pytest.param(
        lambda: AF.general_score(r(2, 3, 4), r(2, 5, 6), r(6, 4)),
        ValueError,
        esc("weight: expected shape (4, 6) (query features, key features), got (6, 4)"),
        id="general-weight",
    ),
    pytest.param(
        lambda: AF.additive_score(r(2, 3, 4), r(2, 5, 6), r(4, 7), r(5, 7), r(7)),
        ValueError,
        esc("w_key: expected shape (6, 7) (features, hidden), got (5, 7)"),
        id="additive-w_key",
    ),
    pytest.param(
        lambda: AF.concat_score(r(2, 3, 4), r(2, 5, 6), r(9, 7), r(7)),
        ValueError,
        esc("weight: expected size 10 in dimension 0 (query features + key features), ")
        + esc("got shape (9, 7)"),
        id="concat-weight",
    ),
    pytest.param(
        lambda: AF.dot_score(r(2, 3, 4), r(2, 5, 6)),
        ValueError,
        esc("key: expected feature size 4 (the query's), got shape (2, 5, 6)"),
        id="dot-key-features",
    ),
    pytest.param(
        lambda: AF.location_score(r(2, 3, 4), r(4, 5), 6),
        ValueError,
        esc("num_keys: expected at most 5 (the weight's max_keys), got 6"),
        id="location-num_keys",
    ),
    # -- multi-head
    pytest.param(
        lambda: MultiHeadAttention(10, 3),
        ValueError,
        esc("num_heads: expected a divisor of embed_dim (10), got 3"),
        id="MultiHeadAttention-num_heads",
    ),
    pytest.param(
        lambda: AF.multi_head_attention(r(2, 3, 10), r(2, 5, 10), r(2, 5, 10), 3),
        ValueError,
        esc("num_heads: expected a divisor of the query feature size 10, got 3"),
        id="multi_head_attention-num_heads",
    ),
    pytest.param(
        lambda: AF.multi_head_attention(r(3, 10), r(2, 5, 10), r(2, 5, 10), 2),
        ValueError,
        esc("query: expected a 3-D tensor (batch, query length, features), got shape (3, 10)"),
        id="multi_head_attention-query-rank",
    ),
    pytest.param(
        lambda: AF.multi_head_attention(r(2, 3, 4), r(2, 5, 4), r(2, 5, 4), 2, INT_MASK),
        TypeError,
        esc("mask: expected dtype torch.bool") + ".*" + esc("got dtype torch.int64"),
        id="multi_head_attention-mask-dtype",
    ),
    pytest.param(
        layer_call(MultiHeadAttention(6, 2), (2, 3, 6), (2, 5, 6), (2, 5, 6), INT_MASK),
        TypeError,
        esc("mask: expected dtype torch.bool") + ".*" + esc("got dtype torch.int64"),
        id="MultiHeadAttention-mask-dtype",
    ),
    pytest.param(
        layer_call(
            MultiHeadAttention(6, 2), (2, 3, 6), (2, 5, 6), (2, 5, 6), torch.ones(3, 3, dtype=bool)
        ),
        ValueError,
        esc("mask: expected a shape broadcastable to (2, 2, 3, 5) (batch, heads, query, key), ")
        + esc("got (3, 3)"),
        id="MultiHeadAttention-mask-shape",
    ),
    pytest.param(
        layer_call(MultiHeadAttention(6, 2, vdim=7), (2, 3, 6), (2, 5, 6), (2, 5, 6)),
        ValueError,
        esc("value: expected size 7 in dimension -1 (value features (vdim)), got shape (2, 5, 6)"),
        id="MultiHeadAttention-vdim",
    ),
    pytest.param(
        layer_call(MultiHeadAttention(6, 2, batch_first=False), (3, 6), (5, 2, 6), (5, 2, 6)),
        ValueError,
        esc("query: expected a 3-D tensor (length, batch, features), got shape (3, 6)"),
        id="MultiHeadAttention-seq-first-rank",
    ),
    # -- single-head layers
    pytest.param(
        layer_call(AdditiveAttention(4), (3, 4), (2, 5, 4), (2, 5, 4)),
        ValueError,
        esc(
            "query: expected a 3-D tensor (batch, query length, query features), got shape (3, 4)"
        ),
        id="layer-query-rank",
    ),
    pytest.param(
        layer_call(AdditiveAttention(4), (2, 3, 4), (2, 5, 4), (5, 4)),
        ValueError,
        esc("value: expected a 3-D tensor (batch, key length, value features), got shape (5, 4)"),
        id="layer-value-rank",
    ),
    pytest.param(
        layer_call(AdditiveAttention(4, key_dim=6), (2, 3, 5), (2, 5, 6), (2, 5, 3)),
        ValueError,
        esc("query: expected size 4 in dimension -1 (query features), got shape (2, 3, 5)"),
        id="layer-query-features",
    ),
    pytest.param(
        layer_call(LuongAttention(4, key_dim=6), (2, 3, 4), (2, 5, 4), (2, 5, 3)),
        ValueError,
        esc("key: expected size 6 in dimension -1 (key features), got shape (2, 5, 4)"),
        id="layer-key-features",
    ),
    pytest.param(
        layer_call(LuongAttention(4), (2, 3, 4), (2, 5, 4), (2, 4, 3)),
        ValueError,
        esc("value: expected batch and length (2, 5) like key, got shape (2, 4, 3)"),
        id="layer-value-length",
    ),
    pytest.param(
        layer_call(LuongAttention(4), (2, 3, 4), (3, 5, 4), (3, 5, 3)),
        ValueError,
        esc("key: expected batch size 2 like query, got shape (3, 5, 4)"),
        id="layer-batch",
    ),
    pytest.param(
        layer_call(LuongAttention(4), (2, 3, 4), (2, 5, 4), (2, 5, 3), INT_MASK),
        TypeError,
        esc("mask: expected dtype torch.bool") + ".*" + esc("got dtype torch.int64"),
        id="layer-mask-dtype",
    ),
    pytest.param(
        layer_call(LocationBasedAttention(4, max_keys=4), (2, 3, 4), (2, 5, 4), (2, 5, 3)),
        ValueError,
        esc("num_keys: expected at most 4 (the weight's max_keys), got 5"),
        id="LocationBasedAttention-too-many-keys",
    ),
    pytest.param(
        lambda: LuongAttention(4, key_dim=6, method="dot"),
        ValueError,
        esc("key_dim: the dot score needs key_dim == query_dim (4), got 6"),
        id="Luong-dot-key_dim",
    ),
    # -- invalid choices
    pytest.param(
        lambda: LuongAttention(4, method="bilinear"),
        ValueError,
        esc("method: expected one of 'dot', 'general', 'concat', got 'bilinear'"),
        id="Luong-method",
    ),
    pytest.param(
        lambda: LocalAttention(4, 2, mode="local"),
        ValueError,
        esc("mode: expected one of 'local-m', 'local-p', got 'local'"),
        id="LocalAttention-mode",
    ),
    pytest.param(
        lambda: HardAttention(4, mode="soft"),
        ValueError,
        esc("mode: expected one of 'argmax', 'sample', got 'soft'"),
        id="HardAttention-mode",
    ),
    pytest.param(
        lambda: HardAttention(4, estimator="gumbel"),
        ValueError,
        esc("estimator: expected one of 'straight_through', 'reinforce', got 'gumbel'"),
        id="HardAttention-estimator",
    ),
    pytest.param(
        lambda: AF.hard_attention(r(2, 3, 4), r(2, 4, 2), mode="max"),
        ValueError,
        esc("mode: expected one of 'argmax', 'sample', got 'max'"),
        id="hard_attention-mode",
    ),
    pytest.param(
        lambda: AF.hard_attention(r(2, 3, 4), r(2, 4, 2), estimator="score"),
        ValueError,
        esc("estimator: expected one of 'straight_through', 'reinforce', got 'score'"),
        id="hard_attention-estimator",
    ),
    pytest.param(
        lambda: AF.hard_attention(r(2, 3, 5), r(2, 4, 2)),
        ValueError,
        esc("value: expected shape (..., 5, d_v) with one value per key of scores (2, 3, 5), ")
        + esc("got (2, 4, 2)"),
        id="hard_attention-value",
    ),
    # -- local and sliding-window attention
    pytest.param(
        lambda: AF.local_attention(r(2, 3, 5), r(2, 5, 2), r(2, 4), 1),
        ValueError,
        esc("center: expected shape (2, 3) (batch, query), got (2, 4)"),
        id="local-center",
    ),
    pytest.param(
        lambda: AF.local_attention(r(2, 3, 5), r(2, 5, 2), r(2, 3), -1),
        ValueError,
        esc("window: expected a non-negative integer, got -1"),
        id="local-window",
    ),
    pytest.param(
        lambda: AF.local_attention(r(2, 3, 5), r(2, 5, 2), r(2, 3), 1, torch.zeros(2, 3, 5)),
        TypeError,
        esc("mask: expected dtype torch.bool for local attention, got torch.float32"),
        id="local-float-mask",
    ),
    pytest.param(
        lambda: AF.sliding_window_attention(r(2, 4, 3), r(2, 4, 3), r(2, 4, 3), -1),
        ValueError,
        esc("window: expected a non-negative integer, got -1"),
        id="sliding_window_attention-window",
    ),
    # -- masks
    pytest.param(
        lambda: masks.sliding_window_mask(4, window=-1),
        ValueError,
        esc("window: expected a non-negative integer, got -1"),
        id="sliding_window_mask-window",
    ),
    pytest.param(
        lambda: masks.causal_mask(0),
        ValueError,
        esc("query_len: expected a positive integer, got 0"),
        id="causal_mask-length",
    ),
    pytest.param(
        lambda: masks.create_masks(torch.ones(2, 5, dtype=torch.long), torch.ones(3, 4).long()),
        ValueError,
        esc("tgt: expected the same batch size as src (2), got shape (3, 4)"),
        id="create_masks-batch",
    ),
    pytest.param(
        lambda: masks.create_masks(torch.ones(5, dtype=torch.long), torch.ones(3, 4).long()),
        ValueError,
        esc("src: expected a 2-D tensor (batch, src_len) of token ids, got shape (5)"),
        id="create_masks-src-rank",
    ),
    pytest.param(
        lambda: masks.padding_mask(torch.ones(2, 3, 4).long()),
        ValueError,
        esc("tokens: expected a 2-D tensor (batch, seq) of token ids, got shape (2, 3, 4)"),
        id="padding_mask-rank",
    ),
    pytest.param(
        lambda: masks.mask_future_tokens(torch.ones(4).long()),
        ValueError,
        esc("batch: expected a 2-D tensor (batch, seq) of token ids, got shape (4)"),
        id="mask_future_tokens-rank",
    ),
    pytest.param(
        lambda: masks.to_torch_attn_mask(torch.zeros(3, 3)),
        TypeError,
        esc("mask: expected a torch.bool tensor (True = may attend), got torch.float32"),
        id="to_torch_attn_mask-dtype",
    ),
    pytest.param(
        lambda: masks.from_key_padding_mask(torch.zeros(2, 3, dtype=torch.int64)),
        TypeError,
        esc("key_padding_mask: expected a torch.bool tensor (True = may attend), got torch.int64"),
        id="from_key_padding_mask-dtype",
    ),
    pytest.param(
        lambda: masks.from_key_padding_mask(torch.zeros(2, 1, 3, dtype=torch.bool)),
        ValueError,
        esc("key_padding_mask: expected a 2-D tensor (batch, seq), got shape (2, 1, 3)"),
        id="from_key_padding_mask-rank",
    ),
    pytest.param(
        lambda: masks.to_key_padding_mask(torch.zeros(2, 3, 3, dtype=torch.bool)),
        ValueError,
        esc("mask: expected a 2-D tensor (batch, seq) or (batch, 1, 1, seq), got shape (2, 3, 3)"),
        id="to_key_padding_mask-rank",
    ),
    pytest.param(
        lambda: masks.to_additive_mask(torch.zeros(2, 3)),
        TypeError,
        esc("mask: expected a torch.bool tensor (True = may attend), got torch.float32"),
        id="to_additive_mask-dtype",
    ),
    # -- plotting
    pytest.param(
        lambda: plotting.plot_attention(torch.rand(2, 3, 4)),
        ValueError,
        esc("weights: expected a 2-D (query, key) map, got shape (2, 3, 4)"),
        id="plot_attention-rank",
    ),
    pytest.param(
        lambda: plotting.plot_attention_heads(torch.rand(3, 4)),
        ValueError,
        esc("weights: expected a 3-D (heads, query, key) tensor, got shape (3, 4)"),
        id="plot_attention_heads-rank",
    ),
    pytest.param(
        lambda: plotting.plot_attention(torch.rand(3, 4), ["a", "b"]),
        ValueError,
        esc("labels: expected 3 labels, got 2"),
        id="plot_attention-labels",
    ),
    # -- seq2seq
    pytest.param(
        lambda: Seq2Seq(5, 5, 4, 6)(torch.ones(2, 3).long(), torch.ones(3, 4).long()),
        ValueError,
        esc("tgt_in: expected batch size 2 like src, got shape (3, 4)"),
        id="Seq2Seq-batch",
    ),
    pytest.param(
        lambda: Seq2Seq(5, 5, 4, 6)(torch.ones(3).long(), torch.ones(3, 4).long()),
        ValueError,
        esc("src: expected a 2-D tensor (batch, source length) of token ids, got shape (3)"),
        id="Seq2Seq-src-rank",
    ),
]


@pytest.mark.parametrize("call, exc, pattern", CASES)
def test_error_message(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_from_torch_errors():
    with pytest.raises(
        TypeError, match=esc("module: expected torch.nn.MultiheadAttention, got GRU")
    ):
        MultiHeadAttention.from_torch(nn.GRU(4, 4))
    with pytest.raises(ValueError, match="module: add_bias_kv and add_zero_attn"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, add_bias_kv=True))


@pytest.mark.parametrize(
    "key_shape, value_shape, pattern",
    [
        ((2, 5, 4), (2, 5, 4), r"key: .*6.*got shape \(2, 5, 4\)"),  # feature size
        ((3, 5, 6), (3, 5, 6), r"key: .*2.*got .*\(3, 5, 6\)"),  # batch size
        ((2, 5, 6), (2, 4, 6), r"value: .*5.*got .*\(2, 4, 6\)"),  # length
    ],
    ids=["key-features", "key-batch", "value-length"],
)
def test_multi_head_attention_errors_name_the_given_shapes(key_shape, value_shape, pattern):
    """multi_head_attention(query (2, 3, 6), key, value, num_heads=2): the message must show the
    shape the caller passed, not the split (batch, heads, length, head_dim) one."""
    with pytest.raises(ValueError, match=pattern):
        AF.multi_head_attention(r(2, 3, 6), r(*key_shape), r(*value_shape), 2)


def test_float_mask_of_another_dtype_is_rejected_by_name():
    """torch rejects a float64 attn_mask for float32 queries; attnlib must too, with a message
    naming attn_mask, the mask's dtype and the expected one (instead of a matmul error)."""
    q, k, v = r(1, 3, 4), r(1, 5, 4), r(1, 5, 2)
    mask = torch.zeros(3, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"attn_mask: .*torch\.float32.*torch\.float64"):
        AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
