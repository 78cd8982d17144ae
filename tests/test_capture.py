"""attnlib.capture.record_attention: what is recorded, in which order, and that nothing is
left behind in the model after the ``with`` block."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from attnlib.attention import AdditiveAttention, MultiHeadAttention
from attnlib.capture import AttentionRecord, record_attention
from attnlib.seq2seq import Seq2Seq

B, L, E, S, T = 2, 5, 8, 6, 4


class Model(nn.Module):
    """Two multi-head layers (the second one registered runs first) and a Seq2Seq."""

    def __init__(self) -> None:
        super().__init__()
        self.first = MultiHeadAttention(E, 2)
        self.second = MultiHeadAttention(E, 2)
        self.s2s = Seq2Seq(10, 10, 4, 6, attention=AdditiveAttention(6))

    def forward(self, x, src, tgt):
        h, w2 = self.second(x, x, x)
        h, w1 = self.first(h, h, h)
        logits = self.s2s(src, tgt)
        return h, logits, (w1, w2)


@torch.no_grad()
def decoder_weights_by_hand(s2s: Seq2Seq, src, tgt):
    """The recurrent decoder's weights (B, T, S), its attention layer called step by step."""
    memory, mask, state = s2s.encode(src)
    weights = []
    for t in range(tgt.shape[1]):
        _, w = s2s.decoder.attention(state[:, None], memory, memory, mask)  # (B, 1, S)
        weights.append(w[:, 0])
        _, state = s2s.decoder.step(tgt[:, t], state, memory, mask, t)
    return torch.stack(weights, 1)


@pytest.fixture
def model_and_inputs():
    model = Model().eval()
    x = torch.randn(B, L, E)
    src = torch.randint(1, 10, (B, S))
    src[1, -2:] = 0  # padding
    tgt = torch.randint(1, 10, (B, T))
    return model, (x, src, tgt)


def all_hooks(model: nn.Module) -> list:
    return [h for m in model.modules() for h in m._forward_hooks.values()]


def test_names_in_call_order_and_shapes(model_and_inputs):
    model, inputs = model_and_inputs
    with record_attention(model) as record:
        _, _, (w1, w2) = model(*inputs)
    w = decoder_weights_by_hand(model.s2s, *inputs[1:])
    assert record.names() == ["second", "first", "s2s.decoder.attention"]
    assert list(record) == record.names() and len(record) == 3
    assert record["second"].shape == (B, 2, L, L)
    assert record["first"].shape == (B, 2, L, L)
    assert record["s2s.decoder.attention"].shape == (B, 1, S)  # the last decoder step
    # the recorded tensors are the weights the layers returned
    assert torch.equal(record["first"], w1) and torch.equal(record["second"], w2)
    assert torch.equal(record["s2s.decoder.attention"], w[:, -1:])


def test_steps_concatenate_decoder_calls(model_and_inputs):
    """T decoder calls, each (B, 1, S), become (B, T, S): the decoder's weights, step by step."""
    model, inputs = model_and_inputs
    with record_attention(model) as record:
        model(*inputs)
    w = decoder_weights_by_hand(model.s2s, *inputs[1:])
    name = "s2s.decoder.attention"
    assert len(record.calls[name]) == T
    steps = record.steps(name)
    assert steps.shape == (B, T, S)
    assert torch.equal(steps, w)
    assert torch.equal(steps[1, :, -2:], torch.zeros(T, 2))  # padding never attended


def test_stack_layers(model_and_inputs):
    model, inputs = model_and_inputs
    with record_attention(model) as record:
        model(*inputs)
    stacked = record.stack(["first", "second"])
    assert stacked.shape == (2, B, 2, L, L)
    assert torch.equal(stacked[0], record["first"]) and torch.equal(stacked[1], record["second"])


def test_hooks_removed_after_block(model_and_inputs):
    model, inputs = model_and_inputs
    assert all_hooks(model) == []
    with record_attention(model) as record:
        assert len(all_hooks(model)) == 3  # the hooks are really installed during the block
        model(*inputs)
    assert all_hooks(model) == []
    # running the model again records nothing more
    model(*inputs)
    assert len(record.calls["first"]) == 1


def test_hooks_removed_when_block_raises(model_and_inputs):
    model, inputs = model_and_inputs
    with pytest.raises(RuntimeError, match="boom"), record_attention(model):
        model(*inputs)
        raise RuntimeError("boom")
    assert all_hooks(model) == []


def test_model_keeps_no_reference_to_recorded_tensors(model_and_inputs):
    """Once the record is dropped, the recorded tensors are freed: the model holds nothing."""
    model, inputs = model_and_inputs
    with record_attention(model) as record:
        model(*inputs)
    ref = weakref.ref(record["first"])
    assert ref() is not None
    del record
    gc.collect()
    assert ref() is None


def test_detach(model_and_inputs):
    """Detached by default; detach=False keeps the autograd graph (grad_fn)."""
    model, inputs = model_and_inputs
    with record_attention(model) as record:
        model(*inputs)
    assert record["first"].grad_fn is None and not record["first"].requires_grad
    with record_attention(model, detach=False) as record:
        model(*inputs)
    assert record["first"].grad_fn is not None
    # and the graph reaches the parameters
    record["first"].sum().backward()
    assert model.first.q_proj.weight.grad is not None


def test_missing_layer_key_error_names_it(model_and_inputs):
    model, inputs = model_and_inputs
    with record_attention(model) as record:
        model(*inputs)
    with pytest.raises(KeyError, match=r"no attention recorded for 'encoder\.attn'.*first"):
        record["encoder.attn"]


def test_bare_layer_records_under_empty_name():
    mha = MultiHeadAttention(E, 4)
    x = torch.randn(1, 3, E)
    with record_attention(mha) as record:
        _, w = mha(x, x, x)
    assert record.names() == [""]
    assert torch.equal(record[""], w)


def test_types_restrict_what_is_recorded(model_and_inputs):
    model, inputs = model_and_inputs
    with record_attention(model, types=(AdditiveAttention,)) as record:
        model(*inputs)
    assert record.names() == ["s2s.decoder.attention"]


def test_record_clear_and_repr():
    record = AttentionRecord()
    record.calls["a"] = [torch.zeros(1, 2, 3)]
    assert "a: (1, 2, 3)" in repr(record)
    record.clear()
    assert len(record) == 0 and record.names() == []
    with pytest.raises(KeyError, match="recorded: none"):
        record["a"]
